//! The bedside terminal.
//!
//! * [`flow`]: the session flow as a pure state machine (events in, actions
//!   out); no IO, no clock.
//! * [`store`]: the terminal's SQLite database: roster cache, open sessions,
//!   the outbox of signed records, the chain head, the local audit log.
//! * [`messages`]: what the nurse and patient read, in Chinese and English.

pub mod app;
pub mod config;
pub mod devices;
pub mod flow;
pub mod identity;
pub mod messages;
pub mod policy;
pub mod runtime;
pub mod service;
pub mod store;
pub mod sync;
pub mod ui;
