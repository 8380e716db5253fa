//! Terminal <-> server API types and request authentication.
//!
//! Every terminal call is a signed request: the terminal signs
//!
//! ```text
//! "wuding/request/v1" NUL || METHOD "\n" PATH "\n" TIMESTAMP_MS "\n" NONCE "\n" SHA256_HEX(BODY)
//! ```
//!
//! with its registered key and sends the headers `x-wuding-key` (key id),
//! `x-wuding-timestamp`, `x-wuding-nonce` (16-64 hex digits) and
//! `x-wuding-signature` (hex). The server accepts a timestamp within its
//! window and each nonce once (replay protection). See `docs/api.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::Envelope;
use crate::ids::RecordId;
use crate::keys::{TerminalKey, TerminalSigner};
use crate::transparency::Receipt;

/// Signing context of API requests.
pub const REQUEST_CONTEXT: &[u8] = b"wuding/request/v1\0";

pub const HEADER_KEY: &str = "x-wuding-key";
pub const HEADER_TIMESTAMP: &str = "x-wuding-timestamp";
pub const HEADER_NONCE: &str = "x-wuding-nonce";
pub const HEADER_SIGNATURE: &str = "x-wuding-signature";

/// The bytes a terminal signs for one request.
pub fn request_message(
    method: &str,
    path: &str,
    timestamp_ms: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "{method}\n{path}\n{timestamp_ms}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// The four authentication headers of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    pub key_id: String,
    pub timestamp_ms: i64,
    pub nonce: String,
    pub signature: String,
}

impl RequestAuth {
    pub fn sign(
        signer: &TerminalSigner,
        method: &str,
        path: &str,
        timestamp_ms: i64,
        nonce: &str,
        body: &[u8],
    ) -> Self {
        let sig = signer.sign_with_context(
            REQUEST_CONTEXT,
            &request_message(method, path, timestamp_ms, nonce, body),
        );
        RequestAuth {
            key_id: signer.key_id().to_hex(),
            timestamp_ms,
            nonce: nonce.to_owned(),
            signature: hex::encode(sig),
        }
    }

    /// Checks the signature (not the time window or nonce reuse, which need
    /// the server's clock and memory).
    pub fn verify(&self, key: &TerminalKey, method: &str, path: &str, body: &[u8]) -> bool {
        let nonce_ok = (16..=64).contains(&self.nonce.len())
            && self.nonce.bytes().all(|b| b.is_ascii_hexdigit());
        let Some(sig) = crate::ids::parse_lower_hex::<64>(&self.signature) else {
            return false;
        };
        nonce_ok
            && self.key_id == key.id().to_hex()
            && key.verify_with_context(
                REQUEST_CONTEXT,
                &request_message(method, path, self.timestamp_ms, &self.nonce, body),
                &sig,
            )
    }
}

/// `POST /api/v1/terminals/register`: a terminal asks to be approved. The
/// request is signed by the key it registers (proof of possession).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    pub terminal_id: String,
    pub hospital_code: String,
    pub department_code: String,
    /// The Ed25519 public key, lowercase hex.
    pub public_key: String,
}

/// The registry's view of a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalStatus {
    Pending,
    Approved,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationResponse {
    pub terminal_id: String,
    pub status: TerminalStatus,
    /// The log's public key (hex), so the terminal can verify receipts.
    pub log_public_key: String,
}

/// `POST /api/v1/records`: a batch of envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub records: Vec<Envelope>,
}

/// The verdict on one uploaded record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RecordVerdict {
    /// Stored (now or earlier); the receipt proves it is in the log.
    Accepted { receipt: Receipt },
    /// Kept, but waiting for earlier records of the chain before it enters
    /// the log. Upload it again later (with the missing ones).
    Held { missing_from: u64 },
    /// Refused for good; `reason` is a stable code, `detail` says more.
    Rejected { reason: String, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordResult {
    pub record_id: RecordId,
    #[serde(flatten)]
    pub verdict: RecordVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub results: Vec<RecordResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_signatures_bind_every_part() {
        let s = TerminalSigner::from_seed(&[8; 32]);
        let nonce = "00112233445566778899aabbccddeeff";
        let auth = RequestAuth::sign(&s, "POST", "/api/v1/records", 1_000, nonce, b"{}");
        assert!(auth.verify(s.public_key(), "POST", "/api/v1/records", b"{}"));
        assert!(!auth.verify(s.public_key(), "POST", "/api/v1/records", b"{ }"));
        assert!(!auth.verify(s.public_key(), "GET", "/api/v1/records", b"{}"));
        assert!(!auth.verify(s.public_key(), "POST", "/api/v1/roster", b"{}"));
        let mut later = auth.clone();
        later.timestamp_ms += 1;
        assert!(!later.verify(s.public_key(), "POST", "/api/v1/records", b"{}"));
        let mut short = auth.clone();
        short.nonce = "00".into();
        assert!(!short.verify(s.public_key(), "POST", "/api/v1/records", b"{}"));
        let other = TerminalSigner::from_seed(&[9; 32]);
        assert!(!auth.verify(other.public_key(), "POST", "/api/v1/records", b"{}"));
    }
}

/// A patient as a terminal needs them: codes, and a name masked for the
/// nurse screen (the full name never leaves the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterPatient {
    pub insured_id: String,
    pub card_uid: String,
    pub display_name: String,
}

/// A staff member as a terminal needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterStaff {
    pub staff_id: String,
    pub card_uid: String,
    pub display_name: String,
    /// "nurse" or "doctor".
    pub role: String,
    /// argon2id PHC string of the staff PIN.
    pub pin_hash: String,
}

/// One price-list entry of the terminal's hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterPrice {
    pub code: String,
    pub unit_price_fen: u64,
}

/// `GET /api/v1/roster?since=CURSOR`: what changed for the terminal's
/// hospital since `since`; pass `cursor` next time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterDelta {
    pub cursor: u64,
    pub patients: Vec<RosterPatient>,
    pub staff: Vec<RosterStaff>,
    pub plans: Vec<crate::plan::TreatmentPlan>,
    pub prices: Vec<RosterPrice>,
}

/// Masks a name for display: first and last character kept ("王小明" →
/// "王*明", "李四" → "李*").
pub fn mask_name(name: &str) -> String {
    let chars: Vec<char> = name.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".into(),
        2 => format!("{}*", chars[0]),
        n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
    }
}
