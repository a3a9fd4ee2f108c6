//! The process-wide allocator.
//!
//! Why it exists: the `kafka-protocol` decoder sizes a `Vec` from an array
//! count read off the wire before it reads the elements. A forged count of
//! two billion asks for tens of gigabytes up front, more than the kernel's
//! overcommit heuristic grants, and Rust aborts the process on a failed
//! allocation. That would let one malformed request kill the broker.
//!
//! [`Guarded`] serves ordinary sizes from the system allocator and maps
//! allocations of [`LARGE`] bytes and more with `MAP_NORESERVE`: address
//! space is reserved but no memory is committed until it is touched. The
//! decoder touches only as many elements as the frame really holds (frames
//! are bounded by `socket.request.max.bytes`), fails, and frees the mapping.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this big are reserved lazily.
pub const LARGE: usize = 256 * 1024 * 1024;

const PAGE: usize = 4096;

/// The allocator; install it with `#[global_allocator]`.
pub struct Guarded;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is
    // reported as MAP_FAILED and turned into a null pointer.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to
// it) or from `mmap` (page aligned, which satisfies any alignment up to a
// page, and returned with `munmap` of the same size): the choice depends only
// on the layout, which the caller passes back unchanged.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Fresh anonymous pages are zero.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(l) => l,
            Err(_) => return std::ptr::null_mut(),
        };
        if !is_large(&layout) && !is_large(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes
            // and distinct allocations cannot overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: Guarded = Guarded;

    #[test]
    fn huge_capacity_is_reserved_not_committed() {
        // 64 GiB: more than this machine has; must not abort.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.extend(0..1000);
        assert_eq!(v[999], 999);
        let mut small: Vec<u8> = Vec::with_capacity(10);
        small.extend_from_slice(&[1; 100]);
        small.reserve(LARGE); // crosses into a mapping
        assert_eq!(small[99], 1);
    }
}
