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
    /// Enrolled templates, sealed under the hospital's roster key.
    #[serde(default)]
    pub templates: Vec<RosterTemplate>,
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

// ---------------------------------------------------------------------------
// Fingerprint templates in transit and at rest.
//
// A template is sealed with XChaCha20-Poly1305 under a 32-byte key. The
// sealed form is `nonce (24 bytes) || ciphertext || tag (16 bytes)`; the
// associated data binds the purpose, the patient and the finger, so a
// sealed template cannot be moved to another patient or finger:
//
//     "wuding/template/v1" NUL || PURPOSE NUL || INSURED_ID NUL || FINGER_CODE
//
// PURPOSE is `transit` (under the hospital's roster key, between the server
// and that hospital's terminals) or `rest` (under the server's template key,
// in the server database). Callers supply the nonce: this crate reads no
// random source. [`synthetic_nonce`] derives one from the key and the
// message (deterministic, so re-importing the same template changes
// nothing; it reveals only that two sealed templates are equal).
// ---------------------------------------------------------------------------

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::types::{Finger, TemplateRef};

/// Largest template accepted for sealing (a module's characteristic file is
/// a few hundred bytes to a few KiB).
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;

const TEMPLATE_AAD: &[u8] = b"wuding/template/v1\0";

/// What a sealed template is for: decides the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealPurpose {
    /// Under a hospital roster key, between the server and its terminals.
    Transit,
    /// Under the server's template key, in the server database.
    Rest,
}

impl SealPurpose {
    fn code(self) -> &'static [u8] {
        match self {
            SealPurpose::Transit => b"transit",
            SealPurpose::Rest => b"rest",
        }
    }
}

/// A 32-byte symmetric key for sealing templates (a hospital roster key or
/// the server's at-rest key). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey(pub [u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(redacted)")
    }
}

/// Why a sealed template or key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed data is shorter than a nonce and a tag")]
    TooShort,
    #[error("template is larger than {MAX_TEMPLATE_BYTES} bytes")]
    TooLarge,
    #[error("sealed data does not open under this key for this patient and finger")]
    Unauthentic,
    #[error("the key-agreement public key is not a usable X25519 point")]
    WeakPoint,
    #[error("`{0}` is not valid hex of the expected length")]
    Hex(&'static str),
}

fn template_aad(purpose: SealPurpose, insured_id: &str, finger: Finger) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    aad.extend_from_slice(TEMPLATE_AAD);
    aad.extend_from_slice(purpose.code());
    aad.push(0);
    aad.extend_from_slice(insured_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(finger.code().as_bytes());
    aad
}

/// A nonce derived from the key and the whole message:
/// the first 24 bytes of `HMAC-SHA-256(key, "wuding/nonce/v1" NUL || aad || len(aad) as u64 LE || msg)`.
pub fn synthetic_nonce(key: &SealKey, aad: &[u8], msg: &[u8]) -> [u8; 24] {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key.0).expect("HMAC takes any key");
    mac.update(b"wuding/nonce/v1\0");
    mac.update(aad);
    mac.update(&(aad.len() as u64).to_le_bytes());
    mac.update(msg);
    let out = mac.finalize().into_bytes();
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&out[..24]);
    nonce
}

fn seal_raw(key: &SealKey, aad: &[u8], msg: &[u8], nonce: [u8; 24]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let nonce_arr = XNonce::from(nonce);
    let ct = cipher
        .encrypt(&nonce_arr, Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encrypts any message below 256 GiB");
    let mut out = Vec::with_capacity(24 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_raw(key: &SealKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < 24 + 16 {
        return Err(SealError::TooShort);
    }
    let (nonce, ct) = sealed.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().expect("split at 24");
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .map_err(|_| SealError::Unauthentic)
}

/// Seals a template for one patient and finger. With `nonce: None` the
/// nonce is [`synthetic_nonce`] (deterministic).
pub fn seal_template(
    key: &SealKey,
    purpose: SealPurpose,
    insured_id: &str,
    finger: Finger,
    template: &[u8],
    nonce: Option<[u8; 24]>,
) -> Result<Vec<u8>, SealError> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(SealError::TooLarge);
    }
    let aad = template_aad(purpose, insured_id, finger);
    let nonce = nonce.unwrap_or_else(|| synthetic_nonce(key, &aad, template));
    Ok(seal_raw(key, &aad, template, nonce))
}

/// Opens a template sealed by [`seal_template`] for the same patient,
/// finger and purpose.
pub fn open_template(
    key: &SealKey,
    purpose: SealPurpose,
    insured_id: &str,
    finger: Finger,
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    if sealed.len() > MAX_TEMPLATE_BYTES + 40 {
        return Err(SealError::TooLarge);
    }
    open_raw(key, &template_aad(purpose, insured_id, finger), sealed)
}

/// One enrolled template as delivered to (or uploaded by) a terminal:
/// sealed under the hospital's roster key ([`SealPurpose::Transit`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterTemplate {
    pub insured_id: String,
    pub finger: Finger,
    /// `nonce || ciphertext || tag`, base64 (standard alphabet, padded).
    pub sealed: String,
    pub template_ref: TemplateRef,
}

impl std::fmt::Debug for RosterTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RosterTemplate({:?}, sealed)", self.finger)
    }
}

/// `GET /api/v1/roster/templates?since=CURSOR`: sealed templates of the
/// terminal's hospital changed since the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDelta {
    pub cursor: u64,
    pub templates: Vec<RosterTemplate>,
}

// Delivery of the hospital roster key to an approved terminal.
//
// The terminal makes a fresh X25519 key pair and sends the public half in
// the body of a signed request (`POST /api/v1/roster/key`), so the server
// knows it came from that terminal. The server answers with its own fresh
// X25519 public key and the roster key sealed under
//
//     SHA-256("wuding/roster-key/v1" NUL || shared secret || terminal public || server public)
//
// with associated data `"wuding/roster-key/v1" NUL || hospital code`.
// Anyone reading the traffic learns nothing of the roster key.

const ROSTER_KEY_CONTEXT: &[u8] = b"wuding/roster-key/v1\0";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterKeyRequest {
    /// The terminal's fresh X25519 public key, lowercase hex.
    pub x25519_public: String,
}

impl std::fmt::Debug for RosterKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RosterKeyRequest({})", self.x25519_public)
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterKeyResponse {
    pub hospital_code: String,
    /// The server's fresh X25519 public key, lowercase hex.
    pub x25519_public: String,
    /// `nonce || ciphertext || tag` of the 32-byte roster key, lowercase hex.
    pub sealed_key: String,
}

impl std::fmt::Debug for RosterKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RosterKeyResponse({}, sealed)", self.hospital_code)
    }
}

/// The X25519 public key of a secret scalar (clamped).
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    curve25519_dalek::MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
}

fn wrap_key(
    own_secret: &[u8; 32],
    peer_public: &[u8; 32],
    terminal_public: &[u8; 32],
    server_public: &[u8; 32],
) -> Result<SealKey, SealError> {
    let shared = curve25519_dalek::MontgomeryPoint(*peer_public)
        .mul_clamped(*own_secret)
        .to_bytes();
    // A small-order peer point gives an all-zero secret: refuse it.
    if shared == [0u8; 32] {
        return Err(SealError::WeakPoint);
    }
    let mut h = Sha256::new();
    h.update(ROSTER_KEY_CONTEXT);
    h.update(shared);
    h.update(terminal_public);
    h.update(server_public);
    Ok(SealKey(h.finalize().into()))
}

fn roster_key_aad(hospital_code: &str) -> Vec<u8> {
    let mut aad = ROSTER_KEY_CONTEXT.to_vec();
    aad.extend_from_slice(hospital_code.as_bytes());
    aad
}

/// Server side: seals `roster_key` for the terminal whose fresh public key
/// came in a signed [`RosterKeyRequest`]. `server_secret` and `nonce` must
/// be fresh random bytes.
pub fn wrap_roster_key(
    roster_key: &SealKey,
    hospital_code: &str,
    request: &RosterKeyRequest,
    server_secret: &[u8; 32],
    nonce: [u8; 24],
) -> Result<RosterKeyResponse, SealError> {
    let terminal_public: [u8; 32] = crate::ids::parse_lower_hex(&request.x25519_public)
        .ok_or(SealError::Hex("x25519_public"))?;
    let server_public = x25519_public(server_secret);
    let kek = wrap_key(
        server_secret,
        &terminal_public,
        &terminal_public,
        &server_public,
    )?;
    Ok(RosterKeyResponse {
        hospital_code: hospital_code.to_owned(),
        x25519_public: hex::encode(server_public),
        sealed_key: hex::encode(seal_raw(
            &kek,
            &roster_key_aad(hospital_code),
            &roster_key.0,
            nonce,
        )),
    })
}

/// Terminal side: opens the roster key with the secret half of the key pair
/// it sent.
pub fn unwrap_roster_key(
    terminal_secret: &[u8; 32],
    response: &RosterKeyResponse,
) -> Result<SealKey, SealError> {
    let server_public: [u8; 32] = crate::ids::parse_lower_hex(&response.x25519_public)
        .ok_or(SealError::Hex("x25519_public"))?;
    let sealed = hex::decode(&response.sealed_key).map_err(|_| SealError::Hex("sealed_key"))?;
    let terminal_public = x25519_public(terminal_secret);
    let kek = wrap_key(
        terminal_secret,
        &server_public,
        &terminal_public,
        &server_public,
    )?;
    let key = open_raw(&kek, &roster_key_aad(&response.hospital_code), &sealed)?;
    let key: [u8; 32] = key.try_into().map_err(|_| SealError::Unauthentic)?;
    Ok(SealKey(key))
}

#[cfg(test)]
mod sealing_tests {
    use super::*;

    #[test]
    fn templates_open_only_for_their_patient_finger_and_purpose() {
        let k = SealKey([3; 32]);
        let t = b"characteristic file bytes";
        let s = seal_template(&k, SealPurpose::Transit, "P1", Finger::LeftIndex, t, None).unwrap();
        assert_eq!(
            open_template(&k, SealPurpose::Transit, "P1", Finger::LeftIndex, &s).unwrap(),
            t
        );
        for (key, purpose, who, finger) in [
            (
                SealKey([4; 32]),
                SealPurpose::Transit,
                "P1",
                Finger::LeftIndex,
            ),
            (k.clone(), SealPurpose::Rest, "P1", Finger::LeftIndex),
            (k.clone(), SealPurpose::Transit, "P2", Finger::LeftIndex),
            (k.clone(), SealPurpose::Transit, "P1", Finger::LeftMiddle),
        ] {
            assert_eq!(
                open_template(&key, purpose, who, finger, &s),
                Err(SealError::Unauthentic)
            );
        }
        let mut flipped = s.clone();
        flipped[30] ^= 1;
        assert_eq!(
            open_template(&k, SealPurpose::Transit, "P1", Finger::LeftIndex, &flipped),
            Err(SealError::Unauthentic)
        );
        assert_eq!(
            open_template(&k, SealPurpose::Transit, "P1", Finger::LeftIndex, &s[..39]),
            Err(SealError::TooShort)
        );
        // Deterministic by default: re-sealing the same template gives the same bytes.
        let again =
            seal_template(&k, SealPurpose::Transit, "P1", Finger::LeftIndex, t, None).unwrap();
        assert_eq!(s, again);
        assert!(!s.windows(t.len()).any(|w| w == t), "no plaintext inside");
    }

    #[test]
    fn oversized_templates_are_refused() {
        let k = SealKey([3; 32]);
        let big = vec![0u8; MAX_TEMPLATE_BYTES + 1];
        assert_eq!(
            seal_template(&k, SealPurpose::Rest, "P", Finger::LeftThumb, &big, None),
            Err(SealError::TooLarge)
        );
    }

    #[test]
    fn roster_key_travels_to_the_terminal_that_asked() {
        let roster = SealKey([7; 32]);
        let t_secret = [11u8; 32];
        let req = RosterKeyRequest {
            x25519_public: hex::encode(x25519_public(&t_secret)),
        };
        let resp = wrap_roster_key(&roster, "H1", &req, &[12; 32], [13; 24]).unwrap();
        assert!(!resp.sealed_key.contains(&hex::encode(roster.0)));
        assert_eq!(unwrap_roster_key(&t_secret, &resp).unwrap(), roster);
        // Another terminal secret, or another hospital, does not open it.
        assert_eq!(
            unwrap_roster_key(&[14; 32], &resp),
            Err(SealError::Unauthentic)
        );
        let mut moved = resp.clone();
        moved.hospital_code = "H2".into();
        assert_eq!(
            unwrap_roster_key(&t_secret, &moved),
            Err(SealError::Unauthentic)
        );
        // The all-zero point (small order) is refused, as is bad hex.
        let weak = RosterKeyRequest {
            x25519_public: hex::encode([0u8; 32]),
        };
        assert_eq!(
            wrap_roster_key(&roster, "H1", &weak, &[12; 32], [13; 24]),
            Err(SealError::WeakPoint)
        );
        let bad = RosterKeyRequest {
            x25519_public: "zz".into(),
        };
        assert_eq!(
            wrap_roster_key(&roster, "H1", &bad, &[12; 32], [13; 24]),
            Err(SealError::Hex("x25519_public"))
        );
    }

    #[test]
    fn debug_never_shows_keys_or_templates() {
        assert_eq!(format!("{:?}", SealKey([1; 32])), "SealKey(redacted)");
        let t = RosterTemplate {
            insured_id: "P5101000001234".into(),
            finger: Finger::RightIndex,
            sealed: "c2VjcmV0".into(),
            template_ref: TemplateRef([0; 32]),
        };
        let d = format!("{t:?}");
        assert!(!d.contains("P5101") && !d.contains("c2Vj"), "{d}");
    }
}
