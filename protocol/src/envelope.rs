//! The signed envelope: exact payload bytes, an Ed25519 signature over
//! `context || payload`, and the signer's key id.
//!
//! Wire form (one JSON object, the line format of `records.jsonl` and the
//! body of uploads):
//!
//! ```json
//! {"v":1,"type":"session","key_id":"<32 hex>","payload":"<base64>","signature":"<128 hex>"}
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, EnvelopeError};
use crate::ids::{KeyId, RecordId};
use crate::keys::TerminalKey;
use crate::record::{MAX_PAYLOAD_BYTES, Record, RecordType};

/// The envelope format version.
pub const ENVELOPE_VERSION: u32 = 1;

/// Largest envelope accepted in JSON form (base64 payload plus overhead).
pub const MAX_ENVELOPE_JSON_BYTES: usize = MAX_PAYLOAD_BYTES / 3 * 4 + 1024;

/// A signed record as it travels and as it is kept as evidence.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub record_type: RecordType,
    pub key_id: KeyId,
    /// The exact bytes that were signed (after the context prefix).
    pub payload: Vec<u8>,
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Payloads carry personal identifiers: show only their id.
        write!(
            f,
            "Envelope({} {} by {}, {} bytes)",
            self.record_type,
            self.record_id().short(),
            self.key_id,
            self.payload.len()
        )
    }
}

/// A record whose envelope verified, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    pub id: RecordId,
    pub record: Record,
}

impl VerifiedRecord {
    /// Checks that the record names the terminal its key is registered to.
    pub fn check_terminal(&self, expected_terminal_id: &str) -> Result<(), EnvelopeError> {
        let found = self.record.terminal_id();
        if found != expected_terminal_id {
            return Err(EnvelopeError::TerminalMismatch {
                expected: expected_terminal_id.to_owned(),
                found: found.to_owned(),
            });
        }
        Ok(())
    }
}

/// `context(record_type) || payload`: the exact message that is signed.
pub fn signing_message(record_type: RecordType, payload: &[u8]) -> Vec<u8> {
    let context = record_type.context();
    let mut message = Vec::with_capacity(context.len() + payload.len());
    message.extend_from_slice(context);
    message.extend_from_slice(payload);
    message
}

impl Envelope {
    /// SHA-256 of the payload bytes.
    pub fn record_id(&self) -> RecordId {
        RecordId::of_payload(&self.payload)
    }

    /// Verifies the signature strictly (canonical S, no small-order R or A,
    /// cofactorless equation) and decodes the payload, which must be of the
    /// type the signing context named.
    pub fn verify(&self, key: &TerminalKey) -> Result<VerifiedRecord, EnvelopeError> {
        self.check_key(key)?;
        let message = signing_message(self.record_type, &self.payload);
        let signature = Signature::from_bytes(&self.signature);
        key.verifying_key()
            .verify_strict(&message, &signature)
            .map_err(|_| EnvelopeError::BadSignature(self.record_type))?;
        self.decode()
    }

    /// Decodes the payload without checking the signature (for display of
    /// evidence that failed verification; never for acceptance).
    pub fn decode(&self) -> Result<VerifiedRecord, EnvelopeError> {
        let record = Record::decode_as(self.record_type, &self.payload)?;
        Ok(VerifiedRecord {
            id: self.record_id(),
            record,
        })
    }

    pub(crate) fn check_key(&self, key: &TerminalKey) -> Result<(), EnvelopeError> {
        if key.id() != self.key_id {
            return Err(EnvelopeError::WrongKey {
                expected: key.id().to_hex(),
                found: self.key_id.to_hex(),
            });
        }
        Ok(())
    }

    /// The JSON wire form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelope serialises infallibly")
    }

    /// Parses the JSON wire form strictly. Does not verify the signature.
    pub fn from_json(text: &[u8]) -> Result<Envelope, EnvelopeError> {
        if text.len() > MAX_ENVELOPE_JSON_BYTES {
            return Err(EnvelopeError::Oversized {
                len: text.len(),
                max: MAX_ENVELOPE_JSON_BYTES,
            });
        }
        let wire: Wire =
            serde_json::from_slice(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        Envelope::from_wire(wire)
    }

    fn from_wire(wire: Wire) -> Result<Envelope, EnvelopeError> {
        if wire.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(wire.v));
        }
        let record_type = RecordType::from_code(&wire.record_type)
            .ok_or(EnvelopeError::UnknownType(wire.record_type))?;
        let key_id = wire.key_id.parse().map_err(|_| EnvelopeError::Encoding {
            field: "key_id",
            encoding: "lowercase hex of 16 bytes",
        })?;
        let payload = BASE64
            .decode(&wire.payload)
            .map_err(|_| EnvelopeError::Encoding {
                field: "payload",
                encoding: "canonical padded base64",
            })?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(EnvelopeError::Payload(DecodeError::Oversized {
                len: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            }));
        }
        let signature =
            crate::ids::parse_lower_hex::<64>(&wire.signature).ok_or(EnvelopeError::Encoding {
                field: "signature",
                encoding: "lowercase hex of 64 bytes",
            })?;
        Ok(Envelope {
            record_type,
            key_id,
            payload,
            signature,
        })
    }
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            v: ENVELOPE_VERSION,
            record_type: self.record_type.code().to_owned(),
            key_id: self.key_id.to_hex(),
            payload: BASE64.encode(&self.payload),
            signature: hex::encode(self.signature),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Envelope, D::Error> {
        let wire = Wire::deserialize(d)?;
        Envelope::from_wire(wire).map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    #[serde(rename = "type")]
    record_type: String,
    key_id: String,
    payload: String,
    signature: String,
}
