//! The bedside LED and buzzer: success, failure and attention said in
//! light and sound as well as on the screen (many patients cannot read the
//! screen from the chair).
//!
//! [`pattern`] is pure: a signal in, a list of (LED, buzzer, duration)
//! steps out. [`Indicators`] plays a pattern on any two embedded-hal 1.0
//! output pins with any delay provider; on the Raspberry Pi those are
//! `rppal` GPIO pins (feature `rpi`, see [`crate::rpi`]).

use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

/// What the terminal wants to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Identity confirmed, record signed: one short beep, LED on.
    Success,
    /// Refused or failed: three short beeps, LED flashing.
    Failure,
    /// Waiting for the patient (place finger, tap card): LED blinks once,
    /// no sound.
    Attention,
}

/// One step of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub led: bool,
    pub buzzer: bool,
    pub duration: Duration,
}

const fn step(led: bool, buzzer: bool, ms: u64) -> Step {
    Step {
        led,
        buzzer,
        duration: Duration::from_millis(ms),
    }
}

/// The pattern of a signal. Every pattern ends with both outputs off.
pub fn pattern(signal: Signal) -> &'static [Step] {
    const SUCCESS: [Step; 3] = [
        step(true, true, 120),
        step(true, false, 600),
        step(false, false, 0),
    ];
    const FAILURE: [Step; 7] = [
        step(true, true, 90),
        step(false, false, 90),
        step(true, true, 90),
        step(false, false, 90),
        step(true, true, 90),
        step(false, false, 90),
        step(false, false, 0),
    ];
    const ATTENTION: [Step; 2] = [step(true, false, 250), step(false, false, 0)];
    match signal {
        Signal::Success => &SUCCESS,
        Signal::Failure => &FAILURE,
        Signal::Attention => &ATTENTION,
    }
}

/// An LED and a buzzer on two output pins.
pub struct Indicators<L, B> {
    led: L,
    buzzer: B,
}

/// A pin that would not switch.
#[derive(Debug, thiserror::Error)]
#[error("indicator pin {pin}: {kind:?}")]
pub struct IndicatorError {
    pub pin: &'static str,
    pub kind: embedded_hal::digital::ErrorKind,
}

impl<L: OutputPin, B: OutputPin> Indicators<L, B> {
    pub fn new(led: L, buzzer: B) -> Indicators<L, B> {
        Indicators { led, buzzer }
    }

    fn set(&mut self, led: bool, buzzer: bool) -> Result<(), IndicatorError> {
        use embedded_hal::digital::Error;
        let r = if led {
            self.led.set_high()
        } else {
            self.led.set_low()
        };
        r.map_err(|e| IndicatorError {
            pin: "led",
            kind: e.kind(),
        })?;
        let r = if buzzer {
            self.buzzer.set_high()
        } else {
            self.buzzer.set_low()
        };
        r.map_err(|e| IndicatorError {
            pin: "buzzer",
            kind: e.kind(),
        })
    }

    /// Plays a signal to the end (about a second at most).
    pub fn play(&mut self, signal: Signal, delay: &mut impl DelayNs) -> Result<(), IndicatorError> {
        for s in pattern(signal) {
            self.set(s.led, s.buzzer)?;
            if !s.duration.is_zero() {
                delay.delay_ms(s.duration.as_millis() as u32);
            }
        }
        Ok(())
    }

    pub fn release(self) -> (L, B) {
        (self.led, self.buzzer)
    }
}

/// A delay provider for a Linux host: sleeps the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadDelay;

impl DelayNs for ThreadDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records every level set, with the time the fake delay has reached.
    /// (time in ms, pin, level) for every level set.
    type Events = Vec<(u64, &'static str, bool)>;

    #[derive(Clone, Default)]
    struct Log(Rc<RefCell<(u64, Events)>>);

    struct Pin(&'static str, Log);

    impl embedded_hal::digital::ErrorType for Pin {
        type Error = std::convert::Infallible;
    }

    impl OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            let mut l = (self.1).0.borrow_mut();
            let t = l.0;
            l.1.push((t, self.0, false));
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            let mut l = (self.1).0.borrow_mut();
            let t = l.0;
            l.1.push((t, self.0, true));
            Ok(())
        }
    }

    struct Clock(Log);

    impl DelayNs for Clock {
        fn delay_ns(&mut self, ns: u32) {
            (self.0).0.borrow_mut().0 += u64::from(ns) / 1_000_000;
        }
    }

    fn beeps(signal: Signal) -> (usize, u64) {
        let log = Log::default();
        let mut ind = Indicators::new(Pin("led", log.clone()), Pin("buzzer", log.clone()));
        ind.play(signal, &mut Clock(log.clone())).unwrap();
        let l = log.0.borrow();
        let buzzer: Vec<_> = l.1.iter().filter(|e| e.1 == "buzzer").collect();
        let rising = buzzer.windows(2).filter(|w| !w[0].2 && w[1].2).count()
            + usize::from(buzzer.first().is_some_and(|e| e.2));
        // Everything ends off.
        assert_eq!(l.1.iter().rev().take(2).filter(|e| e.2).count(), 0);
        (rising, l.0)
    }

    #[test]
    fn success_beeps_once_failure_three_times_attention_never() {
        assert_eq!(beeps(Signal::Success).0, 1);
        assert_eq!(beeps(Signal::Failure).0, 3);
        assert_eq!(beeps(Signal::Attention).0, 0);
        assert!(
            beeps(Signal::Failure).1 <= 1000,
            "a signal must not hold the terminal up"
        );
    }
}
