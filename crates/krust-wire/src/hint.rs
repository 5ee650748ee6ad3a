//! Cache hints for memory about to be written or read.
//!
//! A producer's batch buffers are written on one core and read on another, by the kernel's
//! copy on the connection's I/O thread. When such a buffer is reused, each of its cache lines
//! is still held by the reader's core, and the writer's store waits for that copy to be
//! invalidated. Between cores that share a cache that is cheap; between cores on different
//! dies (a virtual machine's two CPUs can land on either) it is a round trip of several hundred
//! nanoseconds, one line after another, and a 1 KiB value copied into a reused batch paid it
//! sixteen times.
//!
//! [`prefetch_write`] asks for the lines ahead of the writes that will need them, so those
//! round trips overlap instead of queueing behind the stores. [`prefetch_read`] does the same
//! for reads the hardware cannot see coming: the values a batch copies in are separate
//! allocations, each written by the application's thread. Both are only hints: they never
//! fault, never change what memory holds, and do nothing on a CPU without such an instruction.

/// Bytes in a cache line on the CPUs this targets.
pub(crate) const LINE: usize = 64;

/// Asks the CPU to bring every cache line of `place` into this core's cache, owned for
/// writing (other cores' copies invalidated), ahead of a write to it. Costs one instruction
/// per line; does nothing on a CPU without a write-prefetch instruction or off x86-64.
#[inline]
pub fn prefetch_write<T>(place: &T) {
    let start = place as *const T as usize;
    let size = std::mem::size_of::<T>().max(1);
    let mut line = start & !(LINE - 1);
    while line < start + size {
        prefetch_write_line(line);
        line += LINE;
    }
}

/// Asks the CPU to bring the cache lines of `bytes` into this core's cache ahead of a read of
/// them: for data whose address the hardware cannot guess, such as the next of many separate
/// allocations. Costs one instruction per line; does nothing off x86-64.
#[inline]
pub fn prefetch_read(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let start = bytes.as_ptr() as usize;
    let mut line = start & !(LINE - 1);
    while line < start + bytes.len() {
        prefetch_read_line(line);
        line += LINE;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_read_line(addr: usize) {
    // SAFETY: PREFETCHT0 (SSE, present on every x86-64 CPU) is a hint: it reads no register
    // but its address operand, writes none, touches no stack, never faults and does not change
    // memory's contents.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::asm!(
            "prefetcht0 [{}]",
            in(reg) addr,
            options(nostack, preserves_flags, readonly)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_read_line(_addr: usize) {}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_write_line(addr: usize) {
    if !has_prefetchw() {
        return;
    }
    // SAFETY: PREFETCHW is a hint: it reads no register but its address operand, writes
    // none, touches no stack, never faults (not even on an unmapped address) and does not
    // change memory's contents; `has_prefetchw` checked that the CPU implements it.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::asm!(
            "prefetchw [{}]",
            in(reg) addr,
            options(nostack, preserves_flags, readonly)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_write_line(_addr: usize) {}

/// Whether the CPU has PREFETCHW (CPUID 0x8000_0001, ECX bit 8), asked once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_prefetchw() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not asked yet, 1: no, 2: yes.
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: CPUID exists on every x86-64 CPU and only reads identification
            // registers (newer compilers no longer mark it unsafe).
            #[allow(unsafe_code, unused_unsafe)]
            let cpuid = |leaf| unsafe { std::arch::x86_64::__cpuid(leaf) };
            let yes =
                cpuid(0x8000_0000).eax >= 0x8000_0001 && cpuid(0x8000_0001).ecx & (1 << 8) != 0;
            KNOWN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
        known => known == 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_changes_nothing_it_touches() {
        // A hint over values of several sizes and alignments, and over a vector's spare
        // capacity: the contents stay as they were.
        let mut v: Vec<u8> = (0..=255).collect();
        v.reserve(4096);
        for b in &v {
            prefetch_write(b);
        }
        for slot in v.spare_capacity_mut().iter().step_by(61) {
            prefetch_write(slot);
        }
        prefetch_read(&v);
        prefetch_read(&v[3..200]);
        prefetch_read(&[]);
        let big = [7u64; 100];
        prefetch_write(&big);
        prefetch_write(&());
        assert_eq!(v, (0..=255).collect::<Vec<u8>>());
        assert!(big.iter().all(|&x| x == 7));
    }
}
