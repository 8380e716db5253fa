//! The bedside LED and buzzer: success, failure and attention said in
//! light and sound as well as on the screen (many patients cannot read the
//! screen from the chair).
//!
//! [`pattern`] is pure: a signal in, a list of (green LED, red LED,
//! buzzer, duration) steps out. [`Indicators`] plays a pattern on any three
//! embedded-hal 1.0 output pins with any delay provider; on the Raspberry
//! Pi those are `rppal` GPIO pins (feature `rpi`, see [`crate::rpi`]).

use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

/// What the terminal wants to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Identity confirmed, record signed: one short beep, green LED on.
    Success,
    /// Refused or failed: three short beeps, red LED flashing with them.
    Failure,
    /// Waiting for the patient (place finger, tap card): green LED blinks
    /// once, no sound.
    Attention,
}

/// One step of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub green: bool,
    pub red: bool,
    pub buzzer: bool,
    pub duration: Duration,
}

const fn step(green: bool, red: bool, buzzer: bool, ms: u64) -> Step {
    Step {
        green,
        red,
        buzzer,
        duration: Duration::from_millis(ms),
    }
}

/// The pattern of a signal. Every pattern ends with both outputs off.
pub fn pattern(signal: Signal) -> &'static [Step] {
    const SUCCESS: [Step; 3] = [
        step(true, false, true, 120),
        step(true, false, false, 600),
        step(false, false, false, 0),
    ];
    const FAILURE: [Step; 7] = [
        step(false, true, true, 90),
        step(false, false, false, 90),
        step(false, true, true, 90),
        step(false, false, false, 90),
        step(false, true, true, 90),
        step(false, false, false, 90),
        step(false, false, false, 0),
    ];
    const ATTENTION: [Step; 2] = [step(true, false, false, 250), step(false, false, false, 0)];
    match signal {
        Signal::Success => &SUCCESS,
        Signal::Failure => &FAILURE,
        Signal::Attention => &ATTENTION,
    }
}

/// A green LED, a red LED and a buzzer on three output pins.
pub struct Indicators<G, R, B> {
    green: G,
    red: R,
    buzzer: B,
}

/// A pin that would not switch.
#[derive(Debug, thiserror::Error)]
#[error("indicator pin {pin}: {kind:?}")]
pub struct IndicatorError {
    pub pin: &'static str,
    pub kind: embedded_hal::digital::ErrorKind,
}

fn level<P: OutputPin>(pin: &mut P, high: bool, name: &'static str) -> Result<(), IndicatorError> {
    use embedded_hal::digital::Error;
    let r = if high { pin.set_high() } else { pin.set_low() };
    r.map_err(|e| IndicatorError {
        pin: name,
        kind: e.kind(),
    })
}

impl<G: OutputPin, R: OutputPin, B: OutputPin> Indicators<G, R, B> {
    pub fn new(green: G, red: R, buzzer: B) -> Indicators<G, R, B> {
        Indicators { green, red, buzzer }
    }

    fn set(&mut self, s: &Step) -> Result<(), IndicatorError> {
        level(&mut self.green, s.green, "green LED")?;
        level(&mut self.red, s.red, "red LED")?;
        level(&mut self.buzzer, s.buzzer, "buzzer")
    }

    /// Plays a signal to the end (about a second at most).
    pub fn play(&mut self, signal: Signal, delay: &mut impl DelayNs) -> Result<(), IndicatorError> {
        for s in pattern(signal) {
            self.set(s)?;
            if !s.duration.is_zero() {
                delay.delay_ms(s.duration.as_millis() as u32);
            }
        }
        Ok(())
    }

    pub fn release(self) -> (G, R, B) {
        (self.green, self.red, self.buzzer)
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
        let mut ind = Indicators::new(
            Pin("green", log.clone()),
            Pin("red", log.clone()),
            Pin("buzzer", log.clone()),
        );
        ind.play(signal, &mut Clock(log.clone())).unwrap();
        let l = log.0.borrow();
        let buzzer: Vec<_> = l.1.iter().filter(|e| e.1 == "buzzer").collect();
        let rising = buzzer.windows(2).filter(|w| !w[0].2 && w[1].2).count()
            + usize::from(buzzer.first().is_some_and(|e| e.2));
        // Everything ends off.
        assert_eq!(l.1.iter().rev().take(3).filter(|e| e.2).count(), 0);
        (rising, l.0)
    }

    fn lit(signal: Signal, led: &str) -> bool {
        let log = Log::default();
        let mut ind = Indicators::new(
            Pin("green", log.clone()),
            Pin("red", log.clone()),
            Pin("buzzer", log.clone()),
        );
        ind.play(signal, &mut Clock(log.clone())).unwrap();
        log.0.borrow().1.iter().any(|e| e.1 == led && e.2)
    }

    #[test]
    fn failure_is_red_and_success_green() {
        assert!(lit(Signal::Failure, "red") && !lit(Signal::Failure, "green"));
        assert!(lit(Signal::Success, "green") && !lit(Signal::Success, "red"));
        assert!(!lit(Signal::Attention, "red"));
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
