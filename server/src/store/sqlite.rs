//! SQLite backend (rusqlite, bundled): the single-node default.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{
    Connection, OptionalExtension, Transaction, TransactionBehavior, params, params_from_iter,
};
use wuding_protocol::{ClaimLine, Date, RecordId};
use wuding_rules::{AttestedSession, SessionFacts};

mod casework;

use super::{
    Alarm, FindingFilter, FindingRow, PatientRange, RecordRow, RosterItem, Store, StoreError,
    TerminalRow, Tx, UpsertCounts,
};
use super::{FINDING_COLUMNS, FINDING_INSERT_COLUMNS, FINDING_UPSERT_CONFLICT};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE terminals (
    terminal_id     TEXT PRIMARY KEY,
    hospital_code   TEXT NOT NULL,
    department_code TEXT NOT NULL,
    public_key      BLOB NOT NULL UNIQUE,
    key_id          TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    approved_at_ms  INTEGER,
    revoked_at_ms   INTEGER,
    revoked_at_seq  INTEGER,
    last_contact_ms INTEGER
);
CREATE TABLE chain_heads (
    terminal_id TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    record_id   BLOB NOT NULL
);
CREATE TABLE records (
    record_id      BLOB PRIMARY KEY,
    terminal_id    TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    record_type    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    payload        BLOB NOT NULL,
    signature      BLOB NOT NULL,
    signed_at_ms   INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    log_index      INTEGER NOT NULL UNIQUE,
    hospital_code  TEXT NOT NULL,
    insured_id     TEXT NOT NULL,
    service_date   TEXT NOT NULL,
    kind           TEXT,
    UNIQUE (terminal_id, seq)
);
CREATE INDEX records_by_date ON records (service_date, hospital_code);
CREATE INDEX records_by_patient ON records (insured_id, service_date);
CREATE TABLE held_records (
    record_id      BLOB PRIMARY KEY,
    terminal_id    TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    record_type    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    payload        BLOB NOT NULL,
    signature      BLOB NOT NULL,
    signed_at_ms   INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    hospital_code  TEXT NOT NULL,
    insured_id     TEXT NOT NULL,
    service_date   TEXT NOT NULL,
    kind           TEXT
);
CREATE INDEX held_by_terminal ON held_records (terminal_id, seq);
CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO log_head (id, size) VALUES (1, 0);
CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    seq         INTEGER,
    record_id   BLOB,
    detail      TEXT NOT NULL,
    at_ms       INTEGER NOT NULL
);
CREATE TABLE nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
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
    quantity        INTEGER NOT NULL,
    amount_fen      INTEGER NOT NULL,
    drug_code       TEXT,
    dose_milli      INTEGER,
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
ALTER TABLE alarms ADD COLUMN measured_ms INTEGER;
ALTER TABLE alarms ADD COLUMN missing_from INTEGER;
ALTER TABLE alarms ADD COLUMN missing_to INTEGER;
ALTER TABLE alarms ADD COLUMN other_record_id BLOB;
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
    amount_fen      INTEGER NOT NULL,
    params          TEXT NOT NULL,
    explanation_zh  TEXT NOT NULL,
    explanation_en  TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open',
    first_seen_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL
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
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    created_at_ms   INTEGER NOT NULL
);
CREATE TABLE web_sessions (
    token_hash    TEXT PRIMARY KEY,
    username      TEXT NOT NULL REFERENCES users (username),
    csrf_token    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE finding_events (
    event_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    finding_id      TEXT NOT NULL,
    action          TEXT NOT NULL,
    from_status     TEXT NOT NULL,
    to_status       TEXT NOT NULL,
    actor           TEXT NOT NULL,
    actor_role      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    amount_fen      INTEGER,
    attachment_name TEXT,
    attachment      BLOB,
    at_ms           INTEGER NOT NULL
);
CREATE INDEX finding_events_by_finding ON finding_events (finding_id, event_id);
CREATE TRIGGER finding_events_no_update BEFORE UPDATE ON finding_events
BEGIN SELECT RAISE(ABORT, 'the case history is append-only'); END;
CREATE TRIGGER finding_events_no_delete BEFORE DELETE ON finding_events
BEGIN SELECT RAISE(ABORT, 'the case history is append-only'); END;
CREATE TABLE audit_trail (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    reason   TEXT NOT NULL
);
CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_trail_no_delete BEFORE DELETE ON audit_trail
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TABLE hospital_months (
    hospital_code     TEXT NOT NULL,
    month             TEXT NOT NULL,
    attested_sessions INTEGER NOT NULL,
    fallback_sessions INTEGER NOT NULL,
    attested_patients INTEGER NOT NULL,
    claimed_lines     INTEGER NOT NULL,
    claimed_fen       INTEGER NOT NULL,
    claimed_patients  INTEGER NOT NULL,
    phantom_claims    INTEGER NOT NULL,
    phantom_fen       INTEGER NOT NULL,
    red               INTEGER NOT NULL,
    yellow            INTEGER NOT NULL,
    green             INTEGER NOT NULL,
    findings_fen      INTEGER NOT NULL,
    PRIMARY KEY (month, hospital_code)
);
CREATE TABLE rulesets (
    version TEXT PRIMARY KEY,
    toml    TEXT NOT NULL,
    author  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
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
ALTER TABLE findings ADD COLUMN severity_rank INTEGER GENERATED ALWAYS AS
    (CASE severity WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 WHEN 'green' THEN 2 ELSE 3 END) VIRTUAL;
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
    findings      INTEGER NOT NULL,
    amount_fen    INTEGER NOT NULL,
    PRIMARY KEY (month, hospital_code, rule_id, severity, status)
);
"#,
    // The drill-down's patient level: figures per patient, hospital and
    // month, written by each reconciliation run.
    r#"
CREATE TABLE patient_months (
    patient_ref       TEXT NOT NULL,
    insured_id        TEXT NOT NULL,
    hospital_code     TEXT NOT NULL,
    month             TEXT NOT NULL,
    attested_sessions INTEGER NOT NULL,
    fallback_sessions INTEGER NOT NULL,
    attested_patients INTEGER NOT NULL,
    claimed_lines     INTEGER NOT NULL,
    claimed_fen       INTEGER NOT NULL,
    claimed_patients  INTEGER NOT NULL,
    phantom_claims    INTEGER NOT NULL,
    phantom_fen       INTEGER NOT NULL,
    red               INTEGER NOT NULL,
    yellow            INTEGER NOT NULL,
    green             INTEGER NOT NULL,
    findings_fen      INTEGER NOT NULL,
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
    attested_sessions INTEGER NOT NULL,
    fallback_sessions INTEGER NOT NULL,
    attested_patients INTEGER NOT NULL,
    claimed_lines     INTEGER NOT NULL,
    claimed_fen       INTEGER NOT NULL,
    claimed_patients  INTEGER NOT NULL,
    phantom_claims    INTEGER NOT NULL,
    phantom_fen       INTEGER NOT NULL,
    red               INTEGER NOT NULL,
    yellow            INTEGER NOT NULL,
    green             INTEGER NOT NULL,
    findings_fen      INTEGER NOT NULL,
    PRIMARY KEY (hospital_code, insured_id, month)
);
CREATE INDEX patient_months_by_ref ON patient_months (patient_ref, month);
CREATE INDEX patient_months_by_month ON patient_months (month, hospital_code);
CREATE INDEX patient_months_by_money ON patient_months (month, findings_fen DESC, patient_ref);
"#,
    // Claim lines kept in service-date order (a month reads as one range
    // of the table, not a lookup per line) with the claim id unique
    // beside it: one b-tree fewer to maintain per imported line than a
    // rowid table with its id, date and patient indexes.
    r#"
CREATE TABLE claims_by_day (
    claim_id        TEXT NOT NULL,
    insured_id      TEXT NOT NULL,
    hospital_code   TEXT NOT NULL,
    department_code TEXT NOT NULL,
    doctor_id       TEXT NOT NULL,
    service_date    TEXT NOT NULL,
    service_code    TEXT NOT NULL,
    service_kind    TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    amount_fen      INTEGER NOT NULL,
    drug_code       TEXT,
    dose_milli      INTEGER,
    dose_unit       TEXT,
    source          TEXT NOT NULL,
    PRIMARY KEY (service_date, claim_id)
) WITHOUT ROWID;
INSERT INTO claims_by_day SELECT * FROM claims;
DROP TABLE claims;
ALTER TABLE claims_by_day RENAME TO claims;
CREATE UNIQUE INDEX claims_by_id ON claims (claim_id);
CREATE INDEX claims_by_patient ON claims (insured_id, service_date);
"#,
    // What reconciliation reads of each accepted session record, kept
    // beside it in (day, patient) order: a range of patients over a period
    // reads as one contiguous run of rows per day, without decoding a
    // signed payload. Written from the log after the records are in
    // (`Store::catch_up_sessions`, up to `attested_sessions_head`). Claim
    // lines move to the same order.
    r#"
CREATE TABLE attested_sessions (
    service_date       TEXT NOT NULL,
    insured_id         TEXT NOT NULL,
    record_id          BLOB NOT NULL,
    received_at_ms     INTEGER NOT NULL,
    terminal_id        TEXT NOT NULL,
    signed_at_ms       INTEGER NOT NULL,
    utc_offset_min     INTEGER NOT NULL,
    hospital_code      TEXT NOT NULL,
    department_code    TEXT NOT NULL,
    nurse_id           TEXT NOT NULL,
    doctor_id          TEXT NOT NULL,
    kind               TEXT NOT NULL,
    drug_code          TEXT,
    dose_milli         INTEGER,
    dose_unit          TEXT,
    check_in_ms        INTEGER NOT NULL,
    check_in_fallback  TEXT,
    check_out_ms       INTEGER,
    check_out_fallback TEXT,
    closure            TEXT NOT NULL,
    charge_fen         INTEGER NOT NULL,
    PRIMARY KEY (service_date, insured_id, record_id)
) WITHOUT ROWID;
CREATE TABLE claims_by_patient_day (
    claim_id        TEXT NOT NULL,
    insured_id      TEXT NOT NULL,
    hospital_code   TEXT NOT NULL,
    department_code TEXT NOT NULL,
    doctor_id       TEXT NOT NULL,
    service_date    TEXT NOT NULL,
    service_code    TEXT NOT NULL,
    service_kind    TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    amount_fen      INTEGER NOT NULL,
    drug_code       TEXT,
    dose_milli      INTEGER,
    dose_unit       TEXT,
    source          TEXT NOT NULL,
    PRIMARY KEY (service_date, insured_id, claim_id)
) WITHOUT ROWID;
INSERT INTO claims_by_patient_day SELECT * FROM claims;
DROP TABLE claims;
ALTER TABLE claims_by_patient_day RENAME TO claims;
CREATE UNIQUE INDEX claims_by_id ON claims (claim_id);
CREATE INDEX claims_by_patient ON claims (insured_id, service_date);
"#,
    // When each finding was last produced, in a narrow table of its own:
    // a run that finds a finding unchanged rewrites one short row, not the
    // finding's.
    r#"
CREATE TABLE finding_seen (
    finding_id   TEXT PRIMARY KEY,
    last_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO finding_seen SELECT finding_id, last_seen_ms FROM findings;
"#,
    // Reconciliation reads a period's sessions from `attested_sessions`:
    // no query looks records up by date any more, and ingest maintains one
    // index fewer.
    r#"
DROP INDEX IF EXISTS records_by_date;
"#,
    // How far `attested_sessions` has caught up with the log (the last
    // log index whose record it holds; -1: none). A store whose table was
    // filled when it was made is caught up with its whole log.
    r#"
CREATE TABLE attested_sessions_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    log_index INTEGER NOT NULL
);
INSERT INTO attested_sessions_head (id, log_index)
SELECT 1, CASE WHEN EXISTS (SELECT 1 FROM attested_sessions)
               THEN (SELECT COALESCE(MAX(log_index), -1) FROM records) ELSE -1 END;
"#,
    // A period's findings by day, wide enough to answer the list's counts
    // (severity, money) and the totals per month, hospital, rule, severity
    // and status from the index alone: refreshing a national month's totals
    // read every finding's row in no useful order (1.8 of a 25 s run). It
    // also serves what `findings_by_date` did (day, severity, rule), and
    // `findings_by_status_rank` what `findings_by_status` did (every
    // status filter comes with the rank or the money order), so a new
    // finding updates two b-trees fewer.
    r#"
DROP INDEX IF EXISTS findings_by_day_severity;
DROP INDEX IF EXISTS findings_by_date;
DROP INDEX IF EXISTS findings_by_status;
CREATE INDEX IF NOT EXISTS findings_by_day_figures ON findings
    (service_date, severity, amount_fen, hospital_code, rule_id, status);
"#,
    // A session's facts packed into one value (`store::packed`): a part of
    // a run reads three columns a row instead of twenty. The table is made
    // again from the signed records by the next catch-up.
    r#"
DROP TABLE IF EXISTS attested_sessions;
CREATE TABLE attested_sessions (
    service_date TEXT NOT NULL,
    insured_id   TEXT NOT NULL,
    record_id    BLOB NOT NULL,
    facts        BLOB NOT NULL,
    PRIMARY KEY (service_date, insured_id, record_id)
) WITHOUT ROWID;
UPDATE attested_sessions_head SET log_index = -1;
"#,
    // A digest of each finding's data beside when it was last produced
    // (`store::finding_digest`): a re-run confirms an unchanged finding
    // with one keyed update of this narrow row. Findings stored before
    // have none; the next run that produces them compares the columns
    // once and writes it.
    r#"
ALTER TABLE finding_seen ADD COLUMN digest BLOB;
"#,
    // A claim line's fields other than its key packed into one value
    // (`store::packed`, `wuding_pack_claim`, registered by `init`): a part
    // of a run reads four columns a line instead of thirteen. The lines are
    // converted in key order, so the new table fills front to back.
    r#"
CREATE TABLE claims_packed (
    service_date TEXT NOT NULL,
    insured_id   TEXT NOT NULL,
    claim_id     TEXT NOT NULL,
    line         BLOB NOT NULL,
    source       TEXT NOT NULL,
    PRIMARY KEY (service_date, insured_id, claim_id)
) WITHOUT ROWID;
INSERT INTO claims_packed
SELECT service_date, insured_id, claim_id,
       wuding_pack_claim(hospital_code, department_code, doctor_id, service_code, service_kind,
                         quantity, amount_fen, drug_code, dose_milli, dose_unit),
       source
  FROM claims ORDER BY service_date, insured_id, claim_id;
DROP TABLE claims;
ALTER TABLE claims_packed RENAME TO claims;
CREATE UNIQUE INDEX claims_by_id ON claims (claim_id);
CREATE INDEX claims_by_patient ON claims (insured_id, service_date);
"#,
    // When each finding was last produced, kept in the order a run works:
    // by patient (a run goes through the patients a range at a time),
    // then finding id ('' for findings about no patient). Keyed by the id
    // alone, the seen rows of one part of a run were spread over every
    // page of the table, and each part's commit wrote the whole table to
    // the log again (sixteen times a national month); now a part rewrites
    // its own share. Looked up by id through `finding_seen_by_id`, which a
    // run's updates leave alone.
    r#"
CREATE TABLE finding_seen_by_patient (
    insured_id   TEXT NOT NULL,
    finding_id   TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    digest       BLOB,
    PRIMARY KEY (insured_id, finding_id)
) WITHOUT ROWID;
INSERT INTO finding_seen_by_patient
SELECT COALESCE(f.insured_id, ''), s.finding_id, s.last_seen_ms, s.digest
  FROM finding_seen s LEFT JOIN findings f ON f.finding_id = s.finding_id
 ORDER BY 1, 2;
DROP TABLE finding_seen;
ALTER TABLE finding_seen_by_patient RENAME TO finding_seen;
CREATE UNIQUE INDEX finding_seen_by_id ON finding_seen (finding_id);
"#,
    // The sightings keyed by the finding's month first ('' for undated):
    // a store keeps many months, and a run over one reads and marks one
    // contiguous share of its month; keyed by patient first, each
    // patient's findings of every other month lay between them.
    r#"
CREATE TABLE finding_seen_by_month (
    month        TEXT NOT NULL,
    insured_id   TEXT NOT NULL,
    finding_id   TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    digest       BLOB,
    PRIMARY KEY (month, insured_id, finding_id)
) WITHOUT ROWID;
INSERT INTO finding_seen_by_month
SELECT COALESCE(substr(f.service_date, 1, 7), ''), s.insured_id, s.finding_id, s.last_seen_ms,
       s.digest
  FROM finding_seen s LEFT JOIN findings f ON f.finding_id = s.finding_id
 ORDER BY 1, 2, 3;
DROP TABLE finding_seen;
ALTER TABLE finding_seen_by_month RENAME TO finding_seen;
CREATE UNIQUE INDEX finding_seen_by_id ON finding_seen (finding_id);
"#,
];

/// A table's secondary indexes as the migrations leave them (name,
/// columns): a write that adds many rows to a small table drops them and
/// builds each once afterwards, which costs less than sorting every new row
/// into each ([`worth_deferring`]).
pub(crate) struct SecondaryIndexes {
    table: &'static str,
    indexes: &'static [(&'static str, &'static str)],
}

impl SecondaryIndexes {
    pub(crate) fn drop_all(&self, conn: &Connection) -> Result<(), StoreError> {
        for (name, _) in self.indexes {
            conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
        }
        Ok(())
    }

    /// Builds those that are missing (none when none is). Returns how many
    /// it built. The connection's sorter settings change only when there
    /// is something to build (a store checks at every open).
    pub(crate) fn build_missing(&self, conn: &Connection) -> Result<usize, StoreError> {
        let mut missing = Vec::new();
        for (name, columns) in self.indexes {
            let exists: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1)",
                [name],
                |r| r.get(0),
            )?;
            if !exists {
                missing.push((name, columns));
            }
        }
        if missing.is_empty() {
            return Ok(0);
        }
        sorting_on_every_core(conn, || {
            for (name, columns) in &missing {
                conn.execute_batch(&format!(
                    "CREATE INDEX {name} ON {} ({columns})",
                    self.table
                ))?;
            }
            Ok(missing.len())
        })
    }
}

/// Runs `build` (statements that sort: index builds) with a small sorter
/// budget and SQLite's sorter threads on every core. The sorter sorts in
/// memory up to the page cache's size before it spills a sorted run to a
/// temporary file: with the writer's 64 MiB cache each findings index of a
/// national month (469,070 findings) was one 40-60 MB sort on one core,
/// its comparisons missing the processor's caches. With a 2 MiB budget it
/// sorts runs that stay in cache, on worker threads, and merges them
/// (docs/rules.md, "Index builds"). The connection's cache size and thread
/// limit are put back however `build` ends.
fn sorting_on_every_core<T>(
    conn: &Connection,
    build: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    let threads: i64 = conn.query_row("PRAGMA threads", [], |r| r.get(0))?;
    conn.pragma_update(None, "threads", cores as i64)?;
    conn.pragma_update(None, "cache_size", -SORTER_KIB)?;
    let out = build();
    let restored = conn
        .pragma_update(None, "cache_size", cache)
        .and_then(|()| conn.pragma_update(None, "threads", threads));
    let out = out?;
    restored?;
    Ok(out)
}

/// The sorter's budget while building indexes, in KiB
/// ([`sorting_on_every_core`]; SQLite raises it to 250 pages at least).
const SORTER_KIB: i64 = 2048;

/// The findings' secondary indexes. A reconciliation run that adds many
/// findings to a small table drops them for the whole run, over many
/// transactions ([`Store::defer_finding_indexes`]); opening a store builds
/// any that an interrupted run left missing.
const FINDING_INDEXES: SecondaryIndexes = SecondaryIndexes {
    table: "findings",
    indexes: &[
        ("findings_by_hospital", "hospital_code, service_date"),
        ("findings_by_patient", "insured_id"),
        (
            "findings_by_rank",
            "severity_rank, amount_fen DESC, finding_id",
        ),
        (
            "findings_by_rule_rank",
            "rule_id, severity_rank, amount_fen DESC, finding_id",
        ),
        (
            "findings_by_status_rank",
            "status, severity_rank, amount_fen DESC, finding_id",
        ),
        ("findings_by_amount", "amount_fen DESC, finding_id"),
        ("findings_by_day", "service_date, finding_id"),
        (
            "findings_by_status_amount",
            "status, amount_fen DESC, finding_id",
        ),
        (
            "findings_by_day_figures",
            "service_date, severity, amount_fen, hospital_code, rule_id, status",
        ),
    ],
};

/// The patient level's secondary indexes (a first run writes a row per
/// patient, hospital and month; dropped and built within that write's
/// transaction).
pub(crate) const PATIENT_MONTH_INDEXES: SecondaryIndexes = SecondaryIndexes {
    table: "patient_months",
    indexes: &[
        ("patient_months_by_ref", "patient_ref, month"),
        ("patient_months_by_month", "month, hospital_code"),
        (
            "patient_months_by_money",
            "month, findings_fen DESC, patient_ref",
        ),
    ],
};

/// Whether `expected_new` rows are cheaper written without a table's
/// secondary indexes over `stored` ones, then built afresh. Measured on a
/// national month (docs/rules.md, "Deferred indexes"): a new finding costs
/// about 39 µs more with the nine indexes than without, and building them
/// about 15 µs per finding in the table, so deferring pays from about
/// 0.6 new findings per stored one; from 2/3 here (the insert's cost grows
/// with the table, the rebuild's does not much).
pub(crate) fn worth_deferring(expected_new: u64, stored: u64) -> bool {
    expected_new.saturating_mul(3) >= stored.saturating_mul(2)
}

/// The migration that adds `attested_sessions`.
pub const ATTESTED_SESSIONS_MIGRATION: usize = 8;

/// The migration that packs `attested_sessions`' facts into one value.
pub const PACKED_SESSIONS_MIGRATION: usize = 14;

/// The migration that packs each claim line's fields into one value.
pub const PACKED_CLAIMS_MIGRATION: usize = 16;

/// The migration that keys `finding_seen` by patient, then finding id.
pub const SEEN_BY_PATIENT_MIGRATION: usize = 17;

/// The migration that puts the finding's month before the patient.
pub const SEEN_BY_MONTH_MIGRATION: usize = 18;

/// `wuding_pack_claim(hospital_code, department_code, doctor_id,
/// service_code, service_kind, quantity, amount_fen, drug_code, dose_milli,
/// dose_unit)`: the claim columns of the layout before
/// [`PACKED_CLAIMS_MIGRATION`] packed as the store keeps them now, for that
/// migration.
fn register_pack_claim(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "wuding_pack_claim",
        10,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text = |i: usize| ctx.get_raw(i).as_str();
            let maybe = |i: usize| ctx.get_raw(i).as_str_or_null();
            Ok(super::packed::pack_claim(&super::packed::ClaimFields {
                hospital_code: text(0)?,
                department_code: text(1)?,
                doctor_id: text(2)?,
                service_code: text(3)?,
                service_kind: text(4)?,
                quantity: ctx.get(5)?,
                amount_fen: ctx.get(6)?,
                drug_code: maybe(7)?,
                dose_milli: ctx.get(8)?,
                dose_unit: maybe(9)?,
            }))
        },
    )?;
    Ok(())
}

/// Writes the facts of an accepted session record, packed.
fn insert_attested_session(
    conn: &Connection,
    service_date: &str,
    record_id: &RecordId,
    received_at_ms: i64,
    f: &SessionFacts,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO attested_sessions (service_date, insured_id, record_id, facts)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    stmt.execute(params![
        service_date,
        f.insured_id.as_str(),
        record_id.0.as_slice(),
        super::packed::pack(received_at_ms, f),
    ])?;
    Ok(())
}

/// Reads one row of `attested_sessions` (record id, insured id, facts).
fn attested_session_from(r: &rusqlite::Row<'_>) -> Result<AttestedSession, StoreError> {
    let bad = |_| StoreError::Corrupt("attested session column");
    super::packed::unpack(
        r.get_ref(0)?.as_blob().map_err(bad)?,
        r.get_ref(1)?.as_str().map_err(bad)?,
        r.get_ref(2)?.as_blob().map_err(bad)?,
    )
}

const ALARM_COLUMNS: &str = "terminal_id, kind, seq, record_id, detail, at_ms, hospital_code, service_date, \
     measured_ms, missing_from, missing_to, other_record_id";

fn alarm_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Alarm, StoreError>> {
    let record_id: Option<Vec<u8>> = r.get(3)?;
    let other: Option<Vec<u8>> = r.get(11)?;
    let (from, to): (Option<i64>, Option<i64>) = (r.get(9)?, r.get(10)?);
    let (terminal_id, kind, seq, detail, at_ms) = (
        r.get::<_, String>(0)?,
        r.get::<_, String>(1)?,
        r.get::<_, Option<i64>>(2)?,
        r.get::<_, String>(4)?,
        r.get::<_, i64>(5)?,
    );
    let (hospital_code, service_date, measured_ms) = (r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| -> Result<Alarm, StoreError> {
        Ok(Alarm {
            terminal_id,
            kind,
            seq: seq.map(|s| s as u64),
            record_id: record_id.map(id_from).transpose()?,
            detail,
            at_ms,
            hospital_code,
            service_date,
            measured_ms,
            missing: from.zip(to).map(|(a, b)| (a as u64, b as u64)),
            other_record_id: other.map(id_from).transpose()?,
        })
    })())
}

fn split_list(s: String) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(';').map(str::to_owned).collect()
    }
}

fn finding_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<FindingRow, StoreError>> {
    let params: String = r.get(12)?;
    let row = FindingRow {
        id: r.get(0)?,
        rule_id: r.get(1)?,
        ruleset_version: r.get(2)?,
        severity: r.get(3)?,
        service_date: r.get(4)?,
        subject_type: r.get(5)?,
        subject_id: r.get(6)?,
        hospital_code: r.get(7)?,
        insured_id: r.get(8)?,
        claim_ids: split_list(r.get(9)?),
        record_ids: split_list(r.get(10)?),
        amount_fen: r.get::<_, i64>(11)? as u64,
        params: Default::default(),
        explanation_zh: r.get(13)?,
        explanation_en: r.get(14)?,
        status: r.get(15)?,
        first_seen_ms: r.get(16)?,
        last_seen_ms: r.get(17)?,
    };
    Ok(serde_json::from_str(&params)
        .map(|params| FindingRow { params, ..row })
        .map_err(|_| StoreError::Corrupt("finding params")))
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The database file (`None` in memory): long reads open their own
    /// connection to it, so they run beside the others.
    path: Option<std::path::PathBuf>,
    /// A second connection for registry reads (file databases only): in WAL
    /// mode it reads the last committed state while `conn` is inside a
    /// write transaction, so checking the next upload's signatures never
    /// waits for the previous upload's commit.
    reader: Option<Mutex<Connection>>,
    /// How many sessions and claim lines the last part of a run read: the
    /// next part (of about as many patients) reads into one vector of
    /// about that size from the start ([`Chunked::expecting`]).
    part_rows: [std::sync::atomic::AtomicUsize; 2],
    /// Set while a run has the findings' indexes dropped (it expects
    /// mostly new findings): each finding is first offered as an insert
    /// that does nothing on a known id, and only a known one takes the
    /// unchanged-or-updated path ([`upsert_findings_on`]).
    mostly_new: std::sync::atomic::AtomicBool,
}

/// [`SqliteStore::part_rows`]' slots.
const SESSION_ROWS: usize = 0;
const CLAIM_ROWS: usize = 1;

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        let mut store = SqliteStore::init(conn)?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(10))?;
        store.reader = Some(Mutex::new(reader));
        store.path = Some(path.to_owned());
        Ok(store)
    }

    /// Writes a consistent copy of the whole database to `out` while the
    /// server keeps running (`VACUUM INTO`: one read transaction). `out` must
    /// not exist.
    pub fn backup_to(&self, out: &Path) -> Result<(), StoreError> {
        if out.exists() {
            return Err(StoreError::Conflict(format!(
                "{} exists; back up to a new file",
                out.display()
            )));
        }
        let target = out
            .to_str()
            .ok_or_else(|| StoreError::Conflict("the backup path is not UTF-8".into()))?;
        self.conn().execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory()?)
    }

    /// The connection for registry reads: the reader when there is one.
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        match &self.reader {
            Some(r) => r.lock().unwrap_or_else(|e| e.into_inner()),
            None => self.conn(),
        }
    }

    fn init(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A receipt promises durability: FULL syncs the WAL on every commit.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // 64 MiB of page cache: index maintenance during big imports stays
        // in memory between commits.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        register_pack_claim(&conn)?;
        let tx = conn.transaction()?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        // A run that deferred the findings' indexes and did not finish.
        FINDING_INDEXES.build_missing(&tx)?;
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: None,
            reader: None,
            part_rows: Default::default(),
            mostly_new: Default::default(),
        })
    }

    /// A vector for a part's rows of `kind` ([`SESSION_ROWS`],
    /// [`CLAIM_ROWS`]), sized by the last part's.
    fn part_vector<T>(&self, kind: usize) -> Chunked<T> {
        let last = self.part_rows[kind].load(std::sync::atomic::Ordering::Relaxed);
        Chunked::expecting(last)
    }

    /// Notes how many rows of `kind` a part read, for the next.
    fn part_read<T>(&self, kind: usize, rows: &[T]) {
        self.part_rows[kind].store(rows.len(), std::sync::atomic::Ordering::Relaxed);
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `write` on the writer with synchronous=NORMAL: for data that can
    /// be made again from what is kept durably (claims re-imported from the
    /// hospitals' files; findings and dashboard figures recomputed by the
    /// next reconciliation run). Its commits are durable at the next WAL
    /// checkpoint or at the next FULL commit (which syncs the WAL up to
    /// itself) rather than each on its own, and never corrupt the database.
    /// Signed records and casework keep FULL (a receipt promises
    /// durability): the setting is restored before the connection serves
    /// anything else, whether `write` succeeded or not.
    pub(crate) fn derived_write<T>(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = write(&mut conn);
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        let out = result?;
        restored?;
        Ok(out)
    }

    /// The claim lines matching `clause` (`WHERE ...`, optionally after
    /// `INDEXED BY ...`; `?1`, ... bound to `values`).
    pub(crate) fn claims_where(
        &self,
        clause: &str,
        values: &[&str],
    ) -> Result<Vec<ClaimLine>, StoreError> {
        claims_where_on(&self.conn(), clause, values)
    }

    /// Runs a long read on a connection of its own (file databases; WAL:
    /// it reads the last committed state), so it runs beside the writer and
    /// the registry reader instead of holding either; in memory, on the
    /// one connection.
    fn on_own_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(path) = &self.path else {
            return read(&self.conn());
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        read(&conn)
    }
}

/// The claim lines matching `clause` (`WHERE ...`, optionally after
/// `INDEXED BY ...`; `?1`, ... bound to `values`), read on `conn`.
fn claims_where_on(
    conn: &Connection,
    clause: &str,
    values: &[&str],
) -> Result<Vec<ClaimLine>, StoreError> {
    let mut lines = Chunked::default();
    claims_into(conn, clause, values, &mut lines)?;
    Ok(lines.into_vec())
}

/// Appends the claim lines `clause` selects to `lines`.
fn claims_into(
    conn: &Connection,
    clause: &str,
    values: &[&str],
    lines: &mut Chunked<ClaimLine>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT claim_id, insured_id, service_date, line FROM claims {clause}"
    ))?;
    let mut rows = stmt.query(params_from_iter(values.iter()))?;
    // Lines come a day at a time: the date is parsed when it changes.
    let mut day: Option<(String, Date)> = None;
    while let Some(r) = rows.next()? {
        let bad = |_| StoreError::Corrupt("claim column");
        let text = |i: usize| -> Result<&str, StoreError> { r.get_ref(i)?.as_str().map_err(bad) };
        let date = text(2)?;
        let date = match &day {
            Some((text, parsed)) if text == date => *parsed,
            _ => {
                let parsed: Date = date
                    .parse()
                    .map_err(|_| StoreError::Corrupt("claim date"))?;
                day = Some((date.to_owned(), parsed));
                parsed
            }
        };
        lines.push(super::packed::unpack_claim(
            text(0)?,
            text(1)?,
            date,
            r.get_ref(3)?.as_blob().map_err(bad)?,
        )?);
    }
    Ok(())
}

/// The dates `from..=to` (`YYYY-MM-DD`), for reads that take a period a
/// day at a time.
fn days_of(from: &str, to: &str) -> Result<Vec<String>, StoreError> {
    let (Ok(mut day), Ok(last)) = (from.parse::<Date>(), to.parse::<Date>()) else {
        return Err(StoreError::Corrupt("period dates"));
    };
    let mut days = Vec::new();
    while day <= last {
        days.push(day.to_string());
        let Ok(next) = day.tomorrow() else { break };
        day = next;
    }
    Ok(days)
}

/// Rows read into one vector while they fit its capacity, then into
/// chunks of [`Chunked::CHUNK`], gathered into one vector of exactly their
/// number at the end. A part's rows are hundreds of megabytes: growing one
/// vector by doubling copied them and faulted in twice the memory, and
/// counting them first cost a second pass over the index (docs/rules.md).
/// A read that expects about as many rows as the part before it
/// ([`Chunked::expecting`]) mostly fills its first vector and gathers
/// nothing; otherwise gathering copies each row once.
struct Chunked<T> {
    full: Vec<Vec<T>>,
    current: Vec<T>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            full: Vec::new(),
            current: Vec::new(),
        }
    }
}

impl<T> Chunked<T> {
    const CHUNK: usize = 32_768;

    /// Room for about `rows` rows (an eighth more, parts differ a little)
    /// in the first vector; none for 0.
    fn expecting(rows: usize) -> Self {
        if rows == 0 {
            return Chunked::default();
        }
        Chunked {
            full: Vec::new(),
            current: Vec::with_capacity(rows.saturating_add(rows / 8).max(Self::CHUNK)),
        }
    }

    fn push(&mut self, row: T) {
        if self.current.len() == self.current.capacity() && self.current.len() >= Self::CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(Self::CHUNK));
            self.full.push(full);
        }
        self.current.push(row);
    }

    fn into_vec(self) -> Vec<T> {
        if self.full.is_empty() {
            return self.current;
        }
        let mut all =
            Vec::with_capacity(self.full.iter().map(Vec::len).sum::<usize>() + self.current.len());
        for chunk in self.full {
            all.extend(chunk);
        }
        all.extend(self.current);
        all
    }
}

fn id_from(bytes: Vec<u8>) -> Result<RecordId, StoreError> {
    Ok(RecordId(
        bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("record id"))?,
    ))
}

fn terminal_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TerminalRow, Vec<u8>)> {
    Ok((
        TerminalRow {
            terminal_id: r.get(0)?,
            hospital_code: r.get(1)?,
            department_code: r.get(2)?,
            public_key: [0; 32],
            key_id: r.get(4)?,
            status: r.get(5)?,
            requested_at_ms: r.get(6)?,
            approved_at_ms: r.get(7)?,
            revoked_at_ms: r.get(8)?,
            revoked_at_seq: r.get::<_, Option<i64>>(9)?.map(|s| s as u64),
            last_contact_ms: r.get(10)?,
        },
        r.get(3)?,
    ))
}

fn finish_terminal((mut t, key): (TerminalRow, Vec<u8>)) -> Result<TerminalRow, StoreError> {
    t.public_key = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("public key"))?;
    Ok(t)
}

const TERMINAL_COLUMNS: &str = "terminal_id, hospital_code, department_code, public_key, key_id, status, \
     requested_at_ms, approved_at_ms, revoked_at_ms, revoked_at_seq, last_contact_ms";

const RECORD_COLUMNS: &str = "record_id, terminal_id, seq, record_type, key_id, payload, signature, signed_at_ms, \
     received_at_ms, hospital_code, insured_id, service_date, kind";

const INSERT_RECORD: &str = "INSERT INTO records (record_id, terminal_id, seq, record_type, key_id, payload, \
     signature, signed_at_ms, received_at_ms, hospital_code, insured_id, service_date, kind, log_index) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const INSERT_HELD: &str = "INSERT INTO held_records (record_id, terminal_id, seq, record_type, key_id, payload, \
     signature, signed_at_ms, received_at_ms, hospital_code, insured_id, service_date, kind) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

fn record_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RecordRow, Vec<u8>, Vec<u8>)> {
    Ok((
        RecordRow {
            record_id: RecordId::GENESIS,
            terminal_id: r.get(1)?,
            seq: r.get::<_, i64>(2)? as u64,
            record_type: r.get(3)?,
            key_id: r.get(4)?,
            payload: r.get(5)?,
            signature: [0; 64],
            signed_at_ms: r.get(7)?,
            received_at_ms: r.get(8)?,
            hospital_code: r.get(9)?,
            insured_id: r.get(10)?,
            service_date: r.get(11)?,
            kind: r.get(12)?,
        },
        r.get(0)?,
        r.get(6)?,
    ))
}

fn finish_record(
    (mut row, id, sig): (RecordRow, Vec<u8>, Vec<u8>),
) -> Result<RecordRow, StoreError> {
    row.record_id = id_from(id)?;
    row.signature = sig
        .try_into()
        .map_err(|_| StoreError::Corrupt("signature"))?;
    Ok(row)
}

struct SqliteTx<'a> {
    tx: Transaction<'a>,
    /// The log size, read once per transaction and written back at commit.
    log_size: Option<i64>,
}

impl SqliteTx<'_> {
    fn insert_row(
        &self,
        table: &str,
        row: &RecordRow,
        log_index: Option<u64>,
    ) -> Result<(), StoreError> {
        let sql = match (table, log_index) {
            ("records", Some(_)) => INSERT_RECORD,
            ("held_records", None) => INSERT_HELD,
            _ => return Err(StoreError::Corrupt("record row for an unknown table")),
        };
        let mut stmt = self.tx.prepare_cached(sql)?;
        let base = params![
            row.record_id.0.as_slice(),
            row.terminal_id,
            row.seq as i64,
            row.record_type,
            row.key_id,
            row.payload,
            row.signature.as_slice(),
            row.signed_at_ms,
            row.received_at_ms,
            row.hospital_code,
            row.insured_id,
            row.service_date,
            row.kind,
        ];
        match log_index {
            Some(i) => {
                let mut all: Vec<&dyn rusqlite::ToSql> = base.to_vec();
                let i = i as i64;
                all.push(&i);
                stmt.execute(all.as_slice())?;
            }
            None => {
                stmt.execute(base)?;
            }
        }
        Ok(())
    }
}

impl Tx for SqliteTx<'_> {
    fn chain_head(&mut self, terminal_id: &str) -> Result<(u64, RecordId), StoreError> {
        let head: Option<(i64, Vec<u8>)> = self
            .tx
            .query_row(
                "SELECT seq, record_id FROM chain_heads WHERE terminal_id = ?1",
                params![terminal_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match head {
            Some((seq, id)) => Ok((seq as u64, id_from(id)?)),
            None => Ok((0, RecordId::GENESIS)),
        }
    }

    fn set_chain_head(
        &mut self,
        terminal_id: &str,
        seq: u64,
        id: RecordId,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO chain_heads (terminal_id, seq, record_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (terminal_id) DO UPDATE SET seq = excluded.seq, record_id = excluded.record_id",
            params![terminal_id, seq as i64, id.0.as_slice()],
        )?;
        Ok(())
    }

    fn record_at(
        &mut self,
        terminal_id: &str,
        seq: u64,
    ) -> Result<Option<(RecordId, u64)>, StoreError> {
        let found: Option<(Vec<u8>, i64)> = self
            .tx
            .query_row(
                "SELECT record_id, log_index FROM records WHERE terminal_id = ?1 AND seq = ?2",
                params![terminal_id, seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        found
            .map(|(id, i)| Ok((id_from(id)?, i as u64)))
            .transpose()
    }

    fn log_index_of(&mut self, id: &RecordId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT log_index FROM records WHERE record_id = ?1",
                params![id.0.as_slice()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|i| i as u64))
    }

    fn signed_at(&mut self, terminal_id: &str, seq: u64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT signed_at_ms FROM records WHERE terminal_id = ?1 AND seq = ?2",
                params![terminal_id, seq as i64],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn append(&mut self, row: &RecordRow) -> Result<u64, StoreError> {
        // The log head is read once per transaction (the transaction holds
        // the write lock) and written back once at commit.
        let size = match self.log_size {
            Some(size) => size,
            None => self
                .tx
                .query_row("SELECT size FROM log_head WHERE id = 1", [], |r| r.get(0))?,
        };
        self.insert_row("records", row, Some(size as u64))?;
        self.log_size = Some(size + 1);
        Ok(size as u64)
    }

    fn alarm(&mut self, a: &Alarm) -> Result<(), StoreError> {
        self.tx.execute(
            &format!("INSERT INTO alarms ({ALARM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                a.terminal_id,
                a.kind,
                a.seq.map(|s| s as i64),
                a.record_id.map(|r| r.0.to_vec()),
                a.detail,
                a.at_ms,
                a.hospital_code,
                a.service_date,
                a.measured_ms,
                a.missing.map(|m| m.0 as i64),
                a.missing.map(|m| m.1 as i64),
                a.other_record_id.map(|r| r.0.to_vec()),
            ],
        )?;
        Ok(())
    }

    fn hold(&mut self, row: &RecordRow) -> Result<(), StoreError> {
        let exists: Option<i64> = self
            .tx
            .query_row(
                "SELECT 1 FROM held_records WHERE record_id = ?1",
                params![row.record_id.0.as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            self.insert_row("held_records", row, None)?;
        }
        Ok(())
    }

    fn held(&mut self, terminal_id: &str) -> Result<Vec<RecordRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM held_records WHERE terminal_id = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![terminal_id], record_from)?;
        rows.map(|r| finish_record(r?)).collect()
    }

    fn unhold(&mut self, id: &RecordId) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM held_records WHERE record_id = ?1",
            params![id.0.as_slice()],
        )?;
        Ok(())
    }

    fn touch_terminal(&mut self, terminal_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE terminals SET last_contact_ms = ?2 WHERE terminal_id = ?1",
            params![terminal_id, now_ms],
        )?;
        Ok(())
    }
}

/// Inserts claim lines in one transaction; returns how many were new.
fn insert_claims_in(
    conn: &mut Connection,
    lines: &[ClaimLine],
    source: &str,
) -> Result<u64, StoreError> {
    // Multi-row statements (CLAIM_ROWS rows each, 5 parameters a row,
    // well under SQLite's 32,766) cut the per-statement cost (64 rows:
    // 300,000 lines/s, 256: 350,000); the rest goes one row at a time.
    const CLAIM_ROWS: usize = 256;
    const PER_ROW: usize = 5;
    const COLUMNS: &str = "service_date, insured_id, claim_id, line, source";
    fn sql(rows: usize) -> String {
        let mut sql = format!("INSERT INTO claims ({COLUMNS}) VALUES ");
        for r in 0..rows {
            if r > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..PER_ROW {
                if c > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("?{}", r * PER_ROW + c + 1));
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        sql
    }
    fn bind(
        stmt: &mut rusqlite::CachedStatement<'_>,
        lines: &[ClaimLine],
        source: &str,
    ) -> Result<usize, rusqlite::Error> {
        let mut dates = Vec::with_capacity(lines.len());
        for c in lines {
            dates.push(c.service_date.to_string());
        }
        for (r, c) in lines.iter().enumerate() {
            let b = r * PER_ROW;
            stmt.raw_bind_parameter(b + 1, &dates[r])?;
            stmt.raw_bind_parameter(b + 2, c.insured_id.as_str())?;
            stmt.raw_bind_parameter(b + 3, c.claim_id.as_str())?;
            stmt.raw_bind_parameter(
                b + 4,
                super::packed::pack_claim(&super::packed::ClaimFields::of(c)),
            )?;
            stmt.raw_bind_parameter(b + 5, source)?;
        }
        stmt.raw_execute()
    }
    let tx = conn.transaction()?;
    let mut inserted = 0u64;
    {
        let mut many = tx.prepare_cached(&sql(CLAIM_ROWS))?;
        let mut chunks = lines.chunks_exact(CLAIM_ROWS);
        for chunk in &mut chunks {
            inserted += bind(&mut many, chunk, source)? as u64;
        }
        let mut one = tx.prepare_cached(&sql(1))?;
        for c in chunks.remainder() {
            inserted += bind(&mut one, std::slice::from_ref(c), source)? as u64;
        }
    }
    tx.commit()?;
    Ok(inserted)
}

impl Store for SqliteStore {
    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut t = SqliteTx { tx, log_size: None };
        f(&mut t)?;
        if let Some(size) = t.log_size {
            t.tx.execute("UPDATE log_head SET size = ?1 WHERE id = 1", params![size])?;
        }
        t.tx.commit()?;
        Ok(())
    }

    fn register_terminal(&self, t: &TerminalRow) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            &format!("INSERT INTO terminals ({TERMINAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING"),
            params![
                t.terminal_id,
                t.hospital_code,
                t.department_code,
                t.public_key.as_slice(),
                t.key_id,
                t.status,
                t.requested_at_ms,
                t.approved_at_ms,
                t.revoked_at_ms,
                t.revoked_at_seq.map(|s| s as i64),
                t.last_contact_ms
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
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE terminal_id = ?1"),
            params![terminal_id],
            terminal_from,
        )
        .optional()?
        .map(finish_terminal)
        .transpose()
    }

    fn terminal_by_key(&self, key_id: &str) -> Result<Option<TerminalRow>, StoreError> {
        let conn = self.reader();
        conn.query_row(
            &format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE key_id = ?1"),
            params![key_id],
            terminal_from,
        )
        .optional()?
        .map(finish_terminal)
        .transpose()
    }

    fn terminals(&self) -> Result<Vec<TerminalRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TERMINAL_COLUMNS} FROM terminals ORDER BY terminal_id"
        ))?;
        let rows = stmt.query_map([], terminal_from)?;
        rows.map(|r| finish_terminal(r?)).collect()
    }

    fn approve_terminal(&self, terminal_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE terminals SET status = 'approved', approved_at_ms = ?2 WHERE terminal_id = ?1 AND status = 'pending'",
            params![terminal_id, now_ms],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "a pending terminal {terminal_id}"
            )));
        }
        Ok(())
    }

    fn revoke_terminal(&self, terminal_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE terminals SET status = 'revoked', revoked_at_ms = ?2,
                revoked_at_seq = COALESCE((SELECT seq FROM chain_heads WHERE terminal_id = ?1), 0)
             WHERE terminal_id = ?1 AND status <> 'revoked'",
            params![terminal_id, now_ms],
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
        let conn = self.conn();
        conn.execute("DELETE FROM nonces WHERE expires_ms < ?1", params![now_ms])?;
        let n = conn.execute(
            "INSERT INTO nonces (key_id, nonce, expires_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![key_id, nonce, expires_ms],
        )?;
        Ok(n == 1)
    }

    fn log_leaves(&self, from: u64) -> Result<Vec<RecordId>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT record_id FROM records WHERE log_index >= ?1 ORDER BY log_index")?;
        let rows = stmt.query_map(params![from as i64], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|r| id_from(r?)).collect()
    }

    fn record(&self, id: &RecordId) -> Result<Option<(RecordRow, u64)>, StoreError> {
        let conn = self.conn();
        // Cached: a run looks up every record its integrity events name
        // (tens of thousands for a national month), and preparing the
        // statement each time cost more than the lookup.
        let found = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS}, log_index FROM records WHERE record_id = ?1"
            ))?
            .query_row(params![id.0.as_slice()], |r| {
                Ok((record_from(r)?, r.get::<_, i64>(13)?))
            })
            .optional()?;
        found
            .map(|(row, i)| Ok((finish_record(row)?, i as u64)))
            .transpose()
    }

    fn records_of(&self, terminal_id: &str) -> Result<Vec<RecordRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE terminal_id = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![terminal_id], record_from)?;
        rows.map(|r| finish_record(r?)).collect()
    }

    fn alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {ALARM_COLUMNS} FROM alarms ORDER BY id"))?;
        let rows = stmt.query_map([], alarm_from)?;
        rows.map(|r| r?).collect()
    }

    fn held_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM held_records", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    fn insert_claims(&self, lines: &[ClaimLine], source: &str) -> Result<u64, StoreError> {
        // Claims are copies of the hospitals' submissions, imported again
        // at will (re-importing changes nothing).
        self.derived_write(|conn| insert_claims_in(conn, lines, source))
    }

    fn claim_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM claims", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    fn put_roster_items(&self, items: &[RosterItem]) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut version: i64 =
            tx.query_row("SELECT version FROM roster_head WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        let mut changed = 0;
        for item in items {
            let old: Option<String> = tx
                .query_row(
                    "SELECT body FROM roster_items WHERE hospital_code = ?1 AND kind = ?2 AND item_key = ?3",
                    params![item.hospital_code, item.kind, item.key],
                    |r| r.get(0),
                )
                .optional()?;
            if old.as_deref() == Some(item.body.as_str()) {
                continue;
            }
            version += 1;
            changed += 1;
            tx.execute(
                "INSERT INTO roster_items (hospital_code, kind, item_key, body, version) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (hospital_code, kind, item_key) DO UPDATE SET body = excluded.body, version = excluded.version",
                params![item.hospital_code, item.kind, item.key, item.body, version],
            )?;
        }
        tx.execute(
            "UPDATE roster_head SET version = ?1 WHERE id = 1",
            params![version],
        )?;
        tx.commit()?;
        Ok(changed)
    }

    fn roster_since(
        &self,
        hospital_code: &str,
        since: u64,
    ) -> Result<(Vec<RosterItem>, u64), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT kind, item_key, body, version FROM roster_items WHERE hospital_code = ?1 AND version > ?2 ORDER BY version",
        )?;
        let mut cursor = since;
        let rows = stmt.query_map(params![hospital_code, since as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut items = Vec::new();
        for row in rows {
            let (kind, key, body, version) = row?;
            cursor = cursor.max(version as u64);
            items.push(RosterItem {
                hospital_code: hospital_code.to_owned(),
                kind,
                key,
                body,
            });
        }
        Ok((items, cursor))
    }

    fn roster_bodies(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        // A national month's plans are hundreds of megabytes: read on a
        // connection of their own, beside whatever the writer is doing
        // (a run looks up its integrity events' records meanwhile).
        self.on_own_connection(|conn| {
            let mut stmt = conn.prepare(
                "SELECT body FROM roster_items WHERE kind = ?1 ORDER BY hospital_code, item_key",
            )?;
            let rows = stmt.query_map(params![kind], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn catch_up_sessions(&self) -> Result<u64, StoreError> {
        // Mostly nothing is new (every part of a run after the first): that
        // is answered on a reader, without waiting for the writer, which
        // may be storing the previous part's findings meanwhile.
        let behind = self.on_own_connection(|conn| {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM records WHERE log_index >
                     (SELECT log_index FROM attested_sessions_head WHERE id = 1))",
                [],
                |r| r.get::<_, bool>(0),
            )?)
        })?;
        if !behind {
            return Ok(0);
        }
        let mut added = 0u64;
        loop {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let head: i64 = tx.query_row(
                "SELECT log_index FROM attested_sessions_head WHERE id = 1",
                [],
                |r| r.get(0),
            )?;
            let (last, stored) = {
                let mut stmt = tx.prepare_cached(
                    "SELECT log_index, record_id, received_at_ms, service_date, payload
                       FROM records WHERE log_index > ?1 ORDER BY log_index LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![head, super::CATCH_UP_BATCH])?;
                let mut last = None;
                let mut stored = Vec::new();
                while let Some(r) = rows.next()? {
                    last = Some(r.get::<_, i64>(0)?);
                    stored.push((id_from(r.get(1)?)?, r.get(2)?, r.get(3)?, r.get(4)?));
                }
                (last, stored)
            };
            let Some(last) = last else {
                return Ok(added);
            };
            for s in super::facts_to_write(stored)? {
                insert_attested_session(
                    &tx,
                    &s.service_date,
                    &s.record_id,
                    s.received_at_ms,
                    &s.facts,
                )?;
                added += 1;
            }
            tx.execute(
                "UPDATE attested_sessions_head SET log_index = ?1 WHERE id = 1",
                params![last],
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
        let days = days_of(from, to)?;
        self.catch_up_sessions()?;
        // On a connection of its own, so a run reads claims beside its
        // sessions and the next part beside storing this one's findings.
        self.on_own_connection(|conn| {
            // One contiguous run of the table per day: the day's rows of the
            // range's patients sit together in (day, patient) order.
            let (range, values) = patients.sql("insured_id", "?", &[""]);
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT record_id, insured_id, facts
             FROM attested_sessions WHERE service_date = ?1{range}"
            ))?;
            let mut sessions = self.part_vector(SESSION_ROWS);
            for day in &days {
                let mut values = values.clone();
                values[0] = day;
                let mut rows = stmt.query(params_from_iter(values))?;
                while let Some(r) = rows.next()? {
                    sessions.push(attested_session_from(r)?);
                }
            }
            let sessions = sessions.into_vec();
            self.part_read(SESSION_ROWS, &sessions);
            Ok(sessions)
        })
    }

    fn claims_between(&self, from: &str, to: &str) -> Result<Vec<ClaimLine>, StoreError> {
        self.claims_where("WHERE service_date BETWEEN ?1 AND ?2", &[from, to])
    }

    fn claims_of_patients(
        &self,
        from: &str,
        to: &str,
        patients: &PatientRange,
    ) -> Result<Vec<ClaimLine>, StoreError> {
        if patients.is_all() {
            return self.claims_between(from, to);
        }
        // Claim lines sit in (day, patient) order: a range of patients is
        // one contiguous run of the table per day. Read day by day, each
        // read seeks to its run (over the whole period, the key's first
        // column being a range, SQLite would step through every patient's
        // lines of the period and filter them: each part of a national run
        // would visit all of its claim lines).
        let days = days_of(from, to)?;
        let (range, values) = patients.sql("insured_id", "?", &[""]);
        let clause = format!("WHERE service_date = ?1{range}");
        self.on_own_connection(|conn| {
            let mut lines = self.part_vector(CLAIM_ROWS);
            for day in &days {
                let mut values = values.clone();
                values[0] = day;
                claims_into(conn, &clause, &values, &mut lines)?;
            }
            let lines = lines.into_vec();
            self.part_read(CLAIM_ROWS, &lines);
            Ok(lines)
        })
    }

    fn alarms_between(&self, from: &str, to: &str) -> Result<Vec<Alarm>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms
             WHERE service_date IS NULL OR service_date BETWEEN ?1 AND ?2 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![from, to], alarm_from)?;
        rows.map(|r| r?).collect()
    }

    fn upsert_findings(
        &self,
        rows: &[FindingRow],
        now_ms: i64,
    ) -> Result<UpsertCounts, StoreError> {
        let mostly_new = self.mostly_new.load(std::sync::atomic::Ordering::Relaxed);
        self.derived_write(|conn| upsert_findings_on(conn, rows, now_ms, mostly_new))
    }
    fn confirm_unchanged(
        &self,
        seen: &[super::SeenFinding<'_>],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let in_key_order = seen.windows(2).all(|w| w[0].key() < w[1].key());
        self.derived_write(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let confirmed = if in_key_order {
                confirm_in_runs(&tx, seen, now_ms)?
            } else {
                let mut seen_again = tx.prepare_cached(SEEN_AGAIN_SQL)?;
                let mut confirmed = Vec::with_capacity(seen.len());
                for f in seen {
                    let n = seen_again.execute(params![
                        f.id,
                        now_ms,
                        f.digest.as_slice(),
                        f.insured_id,
                        f.month
                    ])?;
                    confirmed.push(n == 1);
                }
                confirmed
            };
            tx.commit()?;
            Ok(confirmed)
        })
    }
    fn defer_finding_indexes(&self, expected_new: u64) -> Result<bool, StoreError> {
        let conn = self.conn();
        let stored: i64 = conn.query_row("SELECT count(*) FROM findings", [], |r| r.get(0))?;
        if !worth_deferring(expected_new, stored as u64) {
            return Ok(false);
        }
        let tx = conn.unchecked_transaction()?;
        FINDING_INDEXES.drop_all(&tx)?;
        tx.commit()?;
        self.mostly_new
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }
    fn build_finding_indexes(&self) -> Result<(), StoreError> {
        self.mostly_new
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.derived_write(|conn| {
            let tx = conn.transaction()?;
            FINDING_INDEXES.build_missing(&tx)?;
            tx.commit()?;
            Ok(())
        })
    }
    fn findings(&self, filter: &FindingFilter) -> Result<Vec<FindingRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings
             WHERE (?1 IS NULL OR service_date IS NULL OR service_date >= ?1)
               AND (?2 IS NULL OR service_date IS NULL OR service_date <= ?2)
               AND (?3 IS NULL OR severity = ?3)
               AND (?4 IS NULL OR rule_id = ?4)
             ORDER BY CASE severity WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 WHEN 'green' THEN 2 ELSE 3 END,
                      rule_id, finding_id"
        ))?;
        let rows = stmt.query_map(
            params![filter.from, filter.to, filter.severity, filter.rule_id],
            finding_from,
        )?;
        rows.map(|r| r?).collect()
    }
}

/// Marks a finding (`?1` id, `?4` patient or '', `?5` month or '') seen at `?2` if its
/// stored digest is `?3`: one keyed update of its narrow row.
const SEEN_AGAIN_SQL: &str = "UPDATE finding_seen SET last_seen_ms = ?2
     WHERE month = ?5 AND insured_id = ?4 AND finding_id = ?1 AND digest = ?3";

/// [`Store::confirm_unchanged`] for findings in key order (month,
/// patient, id), a month at a time: the month's stored sightings between
/// its first and last listed finding are read in one pass beside the list, and each run of consecutive stored rows that
/// are all confirmed (listed, same digest) is marked seen by one ranged
/// update. A run of a period again confirms a part's findings in one or a
/// few statements instead of one keyed update each (national month: 4.7
/// us a finding on the run's critical path). A stored row the list leaves
/// out (a finding no longer produced) or whose digest differs ends a run
/// and keeps its `last_seen_ms`.
fn confirm_in_runs(
    tx: &rusqlite::Transaction<'_>,
    seen: &[super::SeenFinding<'_>],
    now_ms: i64,
) -> Result<Vec<bool>, StoreError> {
    let mut confirmed = Vec::with_capacity(seen.len());
    for month in seen.chunk_by(|a, b| a.month == b.month) {
        confirmed.extend(confirm_month_in_runs(tx, month, now_ms)?);
    }
    Ok(confirmed)
}

/// [`confirm_in_runs`] for findings of one month, in key order.
fn confirm_month_in_runs(
    tx: &rusqlite::Transaction<'_>,
    seen: &[super::SeenFinding<'_>],
    now_ms: i64,
) -> Result<Vec<bool>, StoreError> {
    let mut confirmed = vec![false; seen.len()];
    let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
        return Ok(confirmed);
    };
    // Runs of confirmed findings, as indexes of their first and last.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    {
        let mut stored = tx.prepare_cached(
            "SELECT insured_id, finding_id, digest FROM finding_seen
              WHERE month = ?5
                AND (insured_id, finding_id) >= (?1, ?2) AND (insured_id, finding_id) <= (?3, ?4)
              ORDER BY insured_id, finding_id",
        )?;
        let mut rows = stored.query(params![
            first.insured_id,
            first.id,
            last.insured_id,
            last.id,
            first.month
        ])?;
        let mut j = 0;
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> Result<&str, StoreError> {
                let value = r.get_ref(i)?.as_str();
                value.map_err(|_| StoreError::Corrupt("a finding's sighting"))
            };
            let stored_key = (first.month.as_str(), text(0)?, text(1)?);
            // Listed findings before this row are not stored (new).
            while j < seen.len() && seen[j].key() < stored_key {
                j += 1;
            }
            let same = j < seen.len()
                && seen[j].key() == stored_key
                && r.get_ref(2)?.as_blob_or_null().ok().flatten() == Some(&seen[j].digest[..]);
            if same {
                confirmed[j] = true;
                open = Some(open.map_or((j, j), |(from, _)| (from, j)));
                j += 1;
            } else {
                runs.extend(open.take());
            }
        }
        runs.extend(open.take());
    }
    let mut mark = tx.prepare_cached(
        "UPDATE finding_seen SET last_seen_ms = ?5
          WHERE month = ?6
            AND (insured_id, finding_id) >= (?1, ?2) AND (insured_id, finding_id) <= (?3, ?4)",
    )?;
    for (from, to) in runs {
        let (a, b) = (&seen[from], &seen[to]);
        mark.execute(params![
            a.insured_id,
            a.id,
            b.insured_id,
            b.id,
            now_ms,
            first.month
        ])?;
    }
    Ok(confirmed)
}

/// Stores reconciliation findings on `conn` in one transaction: new ones
/// inserted (status `open`), changed ones updated (their casework status
/// kept), unchanged ones only marked as seen at `now_ms`. With
/// `mostly_new` each finding is first inserted if its id is unknown (one
/// statement instead of two lookups that find nothing and the insert); a
/// known id goes on as without it.
fn upsert_findings_on(
    conn: &mut Connection,
    rows: &[FindingRow],
    now_ms: i64,
    mostly_new: bool,
) -> Result<UpsertCounts, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts = UpsertCounts::default();
    {
        let mut get = tx.prepare_cached(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE finding_id = ?1"
        ))?;
        // The seen row is keyed by month, patient and id; one whose month
        // or patient changed replaces the row under the old key (REPLACE
        // removes the row holding the same id, `finding_seen_by_id`).
        let mut touch = tx.prepare_cached(
            "INSERT OR REPLACE INTO finding_seen
               (month, insured_id, finding_id, last_seen_ms, digest)
             VALUES (?5, ?4, ?1, ?2, ?3)",
        )?;
        // A finding whose data has the stored digest is unchanged.
        let mut seen_again = tx.prepare_cached(SEEN_AGAIN_SQL)?;
        // Most findings of a re-run are unchanged: one lookup compares the
        // stored data without reading the row out, and finds no row for a
        // new finding (so a first run looks each up once, not twice).
        let mut same = tx.prepare_cached(
            "SELECT rule_id = ?2 AND ruleset_version = ?3 AND severity = ?4
                    AND service_date IS ?5 AND subject_type = ?6 AND subject_id = ?7
                    AND hospital_code IS ?8 AND insured_id IS ?9 AND claim_ids = ?10
                    AND record_ids = ?11 AND amount_fen = ?12 AND params = ?13
                    AND explanation_zh = ?14 AND explanation_en = ?15
               FROM findings WHERE finding_id = ?1",
        )?;
        let insert = |conflict: &str| {
            format!(
                "INSERT INTO findings ({FINDING_INSERT_COLUMNS}) VALUES
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 'open', ?16, ?16)
                 {conflict}"
            )
        };
        let mut put = tx.prepare_cached(&insert(FINDING_UPSERT_CONFLICT))?;
        let mut put_new = tx.prepare_cached(&insert("ON CONFLICT (finding_id) DO NOTHING"))?;
        for f in rows {
            let digest = super::finding_digest(f);
            let patient = f.insured_id.as_deref().unwrap_or("");
            let month = f
                .service_date
                .as_deref()
                .map_or("", |d| d.get(..7).unwrap_or(d));
            let seen = params![f.id, now_ms, digest.as_slice(), patient, month];
            if !mostly_new && seen_again.execute(seen)? == 1 {
                counts.unchanged += 1;
                continue;
            }
            let (claim_ids, record_ids) = (f.claim_ids.join(";"), f.record_ids.join(";"));
            let params_json = serde_json::to_string(&f.params).unwrap_or_default();
            let data = params![
                f.id,
                f.rule_id,
                f.ruleset_version,
                f.severity,
                f.service_date,
                f.subject_type,
                f.subject_id,
                f.hospital_code,
                f.insured_id,
                claim_ids,
                record_ids,
                f.amount_fen as i64,
                params_json,
                f.explanation_zh,
                f.explanation_en,
                now_ms,
            ];
            if mostly_new {
                if put_new.execute(data)? == 1 {
                    touch.execute(seen)?;
                    counts.new += 1;
                    continue;
                }
                if seen_again.execute(seen)? == 1 {
                    counts.unchanged += 1;
                    continue;
                }
            }
            let stored: Option<bool> = same
                .query_row(&data[..15], |r| r.get::<_, Option<bool>>(0))
                .optional()?
                .map(|same| same.unwrap_or(false));
            match stored {
                None => counts.new += 1,
                Some(true) => {
                    touch.execute(seen)?;
                    counts.unchanged += 1;
                    continue;
                }
                // Stored text may differ and still be the same finding
                // (parameters serialised in another key order, say).
                Some(false) => {
                    let old = get
                        .query_row(params![f.id], finding_from)
                        .optional()?
                        .transpose()?;
                    if old.is_some_and(|old| super::same_finding(&old, f)) {
                        touch.execute(seen)?;
                        counts.unchanged += 1;
                        continue;
                    }
                    counts.updated += 1;
                }
            }
            put.execute(data)?;
            touch.execute(seen)?;
        }
    }
    tx.commit()?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store at `dir/store.db` holding a generated month (October 2026)
    /// of `patients` patients, loaded with the import commands' code.
    fn month_store(dir: &std::path::Path, patients: u32, seed: u64) -> SqliteStore {
        use wuding_firmware_host::scenario::{ScenarioConfig, generate};
        let month = dir.join("month");
        let mut cfg = ScenarioConfig::new(patients, 2026, 10);
        cfg.seed = seed;
        generate(&cfg).write_to(&month).unwrap();
        let store = SqliteStore::open(&dir.join("store.db")).unwrap();
        let log = crate::ingest::Log::new(wuding_protocol::TerminalSigner::from_seed(&[3; 32]));
        crate::month::load_dir(&store, &log, &month, &|| 1_800_000_000_000).unwrap();
        store
    }

    /// Puts the claims table of the store at `path` back in the layout the
    /// migrations before [`PACKED_CLAIMS_MIGRATION`] left (a column a
    /// field), with the same lines, as a store made before it would hold
    /// them.
    fn claims_back_in_columns(conn: &Connection) {
        let lines = claims_where_on(conn, "", &[]).unwrap();
        let columns = MIGRATIONS[..PACKED_CLAIMS_MIGRATION - 1]
            .iter()
            .rev()
            .find(|m| m.contains("CREATE TABLE claims_by_patient_day"))
            .unwrap();
        let create = &columns[columns.find("CREATE TABLE claims_by_patient_day").unwrap()..];
        let create = create[..create.find(") WITHOUT ROWID;").unwrap() + 16]
            .replace("claims_by_patient_day", "claims");
        conn.execute_batch(&format!(
            "DROP TABLE claims; {create}
             CREATE UNIQUE INDEX claims_by_id ON claims (claim_id);
             CREATE INDEX claims_by_patient ON claims (insured_id, service_date);"
        ))
        .unwrap();
        for c in &lines {
            conn.execute(
                "INSERT INTO claims VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'old.csv')",
                params![
                    c.claim_id.as_str(),
                    c.insured_id.as_str(),
                    c.hospital_code.as_str(),
                    c.department_code.as_str(),
                    c.doctor_id.as_str(),
                    c.service_date.to_string(),
                    c.service_code.as_str(),
                    c.service_kind.code(),
                    c.quantity,
                    c.amount_fen as i64,
                    c.drug_code.as_deref(),
                    c.dose.as_ref().map(|d| d.amount_milli as i64),
                    c.dose.as_ref().map(|d| d.unit.as_str()),
                ],
            )
            .unwrap();
        }
    }

    /// A store whose claim lines were kept a column a field reads the same
    /// lines, in the same order, once the migration has packed them, and a
    /// patient's calendar shows them as before.
    #[test]
    fn claim_lines_kept_in_columns_come_back_packed() {
        use crate::store::casework::Casework;
        assert!(MIGRATIONS[PACKED_CLAIMS_MIGRATION - 1].contains("line         BLOB"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let (lines, patient, calendar) = {
            let store = month_store(dir.path(), 30, 5);
            let lines = store.claims_between("2026-10-01", "2026-10-31").unwrap();
            let patient = lines
                .iter()
                .find(|c| c.dose.is_some() && c.drug_code.is_some())
                .expect("a drug line with its dose")
                .insured_id
                .to_string();
            let calendar = store
                .patient_calendar(&patient, "2026-10-01", "2026-10-31")
                .unwrap();
            (lines, patient, calendar)
        };
        assert!(lines.len() > 200, "{} lines", lines.len());
        assert!(calendar.iter().any(|e| e.source == "claimed"));
        assert!(calendar.iter().any(|e| e.source == "attested"));
        {
            let conn = Connection::open(&path).unwrap();
            claims_back_in_columns(&conn);
            conn.pragma_update(None, "user_version", (PACKED_CLAIMS_MIGRATION - 1) as i64)
                .unwrap();
            let packed: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('claims') WHERE name = 'line'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(packed, 0, "the lines are in columns");
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.claims_between("2026-10-01", "2026-10-31").unwrap(),
            lines
        );
        assert_eq!(
            store
                .patient_calendar(&patient, "2026-10-01", "2026-10-31")
                .unwrap(),
            calendar
        );
        // The same line imported again is still the one stored.
        assert_eq!(store.insert_claims(&lines[..5], "again.csv").unwrap(), 0);
    }

    /// Derived data is written with synchronous=NORMAL, but the writer goes
    /// back to FULL after every such write, failed or not, so the next
    /// signed record's receipt still means it is on disk.
    #[test]
    fn reconciliation_writes_leave_receipts_fully_synced() {
        use crate::store::casework::Casework;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        let synchronous = |store: &SqliteStore| -> i64 {
            store
                .conn()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(synchronous(&store), 2, "FULL from the start");
        let row = FindingRow {
            id: "0123456789abcdef0123456789abcdef".into(),
            rule_id: "phantom_session".into(),
            ruleset_version: "1".into(),
            severity: "red".into(),
            service_date: Some("2026-10-05".into()),
            subject_type: "claim".into(),
            subject_id: "C1".into(),
            hospital_code: Some("H1".into()),
            insured_id: Some("P1".into()),
            claim_ids: vec!["C1".into()],
            record_ids: Vec::new(),
            amount_fen: 42_000,
            params: Default::default(),
            explanation_zh: "无".into(),
            explanation_en: "none".into(),
            status: "open".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
        };
        let counts = store
            .upsert_findings(std::slice::from_ref(&row), 1)
            .unwrap();
        assert_eq!(counts.new, 1);
        assert_eq!(synchronous(&store), 2);
        store.refresh_finding_totals("2026-10", "2026-10").unwrap();
        store
            .put_hospital_months("2026-10", "2026-10", &[])
            .unwrap();
        store.put_patient_months("2026-10", "2026-10", &[]).unwrap();
        assert_eq!(synchronous(&store), 2);
        let failed: Result<(), StoreError> =
            store.derived_write(|_| Err(StoreError::Corrupt("test")));
        assert!(failed.is_err());
        assert_eq!(synchronous(&store), 2, "FULL again after a failed write");
        let again = store.upsert_findings(&[row], 2).unwrap();
        assert_eq!((again.new, again.unchanged), (0, 1));
    }

    /// A run's last step counts the findings' totals on a connection of
    /// its own beside the patients' figures: the totals it leaves are those
    /// the plain recount leaves (every status, undated findings, several
    /// months and hospitals), stale totals of the period are replaced, and
    /// months outside the period are kept.
    #[test]
    fn run_figures_leave_the_totals_a_recount_leaves() {
        use crate::store::casework::{Casework, HospitalMonth, PatientMonth};
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<FindingRow> = (0..240u32)
            .map(|i| FindingRow {
                id: format!("{i:032x}"),
                rule_id: ["phantom_session", "short_session", "fallback_rate"][i as usize % 3]
                    .into(),
                ruleset_version: "1".into(),
                severity: ["red", "yellow", "green"][i as usize % 3].into(),
                service_date: match i % 7 {
                    0 => None,
                    1 => Some(format!("2026-11-{:02}", 1 + i % 28)),
                    _ => Some(format!("2026-10-{:02}", 1 + i % 31)),
                },
                subject_type: "claim".into(),
                subject_id: format!("C{i}"),
                hospital_code: (i % 11 != 0).then(|| format!("H{}", i % 4)),
                insured_id: Some(format!("P{i}")),
                claim_ids: vec![format!("C{i}")],
                record_ids: Vec::new(),
                amount_fen: 1_000 + u64::from(i) * 37,
                params: Default::default(),
                explanation_zh: "无".into(),
                explanation_en: "none".into(),
                status: "open".into(),
                first_seen_ms: 0,
                last_seen_ms: 0,
            })
            .collect();
        let totals =
            |store: &SqliteStore| -> Vec<(String, String, String, String, String, i64, i64)> {
                store
                .conn()
                .prepare(
                    "SELECT month, hospital_code, rule_id, severity, status, findings, amount_fen
                       FROM finding_totals ORDER BY 1, 2, 3, 4, 5",
                )
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            };
        let patient = PatientMonth {
            patient_ref: "ref".into(),
            insured_id: "P1".into(),
            figures: HospitalMonth {
                month: "2026-10".into(),
                hospital_code: "H1".into(),
                attested_sessions: 13,
                ..HospitalMonth::default()
            },
        };
        let mut stores = Vec::new();
        for name in ["recount.db", "run.db"] {
            let store = SqliteStore::open(&dir.path().join(name)).unwrap();
            store.upsert_findings(&rows, 1).unwrap();
            let conn = store.conn();
            conn.execute_batch(
                "UPDATE findings SET status = 'notified' WHERE CAST(substr(finding_id, 31) AS INTEGER) % 3 = 1;
                 INSERT INTO finding_totals VALUES ('2026-10', 'H9', 'gone', 'red', 'open', 5, 500);
                 INSERT INTO finding_totals VALUES ('2026-09', 'H9', 'kept', 'red', 'open', 2, 200);",
            )
            .unwrap();
            drop(conn);
            stores.push(store);
        }
        // The plain recount on one store, a run's last step on the other.
        let recount_and_run = || {
            stores[0]
                .refresh_finding_totals("2026-10", "2026-11")
                .unwrap();
            stores[1]
                .put_run_figures("2026-10", "2026-11", &[], std::slice::from_ref(&patient))
                .unwrap();
            (totals(&stores[0]), totals(&stores[1]))
        };
        let (recount, run) = recount_and_run();
        assert_eq!(run, recount);
        assert!(run.iter().any(|t| t.0.is_empty()), "undated findings");
        assert!(run.iter().any(|t| t.4 == "notified"));
        assert!(run.iter().all(|t| t.2 != "gone"), "stale totals replaced");
        assert!(run.iter().any(|t| t.2 == "kept"), "other months kept");
        let counted: i64 = run.iter().filter(|t| t.2 != "kept").map(|t| t.5).sum();
        assert_eq!(counted, rows.len() as i64);
        let fen: i64 = run.iter().filter(|t| t.2 != "kept").map(|t| t.6).sum();
        assert_eq!(fen as u64, rows.iter().map(|r| r.amount_fen).sum::<u64>());
        let stored = stores[1].patient_months_of("ref").unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].figures.attested_sessions, 13);

        // The next run: some findings moved on (status), one group's money
        // changed, every finding of one hospital and month is gone (their
        // totals are deleted), one finding about a new hospital arrived;
        // then a run that changes nothing. Each leaves what a recount does.
        for store in &stores {
            store
                .conn()
                .execute_batch(
                    "UPDATE findings SET status = 'closed' WHERE CAST(substr(finding_id, 31) AS INTEGER) % 5 = 2;
                     UPDATE findings SET amount_fen = amount_fen + 1 WHERE rule_id = 'short_session';
                     DELETE FROM findings WHERE hospital_code = 'H2' AND service_date LIKE '2026-11-%';
                     UPDATE findings SET hospital_code = 'H-NEW' WHERE finding_id = (SELECT MIN(finding_id) FROM findings);",
                )
                .unwrap();
        }
        for round in 0..2 {
            let (recount, run) = recount_and_run();
            assert_eq!(run, recount, "round {round}");
            assert!(run.iter().any(|t| t.4 == "closed"));
            assert!(run.iter().any(|t| t.1 == "H-NEW"));
            assert!(!run.iter().any(|t| t.1 == "H2" && t.0 == "2026-11"));
        }
    }

    /// A finding about claim lines `claims` (the first its subject).
    fn finding(id: &str, claims: &[&str]) -> FindingRow {
        FindingRow {
            id: id.into(),
            rule_id: "phantom_session".into(),
            ruleset_version: "1".into(),
            severity: "red".into(),
            service_date: Some("2026-10-05".into()),
            subject_type: "claim".into(),
            subject_id: claims[0].into(),
            hospital_code: Some("H1".into()),
            insured_id: Some("P1".into()),
            claim_ids: claims.iter().map(|c| (*c).to_owned()).collect(),
            record_ids: Vec::new(),
            amount_fen: 42_000,
            params: [("min_minutes".to_owned(), "30".to_owned())].into(),
            explanation_zh: "无".into(),
            explanation_en: "none".into(),
            status: "open".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
        }
    }

    /// A re-run confirms an unchanged finding by the digest stored beside
    /// it; a finding whose data changed is updated whatever digest is
    /// stored, and one stored before digests were kept (none) is compared
    /// column by column once and gets its digest.
    #[test]
    fn unchanged_findings_are_confirmed_by_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("f.db")).unwrap();
        let (a, b) = (
            "0123456789abcdef0123456789abcdef",
            "fedcba9876543210fedcba9876543210",
        );
        let stored_digest = |id: &str| -> Option<Vec<u8>> {
            store
                .conn()
                .query_row(
                    "SELECT digest FROM finding_seen WHERE finding_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let first = [finding(a, &["C1"]), finding(b, &["C2"])];
        let counts = store.upsert_findings(&first, 1).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (2, 0, 0));
        assert_eq!(
            stored_digest(a).unwrap(),
            super::super::finding_digest(&first[0])
        );

        // Again: unchanged; then a's evidence grows: updated, and its new
        // digest stored; then unchanged again.
        let counts = store.upsert_findings(&first, 2).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 0, 2));
        let grown = [finding(a, &["C1", "C9"]), finding(b, &["C2"])];
        let counts = store.upsert_findings(&grown, 3).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 1, 1));
        let read = store.findings(&FindingFilter::default()).unwrap();
        let a_read = read.iter().find(|f| f.id == a).unwrap();
        assert_eq!(a_read.claim_ids, ["C1", "C9"]);
        assert_eq!(a_read.last_seen_ms, 3);
        assert_eq!(
            stored_digest(a).unwrap(),
            super::super::finding_digest(&grown[0])
        );
        let counts = store.upsert_findings(&grown, 4).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 0, 2));

        // Stored before digests: compared by its columns, then digested.
        store
            .conn()
            .execute("UPDATE finding_seen SET digest = NULL", [])
            .unwrap();
        let counts = store.upsert_findings(&grown, 5).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 0, 2));
        assert!(stored_digest(b).is_some());
        let read = store.findings(&FindingFilter::default()).unwrap();
        assert!(read.iter().all(|f| f.last_seen_ms == 5));
        // A wrong stored digest never hides a change.
        store
            .conn()
            .execute("UPDATE finding_seen SET digest = x'00'", [])
            .unwrap();
        let counts = store.upsert_findings(&first, 6).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 1, 1));

        // A finding that comes back about another patient (a corrected
        // claim line) is updated, and its one seen row moves to that
        // patient; a finding about no patient is kept under ''.
        let mut moved = first.clone();
        moved[0].insured_id = Some("P2".into());
        moved[1].insured_id = None;
        let counts = store.upsert_findings(&moved, 7).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 2, 0));
        let seen: Vec<(String, String, i64)> = store
            .conn()
            .prepare("SELECT insured_id, finding_id, last_seen_ms FROM finding_seen")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            seen,
            [("".into(), b.into(), 7), ("P2".into(), a.into(), 7)],
            "one row per finding, in patient order"
        );
        let counts = store.upsert_findings(&moved, 8).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 0, 2));
        let read = store.findings(&FindingFilter::default()).unwrap();
        assert!(read.iter().all(|f| f.last_seen_ms == 8));
    }

    /// Findings offered by their digest (of two months and undated ones):
    /// those whose stored digest is the one offered are marked seen; one whose data changed, one never
    /// stored and one stored but not offered (no longer produced) are not,
    /// and the last two keep their sighting. In key order (patient, id)
    /// the store marks runs of them at once; out of order one at a time,
    /// with the same outcome.
    #[test]
    fn only_findings_offered_unchanged_are_confirmed() {
        use crate::store::{SeenFinding, finding_digest};
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<FindingRow> = (0..12u32)
            .map(|i| {
                let mut f = finding(&format!("{:032x}", i * 7919 % 97), &[&format!("C{i}")]);
                f.insured_id = (i % 4 != 0).then(|| format!("P{}", i % 3));
                // Two months, and undated findings; a patient's months
                // lie apart in the store.
                f.service_date = match i % 5 {
                    0 => None,
                    1 | 2 => Some("2026-11-02".into()),
                    _ => f.service_date,
                };
                f
            })
            .collect();
        for in_key_order in [true, false] {
            let store = SqliteStore::open(&dir.path().join(format!("{in_key_order}.db"))).unwrap();
            store.upsert_findings(&rows, 1).unwrap();
            fn offer(f: &FindingRow, digest: [u8; 16]) -> SeenFinding<'_> {
                SeenFinding {
                    id: f.id.clone(),
                    insured_id: f.insured_id.as_deref().unwrap_or(""),
                    month: f.service_date.as_deref().map_or("", |d| &d[..7]).into(),
                    digest,
                }
            }
            // Every finding but the fourth (no longer produced); the
            // sixth's data changed; one new finding.
            let new = finding(&format!("{:032x}", 500), &["C-NEW"]);
            let mut seen: Vec<SeenFinding<'_>> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 3)
                .map(|(i, f)| offer(f, if i == 5 { [0; 16] } else { finding_digest(f) }))
                .chain([offer(&new, finding_digest(&new))])
                .collect();
            seen.sort_by(|a, b| a.key().cmp(&b.key()));
            if !in_key_order {
                seen.reverse();
            }
            let confirmed = store.confirm_unchanged(&seen, 2).unwrap();
            for (f, confirmed) in seen.iter().zip(&confirmed) {
                let expected = f.id != rows[5].id && f.id != new.id;
                assert_eq!(
                    *confirmed, expected,
                    "{} (in key order: {in_key_order})",
                    f.id
                );
            }
            let stored = store.findings(&FindingFilter::default()).unwrap();
            assert_eq!(stored.len(), rows.len());
            for f in &stored {
                let unchanged = f.id != rows[3].id && f.id != rows[5].id;
                assert_eq!(f.last_seen_ms, if unchanged { 2 } else { 1 }, "{}", f.id);
            }
        }
    }

    /// A run that dropped the findings' indexes (it expects mostly new
    /// findings) offers each finding as an insert first; known findings
    /// still come out unchanged or updated, their casework status and
    /// first sighting kept: the two stores end up holding the same rows
    /// and count the same.
    #[test]
    fn a_run_expecting_new_findings_stores_what_any_run_stores() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        let first = [finding(&a, &["C1"]), finding(&b, &["C2"])];
        let second = [
            finding(&a, &["C1"]),
            finding(&b, &["C2", "C9"]),
            finding(&c, &["C3"]),
        ];
        let mut stored = Vec::new();
        for expecting_new in [false, true] {
            let store = SqliteStore::open(&dir.path().join(format!("{expecting_new}.db"))).unwrap();
            store.upsert_findings(&first, 1).unwrap();
            store
                .conn()
                .execute(
                    "UPDATE findings SET status = 'confirmed' WHERE finding_id = ?1",
                    [&b],
                )
                .unwrap();
            if expecting_new {
                assert!(store.defer_finding_indexes(1_000).unwrap());
                assert!(store.mostly_new.load(std::sync::atomic::Ordering::Relaxed));
            }
            let counts = store.upsert_findings(&second, 2).unwrap();
            assert_eq!(
                (counts.new, counts.updated, counts.unchanged),
                (1, 1, 1),
                "expecting new findings: {expecting_new}"
            );
            let counts = store.upsert_findings(&second, 3).unwrap();
            assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 0, 3));
            store.build_finding_indexes().unwrap();
            assert!(!store.mostly_new.load(std::sync::atomic::Ordering::Relaxed));
            stored.push(store.findings(&FindingFilter::default()).unwrap());
        }
        assert_eq!(stored[0], stored[1]);
        let b_read = stored[1].iter().find(|f| f.id == b).unwrap();
        assert_eq!(
            (
                b_read.status.as_str(),
                b_read.first_seen_ms,
                b_read.last_seen_ms
            ),
            ("confirmed", 1, 3)
        );
        assert_eq!(b_read.claim_ids, ["C2", "C9"]);
        let c_read = stored[1].iter().find(|f| f.id == c).unwrap();
        assert_eq!((c_read.status.as_str(), c_read.first_seen_ms), ("open", 2));
    }

    /// `table`'s indexes with their key columns in order (name,
    /// descending), the primary key's included.
    fn index_columns(conn: &Connection, table: &str) -> Vec<(String, Vec<(String, bool)>)> {
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master
                 WHERE type = 'index' AND tbl_name = ?1 ORDER BY name",
            )
            .unwrap()
            .query_map([table], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        names
            .into_iter()
            .map(|name| {
                let columns = conn
                    .prepare("SELECT name, desc FROM pragma_index_xinfo(?1) WHERE key = 1")
                    .unwrap()
                    .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                (name, columns)
            })
            .collect()
    }

    /// Deferring drops exactly the secondary indexes the migrations leave
    /// (`FINDING_INDEXES` is that list), only when the expected new
    /// findings outweigh the stored ones; findings stay readable and
    /// writable meanwhile; building brings every index back as it was, and
    /// so does opening a store a run left without them.
    #[test]
    fn deferred_finding_indexes_come_back_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let store = SqliteStore::open(&path).unwrap();
        let fresh = index_columns(&store.conn(), "findings");
        let mut names: Vec<&str> = FINDING_INDEXES.indexes.iter().map(|ix| ix.0).collect();
        names.push("sqlite_autoindex_findings_1");
        names.sort_unstable();
        assert_eq!(
            fresh.iter().map(|ix| ix.0.as_str()).collect::<Vec<_>>(),
            names,
            "FINDING_INDEXES lists every secondary index of findings"
        );

        let row = |n: u32| FindingRow {
            id: format!("{n:032x}"),
            rule_id: "phantom_session".into(),
            ruleset_version: "1".into(),
            severity: "red".into(),
            service_date: Some("2026-10-05".into()),
            subject_type: "claim".into(),
            subject_id: format!("C{n}"),
            hospital_code: Some("H1".into()),
            insured_id: Some("P1".into()),
            claim_ids: vec![format!("C{n}")],
            record_ids: Vec::new(),
            amount_fen: 50_000 + u64::from(n),
            params: Default::default(),
            explanation_zh: "无人到场".into(),
            explanation_en: "nobody attended".into(),
            status: "open".into(),
            first_seen_ms: 1,
            last_seen_ms: 1,
        };
        // An empty table: deferred whatever the estimate.
        assert!(store.defer_finding_indexes(0).unwrap());
        assert_eq!(
            index_columns(&store.conn(), "findings").len(),
            1,
            "only the primary key is left"
        );
        let rows: Vec<FindingRow> = (0..10).map(row).collect();
        assert_eq!(store.upsert_findings(&rows, 1).unwrap().new, 10);
        let listed = store.findings(&FindingFilter::default()).unwrap();
        assert_eq!(listed.len(), 10);
        store.build_finding_indexes().unwrap();
        assert_eq!(index_columns(&store.conn(), "findings"), fresh);
        store.build_finding_indexes().unwrap();
        assert_eq!(
            index_columns(&store.conn(), "findings"),
            fresh,
            "idempotent"
        );

        // Ten stored: six expected new are too few, seven are enough.
        assert!(!store.defer_finding_indexes(6).unwrap());
        assert_eq!(index_columns(&store.conn(), "findings"), fresh);
        assert!(store.defer_finding_indexes(7).unwrap());
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            index_columns(&store.conn(), "findings"),
            fresh,
            "opening builds what an unfinished run dropped"
        );
        assert_eq!(store.findings(&FindingFilter::default()).unwrap(), listed);
    }

    /// A period's first patient-level rows are written without the
    /// table's secondary indexes, built again in the same transaction; a
    /// re-run changing a few rows leaves the schema alone.
    #[test]
    fn patient_months_written_in_bulk_keep_their_indexes() {
        use crate::store::casework::{Casework, HospitalMonth, PatientMonth};
        let store = SqliteStore::in_memory().unwrap();
        let conn_state = |store: &SqliteStore| {
            let conn = store.conn();
            let version: i64 = conn
                .query_row("PRAGMA schema_version", [], |r| r.get(0))
                .unwrap();
            (index_columns(&conn, "patient_months"), version)
        };
        let (fresh, v0) = conn_state(&store);
        assert_eq!(fresh.len(), 4, "{fresh:?}");
        let mut rows: Vec<PatientMonth> = (0..100)
            .map(|n: u32| PatientMonth {
                patient_ref: format!("ref{n:03}"),
                insured_id: format!("P51{n:011}"),
                figures: HospitalMonth {
                    hospital_code: "H510100001".into(),
                    month: "2026-10".into(),
                    attested_sessions: 13,
                    findings_fen: u64::from(n) * 100,
                    ..Default::default()
                },
            })
            .collect();
        store
            .put_patient_months("2026-10", "2026-10", &rows)
            .unwrap();
        let (after, v1) = conn_state(&store);
        assert_eq!(after, fresh);
        assert!(v1 > v0, "dropped and built");
        assert_eq!(
            store.patient_months_of("ref042").unwrap(),
            vec![rows[42].clone()]
        );
        rows[7].figures.red = 1;
        store
            .put_patient_months("2026-10", "2026-10", &rows)
            .unwrap();
        assert_eq!(
            conn_state(&store),
            (fresh, v1),
            "one changed row: indexes kept"
        );
        assert_eq!(
            store.patient_months_of("ref007").unwrap(),
            vec![rows[7].clone()]
        );
    }

    /// Rows read in chunks come back in the order read, all of them, at
    /// and around chunk boundaries: gathered from several chunks into one
    /// vector of exactly their number, or (no more than one chunk) in the
    /// vector they were read into.
    #[test]
    fn rows_read_in_chunks_keep_their_order_and_number() {
        let chunk = Chunked::<u32>::CHUNK;
        for n in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 7] {
            let mut rows = Chunked::default();
            for i in 0..n {
                rows.push(i as u32);
            }
            let all = rows.into_vec();
            assert_eq!(all.len(), n);
            if n > chunk {
                assert_eq!(all.capacity(), n, "gathered into exactly {n} rows");
            } else {
                assert!(all.capacity() <= chunk, "one chunk at most");
            }
            assert!(all.iter().enumerate().all(|(i, &v)| v == i as u32));
        }
    }

    /// A database from before claims were kept by date keeps its claim
    /// lines through the migration, and they stay unique by claim id.
    #[test]
    fn claims_survive_the_move_to_date_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // Before the move to date order (and the later one to day and
        // patient order).
        let before = ATTESTED_SESSIONS_MIGRATION - 1;
        {
            let conn = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..before] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", before as i64)
                .unwrap();
            conn.execute(
                "INSERT INTO claims VALUES ('C1', 'P1', 'H1', 'NEPH', 'D1', '2026-10-02',
                 '003105010010000', 'HD', 1, 42000, NULL, NULL, NULL, 'old.csv')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let lines = store.claims_between("2026-10-01", "2026-10-31").unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].claim_id, "C1");
        assert_eq!(lines[0].amount_fen, 42_000);
        let again = store.insert_claims(&lines, "again.csv").unwrap();
        assert_eq!(again, 0, "the same claim id is not stored twice");
        assert_eq!(store.claim_count().unwrap(), 1);
    }

    /// A store whose session facts were kept in twenty columns (caught up
    /// with its log) reads the same sessions once the migration has packed
    /// them: the table is made again from the signed records.
    #[test]
    fn session_facts_kept_in_columns_come_back_packed() {
        assert!(MIGRATIONS[PACKED_SESSIONS_MIGRATION - 1].contains("facts        BLOB"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let all = PatientRange::all();
        let sorted = |mut v: Vec<AttestedSession>| {
            v.sort_by_key(|s| s.record_id);
            v
        };
        let sessions = {
            let store = month_store(dir.path(), 30, 9);
            sorted(
                store
                    .attested_sessions("2026-10-01", "2026-10-31", &all)
                    .unwrap(),
            )
        };
        assert!(sessions.len() > 200, "{} sessions", sessions.len());
        {
            // The table as the migrations before packing left it.
            let conn = Connection::open(&path).unwrap();
            let columns = MIGRATIONS[..PACKED_SESSIONS_MIGRATION - 1]
                .iter()
                .find(|m| m.contains("CREATE TABLE attested_sessions"))
                .unwrap();
            let create = &columns[columns.find("CREATE TABLE attested_sessions").unwrap()..];
            let create = &create[..create.find(") WITHOUT ROWID;").unwrap() + 16];
            assert!(create.contains("check_out_fallback TEXT"), "{create}");
            // Nor had later migrations run.
            conn.execute_batch(&format!(
                "DROP TABLE attested_sessions; {create}
                 ALTER TABLE finding_seen DROP COLUMN digest;"
            ))
            .unwrap();
            claims_back_in_columns(&conn);
            conn.pragma_update(None, "user_version", (PACKED_SESSIONS_MIGRATION - 1) as i64)
                .unwrap();
            let head: i64 = conn
                .query_row("SELECT log_index FROM attested_sessions_head", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert!(head > 0, "caught up with the log");
        }
        let store = SqliteStore::open(&path).unwrap();
        let packed = sorted(
            store
                .attested_sessions("2026-10-01", "2026-10-31", &all)
                .unwrap(),
        );
        assert_eq!(packed, sessions);
        let columns: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM pragma_table_info('attested_sessions')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(columns, 4);
    }

    /// A store whose seen rows were keyed by finding id alone keeps every
    /// finding's last sighting and digest once they are keyed by month and
    /// patient (migrations 17 and 18):
    /// a run again finds every finding unchanged and moves each sighting.
    #[test]
    fn seen_rows_keyed_by_id_come_back_keyed_by_patient() {
        assert!(
            MIGRATIONS[SEEN_BY_PATIENT_MIGRATION - 1]
                .contains("PRIMARY KEY (insured_id, finding_id)")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let rules = crate::reconcile::load_rules(None).unwrap();
        let period = crate::reconcile::period("2026-10-01", "2026-10-31").unwrap();
        let seen_rows = |conn: &Connection| -> Vec<(String, i64, Vec<u8>)> {
            conn.prepare("SELECT finding_id, last_seen_ms, digest FROM finding_seen ORDER BY 1")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let (findings, before) = {
            let store = month_store(dir.path(), 40, 13);
            let (summary, _) = crate::reconcile::run(&store, &rules, period, 1_000, false).unwrap();
            assert!(summary.stored.new > 20, "{} findings", summary.stored.new);
            let before = seen_rows(&store.conn());
            (summary.stored.new, before)
        };
        assert_eq!(before.len() as u64, findings);
        {
            // The table as the migrations before this one left it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE seen_by_id (
                     finding_id   TEXT PRIMARY KEY,
                     last_seen_ms INTEGER NOT NULL,
                     digest BLOB
                 ) WITHOUT ROWID;
                 INSERT INTO seen_by_id SELECT finding_id, last_seen_ms, digest FROM finding_seen;
                 DROP TABLE finding_seen;
                 ALTER TABLE seen_by_id RENAME TO finding_seen;",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", (SEEN_BY_PATIENT_MIGRATION - 1) as i64)
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(seen_rows(&store.conn()), before);
        let keyed: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM finding_seen s JOIN findings f USING (finding_id)
                  WHERE s.insured_id = COALESCE(f.insured_id, '')
                    AND s.month = COALESCE(substr(f.service_date, 1, 7), '')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            keyed as u64, findings,
            "each row under its finding's month and patient"
        );
        let (again, _) = crate::reconcile::run(&store, &rules, period, 2_000, false).unwrap();
        assert_eq!(
            (
                again.stored.new,
                again.stored.updated,
                again.stored.unchanged
            ),
            (0, 0, findings)
        );
        let after = seen_rows(&store.conn());
        assert!(after.iter().all(|(_, seen, _)| *seen == 2_000));
    }

    /// A range of patients reads exactly its patients' sessions and claim
    /// lines of the period (both are read a day at a time), whichever end
    /// of the range is open, and a period of some days only those days.
    #[test]
    fn a_range_of_patients_reads_its_sessions_and_claims_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = month_store(dir.path(), 60, 5);
        let all = PatientRange::all();
        let (from, to) = ("2026-10-04", "2026-10-19");
        let sessions = store.attested_sessions(from, to, &all).unwrap();
        let claims = store.claims_between(from, to).unwrap();
        let mut patients: Vec<&str> = claims.iter().map(|c| c.insured_id.as_str()).collect();
        patients.sort_unstable();
        patients.dedup();
        assert!(patients.len() > 20, "{} patients", patients.len());
        let (a, b) = (
            patients[7].to_owned(),
            patients[patients.len() - 6].to_owned(),
        );
        let ranges = [
            PatientRange {
                from: None,
                to: Some(a.clone()),
            },
            PatientRange {
                from: Some(a.clone()),
                to: Some(b.clone()),
            },
            PatientRange {
                from: Some(b),
                to: None,
            },
        ];
        let (mut seen_sessions, mut seen_claims) = (0, 0);
        for range in &ranges {
            let mut got = store.attested_sessions(from, to, range).unwrap();
            got.sort_by_key(|s| s.record_id);
            let mut want: Vec<_> = sessions
                .iter()
                .filter(|s| range.contains(&s.facts.insured_id))
                .cloned()
                .collect();
            want.sort_by_key(|s| s.record_id);
            assert!(!want.is_empty());
            assert_eq!(got, want, "sessions of {range:?}");
            seen_sessions += got.len();
            let mut got = store.claims_of_patients(from, to, range).unwrap();
            got.sort_by(|x, y| x.claim_id.cmp(&y.claim_id));
            let mut want: Vec<_> = claims
                .iter()
                .filter(|c| range.contains(&c.insured_id))
                .cloned()
                .collect();
            want.sort_by(|x, y| x.claim_id.cmp(&y.claim_id));
            assert!(!want.is_empty());
            assert_eq!(got, want, "claim lines of {range:?}");
            assert!(
                got.iter()
                    .all(|c| c.service_date.to_string().as_str() >= from
                        && c.service_date.to_string().as_str() <= to)
            );
            seen_claims += got.len();
        }
        assert_eq!((seen_sessions, seen_claims), (sessions.len(), claims.len()));
        // The period's days only: the whole month holds more.
        assert!(
            store
                .claims_between("2026-10-01", "2026-10-31")
                .unwrap()
                .len()
                > claims.len()
        );
    }

    /// Index builds sort within a small budget on every core and leave the
    /// connection's cache size and thread limit as they found them, when
    /// the build succeeds and when it fails; the indexes built order the
    /// rows as the table does.
    #[test]
    fn index_builds_sort_on_every_core_and_restore_the_connection() {
        const T: SecondaryIndexes = SecondaryIndexes {
            table: "t",
            indexes: &[("t_by_b", "b DESC, a"), ("t_by_a", "a")],
        };
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.pragma_update(None, "cache_size", -65_536).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (a TEXT NOT NULL, b INTEGER NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49999)
             INSERT INTO t SELECT printf('F-%08d', (i * 7919) % 50000), (i * 31) % 977 FROM n;",
        )
        .unwrap();
        let settings = |conn: &Connection| -> (i64, i64) {
            (
                conn.query_row("PRAGMA cache_size", [], |r| r.get(0))
                    .unwrap(),
                conn.query_row("PRAGMA threads", [], |r| r.get(0)).unwrap(),
            )
        };
        let before = settings(&conn);
        assert_eq!(before, (-65_536, 0));
        let during = sorting_on_every_core(&conn, || Ok(settings(&conn))).unwrap();
        assert_eq!(during.0, -SORTER_KIB);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        assert!(
            during.1 >= 1 && during.1 <= cores,
            "sorter threads {}",
            during.1
        );
        assert_eq!(settings(&conn), before);
        let failed: Result<(), _> =
            sorting_on_every_core(&conn, || Err(StoreError::Corrupt("the build failed")));
        assert!(failed.is_err());
        assert_eq!(settings(&conn), before, "restored after a failed build");

        assert_eq!(T.build_missing(&conn).unwrap(), 2);
        assert_eq!(T.build_missing(&conn).unwrap(), 0, "nothing left to build");
        assert_eq!(settings(&conn), before);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let read = |sql: &str| -> Vec<(String, i64)> {
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let by_index = read("SELECT a, b FROM t INDEXED BY t_by_b ORDER BY b DESC, a");
        let mut sorted = read("SELECT a, b FROM t NOT INDEXED");
        sorted.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        assert_eq!(by_index.len(), 50_000);
        assert_eq!(by_index, sorted);
    }

    /// A run analyses the tables it writes and leaves the imports' tables
    /// (signed records, claims, rosters) as they were: ANALYZE counts every
    /// entry of a table's indexes, which for a national month's records and
    /// claims took 5 of a first run's 24 s. A run that changed nothing
    /// analyses nothing.
    #[test]
    fn a_run_analyses_its_own_tables_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = month_store(dir.path(), 30, 7);
        let rules = crate::reconcile::load_rules(None).unwrap();
        let period = crate::reconcile::period("2026-10-01", "2026-10-31").unwrap();
        let (summary, _) = crate::reconcile::run(&store, &rules, period, 1_000, false).unwrap();
        assert!(summary.stored.new > 0);
        let analysed: Vec<String> = store
            .conn()
            .prepare("SELECT DISTINCT tbl FROM sqlite_stat1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // A table ANALYZE finds empty gets no row (no dated findings, say).
        let run_tables = crate::store::casework::RUN_TABLES;
        assert!(
            analysed.iter().all(|t| run_tables.contains(&t.as_str())),
            "{analysed:?}"
        );
        for t in ["findings", "finding_seen", "patient_months"] {
            assert!(
                analysed.iter().any(|a| a == t),
                "{t} not analysed: {analysed:?}"
            );
        }
        // A run that finds every finding as stored leaves the statistics
        // alone: they describe the same rows.
        store
            .conn()
            .execute_batch("DELETE FROM sqlite_stat1")
            .unwrap();
        let (again, _) = crate::reconcile::run(&store, &rules, period, 2_000, false).unwrap();
        assert_eq!((again.stored.new, again.stored.updated), (0, 0));
        let rows: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM sqlite_stat1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "analysed again though nothing changed");
    }

    /// A month's codes (patients, hospitals, departments, doctors, nurses,
    /// terminals, claim ids, service and drug codes) come back from the
    /// store kept inline: reading a national month allocates nothing per
    /// code (docs/rules.md, "Inline codes"). The generator's codes are the
    /// shapes a fund's are (`P5101000016733`, `CH51012200002-0000001`).
    #[test]
    fn a_month_is_read_without_a_heap_allocation_per_code() {
        let dir = tempfile::tempdir().unwrap();
        let store = month_store(dir.path(), 40, 9);
        let range = PatientRange::all();
        let sessions = store
            .attested_sessions("2026-10-01", "2026-10-31", &range)
            .unwrap();
        let claims = store
            .claims_of_patients("2026-10-01", "2026-10-31", &range)
            .unwrap();
        assert!(sessions.len() > 100 && claims.len() > 100);
        let inline = |c: &wuding_protocol::Code| !c.is_heap_allocated();
        for s in &sessions {
            let f = &s.facts;
            let codes = [
                &f.terminal_id,
                &f.hospital_code,
                &f.department_code,
                &f.insured_id,
                &f.nurse_id,
                &f.doctor_id,
            ];
            assert!(codes.into_iter().chain(&f.drug_code).all(inline), "{f:?}");
        }
        for c in &claims {
            let codes = [
                &c.claim_id,
                &c.insured_id,
                &c.hospital_code,
                &c.department_code,
                &c.doctor_id,
                &c.service_code,
            ];
            assert!(codes.into_iter().chain(&c.drug_code).all(inline), "{c:?}");
        }
        assert!(
            claims.iter().any(|c| c.drug_code.is_some()),
            "drug lines too"
        );
    }

    /// Rows come out in the order they were read whatever the read
    /// expected: nothing, too few, about right or too many. A read that
    /// expected enough fills one vector and hands that one over (no
    /// gather, no copy of a part's hundreds of megabytes).
    #[test]
    fn a_part_read_keeps_its_rows_in_order_whatever_it_expected() {
        let rows = 3 * Chunked::<u32>::CHUNK + 17;
        for expected in [0, 10, Chunked::<u32>::CHUNK, rows - 1000, rows, rows * 3] {
            let mut read = Chunked::expecting(expected);
            let first = read.current.as_ptr();
            for i in 0..rows as u32 {
                read.push(i);
            }
            let all = read.into_vec();
            assert_eq!(all.len(), rows, "expecting {expected}");
            assert!(all.iter().enumerate().all(|(i, v)| *v == i as u32));
            if expected >= rows - 1000 {
                assert_eq!(all.as_ptr(), first, "expecting {expected}: no gather");
            }
        }
    }

    /// Each part is sized by the one before it; parts of different sizes
    /// in either order read exactly their own rows.
    #[test]
    fn parts_of_different_sizes_read_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = month_store(dir.path(), 60, 4);
        let (from, to) = ("2026-10-01", "2026-10-31");
        let all = store
            .claims_of_patients(from, to, &PatientRange::all())
            .unwrap();
        let mut ids: Vec<&str> = all.iter().map(|c| c.insured_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let cut = ids[ids.len() / 5].to_owned();
        let small = PatientRange {
            from: None,
            to: Some(cut.clone()),
        };
        let large = PatientRange {
            from: Some(cut),
            to: None,
        };
        let expected = |range: &PatientRange| {
            let mut sessions: Vec<RecordId> = store
                .attested_sessions(from, to, &PatientRange::all())
                .unwrap()
                .iter()
                .filter(|s| range.contains(&s.facts.insured_id))
                .map(|s| s.record_id)
                .collect();
            let mut claims: Vec<String> = all
                .iter()
                .filter(|c| range.contains(&c.insured_id))
                .map(|c| c.claim_id.to_string())
                .collect();
            sessions.sort_unstable();
            claims.sort_unstable();
            (sessions, claims)
        };
        let (want_small, want_large) = (expected(&small), expected(&large));
        assert!(want_small.0.len() * 2 < want_large.0.len());
        for order in [[&small, &large, &small], [&large, &small, &large]] {
            for range in order {
                let mut sessions: Vec<RecordId> = store
                    .attested_sessions(from, to, range)
                    .unwrap()
                    .iter()
                    .map(|s| s.record_id)
                    .collect();
                let mut claims: Vec<String> = store
                    .claims_of_patients(from, to, range)
                    .unwrap()
                    .iter()
                    .map(|c| c.claim_id.to_string())
                    .collect();
                sessions.sort_unstable();
                claims.sort_unstable();
                let want = if std::ptr::eq(range, &small) {
                    &want_small
                } else {
                    &want_large
                };
                assert_eq!(&(sessions, claims), want);
            }
        }
    }

    /// A store from before `attested_sessions` gets the facts of every
    /// accepted session record it holds, and keeps its claim lines, when
    /// the migration runs.
    #[test]
    fn attested_sessions_are_filled_from_the_stored_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let all = PatientRange::all();
        let (sessions, claims) = {
            let store = month_store(dir.path(), 40, 11);
            let mut sessions = store
                .attested_sessions("2026-10-01", "2026-10-31", &all)
                .unwrap();
            sessions.sort_by_key(|s| s.record_id);
            let mut claims = store.claims_between("2026-10-01", "2026-10-31").unwrap();
            claims.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
            (sessions, claims)
        };
        assert!(sessions.len() > 300, "{} sessions", sessions.len());
        // As the store was before the migration: no facts table.
        {
            let conn = Connection::open(&path).unwrap();
            // (and before the later ones; those that only drop or add
            // indexes run again as they are)
            conn.execute_batch(
                "DROP TABLE attested_sessions; DROP TABLE finding_seen;
                 DROP TABLE attested_sessions_head",
            )
            .unwrap();
            claims_back_in_columns(&conn);
            conn.pragma_update(None, "user_version", ATTESTED_SESSIONS_MIGRATION as i64)
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let mut filled = store
            .attested_sessions("2026-10-01", "2026-10-31", &all)
            .unwrap();
        filled.sort_by_key(|s| s.record_id);
        assert_eq!(filled, sessions);
        let mut kept = store.claims_between("2026-10-01", "2026-10-31").unwrap();
        kept.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
        assert_eq!(kept, claims);
    }
}
