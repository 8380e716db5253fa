//! Terminal keys: validation at registration, signing on the terminal.
//!
//! # Why keys are validated beyond what verification checks
//!
//! Ed25519 public keys are points on Edwards25519, whose group has order
//! 8·ℓ. Honest keys lie in the prime-order subgroup. A key chosen by an
//! attacker may not:
//!
//! * **Small order** (one of the 8 torsion points): a signature with `S = 0`
//!   and a small-order `R` verifies under cofactored verification for *any*
//!   message. Strict verification refuses such keys, batch verification does
//!   not look at keys at all.
//! * **Mixed order** (prime-order point plus a torsion component): strict
//!   single verification (cofactorless) and batch verification (random linear
//!   combination, where the torsion component vanishes for one z in 8) can
//!   disagree about the same signature. An auditor re-checking a record
//!   offline must reach the verdict the server reached at ingest, so such
//!   keys are refused.
//! * **Non-canonical encoding** (`y >= p`, or `x = 0` with the sign bit set):
//!   two byte strings would name one key, and the key id (a hash of the
//!   bytes) would no longer identify the key.
//!
//! A key that passes [`TerminalKey::from_bytes`] is canonical, of prime
//! order, and safe for batch verification. Nothing else constructs a
//! `TerminalKey`.

use std::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::envelope::Envelope;
use crate::error::{FieldError, KeyError};
use crate::ids::KeyId;
use crate::record::Record;

/// A terminal's public key that has passed registration checks.
#[derive(Clone, PartialEq, Eq)]
pub struct TerminalKey {
    key: VerifyingKey,
    id: KeyId,
}

impl TerminalKey {
    /// Validates a 32-byte public key: on the curve, canonically encoded, not
    /// of small order, torsion-free.
    pub fn from_bytes(bytes: &[u8]) -> Result<TerminalKey, KeyError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        let point = CompressedEdwardsY(array)
            .decompress()
            .ok_or(KeyError::NotOnCurve)?;
        if point.compress().to_bytes() != array {
            return Err(KeyError::NonCanonical);
        }
        if point.is_small_order() {
            return Err(KeyError::SmallOrder);
        }
        if !point.is_torsion_free() {
            return Err(KeyError::MixedOrder);
        }
        let key = VerifyingKey::from_bytes(&array).map_err(|_| KeyError::NotOnCurve)?;
        Ok(TerminalKey {
            key,
            id: KeyId::of_public_key(&array),
        })
    }

    /// Parses and validates a key written as 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Result<TerminalKey, KeyError> {
        let bytes: [u8; 32] =
            crate::ids::parse_lower_hex(text).ok_or(KeyError::WrongLength(text.len() / 2))?;
        TerminalKey::from_bytes(&bytes)
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl fmt::Debug for TerminalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalKey({})", self.id)
    }
}

/// A terminal's signing key. Lives on the terminal only; `Debug` never
/// prints the secret.
#[derive(Clone)]
pub struct TerminalSigner {
    key: SigningKey,
    public: TerminalKey,
}

impl TerminalSigner {
    /// The signer for a 32-byte Ed25519 secret seed (RFC 8032 "private key").
    pub fn from_seed(seed: &[u8; 32]) -> TerminalSigner {
        let key = SigningKey::from_bytes(seed);
        let public = TerminalKey::from_bytes(key.verifying_key().as_bytes())
            .expect("keys derived from a seed are always of prime order");
        TerminalSigner { key, public }
    }

    /// The secret seed, for the terminal's key file.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn public_key(&self) -> &TerminalKey {
        &self.public
    }

    pub fn key_id(&self) -> KeyId {
        self.public.id()
    }

    /// Encodes, validates and signs a record.
    pub fn sign(&self, record: &Record) -> Result<Envelope, FieldError> {
        let payload = record.encode()?;
        Ok(self.sign_payload(record.record_type(), payload))
    }

    /// Signs exact payload bytes under the context of `record_type`, without
    /// checking them. Tests use it to build malformed-but-signed records.
    pub fn sign_payload(&self, record_type: crate::RecordType, payload: Vec<u8>) -> Envelope {
        let message = crate::envelope::signing_message(record_type, &payload);
        let signature = self.key.sign(&message).to_bytes();
        Envelope {
            record_type,
            key_id: self.key_id(),
            payload,
            signature,
        }
    }

    /// Signs arbitrary bytes under an explicit context (used for signed API
    /// requests and checkpoints; see `docs/protocol.md`).
    pub fn sign_with_context(&self, context: &[u8], message: &[u8]) -> [u8; 64] {
        let mut bytes = Vec::with_capacity(context.len() + message.len());
        bytes.extend_from_slice(context);
        bytes.extend_from_slice(message);
        self.key.sign(&bytes).to_bytes()
    }
}

impl TerminalKey {
    /// Strict verification of a signature made with
    /// [`TerminalSigner::sign_with_context`].
    pub fn verify_with_context(
        &self,
        context: &[u8],
        message: &[u8],
        signature: &[u8; 64],
    ) -> bool {
        let mut bytes = Vec::with_capacity(context.len() + message.len());
        bytes.extend_from_slice(context);
        bytes.extend_from_slice(message);
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify_strict(&bytes, &sig).is_ok()
    }
}

impl fmt::Debug for TerminalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalSigner({}, secret redacted)", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::EdwardsPoint;

    fn honest_point() -> EdwardsPoint {
        TerminalSigner::from_seed(&[7u8; 32])
            .public_key()
            .verifying_key()
            .to_edwards()
    }

    #[test]
    fn honest_key_is_accepted() {
        let bytes = honest_point().compress().to_bytes();
        assert!(TerminalKey::from_bytes(&bytes).is_ok());
    }

    #[test]
    fn every_small_order_point_is_refused() {
        for torsion in EIGHT_TORSION {
            let bytes = torsion.compress().to_bytes();
            assert_eq!(TerminalKey::from_bytes(&bytes), Err(KeyError::SmallOrder));
        }
    }

    #[test]
    fn every_mixed_order_point_is_refused() {
        for torsion in &EIGHT_TORSION[1..] {
            let bytes = (honest_point() + torsion).compress().to_bytes();
            assert_eq!(TerminalKey::from_bytes(&bytes), Err(KeyError::MixedOrder));
        }
    }

    #[test]
    fn non_canonical_encoding_is_refused() {
        // y = p + 1 encodes the same point as y = 1 (the identity) when
        // reduced; y = 2^255 - 19 + 1 = 0x7fff..ffee.
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xee;
        bytes[31] = 0x7f;
        assert!(matches!(
            TerminalKey::from_bytes(&bytes),
            Err(KeyError::NonCanonical | KeyError::NotOnCurve)
        ));
        // The identity with the sign bit set: x = 0 but "negative".
        let mut neg_zero = [0u8; 32];
        neg_zero[0] = 1;
        neg_zero[31] = 0x80;
        assert_eq!(
            TerminalKey::from_bytes(&neg_zero),
            Err(KeyError::NonCanonical)
        );
    }

    #[test]
    fn wrong_length_is_refused() {
        assert_eq!(
            TerminalKey::from_bytes(&[1u8; 31]),
            Err(KeyError::WrongLength(31))
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let signer = TerminalSigner::from_seed(&[0x42u8; 32]);
        let text = format!("{signer:?}");
        assert!(!text.contains("4242"));
        assert!(text.contains("redacted"));
    }
}
