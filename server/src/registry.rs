//! Terminal registry: registration requests, approval, revocation.
//!
//! A key is validated when it is registered (`TerminalKey::from_bytes`:
//! canonical, not small-order, torsion-free), because batch verification on
//! the ingest path never looks at keys again.

use thiserror::Error;
use wuding_protocol::api::RegistrationRequest;
use wuding_protocol::{KeyError, TerminalKey};

use crate::store::{Store, StoreError, TerminalRow};

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("the public key is refused: {0}")]
    Key(#[from] KeyError),
    #[error("`{field}` {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check_code(field: &'static str, v: &str, max: usize) -> Result<(), RegistryError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RegistryError::Invalid {
            field,
            reason: "must be printable ASCII without spaces, not empty and not too long",
        });
    }
    Ok(())
}

/// Records a registration request (status "pending").
pub fn register(
    store: &dyn Store,
    req: &RegistrationRequest,
    now_ms: i64,
) -> Result<TerminalRow, RegistryError> {
    check_code("terminal_id", &req.terminal_id, 64)?;
    check_code("hospital_code", &req.hospital_code, 32)?;
    check_code("department_code", &req.department_code, 32)?;
    let key = TerminalKey::from_hex(&req.public_key)?;
    let row = TerminalRow {
        terminal_id: req.terminal_id.clone(),
        hospital_code: req.hospital_code.clone(),
        department_code: req.department_code.clone(),
        public_key: key.to_bytes(),
        key_id: key.id().to_hex(),
        status: "pending".into(),
        requested_at_ms: now_ms,
        approved_at_ms: None,
        revoked_at_ms: None,
        revoked_at_seq: None,
        last_contact_ms: None,
    };
    store.register_terminal(&row)?;
    Ok(row)
}
