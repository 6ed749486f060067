//! A global allocator that counts allocations per thread, for the tests that prove (or measure) what a
//! packet path allocates: `crates/media/tests/fastpath_no_alloc.rs`, `alloc_per_packet.rs` and
//! `bench/floor/tests/no_alloc.rs` include this file with `#[path]` and declare
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: Counting = Counting::new(|| true); // or a filter: count only while it says so
//! ```
//!
//! Per thread, because the test harness's own thread allocates now and then while a test runs (seen: 4
//! allocations in about one run of ten), which is not the packet path's doing. aws-lc's C code does not
//! go through Rust's allocator: these tests vouch for the Rust side only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Const-initialised `Cell`: counting never allocates or registers a destructor.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations (and reallocations) this thread made that the filter let through.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Counts what `filter` says to count, then defers to the system allocator.
pub struct Counting {
    filter: fn() -> bool,
}

impl Counting {
    pub const fn new(filter: fn() -> bool) -> Self {
        Self { filter }
    }

    fn count(&self) {
        if (self.filter)() {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
    }
}

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
