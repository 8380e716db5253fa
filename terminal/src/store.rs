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
    retired_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (seq) WHERE retired_ms IS NULL;
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
            "SELECT seq, record_id, envelope FROM outbox WHERE retired_ms IS NULL ORDER BY seq LIMIT ?1",
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

    pub fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let (waiting, retired): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE retired_ms IS NULL), COUNT(*) FILTER (WHERE retired_ms IS NOT NULL) FROM outbox",
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
