//! [`RandomSource`]: a [`Source`] that invents values instead of reading them.
//!
//! Running a krust decoder over a `RandomSource` yields a random message that is well formed for
//! the chosen version (fields the version lacks keep their defaults, because the decoder never
//! asks for them). Property tests encode such a message with an independent encoder and require
//! krust's byte decoder to give the same value back; applications can use it to build fixtures.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::source::Source;
use crate::error::Result;

/// A deterministic generator of protocol values (SplitMix64), seeded by the caller.
#[derive(Debug, Clone)]
pub struct RandomSource {
    state: u64,
    flexible: bool,
    depth: u32,
}

impl RandomSource {
    /// A generator for a flexible (or non-flexible) message, from `seed`.
    pub fn new(seed: u64, flexible: bool) -> Self {
        RandomSource {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            flexible,
            depth: 0,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn small_bytes(&mut self) -> Vec<u8> {
        let n = self.below(9) as usize;
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    fn small_text(&mut self) -> String {
        let n = self.below(9) as usize;
        (0..n)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect()
    }

    fn count(&mut self) -> usize {
        // Keep nested messages small: fewer elements the deeper we are.
        let max = match self.depth {
            0 => 4,
            1 => 3,
            _ => 2,
        };
        self.below(max) as usize
    }
}

impl Source for RandomSource {
    fn flexible(&self) -> bool {
        self.flexible
    }
    fn bool(&mut self) -> Result<bool> {
        Ok(self.below(2) == 1)
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(self.next_u64() as i8)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(self.next_u64() as i16)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(self.next_u64() as u16)
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(self.next_u64() as i32)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(self.next_u64() as u32)
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(self.next_u64() as i64)
    }
    fn f64(&mut self) -> Result<f64> {
        // Finite values only, so that equality comparisons are meaningful.
        Ok((self.next_u64() % 1_000_000) as f64 / 7.0)
    }
    fn uuid(&mut self) -> Result<Uuid> {
        let hi = self.next_u64();
        let lo = self.next_u64();
        Ok(Uuid::from_u64_pair(hi, lo))
    }
    fn string(&mut self) -> Result<StrBytes> {
        Ok(StrBytes::from_string(self.small_text()))
    }
    fn nullable_string(&mut self) -> Result<Option<StrBytes>> {
        if self.below(4) == 0 {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }
    fn bytes(&mut self) -> Result<Bytes> {
        Ok(Bytes::from(self.small_bytes()))
    }
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>> {
        if self.below(4) == 0 {
            Ok(None)
        } else {
            self.bytes().map(Some)
        }
    }
    fn array<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let n = self.count();
        self.depth += 1;
        let out = (0..n).map(|_| f(self)).collect();
        self.depth -= 1;
        out
    }
    fn nullable_array<T>(
        &mut self,
        f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        if self.below(4) == 0 {
            Ok(None)
        } else {
            self.array(f).map(Some)
        }
    }
    fn tagged_fields(
        &mut self,
        known: &[u32],
        mut f: impl FnMut(&mut Self, u32) -> Result<()>,
    ) -> Result<BTreeMap<i32, Bytes>> {
        for &tag in known {
            if self.below(2) == 1 {
                self.depth += 1;
                let r = f(self, tag);
                self.depth -= 1;
                r?;
            }
        }
        let mut unknown = BTreeMap::new();
        if self.below(4) == 0 {
            let max_known = known.iter().copied().max().map_or(0, |m| m + 1);
            let tag = max_known + self.below(5) as u32;
            unknown.insert(tag as i32, Bytes::from(self.small_bytes()));
        }
        Ok(unknown)
    }
}
