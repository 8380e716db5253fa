//! PN532 NFC reader over UART (HSU, 115200 8N1): the frame codec shared by
//! the host role (our driver) and the device role (the emulated reader in
//! `firmware-host`), the command layouts, and the driver over any
//! [`Transport`](crate::transport::Transport).
//!
//! - [`codec`]: normal, extended, ACK, NACK and error frames; streaming
//!   decoder that resynchronises after garbage.
//! - [`command`]: command codes, request and response layouts, the status
//!   byte of the `In*` commands ([`StatusError`]).
//! - [`driver`]: [`Pn532`], one command at a time with ACK handling, NACK
//!   retries, timeouts that abort the command, and the
//!   [`CardReader`](crate::reader::CardReader) implementation.
//!
//! Facts used: PN532 User Manual UM0701-02 (frame structure, section 6.2;
//! HSU wake-up, section 7.2.11 and the application note; commands, section
//! 7; error codes, table 7.1).

pub mod codec;
pub mod command;
pub mod driver;

pub use codec::{Decoder, Direction, Frame, FrameError, Role};
pub use command::{FirmwareVersion, KeyKind, MifareKey, SamMode, StatusError, TargetA};
pub use driver::{Pn532, Pn532Config, Pn532Error};
