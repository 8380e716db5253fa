//! R30x/ZFM/AS608/R503 UART fingerprint modules.
//!
//! - [`codec`]: the frame format, sans-IO, used in both roles (this crate's
//!   driver is the host; `wuding-firmware-host`'s emulator is the device).
//! - [`command`]: instruction and acknowledgement layouts, both directions.
//! - [`error`]: confirmation codes as typed errors with nurse-facing hints.
//! - [`driver`]: [`Fingerprint`], generic over [`Transport`](crate::transport::Transport).
//! - [`sensor`]: [`FingerprintSensor`], what the terminal uses.
//!
//! **Architecture Invariant:** `codec` and `command` do no IO and read no
//! clock; only `driver` touches the transport and measures timeouts.

pub mod codec;
pub mod command;
pub mod driver;
pub mod error;
pub mod sensor;

pub use codec::{Decoder, Event, Frame, FrameError, PacketKind, Role, Status};
pub use command::{
    CharBuffer, Command, LedColour, LedConfig, LedMode, PacketSize, SystemParameters,
};
pub use driver::{DriverConfig, Fingerprint, SearchHit};
pub use error::{FingerprintError, ModuleError, NurseHint};
pub use sensor::{Capture, FingerprintSensor, LedSignal, TEMPLATE_BUFFER_LEN};
