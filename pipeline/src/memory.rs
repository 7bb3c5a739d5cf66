//! Handing freed heap memory back to the operating system.
//!
//! glibc's allocator raises its mmap threshold each time a large block it
//! mapped is freed (up to 32 MB), and its trim threshold with it (to twice
//! that). After a pipeline has loaded and freed a few large tables, blocks
//! of up to 32 MB therefore come from the heap, and up to 64 MB of freed
//! heap stays resident, waiting for reuse. A stage about to allocate a large
//! output right after freeing its working memory (a neighbour search, class
//! indices) would then hold both: measured on `rebalance` SMOTE at 1M x 50,
//! 24 MB of freed memory stayed resident under the ~300 MB of new columns.
//!
//! [`release_free_memory`] asks the allocator to return what is free. It
//! changes no live allocation, only which freed pages stay mapped, and
//! costs a walk of the free lists (4 ms after that 1M-row search, well under
//! a millisecond on small tables). Elsewhere than glibc it does nothing.

/// Returns freed heap pages to the operating system (glibc's `malloc_trim`);
/// a no-op on other platforms and allocators.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: `malloc_trim` takes no pointer and only unmaps (or
        // madvises away) pages of chunks that are already free; it is
        // thread-safe (it locks each arena it walks).
        unsafe {
            malloc_trim(0);
        }
    }
}
