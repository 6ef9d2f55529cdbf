//! Giving memory back to the system after a costly request.
//!
//! glibc's allocator keeps freed memory for reuse, and by default raises its
//! mmap threshold each time a large block is freed, so after a burst of large
//! requests (megabyte parameters, hostile YAML) the freed megabytes stay in the
//! heap and the DaemonSet's resident memory stays at its peak. The provider sets
//! the thresholds itself at start (large blocks always come from, and go back to,
//! mmap; at most two arenas per core's worth of threads) and trims the heap after
//! a costly request. Other allocators and C libraries: nothing to do.

#![allow(unsafe_code)]

/// Blocks this large or larger are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Freed memory above this at the top of the heap is given back at once.
const TRIM_THRESHOLD: i32 = 256 * 1024;
/// Most malloc arenas: each can hold freed memory of its own.
const ARENA_MAX: i32 = 2;

/// Sets the allocator's thresholds; call once, first thing in `main`. Returns
/// whether the allocator took every setting (always true where there is
/// nothing to set).
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; it is called with
    // documented parameters and values, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

/// Returns freed heap memory to the system; call after a costly request, off the
/// async workers (it walks the arenas). Returns whether any memory was returned.
pub(crate) fn release_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it takes the
    // arena locks itself and touches no memory the program holds.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_allocator_takes_the_settings_and_gives_freed_memory_back() {
        assert!(super::tune_allocator(), "glibc refused a mallopt setting");
        // Many blocks under the mmap threshold live in the heap; once freed, a
        // trim must hand their pages back.
        let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 60 * 1024]).collect();
        assert_eq!(blocks.iter().map(Vec::len).sum::<usize>(), 256 * 60 * 1024);
        drop(blocks);
        assert!(super::release_memory(), "malloc_trim returned nothing after 15 MiB were freed");
    }
}
