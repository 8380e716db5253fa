//! Batch verification for the server's ingest path.
//!
//! Batch verification checks one random linear combination of many
//! signature equations at once, about twice as fast per signature as
//! verifying each. It does not look at public keys at all, which is why it is
//! only offered over [`TerminalKey`]s (validated at registration: prime
//! order, canonical). Two cheap per-signature checks keep its verdict equal
//! to strict single verification: `R` must be canonically encoded and not of
//! small order (strict verification refuses both; the batch equation would
//! accept an identity `R` from a signer who knows its own secret).
//!
//! When a batch fails, every item is verified on its own so that each
//! failure is named and the good records in the batch are still accepted.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::envelope::{Envelope, VerifiedRecord, signing_message};
use crate::error::EnvelopeError;
use crate::keys::TerminalKey;

/// Verifies many envelopes, each against its key. The result has one entry
/// per input, in order; a bad item never affects the verdict on the others.
pub fn verify_many(
    items: &[(&Envelope, &TerminalKey)],
) -> Vec<Result<VerifiedRecord, EnvelopeError>> {
    let mut results: Vec<Option<Result<VerifiedRecord, EnvelopeError>>> = vec![None; items.len()];
    let mut candidates = Vec::with_capacity(items.len());
    for (i, (envelope, key)) in items.iter().enumerate() {
        if let Err(e) = envelope.check_key(key) {
            results[i] = Some(Err(e));
            continue;
        }
        if !r_is_acceptable(&envelope.signature) {
            results[i] = Some(Err(EnvelopeError::BadSignature(envelope.record_type)));
            continue;
        }
        candidates.push(i);
    }

    let messages: Vec<Vec<u8>> = candidates
        .iter()
        .map(|&i| signing_message(items[i].0.record_type, &items[i].0.payload))
        .collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = candidates
        .iter()
        .map(|&i| Signature::from_bytes(&items[i].0.signature))
        .collect();
    let keys: Vec<VerifyingKey> = candidates
        .iter()
        .map(|&i| *items[i].1.verifying_key())
        .collect();

    let batch_ok = !candidates.is_empty()
        && ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok();

    for &i in &candidates {
        let (envelope, key) = items[i];
        results[i] = Some(if batch_ok {
            envelope.decode()
        } else {
            envelope.verify(key)
        });
    }
    results
        .into_iter()
        .map(|r| r.expect("every item has a verdict"))
        .collect()
}

/// `R` (the first half of the signature) must decode canonically to a point
/// that is not of small order.
fn r_is_acceptable(signature: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    match CompressedEdwardsY(r).decompress() {
        Some(point) => point.compress().to_bytes() == r && !point.is_small_order(),
        None => false,
    }
}
