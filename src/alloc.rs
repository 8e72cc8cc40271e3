//! A global allocator that wipes memory before giving it back.
//!
//! Secret values pass through buffers that botward does not own: reqwest and
//! rustify read Vault's response into `Bytes` and `Vec`s, serde_json builds
//! strings, hyper and rustls keep their own buffers. Wrapping the system
//! allocator so that every block is zeroed when it is freed, and the old
//! block zeroed when `realloc` moves it, means none of those copies survives
//! in freed memory.
//!
//! Besides the operating-system calls in [`crate::platform`], this is the
//! only module with `unsafe` code. Wiping can be switched off at run time
//! (`hardening.wipe_freed_memory = false`).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, wiping on free.
pub struct WipingAlloc;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns wiping on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Zeroes `len` bytes at `ptr` in a way the compiler may not remove, even
/// though the memory is freed right after.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
#[inline]
unsafe fn wipe(ptr: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    // An empty asm block that may read `ptr` (no `nomem`): the zeroing above
    // is observable, so it cannot be treated as a dead store before `free`.
    // SAFETY: the block has no instructions.
    unsafe { std::arch::asm!("/* {0} */", in(reg) ptr, options(nostack, preserves_flags)) };
}

// SAFETY: every method forwards to `System` with the caller's layout; the
// only extra work is zeroing memory the caller still owns.
unsafe impl GlobalAlloc for WipingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if enabled() {
            // SAFETY: the block is still ours until `System.dealloc`.
            unsafe { wipe(ptr, layout.size()) };
        }
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !enabled() {
            // SAFETY: forwarded contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Never let the system allocator move the block itself: it would
        // free the old one unwiped. Copy into a new block, then wipe and free
        // the old one.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `new_size` is non-zero by the `realloc` contract.
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks hold at least `min(old, new)` bytes, and the
            // old block is ours until it is freed.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                wipe(ptr, layout.size());
                System.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realloc_keeps_contents_when_growing_and_shrinking() {
        let a = WipingAlloc;
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: each block is used within its layout's size and freed once,
        // with the layout it was last given.
        unsafe {
            let p = a.alloc(layout);
            for i in 0..16 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, layout, 4096);
            for i in 0..16 {
                assert_eq!(*q.add(i), i as u8);
            }
            let big = Layout::from_size_align(4096, 8).unwrap();
            let r = a.realloc(q, big, 8);
            for i in 0..8 {
                assert_eq!(*r.add(i), i as u8);
            }
            a.dealloc(r, Layout::from_size_align(8, 8).unwrap());
        }
    }
}
