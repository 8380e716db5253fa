//! The emulated fingerprint module (R30x/ZFM/AS608/R503 family).
//!
//! - [`finger`]: virtual fingers, captures and characteristic files.
//! - [`library`]: the file-backed template library.
//! - [`module`]: the firmware as a sans-IO state machine over the
//!   driver's own frame codec, in the device role.
//!
//! `crate::devices` puts a [`Module`] on a pseudo-terminal.

pub mod finger;
pub mod library;
pub mod module;

pub use finger::PlacedFinger;
pub use library::Library;
pub use module::{Module, ModuleConfig, Output, Timings};
