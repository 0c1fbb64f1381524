//! Giving freed memory back to the operating system between files.
//!
//! glibc keeps freed chunks inside its heaps and only trims a heap's top, so after a
//! few thousand windows the holes left by encoded files add up and the resident size
//! creeps upward although the live heap stays flat (measured with massif: 10-17 MB
//! live throughout a 14-day backfill while RSS grew from 27 to 41 MB). Trimming after
//! each file returns those pages and keeps peak memory independent of the range.

/// Returns free heap pages to the OS (glibc on Linux; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
