//! Typed errors. Every rejection says which rule was broken so that a
//! terminal, the server and an auditor's tool can all name it the same way.

use thiserror::Error;

use crate::record::RecordType;

/// A field of a record that breaks a rule of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("field `{field}` {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl FieldError {
    pub const fn new(field: &'static str, reason: &'static str) -> FieldError {
        FieldError { field, reason }
    }
}

/// Why payload bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("payload is empty")]
    Empty,
    #[error("payload is {len} bytes, more than the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("payload is not valid UTF-8 (first bad byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("payload is truncated (ends inside the JSON value at line {line}, column {column})")]
    Truncated { line: usize, column: usize },
    #[error("payload is not well-formed JSON at line {line}, column {column}: {detail}")]
    Syntax {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("payload does not have the record layout at line {line}, column {column}: {detail}")]
    Layout {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("payload has no `type` and `v` header")]
    MissingHeader,
    #[error("unknown record type `{0}`")]
    UnknownType(String),
    #[error("record type `{found}` arrived in a `{expected}` context")]
    WrongContext {
        expected: RecordType,
        found: RecordType,
    },
    #[error(
        "format version {found} of `{record_type}` is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        record_type: RecordType,
        found: u64,
        supported: u32,
    },
    #[error("invalid record: {0}")]
    Field(#[from] FieldError),
}

impl DecodeError {
    pub(crate) fn from_json(err: serde_json::Error) -> DecodeError {
        use serde_json::error::Category;
        let (line, column) = (err.line(), err.column());
        match err.classify() {
            Category::Eof => DecodeError::Truncated { line, column },
            Category::Syntax | Category::Io => DecodeError::Syntax {
                line,
                column,
                detail: strip_position(&err),
            },
            Category::Data => DecodeError::Layout {
                line,
                column,
                detail: strip_position(&err),
            },
        }
    }
}

fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Why an envelope (the signed wrapper) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("envelope is {len} bytes, more than the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("envelope is not valid JSON: {0}")]
    Json(String),
    #[error("envelope field `{field}` is not valid {encoding}")]
    Encoding {
        field: &'static str,
        encoding: &'static str,
    },
    #[error("unknown record type `{0}` in envelope")]
    UnknownType(String),
    #[error("envelope version {0} is not supported")]
    UnsupportedVersion(u32),
    #[error("envelope is signed by key {found}, expected key {expected}")]
    WrongKey { expected: String, found: String },
    #[error("signature does not verify (strict Ed25519 over the `{0}` context)")]
    BadSignature(RecordType),
    #[error(transparent)]
    Payload(#[from] DecodeError),
    #[error("record names terminal `{found}` but its key belongs to terminal `{expected}`")]
    TerminalMismatch { expected: String, found: String },
}

/// Why a public key is refused at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("public key must be 32 bytes, got {0}")]
    WrongLength(usize),
    #[error("public key is not a point on Edwards25519")]
    NotOnCurve,
    #[error("public key is not canonically encoded (y >= p or a negative zero x)")]
    NonCanonical,
    #[error("public key has small order (it would accept signatures on any message)")]
    SmallOrder,
    #[error(
        "public key has a torsion component (mixed order); batch and single verification could disagree"
    )]
    MixedOrder,
}
