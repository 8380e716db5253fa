//! PostgreSQL backend: several stateless server replicas over one database.
//!
//! Concurrency: an ingest transaction locks the chain heads of the batch's
//! terminals (in terminal-id order, so two replicas never deadlock) and then
//! the single log-head row while it appends. Log indexes and chain positions
//! are therefore assigned exactly once whatever the number of replicas.

use std::sync::Mutex;

use postgres::{Client, NoTls, Transaction};
use wuding_protocol::{ClaimLine, Code, RecordId};
use wuding_rules::AttestedSession;

mod casework;

use super::{
    Alarm, FindingFilter, FindingRow, PatientRange, RecordRow, RosterItem, STORED_SESSION_COLUMNS,
    Store, StoreError, TerminalRow, Tx, UpsertCounts,
};
use super::{FINDING_COLUMNS, FINDING_INSERT_COLUMNS, FINDING_UPSERT_CONFLICT};
use wuding_protocol::types::{Dose, TreatmentKind};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE terminals (
    terminal_id     TEXT PRIMARY KEY,
    hospital_code   TEXT NOT NULL,
    department_code TEXT NOT NULL,
    public_key      BYTEA NOT NULL UNIQUE,
    key_id          TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    approved_at_ms  BIGINT,
    revoked_at_ms   BIGINT,
    revoked_at_seq  BIGINT,
    last_contact_ms BIGINT
);
CREATE TABLE chain_heads (
    terminal_id TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    record_id   BYTEA NOT NULL
);
CREATE TABLE records (
    record_id      BYTEA PRIMARY KEY,
    terminal_id    TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    record_type    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    payload        BYTEA NOT NULL,
    signature      BYTEA NOT NULL,
    signed_at_ms   BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    log_index      BIGINT NOT NULL UNIQUE,
    hospital_code  TEXT NOT NULL,
    insured_id     TEXT NOT NULL,
    service_date   TEXT NOT NULL,
    kind           TEXT,
    UNIQUE (terminal_id, seq)
);
CREATE INDEX records_by_date ON records (service_date, hospital_code);
CREATE INDEX records_by_patient ON records (insured_id, service_date);
CREATE TABLE held_records (
    record_id      BYTEA PRIMARY KEY,
    terminal_id    TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    record_type    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    payload        BYTEA NOT NULL,
    signature      BYTEA NOT NULL,
    signed_at_ms   BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    hospital_code  TEXT NOT NULL,
    insured_id     TEXT NOT NULL,
    service_date   TEXT NOT NULL,
    kind           TEXT
);
CREATE INDEX held_by_terminal ON held_records (terminal_id, seq);
CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO log_head (id, size) VALUES (1, 0);
CREATE TABLE alarms (
    id          BIGSERIAL PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    seq         BIGINT,
    record_id   BYTEA,
    detail      TEXT NOT NULL,
    at_ms       BIGINT NOT NULL
);
CREATE TABLE nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE TABLE claims (
    claim_id        TEXT PRIMARY KEY,
    insured_id      TEXT NOT NULL,
    hospital_code   TEXT NOT NULL,
    department_code TEXT NOT NULL,
    doctor_id       TEXT NOT NULL,
    service_date    TEXT NOT NULL,
    service_code    TEXT NOT NULL,
    service_kind    TEXT NOT NULL,
    quantity        BIGINT NOT NULL,
    amount_fen      BIGINT NOT NULL,
    drug_code       TEXT,
    dose_milli      BIGINT,
    dose_unit       TEXT,
    source          TEXT NOT NULL
);
CREATE INDEX claims_by_date ON claims (service_date, hospital_code);
CREATE INDEX claims_by_patient ON claims (insured_id, service_date);
"#,
    r#"
CREATE TABLE roster_items (
    hospital_code TEXT NOT NULL,
    kind          TEXT NOT NULL,
    item_key      TEXT NOT NULL,
    body          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    PRIMARY KEY (hospital_code, kind, item_key)
);
CREATE INDEX roster_by_version ON roster_items (hospital_code, version);
CREATE TABLE roster_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO roster_head (id, version) VALUES (1, 0);
"#,
    r#"
ALTER TABLE alarms ADD COLUMN hospital_code TEXT;
ALTER TABLE alarms ADD COLUMN service_date TEXT;
ALTER TABLE alarms ADD COLUMN measured_ms BIGINT;
ALTER TABLE alarms ADD COLUMN missing_from BIGINT;
ALTER TABLE alarms ADD COLUMN missing_to BIGINT;
ALTER TABLE alarms ADD COLUMN other_record_id BYTEA;
CREATE INDEX alarms_by_date ON alarms (service_date);
CREATE TABLE findings (
    finding_id      TEXT PRIMARY KEY,
    rule_id         TEXT NOT NULL,
    ruleset_version TEXT NOT NULL,
    severity        TEXT NOT NULL,
    service_date    TEXT,
    subject_type    TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    hospital_code   TEXT,
    insured_id      TEXT,
    claim_ids       TEXT NOT NULL,
    record_ids      TEXT NOT NULL,
    amount_fen      BIGINT NOT NULL,
    params          TEXT NOT NULL,
    explanation_zh  TEXT NOT NULL,
    explanation_en  TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open',
    first_seen_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL
);
CREATE INDEX findings_by_date ON findings (service_date, severity, rule_id);
"#,
    // The auditor application (store/casework.rs).
    r#"
CREATE INDEX findings_by_hospital ON findings (hospital_code, service_date);
CREATE INDEX findings_by_status ON findings (status, severity);
CREATE INDEX findings_by_patient ON findings (insured_id);
CREATE TABLE users (
    username        TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    hospital_code   TEXT,
    password_hash   TEXT NOT NULL,
    failed_logins   BIGINT NOT NULL DEFAULT 0,
    locked_until_ms BIGINT,
    created_at_ms   BIGINT NOT NULL
);
CREATE TABLE web_sessions (
    token_hash    TEXT PRIMARY KEY,
    username      TEXT NOT NULL REFERENCES users (username),
    csrf_token    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE finding_events (
    event_id        BIGSERIAL PRIMARY KEY,
    finding_id      TEXT NOT NULL,
    action          TEXT NOT NULL,
    from_status     TEXT NOT NULL,
    to_status       TEXT NOT NULL,
    actor           TEXT NOT NULL,
    actor_role      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    amount_fen      BIGINT,
    attachment_name TEXT,
    attachment      BYTEA,
    at_ms           BIGINT NOT NULL
);
CREATE INDEX finding_events_by_finding ON finding_events (finding_id, event_id);
CREATE FUNCTION wuding_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$;
CREATE TRIGGER finding_events_append_only BEFORE UPDATE OR DELETE ON finding_events
FOR EACH ROW EXECUTE FUNCTION wuding_append_only();
CREATE TABLE audit_trail (
    entry_id BIGSERIAL PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    reason   TEXT NOT NULL
);
CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE ON audit_trail
FOR EACH ROW EXECUTE FUNCTION wuding_append_only();
CREATE TABLE hospital_months (
    hospital_code     TEXT NOT NULL,
    month             TEXT NOT NULL,
    attested_sessions BIGINT NOT NULL,
    fallback_sessions BIGINT NOT NULL,
    attested_patients BIGINT NOT NULL,
    claimed_lines     BIGINT NOT NULL,
    claimed_fen       BIGINT NOT NULL,
    claimed_patients  BIGINT NOT NULL,
    phantom_claims    BIGINT NOT NULL,
    phantom_fen       BIGINT NOT NULL,
    red               BIGINT NOT NULL,
    yellow            BIGINT NOT NULL,
    green             BIGINT NOT NULL,
    findings_fen      BIGINT NOT NULL,
    PRIMARY KEY (month, hospital_code)
);
CREATE TABLE rulesets (
    version TEXT PRIMARY KEY,
    toml    TEXT NOT NULL,
    author  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // The findings list at national scale: an index per common filter in
    // the list's order, and totals per month, hospital, rule, severity and
    // status (kept by reconciliation runs and workflow steps).
    r#"
ALTER TABLE findings ADD COLUMN severity_rank SMALLINT GENERATED ALWAYS AS
    (CASE severity WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 WHEN 'green' THEN 2 ELSE 3 END) STORED;
CREATE INDEX findings_by_rank ON findings (severity_rank, amount_fen DESC, finding_id);
CREATE INDEX findings_by_rule_rank ON findings (rule_id, severity_rank, amount_fen DESC, finding_id);
CREATE INDEX findings_by_status_rank ON findings (status, severity_rank, amount_fen DESC, finding_id);
CREATE INDEX findings_by_amount ON findings (amount_fen DESC, finding_id);
CREATE INDEX findings_by_day ON findings (service_date, finding_id);
CREATE INDEX findings_by_day_severity ON findings (service_date, severity, amount_fen);
CREATE INDEX findings_by_status_amount ON findings (status, amount_fen DESC, finding_id);
CREATE TABLE finding_totals (
    month         TEXT NOT NULL,
    hospital_code TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    severity      TEXT NOT NULL,
    status        TEXT NOT NULL,
    findings      BIGINT NOT NULL,
    amount_fen    BIGINT NOT NULL,
    PRIMARY KEY (month, hospital_code, rule_id, severity, status)
);
"#,
    // The drill-down's patient level (as in SQLite).
    r#"
CREATE TABLE patient_months (
    patient_ref       TEXT NOT NULL,
    insured_id        TEXT NOT NULL,
    hospital_code     TEXT NOT NULL,
    month             TEXT NOT NULL,
    attested_sessions BIGINT NOT NULL,
    fallback_sessions BIGINT NOT NULL,
    attested_patients BIGINT NOT NULL,
    claimed_lines     BIGINT NOT NULL,
    claimed_fen       BIGINT NOT NULL,
    claimed_patients  BIGINT NOT NULL,
    phantom_claims    BIGINT NOT NULL,
    phantom_fen       BIGINT NOT NULL,
    red               BIGINT NOT NULL,
    yellow            BIGINT NOT NULL,
    green             BIGINT NOT NULL,
    findings_fen      BIGINT NOT NULL,
    PRIMARY KEY (hospital_code, month, insured_id)
);
CREATE INDEX patient_months_by_ref ON patient_months (patient_ref, month);
CREATE INDEX patient_months_by_month ON patient_months (month, hospital_code);
"#,
    // The patient level again, keyed for its two reads: one month in
    // a region ranked by money (`patient_months_by_money`, no sorting of
    // the whole month), and months summed per patient of a hospital (the
    // primary key, grouped in key order). Its rows are derived: the next
    // reconciliation run writes them again.
    r#"
DROP TABLE patient_months;
CREATE TABLE patient_months (
    patient_ref       TEXT NOT NULL,
    insured_id        TEXT NOT NULL,
    hospital_code     TEXT NOT NULL,
    month             TEXT NOT NULL,
    attested_sessions BIGINT NOT NULL,
    fallback_sessions BIGINT NOT NULL,
    attested_patients BIGINT NOT NULL,
    claimed_lines     BIGINT NOT NULL,
    claimed_fen       BIGINT NOT NULL,
    claimed_patients  BIGINT NOT NULL,
    phantom_claims    BIGINT NOT NULL,
    phantom_fen       BIGINT NOT NULL,
    red               BIGINT NOT NULL,
    yellow            BIGINT NOT NULL,
    green             BIGINT NOT NULL,
    findings_fen      BIGINT NOT NULL,
    PRIMARY KEY (hospital_code, insured_id, month)
);
CREATE INDEX patient_months_by_ref ON patient_months (patient_ref, month);
CREATE INDEX patient_months_by_month ON patient_months (month, hospital_code);
CREATE INDEX patient_months_by_money ON patient_months (month, findings_fen DESC, patient_ref);
"#,
    // What reconciliation reads of each accepted session record, kept
    // beside it (see the SQLite store): written from the log after the
    // records are in (`Store::catch_up_sessions`).
    r#"
CREATE TABLE attested_sessions (
    service_date       TEXT NOT NULL,
    insured_id         TEXT COLLATE "C" NOT NULL,
    record_id          BYTEA NOT NULL,
    received_at_ms     BIGINT NOT NULL,
    terminal_id        TEXT NOT NULL,
    signed_at_ms       BIGINT NOT NULL,
    utc_offset_min     SMALLINT NOT NULL,
    hospital_code      TEXT NOT NULL,
    department_code    TEXT NOT NULL,
    nurse_id           TEXT NOT NULL,
    doctor_id          TEXT NOT NULL,
    kind               TEXT NOT NULL,
    drug_code          TEXT,
    dose_milli         BIGINT,
    dose_unit          TEXT,
    check_in_ms        BIGINT NOT NULL,
    check_in_fallback  TEXT,
    check_out_ms       BIGINT,
    check_out_fallback TEXT,
    closure            TEXT NOT NULL,
    charge_fen         BIGINT NOT NULL,
    PRIMARY KEY (service_date, insured_id, record_id)
);
"#,
    // When each finding was last produced, in a narrow table of its own
    // (see the SQLite store).
    r#"
CREATE TABLE finding_seen (
    finding_id   TEXT PRIMARY KEY,
    last_seen_ms BIGINT NOT NULL
);
INSERT INTO finding_seen SELECT finding_id, last_seen_ms FROM findings;
"#,
    // Reconciliation reads a period's sessions from `attested_sessions`:
    // no query looks records up by date any more, and ingest maintains one
    // index fewer.
    r#"
DROP INDEX IF EXISTS records_by_date;
"#,
    // How far `attested_sessions` has caught up with the log (see the
    // SQLite store).
    r#"
CREATE TABLE attested_sessions_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    log_index BIGINT NOT NULL
);
INSERT INTO attested_sessions_head (id, log_index)
SELECT 1, CASE WHEN EXISTS (SELECT 1 FROM attested_sessions)
               THEN (SELECT COALESCE(MAX(log_index), -1) FROM records) ELSE -1 END;
"#,
];

const ALARM_COLUMNS: &str = "terminal_id, kind, seq, record_id, detail, at_ms, hospital_code, service_date, \
     measured_ms, missing_from, missing_to, other_record_id";

fn alarm_from(r: &postgres::Row) -> Result<Alarm, StoreError> {
    let (from, to): (Option<i64>, Option<i64>) = (r.get(9), r.get(10));
    Ok(Alarm {
        terminal_id: r.get(0),
        kind: r.get(1),
        seq: r.get::<_, Option<i64>>(2).map(|s| s as u64),
        record_id: r.get::<_, Option<Vec<u8>>>(3).map(id_from).transpose()?,
        detail: r.get(4),
        at_ms: r.get(5),
        hospital_code: r.get(6),
        service_date: r.get(7),
        measured_ms: r.get(8),
        missing: from.zip(to).map(|(a, b)| (a as u64, b as u64)),
        other_record_id: r.get::<_, Option<Vec<u8>>>(11).map(id_from).transpose()?,
    })
}

fn split_list(s: String) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(';').map(str::to_owned).collect()
    }
}

fn finding_from(r: &postgres::Row) -> Result<FindingRow, StoreError> {
    Ok(FindingRow {
        id: r.get(0),
        rule_id: r.get(1),
        ruleset_version: r.get(2),
        severity: r.get(3),
        service_date: r.get(4),
        subject_type: r.get(5),
        subject_id: r.get(6),
        hospital_code: r.get(7),
        insured_id: r.get(8),
        claim_ids: split_list(r.get(9)),
        record_ids: split_list(r.get(10)),
        amount_fen: r.get::<_, i64>(11) as u64,
        params: serde_json::from_str(r.get(12))
            .map_err(|_| StoreError::Corrupt("finding params"))?,
        explanation_zh: r.get(13),
        explanation_en: r.get(14),
        status: r.get(15),
        first_seen_ms: r.get(16),
        last_seen_ms: r.get(17),
    })
}

pub struct PgStore {
    url: String,
    idle: Mutex<Vec<Client>>,
}

struct Pooled<'a> {
    store: &'a PgStore,
    client: Option<Client>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("client present until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("client present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.store
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
        }
    }
}

/// The migration that adds `attested_sessions`.
pub const ATTESTED_SESSIONS_MIGRATION: usize = 7;

/// Writes the facts of accepted session records in one statement.
fn insert_attested_sessions(
    tx: &mut postgres::Transaction<'_>,
    rows: &[super::NewSession],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&super::NewSession) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(f).collect()
    };
    let int = |f: &dyn Fn(&super::NewSession) -> Option<i64>| -> Vec<Option<i64>> {
        rows.iter().map(f).collect()
    };
    let dates = col(&|r| Some(r.service_date.clone()));
    let insured = col(&|r| Some(r.facts.insured_id.as_str().to_owned()));
    let ids: Vec<&[u8]> = rows.iter().map(|r| r.record_id.0.as_slice()).collect();
    let received = int(&|r| Some(r.received_at_ms));
    let terminals = col(&|r| Some(r.facts.terminal_id.as_str().to_owned()));
    let signed = int(&|r| Some(r.facts.signed_at_ms));
    let offsets: Vec<i16> = rows.iter().map(|r| r.facts.utc_offset_min).collect();
    let hospitals = col(&|r| Some(r.facts.hospital_code.as_str().to_owned()));
    let departments = col(&|r| Some(r.facts.department_code.as_str().to_owned()));
    let nurses = col(&|r| Some(r.facts.nurse_id.as_str().to_owned()));
    let doctors = col(&|r| Some(r.facts.doctor_id.as_str().to_owned()));
    let kinds = col(&|r| Some(r.facts.kind.code().to_owned()));
    let drugs = col(&|r| r.facts.drug_code.as_deref().map(str::to_owned));
    let dose_milli = int(&|r| r.facts.dose.as_ref().map(|d| d.amount_milli as i64));
    let dose_unit = col(&|r| r.facts.dose.as_ref().map(|d| d.unit.clone()));
    let check_in = int(&|r| Some(r.facts.check_in.at_ms));
    let check_in_fallback = col(&|r| r.facts.check_in.fallback.map(|f| f.code().to_owned()));
    let check_out = int(&|r| r.facts.check_out.map(|o| o.at_ms));
    let check_out_fallback = col(&|r| {
        r.facts
            .check_out
            .and_then(|o| o.fallback)
            .map(|f| f.code().to_owned())
    });
    let closures = col(&|r| Some(super::closure_code(r.facts.closure).to_owned()));
    let charges = int(&|r| Some(r.facts.charge_fen as i64));
    tx.execute(
        "INSERT INTO attested_sessions (service_date, insured_id, record_id, received_at_ms,
            terminal_id, signed_at_ms, utc_offset_min, hospital_code, department_code, nurse_id,
            doctor_id, kind, drug_code, dose_milli, dose_unit, check_in_ms, check_in_fallback,
            check_out_ms, check_out_fallback, closure, charge_fen)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[], $5::text[],
            $6::int8[], $7::int2[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::int8[], $15::text[], $16::int8[], $17::text[], $18::int8[],
            $19::text[], $20::text[], $21::int8[])",
        &[
            &dates,
            &insured,
            &ids,
            &received,
            &terminals,
            &signed,
            &offsets,
            &hospitals,
            &departments,
            &nurses,
            &doctors,
            &kinds,
            &drugs,
            &dose_milli,
            &dose_unit,
            &check_in,
            &check_in_fallback,
            &check_out,
            &check_out_fallback,
            &closures,
            &charges,
        ],
    )?;
    Ok(())
}

impl PgStore {
    /// Connects and applies migrations (under an advisory lock, so replicas
    /// starting together migrate once).
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        let mut tx = client.transaction()?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7302811);
             CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
        )?;
        let version: i32 = tx
            .query_opt("SELECT version FROM schema_version", &[])?
            .map(|r| r.get(0))
            .unwrap_or(0);
        for m in MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(m)?;
        }
        tx.execute("DELETE FROM schema_version", &[])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(MIGRATIONS.len() as i32)],
        )?;
        tx.commit()?;
        Ok(PgStore {
            url: url.to_owned(),
            idle: Mutex::new(vec![client]),
        })
    }

    fn client(&self) -> Result<Pooled<'_>, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let client = match idle {
            Some(c) => c,
            None => Client::connect(&self.url, NoTls)?,
        };
        Ok(Pooled {
            store: self,
            client: Some(client),
        })
    }

    /// The claim lines matching a WHERE clause (`$1`, ... bound to `values`).
    pub(crate) fn claims_where(
        &self,
        clause: &str,
        values: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ClaimLine>, StoreError> {
        self.client()?
            .query(
                &format!(
                    "SELECT claim_id, insured_id, hospital_code, department_code, doctor_id, service_date,
                            service_code, service_kind, quantity, amount_fen, drug_code, dose_milli, dose_unit
                     FROM claims WHERE {clause}"
                ),
                values,
            )?
            .into_iter()
            .map(|r| {
                let date: String = r.get(5);
                let kind: String = r.get(7);
                let dose_milli: Option<i64> = r.get(11);
                let dose_unit: Option<String> = r.get(12);
                Ok(ClaimLine {
                    claim_id: r.get::<_, &str>(0).into(),
                    insured_id: r.get::<_, &str>(1).into(),
                    hospital_code: r.get::<_, &str>(2).into(),
                    department_code: r.get::<_, &str>(3).into(),
                    doctor_id: r.get::<_, &str>(4).into(),
                    service_date: date
                        .parse()
                        .map_err(|_| StoreError::Corrupt("claim date"))?,
                    service_code: r.get::<_, &str>(6).into(),
                    service_kind: TreatmentKind::from_code(&kind)
                        .ok_or(StoreError::Corrupt("claim kind"))?,
                    quantity: r.get::<_, i64>(8) as u32,
                    amount_fen: r.get::<_, i64>(9) as u64,
                    drug_code: r.get::<_, Option<&str>>(10).map(Code::from),
                    dose: dose_milli.zip(dose_unit).map(|(m, unit)| Dose {
                        amount_milli: m as u64,
                        unit,
                    }),
                })
            })
            .collect()
    }
}

fn id_from(bytes: Vec<u8>) -> Result<RecordId, StoreError> {
    Ok(RecordId(
        bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("record id"))?,
    ))
}

const TERMINAL_COLUMNS: &str = "terminal_id, hospital_code, department_code, public_key, key_id, status, \
     requested_at_ms, approved_at_ms, revoked_at_ms, revoked_at_seq, last_contact_ms";

const RECORD_COLUMNS: &str = "record_id, terminal_id, seq, record_type, key_id, payload, signature, signed_at_ms, \
     received_at_ms, hospital_code, insured_id, service_date, kind";

fn terminal_from(r: &postgres::Row) -> Result<TerminalRow, StoreError> {
    let key: Vec<u8> = r.get(3);
    Ok(TerminalRow {
        terminal_id: r.get(0),
        hospital_code: r.get(1),
        department_code: r.get(2),
        public_key: key
            .try_into()
            .map_err(|_| StoreError::Corrupt("public key"))?,
        key_id: r.get(4),
        status: r.get(5),
        requested_at_ms: r.get(6),
        approved_at_ms: r.get(7),
        revoked_at_ms: r.get(8),
        revoked_at_seq: r.get::<_, Option<i64>>(9).map(|s| s as u64),
        last_contact_ms: r.get(10),
    })
}

fn record_from(r: &postgres::Row) -> Result<RecordRow, StoreError> {
    let sig: Vec<u8> = r.get(6);
    Ok(RecordRow {
        record_id: id_from(r.get(0))?,
        terminal_id: r.get(1),
        seq: r.get::<_, i64>(2) as u64,
        record_type: r.get(3),
        key_id: r.get(4),
        payload: r.get(5),
        signature: sig
            .try_into()
            .map_err(|_| StoreError::Corrupt("signature"))?,
        signed_at_ms: r.get(7),
        received_at_ms: r.get(8),
        hospital_code: r.get(9),
        insured_id: r.get(10),
        service_date: r.get(11),
        kind: r.get(12),
    })
}

struct PgTx<'a> {
    tx: Transaction<'a>,
    /// The log size, read (and locked) once per transaction and written
    /// back at commit.
    log_size: Option<i64>,
    /// Accepted records not yet sent: written in one statement per
    /// transaction (before any read of `records`, and at commit) instead of
    /// one round trip each.
    pending: Vec<(RecordRow, i64)>,
}

impl PgTx<'_> {
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let ids: Vec<&[u8]> = rows.iter().map(|(r, _)| r.record_id.0.as_slice()).collect();
        let terminals: Vec<&str> = rows.iter().map(|(r, _)| r.terminal_id.as_str()).collect();
        let seqs: Vec<i64> = rows.iter().map(|(r, _)| r.seq as i64).collect();
        let types: Vec<&str> = rows.iter().map(|(r, _)| r.record_type.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|(r, _)| r.key_id.as_str()).collect();
        let payloads: Vec<&[u8]> = rows.iter().map(|(r, _)| r.payload.as_slice()).collect();
        let sigs: Vec<&[u8]> = rows.iter().map(|(r, _)| r.signature.as_slice()).collect();
        let signed: Vec<i64> = rows.iter().map(|(r, _)| r.signed_at_ms).collect();
        let received: Vec<i64> = rows.iter().map(|(r, _)| r.received_at_ms).collect();
        let hospitals: Vec<&str> = rows.iter().map(|(r, _)| r.hospital_code.as_str()).collect();
        let insured: Vec<&str> = rows.iter().map(|(r, _)| r.insured_id.as_str()).collect();
        let dates: Vec<&str> = rows.iter().map(|(r, _)| r.service_date.as_str()).collect();
        let kinds: Vec<Option<&str>> = rows.iter().map(|(r, _)| r.kind.as_deref()).collect();
        let indexes: Vec<i64> = rows.iter().map(|(_, i)| *i).collect();
        self.tx.execute(
            &format!(
                "INSERT INTO records ({RECORD_COLUMNS}, log_index)
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::int8[], $4::text[], $5::text[],
                    $6::bytea[], $7::bytea[], $8::int8[], $9::int8[], $10::text[], $11::text[],
                    $12::text[], $13::text[], $14::int8[])"
            ),
            &[
                &ids, &terminals, &seqs, &types, &keys, &payloads, &sigs, &signed, &received,
                &hospitals, &insured, &dates, &kinds, &indexes,
            ],
        )?;
        Ok(())
    }

    fn insert_row(
        &mut self,
        table: &str,
        row: &RecordRow,
        log_index: Option<u64>,
    ) -> Result<(), StoreError> {
        let seq = row.seq as i64;
        let id = row.record_id.0.as_slice();
        let sig = row.signature.as_slice();
        let mut values: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
            &id,
            &row.terminal_id,
            &seq,
            &row.record_type,
            &row.key_id,
            &row.payload,
            &sig,
            &row.signed_at_ms,
            &row.received_at_ms,
            &row.hospital_code,
            &row.insured_id,
            &row.service_date,
            &row.kind,
        ];
        let index = log_index.map(|i| i as i64);
        let sql = match &index {
            Some(i) => {
                values.push(i);
                format!(
                    "INSERT INTO {table} ({RECORD_COLUMNS}, log_index) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
                )
            }
            None => format!(
                "INSERT INTO {table} ({RECORD_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT DO NOTHING"
            ),
        };
        self.tx.execute(sql.as_str(), &values)?;
        Ok(())
    }
}

impl Tx for PgTx<'_> {
    fn chain_head(&mut self, terminal_id: &str) -> Result<(u64, RecordId), StoreError> {
        self.tx.execute(
            "INSERT INTO chain_heads (terminal_id, seq, record_id) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
            &[&terminal_id, &RecordId::GENESIS.0.as_slice()],
        )?;
        let row = self.tx.query_one(
            "SELECT seq, record_id FROM chain_heads WHERE terminal_id = $1 FOR UPDATE",
            &[&terminal_id],
        )?;
        Ok((row.get::<_, i64>(0) as u64, id_from(row.get(1))?))
    }

    fn set_chain_head(
        &mut self,
        terminal_id: &str,
        seq: u64,
        id: RecordId,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE chain_heads SET seq = $2, record_id = $3 WHERE terminal_id = $1",
            &[&terminal_id, &(seq as i64), &id.0.as_slice()],
        )?;
        Ok(())
    }

    fn record_at(
        &mut self,
        terminal_id: &str,
        seq: u64,
    ) -> Result<Option<(RecordId, u64)>, StoreError> {
        self.flush()?;
        self.tx
            .query_opt(
                "SELECT record_id, log_index FROM records WHERE terminal_id = $1 AND seq = $2",
                &[&terminal_id, &(seq as i64)],
            )?
            .map(|r| Ok((id_from(r.get(0))?, r.get::<_, i64>(1) as u64)))
            .transpose()
    }

    fn log_index_of(&mut self, id: &RecordId) -> Result<Option<u64>, StoreError> {
        self.flush()?;
        Ok(self
            .tx
            .query_opt(
                "SELECT log_index FROM records WHERE record_id = $1",
                &[&id.0.as_slice()],
            )?
            .map(|r| r.get::<_, i64>(0) as u64))
    }

    fn signed_at(&mut self, terminal_id: &str, seq: u64) -> Result<Option<i64>, StoreError> {
        self.flush()?;
        Ok(self
            .tx
            .query_opt(
                "SELECT signed_at_ms FROM records WHERE terminal_id = $1 AND seq = $2",
                &[&terminal_id, &(seq as i64)],
            )?
            .map(|r| r.get(0)))
    }

    fn append(&mut self, row: &RecordRow) -> Result<u64, StoreError> {
        // The log head is locked and read once per transaction, and written
        // back once at commit (another replica waits on the lock).
        let size = match self.log_size {
            Some(size) => size,
            None => self
                .tx
                .query_one("SELECT size FROM log_head WHERE id = 1 FOR UPDATE", &[])?
                .get(0),
        };
        self.pending.push((row.clone(), size));
        self.log_size = Some(size + 1);
        Ok(size as u64)
    }

    fn alarm(&mut self, a: &Alarm) -> Result<(), StoreError> {
        let record_id = a.record_id.map(|r| r.0.to_vec());
        let other = a.other_record_id.map(|r| r.0.to_vec());
        self.tx.execute(
            &format!("INSERT INTO alarms ({ALARM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
            &[
                &a.terminal_id,
                &a.kind,
                &a.seq.map(|s| s as i64),
                &record_id,
                &a.detail,
                &a.at_ms,
                &a.hospital_code,
                &a.service_date,
                &a.measured_ms,
                &a.missing.map(|m| m.0 as i64),
                &a.missing.map(|m| m.1 as i64),
                &other,
            ],
        )?;
        Ok(())
    }

    fn hold(&mut self, row: &RecordRow) -> Result<(), StoreError> {
        self.insert_row("held_records", row, None)
    }

    fn held(&mut self, terminal_id: &str) -> Result<Vec<RecordRow>, StoreError> {
        self.flush()?;
        self.tx
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM held_records WHERE terminal_id = $1 ORDER BY seq"
                ),
                &[&terminal_id],
            )?
            .iter()
            .map(record_from)
            .collect()
    }

    fn unhold(&mut self, id: &RecordId) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM held_records WHERE record_id = $1",
            &[&id.0.as_slice()],
        )?;
        Ok(())
    }

    fn touch_terminal(&mut self, terminal_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE terminals SET last_contact_ms = $2 WHERE terminal_id = $1",
            &[&terminal_id, &now_ms],
        )?;
        Ok(())
    }
}

impl Store for PgStore {
    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let tx = client.transaction()?;
        let mut t = PgTx {
            tx,
            log_size: None,
            pending: Vec::new(),
        };
        f(&mut t)?;
        t.flush()?;
        if let Some(size) = t.log_size {
            t.tx.execute("UPDATE log_head SET size = $1 WHERE id = 1", &[&size])?;
        }
        t.tx.commit()?;
        Ok(())
    }

    fn register_terminal(&self, t: &TerminalRow) -> Result<(), StoreError> {
        let n = self.client()?.execute(
            &format!(
                "INSERT INTO terminals ({TERMINAL_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING"
            ),
            &[
                &t.terminal_id,
                &t.hospital_code,
                &t.department_code,
                &t.public_key.as_slice(),
                &t.key_id,
                &t.status,
                &t.requested_at_ms,
                &t.approved_at_ms,
                &t.revoked_at_ms,
                &t.revoked_at_seq.map(|s| s as i64),
                &t.last_contact_ms,
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "terminal {} or its key is already registered",
                t.terminal_id
            )));
        }
        Ok(())
    }

    fn terminal(&self, terminal_id: &str) -> Result<Option<TerminalRow>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE terminal_id = $1"),
                &[&terminal_id],
            )?
            .as_ref()
            .map(terminal_from)
            .transpose()
    }

    fn terminal_by_key(&self, key_id: &str) -> Result<Option<TerminalRow>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE key_id = $1"),
                &[&key_id],
            )?
            .as_ref()
            .map(terminal_from)
            .transpose()
    }

    fn terminals(&self) -> Result<Vec<TerminalRow>, StoreError> {
        self.client()?
            .query(
                &format!("SELECT {TERMINAL_COLUMNS} FROM terminals ORDER BY terminal_id"),
                &[],
            )?
            .iter()
            .map(terminal_from)
            .collect()
    }

    fn approve_terminal(&self, terminal_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let n = self.client()?.execute(
            "UPDATE terminals SET status = 'approved', approved_at_ms = $2 WHERE terminal_id = $1 AND status = 'pending'",
            &[&terminal_id, &now_ms],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "a pending terminal {terminal_id}"
            )));
        }
        Ok(())
    }

    fn revoke_terminal(&self, terminal_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let n = self.client()?.execute(
            "UPDATE terminals SET status = 'revoked', revoked_at_ms = $2,
                revoked_at_seq = COALESCE((SELECT seq FROM chain_heads WHERE terminal_id = $1), 0)
             WHERE terminal_id = $1 AND status <> 'revoked'",
            &[&terminal_id, &now_ms],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "an unrevoked terminal {terminal_id}"
            )));
        }
        Ok(())
    }

    fn use_nonce(
        &self,
        key_id: &str,
        nonce: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut c = self.client()?;
        c.execute("DELETE FROM nonces WHERE expires_ms < $1", &[&now_ms])?;
        let n = c.execute(
            "INSERT INTO nonces (key_id, nonce, expires_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&key_id, &nonce, &expires_ms],
        )?;
        Ok(n == 1)
    }

    fn log_leaves(&self, from: u64) -> Result<Vec<RecordId>, StoreError> {
        self.client()?
            .query(
                "SELECT record_id FROM records WHERE log_index >= $1 ORDER BY log_index",
                &[&(from as i64)],
            )?
            .into_iter()
            .map(|r| id_from(r.get(0)))
            .collect()
    }

    fn record(&self, id: &RecordId) -> Result<Option<(RecordRow, u64)>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {RECORD_COLUMNS}, log_index FROM records WHERE record_id = $1"),
                &[&id.0.as_slice()],
            )?
            .map(|r| Ok((record_from(&r)?, r.get::<_, i64>(13) as u64)))
            .transpose()
    }

    fn records_of(&self, terminal_id: &str) -> Result<Vec<RecordRow>, StoreError> {
        self.client()?
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE terminal_id = $1 ORDER BY seq"
                ),
                &[&terminal_id],
            )?
            .iter()
            .map(record_from)
            .collect()
    }

    fn alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        self.client()?
            .query(
                &format!("SELECT {ALARM_COLUMNS} FROM alarms ORDER BY id"),
                &[],
            )?
            .iter()
            .map(alarm_from)
            .collect()
    }

    fn held_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .client()?
            .query_one("SELECT COUNT(*) FROM held_records", &[])?
            .get::<_, i64>(0) as u64)
    }

    fn insert_claims(&self, lines: &[ClaimLine], source: &str) -> Result<u64, StoreError> {
        use std::io::Write;
        // COPY into a temporary table, then one INSERT ... ON CONFLICT DO
        // NOTHING: one round trip per batch instead of one per line.
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.batch_execute("CREATE TEMP TABLE claims_in (LIKE claims) ON COMMIT DROP")?;
        {
            let mut writer = tx.copy_in(
                "COPY claims_in (claim_id, insured_id, hospital_code, department_code, doctor_id, service_date,
                    service_code, service_kind, quantity, amount_fen, drug_code, dose_milli, dose_unit, source)
                 FROM STDIN WITH (FORMAT csv)",
            )?;
            let mut csv = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::with_capacity(1 << 20));
            for l in lines {
                let dose_milli = l
                    .dose
                    .as_ref()
                    .map(|d| d.amount_milli.to_string())
                    .unwrap_or_default();
                let dose_unit = l.dose.as_ref().map(|d| d.unit.clone()).unwrap_or_default();
                csv.write_record([
                    l.claim_id.as_str(),
                    &l.insured_id,
                    &l.hospital_code,
                    &l.department_code,
                    &l.doctor_id,
                    &l.service_date.to_string(),
                    &l.service_code,
                    l.service_kind.code(),
                    &l.quantity.to_string(),
                    &l.amount_fen.to_string(),
                    l.drug_code.as_deref().unwrap_or(""),
                    &dose_milli,
                    &dose_unit,
                    source,
                ])
                .map_err(|_| StoreError::Corrupt("claim row"))?;
            }
            let bytes = csv
                .into_inner()
                .map_err(|_| StoreError::Corrupt("claim rows"))?;
            writer
                .write_all(&bytes)
                .map_err(|_| StoreError::Corrupt("COPY stream"))?;
            writer.finish()?;
        }
        // Empty CSV fields arrive as NULL for the optional columns.
        let inserted = tx.execute(
            "INSERT INTO claims SELECT * FROM claims_in ON CONFLICT DO NOTHING",
            &[],
        )?;
        tx.commit()?;
        Ok(inserted)
    }

    fn claim_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .client()?
            .query_one("SELECT COUNT(*) FROM claims", &[])?
            .get::<_, i64>(0) as u64)
    }

    fn put_roster_items(&self, items: &[RosterItem]) -> Result<u64, StoreError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let mut version: i64 = tx
            .query_one(
                "SELECT version FROM roster_head WHERE id = 1 FOR UPDATE",
                &[],
            )?
            .get(0);
        let mut changed = 0;
        for item in items {
            let old: Option<String> = tx
                .query_opt(
                    "SELECT body FROM roster_items WHERE hospital_code = $1 AND kind = $2 AND item_key = $3",
                    &[&item.hospital_code, &item.kind, &item.key],
                )?
                .map(|r| r.get(0));
            if old.as_deref() == Some(item.body.as_str()) {
                continue;
            }
            version += 1;
            changed += 1;
            tx.execute(
                "INSERT INTO roster_items (hospital_code, kind, item_key, body, version) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (hospital_code, kind, item_key) DO UPDATE SET body = excluded.body, version = excluded.version",
                &[&item.hospital_code, &item.kind, &item.key, &item.body, &version],
            )?;
        }
        tx.execute(
            "UPDATE roster_head SET version = $1 WHERE id = 1",
            &[&version],
        )?;
        tx.commit()?;
        Ok(changed)
    }

    fn roster_since(
        &self,
        hospital_code: &str,
        since: u64,
    ) -> Result<(Vec<RosterItem>, u64), StoreError> {
        let rows = self.client()?.query(
            "SELECT kind, item_key, body, version FROM roster_items WHERE hospital_code = $1 AND version > $2 ORDER BY version",
            &[&hospital_code, &(since as i64)],
        )?;
        let mut cursor = since;
        let items = rows
            .iter()
            .map(|r| {
                cursor = cursor.max(r.get::<_, i64>(3) as u64);
                RosterItem {
                    hospital_code: hospital_code.to_owned(),
                    kind: r.get(0),
                    key: r.get(1),
                    body: r.get(2),
                }
            })
            .collect();
        Ok((items, cursor))
    }

    fn roster_bodies(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT body FROM roster_items WHERE kind = $1 ORDER BY hospital_code, item_key",
                &[&kind],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn catch_up_sessions(&self) -> Result<u64, StoreError> {
        let mut added = 0u64;
        let mut client = self.client()?;
        loop {
            let mut tx = client.transaction()?;
            // Replicas catching up at once take turns on the head row.
            let head: i64 = tx
                .query_one(
                    "SELECT log_index FROM attested_sessions_head WHERE id = 1 FOR UPDATE",
                    &[],
                )?
                .get(0);
            let rows = tx.query(
                "SELECT log_index, record_id, received_at_ms, service_date, payload
                   FROM records WHERE log_index > $1 ORDER BY log_index LIMIT $2",
                &[&head, &super::CATCH_UP_BATCH],
            )?;
            let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
                return Ok(added);
            };
            let mut stored = Vec::with_capacity(rows.len());
            for r in &rows {
                stored.push((id_from(r.get(1))?, r.get(2), r.get(3), r.get(4)));
            }
            let new = super::facts_to_write(stored)?;
            added += new.len() as u64;
            insert_attested_sessions(&mut tx, &new)?;
            tx.execute(
                "UPDATE attested_sessions_head SET log_index = $1 WHERE id = 1",
                &[&last],
            )?;
            tx.commit()?;
        }
    }

    fn attested_sessions(
        &self,
        from: &str,
        to: &str,
        patients: &PatientRange,
    ) -> Result<Vec<AttestedSession>, StoreError> {
        self.catch_up_sessions()?;
        let (range, values) = patients.sql("insured_id", "$", &[from, to]);
        let values: Vec<&(dyn postgres::types::ToSql + Sync)> =
            values.iter().map(|v| v as _).collect();
        let mut client = self.client()?;
        let mut rows = client.query_raw(
            &format!(
                "SELECT {STORED_SESSION_COLUMNS} FROM attested_sessions
                 WHERE service_date BETWEEN $1 AND $2{range}"
            ),
            values,
        )?;
        let mut sessions = Vec::new();
        while let Some(r) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
            sessions.push(
                super::StoredSession {
                    record_id: r.get(0),
                    received_at_ms: r.get(1),
                    terminal_id: r.get(2),
                    signed_at_ms: r.get(3),
                    utc_offset_min: r.get(4),
                    hospital_code: r.get(5),
                    department_code: r.get(6),
                    insured_id: r.get(7),
                    nurse_id: r.get(8),
                    doctor_id: r.get(9),
                    kind: r.get(10),
                    drug_code: r.get(11),
                    dose_milli: r.get(12),
                    dose_unit: r.get(13),
                    check_in_ms: r.get(14),
                    check_in_fallback: r.get(15),
                    check_out_ms: r.get(16),
                    check_out_fallback: r.get(17),
                    closure: r.get(18),
                    charge_fen: r.get(19),
                }
                .session()?,
            );
        }
        Ok(sessions)
    }

    fn claims_between(&self, from: &str, to: &str) -> Result<Vec<ClaimLine>, StoreError> {
        self.claims_where("service_date BETWEEN $1 AND $2", &[&from, &to])
    }

    fn claims_of_patients(
        &self,
        from: &str,
        to: &str,
        patients: &PatientRange,
    ) -> Result<Vec<ClaimLine>, StoreError> {
        let (range, values) = patients.sql("insured_id COLLATE \"C\"", "$", &[from, to]);
        let values: Vec<&(dyn postgres::types::ToSql + Sync)> =
            values.iter().map(|v| v as _).collect();
        self.claims_where(&format!("service_date BETWEEN $1 AND $2{range}"), &values)
    }

    fn alarms_between(&self, from: &str, to: &str) -> Result<Vec<Alarm>, StoreError> {
        self.client()?
            .query(
                &format!(
                    "SELECT {ALARM_COLUMNS} FROM alarms
                     WHERE service_date IS NULL OR service_date BETWEEN $1 AND $2 ORDER BY id"
                ),
                &[&from, &to],
            )?
            .iter()
            .map(alarm_from)
            .collect()
    }

    fn upsert_findings(
        &self,
        rows: &[FindingRow],
        now_ms: i64,
    ) -> Result<UpsertCounts, StoreError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let ids: Vec<&str> = rows.iter().map(|f| f.id.as_str()).collect();
        let mut old: std::collections::HashMap<String, FindingRow> = tx
            .query(
                &format!(
                    "SELECT {FINDING_COLUMNS} FROM findings WHERE finding_id = ANY($1) FOR UPDATE"
                ),
                &[&ids],
            )?
            .iter()
            .map(|r| finding_from(r).map(|f| (f.id.clone(), f)))
            .collect::<Result<_, _>>()?;
        let mut counts = UpsertCounts::default();
        let mut changed: Vec<&FindingRow> = Vec::new();
        for f in rows {
            match old.remove(&f.id) {
                Some(o) if super::same_finding(&o, f) => {
                    counts.unchanged += 1;
                    continue;
                }
                Some(_) => counts.updated += 1,
                None => counts.new += 1,
            }
            changed.push(f);
        }
        // One statement may not touch a row twice: of one id given twice,
        // the last wins (as it did row by row).
        let mut seen = std::collections::HashSet::new();
        changed.reverse();
        changed.retain(|f| seen.insert(f.id.as_str()));
        changed.reverse();
        // Every new or changed finding in one statement (arrays unnested
        // into rows) instead of one round trip each.
        let ids: Vec<&str> = changed.iter().map(|f| f.id.as_str()).collect();
        let rule_ids: Vec<&str> = changed.iter().map(|f| f.rule_id.as_str()).collect();
        let versions: Vec<&str> = changed.iter().map(|f| f.ruleset_version.as_str()).collect();
        let severities: Vec<&str> = changed.iter().map(|f| f.severity.as_str()).collect();
        let dates: Vec<Option<&str>> = changed.iter().map(|f| f.service_date.as_deref()).collect();
        let subject_types: Vec<&str> = changed.iter().map(|f| f.subject_type.as_str()).collect();
        let subject_ids: Vec<&str> = changed.iter().map(|f| f.subject_id.as_str()).collect();
        let hospitals: Vec<Option<&str>> =
            changed.iter().map(|f| f.hospital_code.as_deref()).collect();
        let insured: Vec<Option<&str>> = changed.iter().map(|f| f.insured_id.as_deref()).collect();
        let claim_ids: Vec<String> = changed.iter().map(|f| f.claim_ids.join(";")).collect();
        let record_ids: Vec<String> = changed.iter().map(|f| f.record_ids.join(";")).collect();
        let amounts: Vec<i64> = changed.iter().map(|f| f.amount_fen as i64).collect();
        let params: Vec<String> = changed
            .iter()
            .map(|f| serde_json::to_string(&f.params).unwrap_or_default())
            .collect();
        let zh: Vec<&str> = changed.iter().map(|f| f.explanation_zh.as_str()).collect();
        let en: Vec<&str> = changed.iter().map(|f| f.explanation_en.as_str()).collect();
        if !changed.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO findings ({FINDING_INSERT_COLUMNS})
                     SELECT u.*, 'open', $16, $16 FROM unnest($1::text[], $2::text[], $3::text[],
                        $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                        $10::text[], $11::text[], $12::int8[], $13::text[], $14::text[], $15::text[]) AS u
                     {FINDING_UPSERT_CONFLICT}"
                ),
                &[
                    &ids,
                    &rule_ids,
                    &versions,
                    &severities,
                    &dates,
                    &subject_types,
                    &subject_ids,
                    &hospitals,
                    &insured,
                    &claim_ids,
                    &record_ids,
                    &amounts,
                    &params,
                    &zh,
                    &en,
                    &now_ms,
                ],
            )?;
        }
        // Every finding of the run, changed or not, was seen now.
        let seen: Vec<&str> = rows.iter().map(|f| f.id.as_str()).collect();
        tx.execute(
            "INSERT INTO finding_seen (finding_id, last_seen_ms)
             SELECT DISTINCT id, $2::int8 FROM unnest($1::text[]) AS id
             ON CONFLICT (finding_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
            &[&seen, &now_ms],
        )?;
        tx.commit()?;
        Ok(counts)
    }

    fn findings(&self, filter: &FindingFilter) -> Result<Vec<FindingRow>, StoreError> {
        self.client()?
            .query(
                &format!(
                    "SELECT {FINDING_COLUMNS} FROM findings
                     WHERE ($1::text IS NULL OR service_date IS NULL OR service_date >= $1)
                       AND ($2::text IS NULL OR service_date IS NULL OR service_date <= $2)
                       AND ($3::text IS NULL OR severity = $3)
                       AND ($4::text IS NULL OR rule_id = $4)
                     ORDER BY CASE severity WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 WHEN 'green' THEN 2 ELSE 3 END,
                              rule_id, finding_id"
                ),
                &[&filter.from, &filter.to, &filter.severity, &filter.rule_id],
            )?
            .iter()
            .map(finding_from)
            .collect()
    }
}
