//! Fingerprint templates: encrypted at rest, delivered encrypted.
//!
//! * **At rest** a template is sealed (XChaCha20-Poly1305,
//!   `wuding_protocol::api::seal_template`, purpose `rest`) under the
//!   server's template key, read from `--template-key-file` and never stored
//!   in the database. The database alone reveals no template.
//! * **In transit** a template is sealed (purpose `transit`) under its
//!   hospital's *roster key*. The roster key of hospital H is derived from
//!   the server template key: `HMAC-SHA-256(template key,
//!   "wuding/roster-key-derive/v1" NUL || H)`, so every replica derives the
//!   same key with nothing to store or race on. An approved terminal fetches
//!   it once (`POST /api/v1/roster/key`, wrapped by an X25519 agreement with
//!   a key pair the terminal makes for that request) and keeps it.
//! * The associated data binds the patient and the finger, so a sealed
//!   template cannot be moved to another patient.
//!
//! Neither key nor template ever reaches a log: [`TemplateVault`] has a
//! redacting `Debug`, and no error here carries template bytes.

use std::path::Path;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use wuding_protocol::api::{
    RosterKeyRequest, RosterKeyResponse, RosterTemplate, SealError, SealKey, SealPurpose,
    open_template, seal_template, wrap_roster_key,
};
use wuding_protocol::{Finger, TemplateRef};

use crate::store::{RosterItem, Store, StoreError};

/// Roster item kind of a stored template (never delivered as is).
pub const KIND: &str = "template";

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("template key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error("template: {0}")]
    Seal(#[from] SealError),
    #[error("`{field}` {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The server's template key and what is derived from it.
pub struct TemplateVault {
    at_rest: SealKey,
}

impl std::fmt::Debug for TemplateVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateVault(redacted)")
    }
}

/// A stored template as it sits in the database (sealed at rest).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTemplate {
    insured_id: String,
    finger: Finger,
    template_ref: TemplateRef,
    /// base64 of `nonce || ciphertext || tag` under the at-rest key.
    sealed: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn item_key(insured_id: &str, finger: Finger) -> String {
    format!("{insured_id}/{}", finger.code())
}

impl TemplateVault {
    pub fn new(key: SealKey) -> TemplateVault {
        TemplateVault { at_rest: key }
    }

    /// Loads the key (64 hex digits) from `path`, creating it with mode
    /// 0600 from the system random source if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<TemplateVault, TemplateError> {
        let err = |why: String| TemplateError::KeyFile {
            path: path.display().to_string(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key: [u8; 32] = wuding_protocol::ids::parse_lower_hex(text.trim())
                    .ok_or_else(|| err("is not 64 lower-case hex digits".into()))?;
                Ok(TemplateVault::new(SealKey(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| err(format!("random source: {e}")))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| err(e.to_string()))?;
                f.write_all(hex::encode(key).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                Ok(TemplateVault::new(SealKey(key)))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The roster key of a hospital (see the module docs).
    pub fn roster_key(&self, hospital_code: &str) -> SealKey {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.at_rest.0).expect("HMAC takes any key");
        mac.update(b"wuding/roster-key-derive/v1\0");
        mac.update(hospital_code.as_bytes());
        SealKey(mac.finalize().into_bytes().into())
    }

    /// Answers a terminal's roster-key request.
    pub fn wrap_for_terminal(
        &self,
        hospital_code: &str,
        request: &RosterKeyRequest,
    ) -> Result<RosterKeyResponse, TemplateError> {
        let mut secret = [0u8; 32];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut secret)
            .and_then(|_| getrandom::fill(&mut nonce))
            .map_err(|_| TemplateError::Invalid {
                field: "random source",
                reason: "is unavailable",
            })?;
        Ok(wrap_roster_key(
            &self.roster_key(hospital_code),
            hospital_code,
            request,
            &secret,
            nonce,
        )?)
    }

    /// The roster item for a plain template (sealed at rest).
    pub fn item_for(
        &self,
        hospital_code: &str,
        insured_id: &str,
        finger: Finger,
        template: &[u8],
        template_ref: TemplateRef,
    ) -> Result<RosterItem, TemplateError> {
        check_id("insured_id", insured_id)?;
        check_id("hospital_code", hospital_code)?;
        if template.is_empty() {
            return Err(TemplateError::Invalid {
                field: "template",
                reason: "is empty",
            });
        }
        let sealed = seal_template(
            &self.at_rest,
            SealPurpose::Rest,
            insured_id,
            finger,
            template,
            None,
        )?;
        let stored = StoredTemplate {
            insured_id: insured_id.to_owned(),
            finger,
            template_ref,
            sealed: b64().encode(sealed),
        };
        Ok(RosterItem {
            hospital_code: hospital_code.to_owned(),
            kind: KIND.into(),
            key: item_key(insured_id, finger),
            body: serde_json::to_string(&stored).expect("template serialises"),
        })
    }

    /// Opens a template a terminal of `hospital_code` uploaded (sealed in
    /// transit) and returns the roster item that stores it at rest.
    pub fn item_from_terminal(
        &self,
        hospital_code: &str,
        t: &RosterTemplate,
    ) -> Result<RosterItem, TemplateError> {
        let sealed = b64()
            .decode(t.sealed.as_bytes())
            .map_err(|_| TemplateError::Invalid {
                field: "sealed",
                reason: "is not base64",
            })?;
        let plain = open_template(
            &self.roster_key(hospital_code),
            SealPurpose::Transit,
            &t.insured_id,
            t.finger,
            &sealed,
        )?;
        self.item_for(
            hospital_code,
            &t.insured_id,
            t.finger,
            &plain,
            t.template_ref,
        )
    }

    /// A stored item re-sealed for the hospital's terminals.
    pub fn deliver(&self, item: &RosterItem) -> Result<RosterTemplate, TemplateError> {
        let stored: StoredTemplate =
            serde_json::from_str(&item.body).map_err(|_| StoreError::Corrupt("stored template"))?;
        let sealed = b64()
            .decode(stored.sealed.as_bytes())
            .map_err(|_| StoreError::Corrupt("stored template"))?;
        let plain = open_template(
            &self.at_rest,
            SealPurpose::Rest,
            &stored.insured_id,
            stored.finger,
            &sealed,
        )?;
        let transit = seal_template(
            &self.roster_key(&item.hospital_code),
            SealPurpose::Transit,
            &stored.insured_id,
            stored.finger,
            &plain,
            None,
        )?;
        Ok(RosterTemplate {
            insured_id: stored.insured_id,
            finger: stored.finger,
            sealed: b64().encode(transit),
            template_ref: stored.template_ref,
        })
    }
}

fn check_id(field: &'static str, v: &str) -> Result<(), TemplateError> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(TemplateError::Invalid {
            field,
            reason: "must be 1 to 64 printable ASCII characters without spaces or `/`",
        });
    }
    Ok(())
}

/// Stores templates; returns how many changed (an unchanged template keeps
/// its version, so uploading it again changes nothing).
pub fn put(store: &dyn Store, items: &[RosterItem]) -> Result<u64, TemplateError> {
    Ok(store.put_roster_items(items)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wuding_protocol::api::{unwrap_roster_key, x25519_public};

    #[test]
    fn at_rest_bytes_hide_the_template_and_delivery_opens_with_the_roster_key() {
        let vault = TemplateVault::new(SealKey([5; 32]));
        let template = b"minutiae minutiae minutiae".to_vec();
        let item = vault
            .item_for(
                "H1",
                "P0001",
                Finger::LeftIndex,
                &template,
                TemplateRef([1; 32]),
            )
            .unwrap();
        assert!(!item.body.contains("minutiae"));
        let delivered = vault.deliver(&item).unwrap();
        let sealed = b64().decode(&delivered.sealed).unwrap();
        // The terminal gets the roster key through the X25519 wrap.
        let t_secret = [9u8; 32];
        let req = RosterKeyRequest {
            x25519_public: hex::encode(x25519_public(&t_secret)),
        };
        let roster_key =
            unwrap_roster_key(&t_secret, &vault.wrap_for_terminal("H1", &req).unwrap()).unwrap();
        let opened = open_template(
            &roster_key,
            SealPurpose::Transit,
            "P0001",
            Finger::LeftIndex,
            &sealed,
        )
        .unwrap();
        assert_eq!(opened, template);
        // Another hospital's key opens nothing.
        assert!(
            open_template(
                &vault.roster_key("H2"),
                SealPurpose::Transit,
                "P0001",
                Finger::LeftIndex,
                &sealed
            )
            .is_err()
        );
        // Sealing is deterministic: the same upload is the same item.
        let again = vault
            .item_for(
                "H1",
                "P0001",
                Finger::LeftIndex,
                &template,
                TemplateRef([1; 32]),
            )
            .unwrap();
        assert_eq!(item, again);
        // Round trip from a terminal upload.
        let back = vault.item_from_terminal("H1", &delivered).unwrap();
        assert_eq!(back, item);
        assert!(vault.item_from_terminal("H2", &delivered).is_err());
        assert_eq!(format!("{vault:?}"), "TemplateVault(redacted)");
    }

    #[test]
    fn key_file_is_created_once_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.key");
        let a = TemplateVault::load_or_create(&path).unwrap();
        let b = TemplateVault::load_or_create(&path).unwrap();
        assert_eq!(a.roster_key("H"), b.roster_key("H"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "nothex").unwrap();
        let e = TemplateVault::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("64 lower-case hex"), "{e}");
    }
}
