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
//! [`release_free_memory`] asks the allocator to return what is free
//! ([`release_before`]: only ahead of a large output). It
//! changes no live allocation, only which freed pages stay mapped, and
//! costs a walk of the free lists (4 ms after that 1M-row search, well under
//! a millisecond on small tables). Elsewhere than glibc it does nothing.

/// Outputs below this size skip the release: the walk and the page faults
/// of reusing fresh pages instead of resident ones cost 2-5 ms on 100k x 20
/// SMOTE (about 5% of its run), for a few MB.
pub const RELEASE_ABOVE: usize = 64 << 20;

/// [`release_free_memory`] when about `bytes` of output are about to be
/// allocated and that is at least [`RELEASE_ABOVE`].
pub fn release_before(bytes: usize) {
    if bytes >= RELEASE_ABOVE {
        release_free_memory();
    }
}

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

/// Zeroed `f64` columns of one length in one allocation, which becomes one
/// Arrow buffer that the columns share (each a slice of it).
///
/// From [`HUGE_PAGES_FROM`] bytes on Linux the memory is its own mapping,
/// marked for transparent huge pages: a first write then faults in 2 MB at
/// a time instead of 4 KB. New pages cost about 2.5 us each on the 2-core
/// CI machine (12.8 MB: 8 ms in 4 KB pages, 1 ms in huge pages), a tenth
/// of the 100k x 20 SMOTE run; the mapping also goes straight back to the
/// system when the last column is dropped. Smaller, or elsewhere: a `Vec`.
pub struct F64Columns {
    count: usize,
    len: usize,
    storage: Storage,
}

/// Bytes from which [`F64Columns`] maps its own huge-page memory (numpy
/// asks for huge pages from 4 MB as well).
pub const HUGE_PAGES_FROM: usize = 4 << 20;

enum Storage {
    Heap(Vec<f64>),
    #[cfg(target_os = "linux")]
    Mapped(Mapping),
}

/// An anonymous mapping, unmapped on drop; `data` is its first 2 MB
/// boundary. Addresses as integers, so that the owner is `Send + Sync`.
#[cfg(target_os = "linux")]
struct Mapping {
    base: usize,
    size: usize,
    data: usize,
}

#[cfg(target_os = "linux")]
impl Mapping {
    const HUGE: usize = 2 << 20;

    /// A zeroed, writable mapping with `bytes` from a 2 MB boundary on;
    /// `None` when the system refuses it.
    fn new(bytes: usize) -> Option<Mapping> {
        let size = bytes.checked_add(Self::HUGE)?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // touched, and failure is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the range is the mapping just made; a refusal (no THP
        // support) leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(base, size, libc::MADV_HUGEPAGE);
        }
        let base = base as usize;
        Some(Mapping {
            base,
            size,
            data: base.next_multiple_of(Self::HUGE),
        })
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + size` is a mapping this value owns, and no
        // slice of it outlives the value (the Arrow buffer holds it).
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size);
        }
    }
}

impl F64Columns {
    /// `count` columns of `len` zeros.
    pub fn zeroed(count: usize, len: usize) -> F64Columns {
        let n = count * len;
        #[cfg(target_os = "linux")]
        if n * 8 >= HUGE_PAGES_FROM
            && let Some(m) = Mapping::new(n * 8)
        {
            return F64Columns {
                count,
                len,
                storage: Storage::Mapped(m),
            };
        }
        F64Columns {
            count,
            len,
            storage: Storage::Heap(vec![0.0; n]),
        }
    }

    /// The columns, to fill.
    pub fn columns_mut(&mut self) -> Vec<&mut [f64]> {
        let n = self.count * self.len;
        let all: &mut [f64] = match &mut self.storage {
            Storage::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: `data..data + 8n` lies inside the mapping (it has 2 MB
            // to spare before the boundary), is zeroed (a valid f64) and
            // aligned, and the borrow of `self` keeps it exclusive.
            Storage::Mapped(m) => unsafe { std::slice::from_raw_parts_mut(m.data as *mut f64, n) },
        };
        if self.len == 0 {
            return (0..self.count).map(|_| <&mut [f64]>::default()).collect();
        }
        all.chunks_mut(self.len).collect()
    }

    /// The columns as Arrow buffers sharing the allocation.
    pub fn into_buffers(self) -> Vec<arrow::buffer::ScalarBuffer<f64>> {
        let (count, len) = (self.count, self.len);
        let buffer = match self.storage {
            Storage::Heap(v) => arrow::buffer::Buffer::from_vec(v),
            #[cfg(target_os = "linux")]
            Storage::Mapped(m) => {
                let ptr = std::ptr::NonNull::new(m.data as *mut u8).expect("mapped");
                // SAFETY: `ptr` is valid for `8 * count * len` bytes for as
                // long as `m` lives, and the buffer owns `m`.
                unsafe {
                    arrow::buffer::Buffer::from_custom_allocation(
                        ptr,
                        8 * count * len,
                        std::sync::Arc::new(m),
                    )
                }
            }
        };
        (0..count)
            .map(|j| arrow::buffer::ScalarBuffer::new(buffer.clone(), j * len, len))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_zeroed_written_and_shared_at_any_size() {
        // below and above the huge-page size, and empty
        for (count, len) in [(3, 5), (4, HUGE_PAGES_FROM / 8), (2, 0), (0, 7)] {
            let mut c = F64Columns::zeroed(count, len);
            let mut cols = c.columns_mut();
            assert_eq!(cols.len(), count);
            for (j, col) in cols.iter_mut().enumerate() {
                assert_eq!(col.len(), len);
                assert!(col.iter().all(|&v| v == 0.0));
                for (i, v) in col.iter_mut().enumerate() {
                    *v = (j * 1000 + i) as f64;
                }
            }
            let bufs = c.into_buffers();
            assert_eq!(bufs.len(), count);
            for (j, b) in bufs.iter().enumerate() {
                assert_eq!(b.len(), len);
                assert!(
                    b.iter()
                        .enumerate()
                        .all(|(i, &v)| v == (j * 1000 + i) as f64)
                );
            }
            // a column outlives its siblings
            let last = bufs.into_iter().last();
            if let Some(b) = last {
                assert!(
                    b.iter()
                        .enumerate()
                        .all(|(i, &v)| v == ((count - 1) * 1000 + i) as f64)
                );
            }
        }
    }
}
