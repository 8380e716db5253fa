//! The terminal's local database (SQLite, WAL, `synchronous = FULL`).
//!
//! What it keeps: the chain head, the outbox of signed records (kept after
//! the server's receipt arrives, marked retired), the open sessions, the
//! local audit log, and the roster cache.
//!
//! **Invariant:** signing a record, appending it to the outbox, advancing
//! the chain head and closing the open session it ends happen in one
//! transaction. After a power cut at any instant, either all of it happened
//! or none of it did: no record is lost, none is signed twice at one
//! sequence number.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;
use wuding_protocol::{Envelope, FieldError, Record, RecordId, TerminalSigner};

use crate::flow::OpenSession;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("local database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the record is not valid: {0}")]
    InvalidRecord(#[from] FieldError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
}

/// An outbox entry waiting for the server's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    pub seq: u64,
    pub record_id: RecordId,
    pub envelope: Envelope,
}

/// Outbox counts for the nurse screen and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct OutboxStatus {
    pub waiting: u64,
    pub retired: u64,
    pub head_seq: u64,
}

pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS chain_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    record_id BLOB NOT NULL
);
INSERT OR IGNORE INTO chain_head (id, seq, record_id) VALUES (1, 0, zeroblob(32));
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY,
    record_id   BLOB NOT NULL UNIQUE,
    record_type TEXT NOT NULL,
    envelope    TEXT NOT NULL,
    signed_ms   INTEGER NOT NULL,
    receipt     TEXT,
    retired_ms  INTEGER,
    -- Set when the server refused the record for good (kept as evidence,
    -- no longer uploaded); the reason is in the local audit log too.
    set_aside   TEXT
);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (seq) WHERE retired_ms IS NULL AND set_aside IS NULL;
CREATE TABLE IF NOT EXISTS open_sessions (
    bed     TEXT PRIMARY KEY,
    session TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    line  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        Store::init(conn)
    }

    /// An in-memory database, for tests of the layers above.
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(ROSTER_SCHEMA)?;
        Ok(Store { conn })
    }

    /// The chain head: last sequence number and record id (0 and zeros
    /// before the first record).
    pub fn chain_head(&self) -> Result<(u64, RecordId), StoreError> {
        let (seq, id): (i64, Vec<u8>) = self.conn.query_row(
            "SELECT seq, record_id FROM chain_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let id: [u8; 32] = id
            .try_into()
            .map_err(|_| StoreError::Corrupt("chain head id"))?;
        Ok((seq as u64, RecordId(id)))
    }

    /// Signs `record` at the next chain position and stores it, atomically
    /// with advancing the chain head and removing the open session at
    /// `closes`. Returns the envelope as stored.
    pub fn sign_and_store(
        &mut self,
        signer: &TerminalSigner,
        mut record: Record,
        closes: Option<&str>,
    ) -> Result<Envelope, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (head_seq, head_id): (i64, Vec<u8>) = tx.query_row(
            "SELECT seq, record_id FROM chain_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let head_id: [u8; 32] = head_id
            .try_into()
            .map_err(|_| StoreError::Corrupt("chain head id"))?;
        let seq = head_seq as u64 + 1;
        record.set_chain_position(seq, RecordId(head_id));
        let envelope = signer.sign(&record)?;
        let id = envelope.record_id();
        tx.execute(
            "INSERT INTO outbox (seq, record_id, record_type, envelope, signed_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                seq as i64,
                id.0.as_slice(),
                record.record_type().code(),
                envelope.to_json(),
                record.signed_at_ms()
            ],
        )?;
        tx.execute(
            "UPDATE chain_head SET seq = ?1, record_id = ?2 WHERE id = 1",
            params![seq as i64, id.0.as_slice()],
        )?;
        if let Some(bed) = closes {
            tx.execute("DELETE FROM open_sessions WHERE bed = ?1", params![bed])?;
        }
        tx.commit()?;
        Ok(envelope)
    }

    /// Records waiting for a receipt, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<PendingRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, record_id, envelope FROM outbox WHERE retired_ms IS NULL AND set_aside IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, json) = row?;
            let id: [u8; 32] = id
                .try_into()
                .map_err(|_| StoreError::Corrupt("outbox record id"))?;
            let envelope = Envelope::from_json(json.as_bytes())
                .map_err(|_| StoreError::Corrupt("outbox envelope"))?;
            out.push(PendingRecord {
                seq: seq as u64,
                record_id: RecordId(id),
                envelope,
            });
        }
        Ok(out)
    }

    /// Retires an outbox entry on the server's receipt (kept, marked
    /// retired). Idempotent; unknown ids are ignored and reported as false.
    pub fn retire(
        &mut self,
        record_id: RecordId,
        receipt_json: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE outbox SET receipt = ?2, retired_ms = ?3 WHERE record_id = ?1 AND retired_ms IS NULL",
            params![record_id.0.as_slice(), receipt_json, now_ms],
        )?;
        Ok(n == 1)
    }

    /// Stops uploading a record the server refused for good (it stays in
    /// the outbox as evidence).
    pub fn set_aside(
        &mut self,
        record_id: RecordId,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET set_aside = ?2 WHERE record_id = ?1",
            params![record_id.0.as_slice(), reason],
        )?;
        self.audit(
            now_ms,
            &format!(
                "record {} refused by the server: {reason}",
                record_id.short()
            ),
        )
    }

    pub fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let (waiting, retired): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE retired_ms IS NULL AND set_aside IS NULL), COUNT(*) FILTER (WHERE retired_ms IS NOT NULL) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(OutboxStatus {
            waiting: waiting as u64,
            retired: retired as u64,
            head_seq: self.chain_head()?.0,
        })
    }

    /// Every stored envelope in chain order (for export and tests).
    pub fn all_records(&self) -> Result<Vec<Envelope>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT envelope FROM outbox ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|json| {
            Envelope::from_json(json?.as_bytes())
                .map_err(|_| StoreError::Corrupt("outbox envelope"))
        })
        .collect()
    }

    /// Stores (or replaces) an open session.
    pub fn put_open_session(&mut self, session: &OpenSession) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(session).map_err(|_| StoreError::Corrupt("open session"))?;
        self.conn.execute(
            "INSERT INTO open_sessions (bed, session) VALUES (?1, ?2)
             ON CONFLICT (bed) DO UPDATE SET session = excluded.session",
            params![session.bed, json],
        )?;
        Ok(())
    }

    pub fn open_sessions(&self) -> Result<Vec<OpenSession>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT session FROM open_sessions ORDER BY bed")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|json| {
            serde_json::from_str(&json?).map_err(|_| StoreError::Corrupt("open session"))
        })
        .collect()
    }

    pub fn audit(&mut self, at_ms: i64, line: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO audit_log (at_ms, line) VALUES (?1, ?2)",
            params![at_ms, line],
        )?;
        Ok(())
    }

    pub fn audit_tail(&self, n: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, line FROM audit_log ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map(params![n as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

// ---- roster cache -------------------------------------------------------------

/// A patient as cached on the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPatient {
    pub insured_id: String,
    pub card_uid: String,
    /// Name as shown to the nurse (masked by the server for display).
    pub display_name: String,
}

/// A staff member as cached on the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedStaff {
    pub staff_id: String,
    pub card_uid: String,
    pub display_name: String,
    /// PHC string (argon2id) of the staff PIN.
    pub pin_hash: String,
}

/// An enrolled template as cached on the terminal. `sealed` is the template
/// encrypted under the terminal's roster key; it is opened only to download
/// it into the module.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedTemplate {
    pub insured_id: String,
    pub finger: wuding_protocol::Finger,
    pub sealed: Vec<u8>,
    pub template_ref: wuding_protocol::TemplateRef,
}

impl std::fmt::Debug for CachedTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CachedTemplate({} {:?}, sealed)",
            crate::flow::mask_id(&self.insured_id),
            self.finger
        )
    }
}

const ROSTER_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS patients (
    insured_id   TEXT PRIMARY KEY,
    card_uid     TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staff (
    staff_id     TEXT PRIMARY KEY,
    card_uid     TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    pin_hash     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    insured_id   TEXT NOT NULL,
    finger       TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    template_ref BLOB NOT NULL,
    PRIMARY KEY (insured_id, finger)
);
CREATE TABLE IF NOT EXISTS plans (
    insured_id TEXT NOT NULL,
    plan_id    TEXT NOT NULL,
    plan       TEXT NOT NULL,
    PRIMARY KEY (insured_id, plan_id)
);
CREATE TABLE IF NOT EXISTS prices (
    code           TEXT PRIMARY KEY,
    unit_price_fen INTEGER NOT NULL
);
-- Templates enrolled here and not yet accepted by the server.
CREATE TABLE IF NOT EXISTS template_uploads (
    insured_id TEXT NOT NULL,
    finger     TEXT NOT NULL,
    PRIMARY KEY (insured_id, finger)
);
-- Who is enrolled in which library slot of this terminal's fingerprint
-- module (the module keeps the templates; this keeps their owners).
CREATE TABLE IF NOT EXISTS module_slots (
    slot       INTEGER PRIMARY KEY,
    insured_id TEXT NOT NULL,
    finger     TEXT NOT NULL
);
"#;

impl Store {
    pub fn put_patient(&mut self, p: &CachedPatient) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO patients (insured_id, card_uid, display_name) VALUES (?1, ?2, ?3)
             ON CONFLICT (insured_id) DO UPDATE SET card_uid = excluded.card_uid, display_name = excluded.display_name",
            params![p.insured_id, p.card_uid, p.display_name],
        )?;
        Ok(())
    }

    pub fn put_staff(&mut self, s: &CachedStaff) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO staff (staff_id, card_uid, display_name, pin_hash) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (staff_id) DO UPDATE SET card_uid = excluded.card_uid,
                display_name = excluded.display_name, pin_hash = excluded.pin_hash",
            params![s.staff_id, s.card_uid, s.display_name, s.pin_hash],
        )?;
        Ok(())
    }

    pub fn put_template(&mut self, t: &CachedTemplate) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO templates (insured_id, finger, sealed, template_ref) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (insured_id, finger) DO UPDATE SET sealed = excluded.sealed, template_ref = excluded.template_ref",
            params![t.insured_id, t.finger.code(), t.sealed, t.template_ref.0.as_slice()],
        )?;
        Ok(())
    }

    pub fn put_plan(&mut self, plan: &wuding_protocol::TreatmentPlan) -> Result<(), StoreError> {
        let json = serde_json::to_string(plan).map_err(|_| StoreError::Corrupt("plan"))?;
        self.conn.execute(
            "INSERT INTO plans (insured_id, plan_id, plan) VALUES (?1, ?2, ?3)
             ON CONFLICT (insured_id, plan_id) DO UPDATE SET plan = excluded.plan",
            params![plan.insured_id, plan.plan_id, json],
        )?;
        Ok(())
    }

    pub fn put_price(&mut self, code: &str, unit_price_fen: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO prices (code, unit_price_fen) VALUES (?1, ?2)
             ON CONFLICT (code) DO UPDATE SET unit_price_fen = excluded.unit_price_fen",
            params![code, unit_price_fen as i64],
        )?;
        Ok(())
    }

    pub fn price_list(&self) -> Result<crate::flow::PriceList, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT code, unit_price_fen FROM prices")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut list = crate::flow::PriceList::default();
        for row in rows {
            let (code, price) = row?;
            list.unit_price_fen.insert(code, price as u64);
        }
        Ok(list)
    }

    pub fn patient_by_card(&self, card_uid: &str) -> Result<Option<CachedPatient>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT insured_id, card_uid, display_name FROM patients WHERE card_uid = ?1",
                params![card_uid],
                |r| {
                    Ok(CachedPatient {
                        insured_id: r.get(0)?,
                        card_uid: r.get(1)?,
                        display_name: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn staff_by_card(&self, card_uid: &str) -> Result<Option<CachedStaff>, StoreError> {
        self.staff_where("card_uid", card_uid)
    }

    pub fn staff_by_id(&self, staff_id: &str) -> Result<Option<CachedStaff>, StoreError> {
        self.staff_where("staff_id", staff_id)
    }

    fn staff_where(&self, column: &str, value: &str) -> Result<Option<CachedStaff>, StoreError> {
        let sql = format!(
            "SELECT staff_id, card_uid, display_name, pin_hash FROM staff WHERE {column} = ?1"
        );
        Ok(self
            .conn
            .query_row(&sql, params![value], |r| {
                Ok(CachedStaff {
                    staff_id: r.get(0)?,
                    card_uid: r.get(1)?,
                    display_name: r.get(2)?,
                    pin_hash: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// The patient's enrolled templates, in the order fingers were enrolled.
    pub fn templates_of(&self, insured_id: &str) -> Result<Vec<CachedTemplate>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT finger, sealed, template_ref FROM templates WHERE insured_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![insured_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (finger, sealed, reference) = row?;
            let finger = wuding_protocol::Finger::from_code(&finger)
                .ok_or(StoreError::Corrupt("template finger"))?;
            let reference: [u8; 32] = reference
                .try_into()
                .map_err(|_| StoreError::Corrupt("template ref"))?;
            out.push(CachedTemplate {
                insured_id: insured_id.to_owned(),
                finger,
                sealed,
                template_ref: wuding_protocol::TemplateRef(reference),
            });
        }
        Ok(out)
    }

    /// Records that the module's library slot `slot` holds `insured_id`'s
    /// `finger` (replacing whatever the slot held before).
    pub fn put_module_slot(
        &mut self,
        slot: u16,
        insured_id: &str,
        finger: wuding_protocol::Finger,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO module_slots (slot, insured_id, finger) VALUES (?1, ?2, ?3)
             ON CONFLICT (slot) DO UPDATE SET insured_id = excluded.insured_id, finger = excluded.finger",
            params![slot as i64, insured_id, finger.code()],
        )?;
        Ok(())
    }

    /// Marks a cached template as enrolled here and waiting for upload.
    pub fn mark_template_upload(
        &mut self,
        insured_id: &str,
        finger: wuding_protocol::Finger,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO template_uploads (insured_id, finger) VALUES (?1, ?2)",
            params![insured_id, finger.code()],
        )?;
        Ok(())
    }

    /// Templates waiting for upload (the sealed bytes as cached).
    pub fn templates_to_upload(&self) -> Result<Vec<CachedTemplate>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT insured_id, finger FROM template_uploads ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (insured_id, finger) = row?;
            if let Some(t) = self
                .templates_of(&insured_id)?
                .into_iter()
                .find(|t| t.finger.code() == finger)
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The server accepted an uploaded template.
    pub fn template_uploaded(
        &mut self,
        insured_id: &str,
        finger: wuding_protocol::Finger,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM template_uploads WHERE insured_id = ?1 AND finger = ?2",
            params![insured_id, finger.code()],
        )?;
        Ok(())
    }

    /// Who is enrolled in which slot of the module's library.
    pub fn module_slots(&self) -> Result<std::collections::BTreeMap<u16, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT slot, insured_id FROM module_slots ORDER BY slot")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (slot, insured_id) = row?;
            let slot = u16::try_from(slot).map_err(|_| StoreError::Corrupt("module slot"))?;
            out.insert(slot, insured_id);
        }
        Ok(out)
    }

    /// The plan in force on `date` (the latest starting one if several).
    pub fn plan_for(
        &self,
        insured_id: &str,
        date: wuding_protocol::Date,
    ) -> Result<Option<wuding_protocol::TreatmentPlan>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT plan FROM plans WHERE insured_id = ?1")?;
        let rows = stmt.query_map(params![insured_id], |r| r.get::<_, String>(0))?;
        let mut best: Option<wuding_protocol::TreatmentPlan> = None;
        for row in rows {
            let plan: wuding_protocol::TreatmentPlan =
                serde_json::from_str(&row?).map_err(|_| StoreError::Corrupt("plan"))?;
            if plan.covers(date) && best.as_ref().is_none_or(|b| plan.valid_from > b.valid_from) {
                best = Some(plan);
            }
        }
        Ok(best)
    }

    /// Treatment kinds of the sessions this terminal signed for the patient
    /// with check-in on local `date`.
    pub fn sessions_on(
        &self,
        insured_id: &str,
        date: wuding_protocol::Date,
        utc_offset_min: i16,
    ) -> Result<Vec<wuding_protocol::TreatmentKind>, StoreError> {
        // Look back over the last 500 records only: a day's worth at most.
        let mut stmt = self.conn.prepare_cached(
            "SELECT envelope FROM outbox WHERE record_type = 'session' ORDER BY seq DESC LIMIT 500",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut kinds = Vec::new();
        for row in rows {
            let envelope = Envelope::from_json(row?.as_bytes())
                .map_err(|_| StoreError::Corrupt("outbox envelope"))?;
            if let Ok(v) = envelope.decode()
                && let Record::Session(s) = v.record
                && s.patient.insured_id == insured_id
                && crate::flow::local_date(s.check_in.at_ms, utc_offset_min) == date
            {
                kinds.push(s.treatment.kind);
            }
        }
        Ok(kinds)
    }
}
