//! The signed-record contract of wuding: what a bedside terminal signs, how
//! the server and any auditor verify it, and the chain that makes deletion
//! and reordering visible.
//!
//! The byte-level format is specified in `docs/protocol.md`; this crate is
//! its reference implementation.
//!
//! **Architecture Invariant:** this crate does no IO, reads no clock and
//! knows nothing of SQLite, HTTP or devices. Times are inputs.

pub mod api;
mod batch;
mod chain;
mod claims;
mod envelope;
mod error;
#[doc(hidden)]
pub mod example;
pub mod ids;
mod keys;
pub(crate) mod plan;
mod record;
mod template;
pub mod transparency;
pub mod types;

pub use batch::verify_many;
pub use chain::{ChainAnchor, ChainDefect, ChainHead, ChainReport, ChainStep, verify_chain};
pub use claims::ClaimLine;
pub use envelope::{
    ENVELOPE_VERSION, Envelope, MAX_ENVELOPE_JSON_BYTES, VerifiedRecord, signing_message,
};
pub use error::{DecodeError, EnvelopeError, FieldError, KeyError};
pub use ids::{KeyId, RecordId};
pub use keys::{TerminalKey, TerminalSigner};
pub use plan::TreatmentPlan;
pub use record::{
    Attestation, ChainLink, Closure, EnrolmentRecord, MAX_PAYLOAD_BYTES, MAX_TIMESTAMP_MS,
    PatientRef, Record, RecordType, SessionRecord, Treatment,
};
pub use template::{TemplateKey, template_ref};
pub use types::{
    Charge, ChargeItem, Code, Dose, FallbackReason, Finger, IdentityEvidence, TemplateRef,
    TreatmentKind, format_yuan, parse_fixed_point,
};

/// Calendar dates (`YYYY-MM-DD` on the wire).
pub use jiff::civil::Date;
