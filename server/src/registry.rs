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

/// One row of `terminals.csv` (docs/data-formats.md).
#[derive(serde::Deserialize)]
struct TerminalCsvRow {
    terminal_id: String,
    hospital_code: String,
    department_code: String,
    public_key_hex: String,
    key_id_hex: String,
    approved_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
}

fn terminal_row_from(r: TerminalCsvRow) -> Result<TerminalRow, (&'static str, String)> {
    for (field, v, max) in [
        ("terminal_id", &r.terminal_id, 64),
        ("hospital_code", &r.hospital_code, 32),
        ("department_code", &r.department_code, 32),
    ] {
        check_code(field, v, max).map_err(|e| (field, e.to_string()))?;
    }
    let key = TerminalKey::from_hex(&r.public_key_hex)
        .map_err(|e| ("public_key_hex", format!("the public key is refused: {e}")))?;
    if key.id().to_hex() != r.key_id_hex {
        return Err((
            "key_id_hex",
            format!("is not the id of the public key ({})", key.id().to_hex()),
        ));
    }
    let Some(approved_at) = r.approved_at_ms else {
        return Err((
            "approved_at_ms",
            "is required (the file lists approved terminals)".into(),
        ));
    };
    if let Some(revoked) = r.revoked_at_ms
        && revoked < approved_at
    {
        return Err(("revoked_at_ms", "is before approved_at_ms".into()));
    }
    Ok(TerminalRow {
        terminal_id: r.terminal_id,
        hospital_code: r.hospital_code,
        department_code: r.department_code,
        public_key: key.to_bytes(),
        key_id: key.id().to_hex(),
        status: if r.revoked_at_ms.is_some() {
            "revoked"
        } else {
            "approved"
        }
        .into(),
        requested_at_ms: approved_at,
        approved_at_ms: Some(approved_at),
        revoked_at_ms: r.revoked_at_ms,
        // An imported revocation has a time but no chain position: the
        // time rule alone applies (see docs/server.md).
        revoked_at_seq: None,
        last_contact_ms: None,
    })
}

/// Imports approved (and possibly revoked) terminals from `terminals.csv`.
/// Keys are validated like registrations. Importing the same file again
/// changes nothing; a later file may add a revocation; a terminal id that
/// is already registered with another key is a row error.
pub fn import_terminals(
    store: &dyn Store,
    reader: impl std::io::Read,
) -> Result<crate::claims::ImportReport, crate::claims::ImportError> {
    use crate::claims::{ImportError, ImportReport, RowError};
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let mut report = ImportReport::default();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(ImportError::Io(e.to_string()));
                }
                report.rows += 1;
                report.errors.push(RowError {
                    line: e.position().map_or(0, |p| p.line()),
                    column: "-".into(),
                    why: e.to_string(),
                });
                continue;
            }
        }
        report.rows += 1;
        let line = record.position().map_or(0, |p| p.line());
        let row = record
            .deserialize::<TerminalCsvRow>(Some(&header))
            .map_err(|e| ("-", e.to_string()))
            .and_then(terminal_row_from);
        let row = match row {
            Ok(row) => row,
            Err((column, why)) => {
                report.errors.push(RowError {
                    line,
                    column: column.into(),
                    why,
                });
                continue;
            }
        };
        match store.terminal(&row.terminal_id)? {
            None => match store.register_terminal(&row) {
                Ok(()) => report.inserted += 1,
                Err(StoreError::Conflict(m)) => report.errors.push(RowError {
                    line,
                    column: "public_key_hex".into(),
                    why: m,
                }),
                Err(e) => return Err(e.into()),
            },
            Some(old) if old.public_key != row.public_key => report.errors.push(RowError {
                line,
                column: "public_key_hex".into(),
                why: format!(
                    "terminal {} is registered with another key",
                    old.terminal_id
                ),
            }),
            Some(old) if old.hospital_code != row.hospital_code => report.errors.push(RowError {
                line,
                column: "hospital_code".into(),
                why: format!(
                    "terminal {} is approved for hospital {}",
                    old.terminal_id, old.hospital_code
                ),
            }),
            Some(old) => {
                let mut changed = false;
                if old.status == "pending" {
                    store.approve_terminal(&old.terminal_id, row.approved_at_ms.unwrap_or(0))?;
                    changed = true;
                }
                if let Some(at) = row.revoked_at_ms
                    && old.status != "revoked"
                {
                    store.revoke_terminal(&old.terminal_id, at)?;
                    changed = true;
                }
                if changed {
                    report.inserted += 1;
                } else {
                    report.already_present += 1;
                }
            }
        }
    }
    Ok(report)
}
