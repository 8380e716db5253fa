//! The allocator's settings. The binaries (`main.rs`, the national
//! benchmark) choose mimalloc as the global allocator; this tunes it for
//! reconciliation in parts.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay`: its place in the `mi_option_e` enum of the
/// mimalloc v3 that libmimalloc-sys 0.1.49 builds (the crate names no
/// constant for it; the test below checks it reads the documented default).
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory is kept before it goes back to the kernel.
pub const KEEP_FREED_MS: i64 = 5_000;

/// Keeps freed memory [`KEEP_FREED_MS`] before giving it back to the kernel
/// (mimalloc's default: 1 s). A run in parts frees one part's rows and reads
/// the next part's about 2.5 s later: after 1 s that memory had gone back to
/// the kernel and was faulted in and zeroed again (5% of a national re-run;
/// docs/rules.md). An idle server still returns it 5 s after a run.
/// `MIMALLOC_PURGE_DELAY` in the environment, when set, wins.
pub fn keep_freed_memory_longer() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one integer option of the allocator, which reads it on
    // each purge; any value is valid.
    unsafe { mi_option_set(PURGE_DELAY, KEEP_FREED_MS as _) }
}

/// The allocator's purge delay now, in milliseconds (-1: never).
// `c_long` is 32 bits on some targets, 64 on this one.
#[allow(clippy::useless_conversion)]
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads one integer option.
    i64::from(unsafe { mi_option_get(PURGE_DELAY) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option set is the purge delay: it reads mimalloc v3's default
    /// (1000 ms) first, then the delay reconciliation runs with.
    #[test]
    fn freed_memory_is_kept_five_seconds() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(purge_delay_ms(), 1_000, "mimalloc v3's default purge delay");
        keep_freed_memory_longer();
        assert_eq!(purge_delay_ms(), KEEP_FREED_MS);
    }
}
