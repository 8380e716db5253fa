//! The allocator's settings. The binaries (`main.rs`, the national
//! benchmark) choose mimalloc as the global allocator; this tunes it for
//! reconciliation in parts.

use std::sync::Mutex;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay`: its place in the `mi_option_e` enum of the
/// mimalloc v3 that libmimalloc-sys 0.1.49 builds (the crate names no
/// constant for it; the test below checks it reads the documented default).
const PURGE_DELAY: mi_option_t = 15;

/// How many runs hold freed memory, and the purge delay to restore.
static HOLDERS: Mutex<(usize, i64)> = Mutex::new((0, 0));

/// While one of these lives, freed memory stays with the process instead of
/// going back to the kernel (mimalloc purges it after 1 s by default). A
/// run in parts frees one part's rows and reads the next part's, on
/// threads of its own, seconds later: purged in between, that memory was
/// faulted in and zeroed again (eight provinces run again: 111,000-165,000
/// page faults, 32,000 when kept; docs/rules.md, "Writer's path"). When the
/// last one is dropped the delay goes back to what it was, so an idle
/// server returns the memory. `MIMALLOC_PURGE_DELAY` in the environment,
/// when set, is left alone.
pub struct FreedMemoryKept(());

impl FreedMemoryKept {
    pub fn during_run() -> FreedMemoryKept {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if holders.0 == 0 && !overridden() {
            holders.1 = purge_delay_ms();
            set_purge_delay_ms(-1);
        }
        holders.0 += 1;
        FreedMemoryKept(())
    }
}

impl Drop for FreedMemoryKept {
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        holders.0 -= 1;
        if holders.0 == 0 && !overridden() {
            set_purge_delay_ms(holders.1);
        }
    }
}

fn overridden() -> bool {
    std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
}

fn set_purge_delay_ms(ms: i64) {
    // SAFETY: sets one integer option of the allocator, which reads it on
    // each purge; any value is valid (-1: never purge).
    unsafe { mi_option_set(PURGE_DELAY, ms as _) }
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

    /// The option is the purge delay (it reads mimalloc v3's default, 1000
    /// ms, first); runs keep freed memory while any of them lives, and the
    /// default comes back when the last ends.
    #[test]
    fn runs_keep_freed_memory_until_the_last_ends() {
        if overridden() {
            return;
        }
        assert_eq!(purge_delay_ms(), 1_000, "mimalloc v3's default purge delay");
        let first = FreedMemoryKept::during_run();
        assert_eq!(purge_delay_ms(), -1);
        let second = FreedMemoryKept::during_run();
        drop(first);
        assert_eq!(purge_delay_ms(), -1, "the second run still holds it");
        drop(second);
        assert_eq!(purge_delay_ms(), 1_000);
    }
}
