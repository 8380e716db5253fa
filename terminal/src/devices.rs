//! The device worker: carries out the core's [`DeviceCommand`]s on a
//! fingerprint sensor and the indicators, and answers with the [`Input`]
//! the session flow expects.
//!
//! It sees the hardware only through `wuding_hardware`'s
//! [`FingerprintSensor`] trait, so the same code drives a module on
//! `/dev/ttyAMA0` and an emulated one on a pseudo-terminal. Waiting for a
//! finger is the only timing here: a capture is retried every
//! [`WorkerConfig::poll`] until [`WorkerConfig::finger_wait`] has passed.
//!
//! Module buffers: CharBuffer 1 takes the live capture (and the first
//! enrolment capture); CharBuffer 2 takes the patient's downloaded template
//! (and the second enrolment capture).
//!
//! **Architecture Invariant:** no template bytes and no patient identifier
//! reach a log line from here.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wuding_hardware::fingerprint::command::CharBuffer;
use wuding_hardware::fingerprint::error::{FingerprintError, ModuleError};
use wuding_hardware::fingerprint::sensor::{Capture, FingerprintSensor, TEMPLATE_BUFFER_LEN};
use wuding_protocol::{TemplateKey, template_ref};

use crate::app::{DeviceCommand, Input};
use crate::flow::{EnrolResult, FingerResult, Signal};
use crate::messages::Advice;

/// How long to wait for fingers.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// How long a capture waits for a finger before reporting "no finger".
    pub finger_wait: Duration,
    /// Time between capture attempts while no finger is on the sensor.
    pub poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            finger_wait: Duration::from_secs(10),
            poll: Duration::from_millis(150),
        }
    }
}

/// LED and buzzer, whatever drives them.
pub trait Indicator: Send {
    fn indicate(&mut self, signal: Signal);
}

/// No LED or buzzer fitted (and tests).
#[derive(Debug, Default)]
pub struct NoIndicator;

impl Indicator for NoIndicator {
    fn indicate(&mut self, _: Signal) {}
}

/// GPIO LED and buzzer through `wuding_hardware::indicator`.
impl<G, R, B> Indicator for wuding_hardware::indicator::Indicators<G, R, B>
where
    G: embedded_hal::digital::OutputPin + Send,
    R: embedded_hal::digital::OutputPin + Send,
    B: embedded_hal::digital::OutputPin + Send,
{
    fn indicate(&mut self, signal: Signal) {
        use wuding_hardware::indicator::Signal as Hw;
        let hw = match signal {
            Signal::Success => Hw::Success,
            Signal::Failure => Hw::Failure,
            Signal::Attention => Hw::Attention,
        };
        if let Err(e) = self.play(hw, &mut wuding_hardware::indicator::ThreadDelay) {
            tracing::warn!(error = %e, "indicator pin failed");
        }
    }
}

/// A template the module just built for enrolment: the bytes to seal and
/// upload, and where the module keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewTemplate {
    pub insured_id: String,
    pub slot: u16,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for NewTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTemplate")
            .field("slot", &self.slot)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Carries out device commands.
pub struct DeviceWorker<S, I> {
    sensor: S,
    indicator: I,
    key: TemplateKey,
    config: WorkerConfig,
    /// Who is enrolled in which library slot of this module.
    slots: BTreeMap<u16, String>,
    /// Capacity of the module's library.
    capacity: u16,
    enrolled: Vec<NewTemplate>,
}

fn advice_for(error: &FingerprintError) -> Option<Advice> {
    match error.module_error()? {
        ModuleError::TooFewFeatures => Some(Advice::Moisten),
        ModuleError::ImageMessy => Some(Advice::WipeDry),
        ModuleError::ImageFailed | ModuleError::FingerMoved => Some(Advice::PressFlat),
        _ => None,
    }
}

impl<S: FingerprintSensor, I: Indicator> DeviceWorker<S, I> {
    /// `slots`: who is enrolled where in this module's library (kept by
    /// the caller across restarts; see [`DeviceWorker::take_enrolled`]).
    pub fn new(
        sensor: S,
        indicator: I,
        key: TemplateKey,
        capacity: u16,
        slots: BTreeMap<u16, String>,
        config: WorkerConfig,
    ) -> DeviceWorker<S, I> {
        DeviceWorker {
            sensor,
            indicator,
            key,
            config,
            slots,
            capacity,
            enrolled: Vec::new(),
        }
    }

    /// Replaces the key of template references (it comes with the roster
    /// key, after the worker was built).
    pub fn set_template_key(&mut self, key: TemplateKey) {
        self.key = key;
    }

    /// Templates enrolled since the last call, to seal, upload and record.
    pub fn take_enrolled(&mut self) -> Vec<NewTemplate> {
        std::mem::take(&mut self.enrolled)
    }

    /// Captures into `buffer`, waiting for a finger.
    fn capture(&mut self, buffer: CharBuffer) -> Result<Capture, FingerprintError> {
        let deadline = Instant::now() + self.config.finger_wait;
        loop {
            match self.sensor.capture(buffer)? {
                Capture::Captured => return Ok(Capture::Captured),
                Capture::NoFinger if Instant::now() >= deadline => return Ok(Capture::NoFinger),
                Capture::NoFinger => std::thread::sleep(self.config.poll),
            }
        }
    }

    /// Carries out one command; `None` for commands with no answer.
    pub fn run(&mut self, command: DeviceCommand) -> Option<Input> {
        match command {
            DeviceCommand::Indicate(signal) => {
                self.indicator.indicate(signal);
                None
            }
            DeviceCommand::VerifyFinger {
                template,
                template_ref,
                ..
            } => Some(Input::Finger(self.verify(&template, template_ref))),
            DeviceCommand::EnrolCapture { capture } => {
                let buffer = if capture <= 1 {
                    CharBuffer::ONE
                } else {
                    CharBuffer::TWO
                };
                let ok = match self.capture(buffer) {
                    Ok(Capture::Captured) => true,
                    Ok(Capture::NoFinger) => false,
                    Err(e) if advice_for(&e).is_some() => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "fingerprint module fault during enrolment");
                        return Some(Input::Enrol(EnrolResult::DeviceFault));
                    }
                };
                Some(Input::Enrol(EnrolResult::Captured { ok }))
            }
            DeviceCommand::EnrolBuild { insured_id, .. } => {
                Some(Input::Enrol(self.build(insured_id)))
            }
        }
    }

    fn verify(
        &mut self,
        template: &[u8],
        template_ref: wuding_protocol::TemplateRef,
    ) -> FingerResult {
        let fault = |e: FingerprintError| {
            tracing::warn!(error = %e, "fingerprint module fault during verification");
            FingerResult::DeviceFault
        };
        if let Err(e) = self.sensor.download_template(CharBuffer::TWO, template) {
            return fault(e);
        }
        match self.capture(CharBuffer::ONE) {
            Ok(Capture::NoFinger) => return FingerResult::NoFinger,
            Ok(Capture::Captured) => {}
            Err(e) => {
                return match advice_for(&e) {
                    Some(advice) => FingerResult::PoorImage(advice),
                    None => fault(e),
                };
            }
        }
        match self.sensor.match_buffers() {
            Ok(Some(score)) => FingerResult::Matched {
                score,
                template_ref,
            },
            Ok(None) => FingerResult::NoMatch,
            // A downloaded template the module cannot use.
            Err(e) if e.module_error() == Some(ModuleError::TemplateInvalid) => {
                FingerResult::NoMatch
            }
            Err(e) => fault(e),
        }
    }

    fn build(&mut self, insured_id: String) -> EnrolResult {
        let fault = |e: FingerprintError| {
            tracing::warn!(error = %e, "fingerprint module fault while building a template");
            EnrolResult::DeviceFault
        };
        match self.sensor.build_template() {
            Ok(()) => {}
            Err(e) if e.module_error() == Some(ModuleError::CombineFailed) => {
                return EnrolResult::Failed;
            }
            Err(e) => return fault(e),
        }
        // 1:N first: a finger already enrolled under someone else is refused.
        match self.sensor.search(CharBuffer::ONE) {
            Ok(Some(hit)) => match self.slots.get(&hit.slot) {
                Some(owner) if *owner != insured_id => {
                    return EnrolResult::Duplicate {
                        other_insured_id: owner.clone(),
                    };
                }
                _ => {}
            },
            Ok(None) => {}
            Err(e) => return fault(e),
        }
        let Some(slot) = (0..self.capacity).find(|s| !self.slots.contains_key(s)) else {
            return fault(FingerprintError::Module {
                instruction: 0x06,
                error: ModuleError::LibraryFull,
            });
        };
        if let Err(e) = self.sensor.store(CharBuffer::ONE, slot) {
            return fault(e);
        }
        let mut buf = vec![0u8; TEMPLATE_BUFFER_LEN];
        let n = match self.sensor.upload_template(CharBuffer::ONE, &mut buf) {
            Ok(n) => n,
            Err(e) => return fault(e),
        };
        buf.truncate(n);
        let template_ref = template_ref(&self.key, &buf);
        self.slots.insert(slot, insured_id.clone());
        self.enrolled.push(NewTemplate {
            insured_id,
            slot,
            bytes: buf,
        });
        EnrolResult::Stored { template_ref, slot }
    }
}
