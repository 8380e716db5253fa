//! Device drivers for the bedside terminal.
//!
//! Protocol cores are sans-IO codecs shared with the emulators in
//! `firmware-host` (device role and host role); IO lives in thin adapters
//! over [`transport::Transport`].
//!
//! **Architecture Invariant:** codecs never read a clock or touch a file
//! descriptor; drivers take a transport and give it back.

pub mod fingerprint;
pub mod indicator;
pub mod mfrc522;
pub mod pn532;
pub mod reader;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod rx;
pub mod transport;
