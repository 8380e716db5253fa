//! The device firmware, hosted on a PC: emulated fingerprint module and
//! PN532 reader on pseudo-terminals speaking the exact wire protocol, virtual
//! patients, the scenario generator and the clinic simulator (`wuding-sim`).
//!
//! **Architecture Invariant:** nothing but tests and demos depends on this
//! crate.

pub mod demo;
pub mod devices;
pub mod fingerprint;
pub mod pn532;
pub mod pty;
pub mod scenario;
