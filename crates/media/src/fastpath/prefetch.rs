//! Hints to the CPU to start fetching memory that is about to be used.
//!
//! Per-connection state on the packet path is cold when it is needed: a subscriber's egress state was
//! last touched a packet ago (tens of milliseconds and a hundred other subscribers back), its feedback
//! state a report ago. Touched one connection after another, each waits on its own cache misses in
//! turn. Asking for all of them first lets the misses overlap. Measured in scenario (a) (1 -> 100,
//! temporary timers around each datagram): ~2.0 -> ~1.5 us per forwarded copy, ~4.7 -> ~3.7 us per
//! receiver report (`bench/results/2026-12-06-notes.md`, "Session 11").

/// Starts fetching the cache line holding `p` into every cache level. A hint only: it never faults,
/// whatever the address, and does nothing on targets other than x86-64.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing architecturally visible and cannot fault on any address
    // (Intel SDM vol. 2, PREFETCHh).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The size of a cache line on the CPUs we run on.
const LINE: usize = 64;

/// Starts fetching every cache line of `value`.
#[inline]
pub fn prefetch_all<T: ?Sized>(value: &T) {
    let base = (value as *const T).cast::<u8>();
    for offset in (0..std::mem::size_of_val(value)).step_by(LINE) {
        prefetch(base.wrapping_add(offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_is_harmless_on_any_value() {
        let empty: [u8; 0] = [];
        prefetch_all(&empty[..]);
        let big = vec![7u8; 10_000];
        prefetch_all(&big[..]);
        prefetch(std::ptr::null::<u64>());
        // A hint changes nothing it points at.
        assert!(big.iter().all(|&b| b == 7));
    }
}
