//! The demo's clock, shared by the server and every terminal: it runs at
//! the speed of the wall clock from an instant the demo sets, so a week of
//! dates plays in seconds while every party agrees on the time (request
//! signatures, receipt times and clock-skew rules stay honest).

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Unix milliseconds of the wall clock.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A settable clock that only moves forward.
#[derive(Clone)]
pub struct SimClock {
    /// (simulated ms at the anchor, the anchor).
    anchor: Arc<Mutex<(i64, Instant)>>,
}

impl SimClock {
    pub fn new(start_ms: i64) -> SimClock {
        SimClock {
            anchor: Arc::new(Mutex::new((start_ms, Instant::now()))),
        }
    }

    pub fn now(&self) -> i64 {
        let (at, since) = *self.anchor.lock().unwrap_or_else(|e| e.into_inner());
        at + since.elapsed().as_millis() as i64
    }

    /// Jumps to `ms`; never backwards (records on one terminal must not go
    /// back in time).
    pub fn set(&self, ms: i64) {
        let now = self.now();
        *self.anchor.lock().unwrap_or_else(|e| e.into_inner()) = (ms.max(now), Instant::now());
    }

    /// From now on, the wall clock (the played week lies in the past).
    pub fn follow_wall_clock(&self) {
        self.set(wall_ms());
    }

    /// The clock as the server's and the terminals' clock hook.
    pub fn as_fn(&self) -> Arc<dyn Fn() -> i64 + Send + Sync> {
        let c = self.clone();
        Arc::new(move || c.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_from_where_it_was_set_and_never_goes_back() {
        let c = SimClock::new(1_000_000);
        let a = c.now();
        assert!((1_000_000..1_000_000 + 5_000).contains(&a));
        c.set(5_000_000);
        assert!(c.now() >= 5_000_000);
        c.set(2_000_000);
        assert!(c.now() >= 5_000_000, "went back in time");
        let f = c.as_fn();
        assert!(f() >= 5_000_000);
    }
}
