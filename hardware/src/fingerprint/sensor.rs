//! What the terminal needs from a fingerprint module, whichever is fitted.
//!
//! **API Boundary:** the terminal's session flow depends on this trait only;
//! [`Fingerprint`](super::Fingerprint) implements it for the R30x/ZFM/AS608/
//! R503 family over any transport (a real UART or an emulator's
//! pseudo-terminal).

use super::command::{CharBuffer, LedColour, LedConfig, LedMode};
use super::driver::{Fingerprint, SearchHit};
use super::error::{FingerprintError, ModuleError};
use crate::transport::Transport;

/// Outcome of one capture attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// A character file is now in the buffer.
    Captured,
    /// Nothing on the sensor: poll again (not a failure).
    NoFinger,
}

/// What the sensor's light should tell the patient and nurse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedSignal {
    /// Waiting for a finger (slow blue breathing).
    WaitingForFinger,
    /// Capture or match succeeded (steady blue, or green where fitted).
    Accepted,
    /// Capture or match failed (red flashes).
    Rejected,
    Off,
}

impl LedSignal {
    /// The R503 ring LED configuration for this signal.
    pub const fn led_config(self) -> LedConfig {
        match self {
            LedSignal::WaitingForFinger => LedConfig {
                mode: LedMode::Breathing,
                speed: 0x80,
                colour: LedColour::Blue,
                cycles: 0,
            },
            LedSignal::Accepted => LedConfig {
                mode: LedMode::On,
                speed: 0,
                colour: LedColour::Blue,
                cycles: 0,
            },
            LedSignal::Rejected => LedConfig {
                mode: LedMode::Flashing,
                speed: 0x30,
                colour: LedColour::Red,
                cycles: 3,
            },
            LedSignal::Off => LedConfig {
                mode: LedMode::Off,
                speed: 0,
                colour: LedColour::Blue,
                cycles: 0,
            },
        }
    }
}

/// A buffer large enough for the template of any module of the family.
pub const TEMPLATE_BUFFER_LEN: usize = 4096;

/// The high-level operations of a fingerprint module.
///
/// Enrolment from two captures: `capture(ONE)`, finger lifted,
/// `capture(TWO)`, `build_template()`. With a third capture, capture into
/// `TWO` again after building and check with `match_buffers()` that it
/// matches the new template (in `ONE`) before storing it.
pub trait FingerprintSensor {
    /// Takes an image and extracts a character file into `buffer`.
    /// `Ok(Capture::NoFinger)` when the sensor is empty; a poor image is an
    /// error whose [`FingerprintError::hint`] tells the nurse what to do.
    fn capture(&mut self, buffer: CharBuffer) -> Result<Capture, FingerprintError>;

    /// Combines the captures in buffers 1 and 2 into a template (left in
    /// buffer 1).
    fn build_template(&mut self) -> Result<(), FingerprintError>;

    /// Stores the template in `buffer` at library slot `slot`.
    fn store(&mut self, buffer: CharBuffer, slot: u16) -> Result<(), FingerprintError>;

    /// Loads the template at `slot` into `buffer`.
    fn load(&mut self, buffer: CharBuffer, slot: u16) -> Result<(), FingerprintError>;

    /// Deletes the template at `slot`.
    fn delete(&mut self, slot: u16) -> Result<(), FingerprintError>;

    /// Copies the template bytes in `buffer` into `out`; returns the length.
    fn upload_template(
        &mut self,
        buffer: CharBuffer,
        out: &mut [u8],
    ) -> Result<usize, FingerprintError>;

    /// Puts template bytes (from an earlier upload, any terminal) into
    /// `buffer`.
    fn download_template(
        &mut self,
        buffer: CharBuffer,
        bytes: &[u8],
    ) -> Result<(), FingerprintError>;

    /// 1:1: buffer 1 against buffer 2. `Some(score)` on a match, `None`
    /// when they do not match.
    fn match_buffers(&mut self) -> Result<Option<u16>, FingerprintError>;

    /// 1:N over the whole library. `None` when nothing matches.
    fn search(&mut self, buffer: CharBuffer) -> Result<Option<SearchHit>, FingerprintError>;

    /// Number of stored templates.
    fn template_count(&mut self) -> Result<u16, FingerprintError>;

    /// Shows `signal` on the sensor's light. Modules without a
    /// controllable light answer `Ok(())` and show nothing.
    fn signal(&mut self, signal: LedSignal) -> Result<(), FingerprintError>;
}

impl<T: Transport> FingerprintSensor for Fingerprint<T> {
    fn capture(&mut self, buffer: CharBuffer) -> Result<Capture, FingerprintError> {
        match self.gen_img() {
            Ok(()) => {}
            Err(e) if e.module_error() == Some(ModuleError::NoFinger) => {
                return Ok(Capture::NoFinger);
            }
            Err(e) => return Err(e),
        }
        self.img2tz(buffer)?;
        Ok(Capture::Captured)
    }

    fn build_template(&mut self) -> Result<(), FingerprintError> {
        self.reg_model()
    }

    fn store(&mut self, buffer: CharBuffer, slot: u16) -> Result<(), FingerprintError> {
        Fingerprint::store(self, buffer, slot)
    }

    fn load(&mut self, buffer: CharBuffer, slot: u16) -> Result<(), FingerprintError> {
        self.load_char(buffer, slot)
    }

    fn delete(&mut self, slot: u16) -> Result<(), FingerprintError> {
        self.delete_char(slot, 1)
    }

    fn upload_template(
        &mut self,
        buffer: CharBuffer,
        out: &mut [u8],
    ) -> Result<usize, FingerprintError> {
        self.up_char(buffer, out)
    }

    fn download_template(
        &mut self,
        buffer: CharBuffer,
        bytes: &[u8],
    ) -> Result<(), FingerprintError> {
        self.down_char(buffer, bytes)
    }

    fn match_buffers(&mut self) -> Result<Option<u16>, FingerprintError> {
        match Fingerprint::match_buffers(self) {
            Ok(score) => Ok(Some(score)),
            Err(e) if e.module_error() == Some(ModuleError::NoMatch) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn search(&mut self, buffer: CharBuffer) -> Result<Option<SearchHit>, FingerprintError> {
        let capacity = match self.parameters() {
            Some(p) => p.capacity,
            None => self.read_system_parameters()?.capacity,
        };
        match Fingerprint::search(self, buffer, 0, capacity) {
            Ok(hit) => Ok(Some(hit)),
            Err(e) if e.module_error() == Some(ModuleError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn template_count(&mut self) -> Result<u16, FingerprintError> {
        self.template_num()
    }

    fn signal(&mut self, signal: LedSignal) -> Result<(), FingerprintError> {
        match self.aura_led(signal.led_config()) {
            Ok(()) => Ok(()),
            // Modules without the ring LED refuse the instruction.
            Err(e)
                if matches!(
                    e.module_error(),
                    Some(
                        ModuleError::Unsupported
                            | ModuleError::PacketReceive
                            | ModuleError::ExecutionFailed
                    )
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
