//! Storage for the auditor application: users and their web sessions, the
//! findings as auditors page through them, each finding's append-only case
//! history, the audit trail of who looked at what, and the per-hospital
//! monthly figures the dashboard shows. Both backends implement it
//! (`sqlite/casework.rs`, `postgres/casework.rs`).

use serde::Serialize;

use super::{FindingRow, StoreError};

/// A person who logs in to the auditor application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub username: String,
    pub display_name: String,
    /// auditor, senior_auditor, hospital or admin.
    pub role: String,
    /// The institution of a hospital user; `None` for fund staff.
    pub hospital_code: Option<String>,
    /// argon2id PHC string. Never serialized.
    #[serde(skip)]
    pub password_hash: String,
    /// Consecutive failed logins since the last success.
    pub failed_logins: u32,
    pub locked_until_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A logged-in browser. Only the SHA-256 of the cookie value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub token_hash: String,
    pub username: String,
    /// Sent back by the page in `X-CSRF-Token` on every state change.
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One step of a finding's case: who did what, when and why. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingEvent {
    pub finding_id: String,
    pub action: String,
    pub from_status: String,
    pub to_status: String,
    pub actor: String,
    pub actor_role: String,
    pub reason: String,
    /// The deduction, for `deduct`.
    pub amount_fen: Option<u64>,
    /// An appeal's attachment: file name and bytes (not serialized; served
    /// on its own route).
    pub attachment_name: Option<String>,
    #[serde(skip)]
    pub attachment: Option<Vec<u8>>,
    pub at_ms: i64,
}

/// One line of the audit trail: a view of personal data, a reveal, an
/// export, a login, a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub reason: String,
}

/// A page of findings with the totals of everything the filter matches.
/// A period (`from`, `to`) matches dated findings only: a finding without a
/// date (a record too malformed to read) shows in lists without a period,
/// and under its rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub severity: Option<String>,
    pub rule_id: Option<String>,
    pub status: Option<String>,
    /// Exact hospital, or a region prefix of the hospital code (`H5101`
    /// for a city, `H510104` for a county).
    pub hospital_prefix: Option<String>,
    pub insured_id: Option<String>,
    /// Statuses the caller may see at all (hospital users see nothing the
    /// fund has not notified them of); empty = every status.
    pub visible_statuses: Vec<String>,
    /// amount (largest first), date (newest first) or severity (default).
    pub sort: String,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FindingPage {
    pub rows: Vec<FindingRow>,
    /// Everything the filter matches, not just this page.
    pub total: u64,
    pub total_fen: u64,
    /// severity -> (count, fen) over everything the filter matches.
    pub by_severity: std::collections::BTreeMap<String, (u64, u64)>,
}

/// The dashboard's figures for one hospital and one month, written by each
/// reconciliation run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HospitalMonth {
    pub hospital_code: String,
    /// `YYYY-MM`.
    pub month: String,
    pub attested_sessions: u64,
    /// Sessions whose check-in or check-out was a supervised fallback.
    pub fallback_sessions: u64,
    pub attested_patients: u64,
    pub claimed_lines: u64,
    pub claimed_fen: u64,
    pub claimed_patients: u64,
    /// Claim lines with no attested session behind them.
    pub phantom_claims: u64,
    pub phantom_fen: u64,
    pub red: u64,
    pub yellow: u64,
    pub green: u64,
    /// Money at stake in every finding of the month.
    pub findings_fen: u64,
}

/// One patient's figures at one hospital in one month: the drill-down
/// level between a hospital and a case, written by each reconciliation
/// beside [`HospitalMonth`] (whose counters it shares; the patient counts
/// are 0 or 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientMonth {
    /// Opaque and stable: a keyed hash of the insured id. Pages and URLs
    /// name a patient by it, never by the id.
    pub patient_ref: String,
    pub insured_id: String,
    pub figures: HospitalMonth,
}

/// Which patients the drill-down lists: those of hospitals under a region
/// prefix in a range of months, summed per patient and hospital. The
/// rows of a page carry their month when the range is one month and an
/// empty month otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientQuery {
    /// `H51`, `H5101`, a hospital code; empty = everywhere.
    pub hospital_prefix: String,
    /// `YYYY-MM`.
    pub from_month: String,
    pub to_month: String,
    /// attested, claimed, phantom or amount (money at stake, the default);
    /// largest first.
    pub sort: String,
    pub offset: u64,
    pub limit: u64,
}

/// A terminal's chain as the server holds it: the last sequence number in
/// the chain and the records that arrived ahead of a missing predecessor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TerminalBacklog {
    pub terminal_id: String,
    pub chain_head: u64,
    pub held_records: u64,
}

/// One entry of a patient's calendar: an attested session or a claim line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CalendarEntry {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `attested` or `claimed`.
    pub source: String,
    /// Treatment kind (HD, HDF, CHEMO, ...).
    pub kind: String,
    pub hospital_code: String,
    /// Record id (hex) or claim id.
    pub id: String,
    /// Claimed amount (claims only).
    pub amount_fen: Option<u64>,
}

/// A saved version of the rule set: the TOML, who changed it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesetVersion {
    /// The `version` the TOML declares.
    pub version: String,
    pub toml: String,
    pub author: String,
    pub reason: String,
    pub at_ms: i64,
}

/// The tables a reconciliation run writes: the ones whose statistics
/// [`Casework::refresh_statistics`] brings up to date.
pub(crate) const RUN_TABLES: [&str; 5] = [
    "findings",
    "finding_seen",
    "finding_totals",
    "hospital_months",
    "patient_months",
];

/// What the auditor application needs from storage.
pub trait Casework {
    /// Adds a user; `Conflict` if the name is taken.
    fn add_user(&self, user: &UserRow) -> Result<(), StoreError>;
    fn user(&self, username: &str) -> Result<Option<UserRow>, StoreError>;
    fn users(&self) -> Result<Vec<UserRow>, StoreError>;
    /// After a login attempt: the new failure count and lock.
    fn set_login_state(
        &self,
        username: &str,
        failed_logins: u32,
        locked_until_ms: Option<i64>,
    ) -> Result<(), StoreError>;
    fn set_password(&self, username: &str, password_hash: &str) -> Result<(), StoreError>;

    fn put_web_session(&self, session: &WebSession) -> Result<(), StoreError>;
    /// The session if it exists and has not expired at `now_ms`.
    fn web_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<WebSession>, StoreError>;
    fn end_web_session(&self, token_hash: &str) -> Result<(), StoreError>;

    fn finding(&self, id: &str) -> Result<Option<FindingRow>, StoreError>;
    fn finding_page(&self, query: &FindingQuery) -> Result<FindingPage, StoreError>;
    /// Recomputes the per-month totals the findings list counts from, for
    /// `from..=to` (`YYYY-MM`) and undated findings. Reconciliation runs
    /// call it after storing findings.
    fn refresh_finding_totals(&self, from_month: &str, to_month: &str) -> Result<(), StoreError>;
    /// Brings the query planner's statistics of the tables a run writes
    /// ([`RUN_TABLES`]) up to date after it has rewritten them (a freshly
    /// loaded month is otherwise planned from empty-table estimates). The
    /// tables the imports write (records, claims, rosters) are left alone.
    fn refresh_statistics(&self) -> Result<(), StoreError>;
    /// Moves a finding from `event.from_status` to `event.to_status` and
    /// appends the event, in one transaction. `Conflict` if the finding is
    /// no longer in `from_status` (someone else acted first).
    fn transition(&self, event: &FindingEvent) -> Result<(), StoreError>;
    /// A finding's case history, oldest first.
    fn finding_events(&self, finding_id: &str) -> Result<Vec<FindingEvent>, StoreError>;
    /// The attachment of the `n`th event (0-based) of a finding.
    fn event_attachment(
        &self,
        finding_id: &str,
        n: usize,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError>;

    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Newest first.
    fn audit_trail(&self, limit: u64) -> Result<Vec<AuditEntry>, StoreError>;

    /// Replaces the dashboard figures of the months in `rows`' period
    /// (`from..=to`, `YYYY-MM`) with `rows`.
    fn put_hospital_months(
        &self,
        from_month: &str,
        to_month: &str,
        rows: &[HospitalMonth],
    ) -> Result<(), StoreError>;
    fn hospital_months(
        &self,
        from_month: &str,
        to_month: &str,
    ) -> Result<Vec<HospitalMonth>, StoreError>;

    /// Replaces the per-patient figures of the months `from..=to`.
    fn put_patient_months(
        &self,
        from_month: &str,
        to_month: &str,
        rows: &[PatientMonth],
    ) -> Result<(), StoreError>;
    /// What a reconciliation run stores last: the months' dashboard
    /// figures ([`Casework::put_hospital_months`],
    /// [`Casework::put_patient_months`]) and the findings' totals, recomputed
    /// from the stored findings ([`Casework::refresh_finding_totals`]). One
    /// call, so a store can do them side by side.
    fn put_run_figures(
        &self,
        from_month: &str,
        to_month: &str,
        hospitals: &[HospitalMonth],
        patients: &[PatientMonth],
    ) -> Result<(), StoreError> {
        self.put_hospital_months(from_month, to_month, hospitals)?;
        self.put_patient_months(from_month, to_month, patients)?;
        self.refresh_finding_totals(from_month, to_month)
    }
    /// A page of patients (summed over the query's months per patient and
    /// hospital; `figures.month` is empty) and how many there are in all.
    fn patient_page(&self, q: &PatientQuery) -> Result<(Vec<PatientMonth>, u64), StoreError>;
    /// Every month and hospital of one patient, by month.
    fn patient_months_of(&self, patient_ref: &str) -> Result<Vec<PatientMonth>, StoreError>;
    /// The claim lines with these ids (those that exist), by date and id.
    fn claim_lines(
        &self,
        claim_ids: &[String],
    ) -> Result<Vec<wuding_protocol::ClaimLine>, StoreError>;
    /// Each terminal's chain head and held records, by terminal id.
    fn terminal_backlog(&self) -> Result<Vec<TerminalBacklog>, StoreError>;

    /// A patient's attested sessions and claim lines dated `from..=to`,
    /// by date.
    fn patient_calendar(
        &self,
        insured_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<CalendarEntry>, StoreError>;

    /// Saves a rule-set version; `Conflict` if that version exists.
    fn put_ruleset(&self, version: &RulesetVersion) -> Result<(), StoreError>;
    /// Every saved version, newest first.
    fn rulesets(&self) -> Result<Vec<RulesetVersion>, StoreError>;

    /// Settings kept in the database (the appeal deadline, ...).
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// A WHERE clause being built: conditions with `$1, $2, ...` placeholders
/// (SQLite accepts them too, bound in order) and their values.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    values: Vec<String>,
}

impl Where {
    /// Adds a condition whose `#` is the next placeholder.
    fn push(&mut self, clause: &str, value: String) {
        self.values.push(value);
        self.clauses
            .push(clause.replace('#', &format!("${}", self.values.len())));
    }

    /// The filters the findings list and its totals share.
    fn shared(&mut self, q: &FindingQuery) {
        if let Some(v) = &q.rule_id {
            self.push("rule_id = #", v.clone());
        }
        if let Some(v) = &q.status {
            self.push("status = #", v.clone());
        }
        if let Some(v) = &q.hospital_prefix {
            self.push("hospital_code >= #", v.clone());
            // Codes are ASCII letters and digits, all below '~'.
            self.push("hospital_code < #", format!("{v}~"));
        }
        if !q.visible_statuses.is_empty() {
            let mut marks = Vec::new();
            for s in &q.visible_statuses {
                self.values.push(s.clone());
                marks.push(format!("${}", self.values.len()));
            }
            self.clauses
                .push(format!("status IN ({})", marks.join(", ")));
        }
    }

    fn finish(self) -> (String, Vec<String>) {
        let clause = if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        };
        (clause, self.values)
    }
}

/// The SQL both backends run for a [`FindingQuery`]: a WHERE clause and its
/// values, and the ORDER BY. Only filters that are set appear, so the
/// indexes in the list's order can be used.
pub(crate) fn finding_query_sql(q: &FindingQuery) -> (String, Vec<String>, &'static str) {
    let mut w = Where::default();
    if let Some(v) = &q.severity {
        // The rank, inlined from a fixed table (not user text), lets the
        // list's order index serve the filter too.
        w.clauses
            .push(format!("severity_rank = {}", super::severity_rank(v)));
    }
    if let Some(v) = &q.from {
        w.push("service_date >= #", v.clone());
    }
    if let Some(v) = &q.to {
        w.push("service_date <= #", v.clone());
    }
    if let Some(v) = &q.insured_id {
        w.push("insured_id = #", v.clone());
    }
    w.shared(q);
    let (clause, values) = w.finish();
    let order = match q.sort.as_str() {
        "amount" => "ORDER BY amount_fen DESC, finding_id",
        "date" => "ORDER BY service_date DESC, finding_id DESC",
        _ => "ORDER BY severity_rank, amount_fen DESC, finding_id",
    };
    (clause, values, order)
}

/// The SQL both backends run for a [`PatientQuery`]: the page (values
/// bound in order, then LIMIT and OFFSET inlined) and the count.
pub(crate) fn patient_query_sql(q: &PatientQuery) -> (String, String, Vec<String>) {
    let mut w = Where::default();
    let one_month = q.from_month == q.to_month;
    if one_month {
        w.push("month = #", q.from_month.clone());
    } else {
        w.push("month >= #", q.from_month.clone());
        w.push("month <= #", q.to_month.clone());
    }
    if !q.hospital_prefix.is_empty() {
        w.push("hospital_code >= #", q.hospital_prefix.clone());
        w.push("hospital_code < #", format!("{}~", q.hospital_prefix));
    }
    let (clause, values) = w.finish();
    let column = match q.sort.as_str() {
        "attested" => "attested_sessions",
        "claimed" => "claimed_lines",
        "phantom" => "phantom_claims",
        _ => "findings_fen",
    };
    if one_month {
        // One row per patient and hospital already: no grouping, and the
        // money order walks `patient_months_by_money`.
        let page = format!(
            "SELECT {PATIENT_MONTH_COLUMNS} FROM patient_months {clause}
              ORDER BY {column} DESC, patient_ref, hospital_code
              LIMIT {} OFFSET {}",
            q.limit, q.offset,
        );
        let count = format!("SELECT COUNT(*) FROM patient_months {clause}");
        return (page, count, values);
    }
    let page = format!(
        "SELECT patient_ref, insured_id, hospital_code, '' AS month, {sums}
           FROM patient_months {clause}
          GROUP BY hospital_code, insured_id, patient_ref
          ORDER BY SUM({column}) DESC, patient_ref, hospital_code
          LIMIT {} OFFSET {}",
        q.limit,
        q.offset,
        sums = PATIENT_SUMS,
    );
    let count = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM patient_months {clause}
          GROUP BY hospital_code, insured_id) AS p"
    );
    (page, count, values)
}

/// The summed counters of [`patient_query_sql`], in [`HospitalMonth`]'s
/// order (from `attested_sessions` on).
/// (PostgreSQL's SUM of BIGINT is NUMERIC, hence the casts.)
pub(crate) const PATIENT_SUMS: &str = "CAST(SUM(attested_sessions) AS BIGINT),
    CAST(SUM(fallback_sessions) AS BIGINT), CAST(SUM(attested_patients) AS BIGINT),
    CAST(SUM(claimed_lines) AS BIGINT), CAST(SUM(claimed_fen) AS BIGINT),
    CAST(SUM(claimed_patients) AS BIGINT), CAST(SUM(phantom_claims) AS BIGINT),
    CAST(SUM(phantom_fen) AS BIGINT), CAST(SUM(red) AS BIGINT), CAST(SUM(yellow) AS BIGINT),
    CAST(SUM(green) AS BIGINT), CAST(SUM(findings_fen) AS BIGINT)";

/// The columns of `patient_months` (after `patient_ref, insured_id`), in
/// [`HospitalMonth`]'s order.
pub(crate) const PATIENT_MONTH_COLUMNS: &str = "patient_ref, insured_id, hospital_code, month,
    attested_sessions, fallback_sessions, attested_patients, claimed_lines, claimed_fen,
    claimed_patients, phantom_claims, phantom_fen, red, yellow, green, findings_fen";

/// Whether `date` (`YYYY-MM-DD`) is the first (`first = true`) or last day
/// of its month.
fn month_edge(date: &str, first: bool) -> bool {
    match jiff::civil::Date::strptime("%Y-%m-%d", date) {
        Ok(d) if first => d.day() == 1,
        Ok(d) => d.day() == d.days_in_month(),
        Err(_) => false,
    }
}

/// The totals of a [`FindingQuery`] from `finding_totals` (one row per
/// month, hospital, rule, severity and status), when the filter can be
/// answered there: whole months, no patient. `None` means count the
/// findings themselves.
pub(crate) fn totals_query_sql(q: &FindingQuery) -> Option<(String, Vec<String>)> {
    if q.insured_id.is_some()
        || q.from.as_deref().is_some_and(|d| !month_edge(d, true))
        || q.to.as_deref().is_some_and(|d| !month_edge(d, false))
    {
        return None;
    }
    let mut w = Where::default();
    // Undated findings (month '') are outside every period, as in the list.
    if let Some(v) = &q.from {
        w.push("month >= #", v[..7].to_owned());
    }
    if let Some(v) = &q.to {
        w.push("month <= #", v[..7].to_owned());
    }
    if let Some(v) = &q.severity {
        w.push("severity = #", v.clone());
    }
    w.shared(q);
    Some(w.finish())
}

/// Recomputes `finding_totals` for the months `from..=to` (and undated
/// findings) from the findings table.
pub(crate) const REFRESH_TOTALS_SQL: [&str; 3] = [
    DELETE_TOTALS_SQL,
    concat!(
        "INSERT INTO finding_totals (month, hospital_code, rule_id, severity, status, findings, amount_fen) ",
        totals_select!(undated)
    ),
    concat!(
        "INSERT INTO finding_totals (month, hospital_code, rule_id, severity, status, findings, amount_fen) ",
        totals_select!(dated)
    ),
];

/// Removes the totals of the months `$1..=$2` and of undated findings.
pub(crate) const DELETE_TOTALS_SQL: &str =
    "DELETE FROM finding_totals WHERE month = '' OR (month >= $1 AND month <= $2)";

/// The findings' totals as a query. Findings without a day (per terminal,
/// per hospital) and the period's days apart: each reads one range of the
/// day index (one condition with OR made SQLite look every finding's row up
/// by its rowid).
macro_rules! totals_select {
    (undated) => {
        "SELECT '', COALESCE(hospital_code, ''), rule_id, severity, status, COUNT(*), SUM(amount_fen)
           FROM findings WHERE service_date IS NULL
          GROUP BY 2, 3, 4, 5"
    };
    (dated) => {
        "SELECT substr(service_date, 1, 7), COALESCE(hospital_code, ''), rule_id, severity, status,
                COUNT(*), SUM(amount_fen)
           FROM findings WHERE service_date >= $1 AND service_date <= $2
          GROUP BY 1, 2, 3, 4, 5"
    };
}
use totals_select;

/// Moves one finding from one status's totals to another's (in the
/// transition's transaction): `$1` month, `$2` hospital, `$3` rule, `$4`
/// severity, `$5` status, `$6` +1 or -1, `$7` signed amount.
pub(crate) const MOVE_TOTALS_SQL: &str = "INSERT INTO finding_totals
     (month, hospital_code, rule_id, severity, status, findings, amount_fen)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (month, hospital_code, rule_id, severity, status)
     DO UPDATE SET findings = finding_totals.findings + excluded.findings,
                   amount_fen = finding_totals.amount_fen + excluded.amount_fen";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_filters_appear_numbered_in_order() {
        let q = FindingQuery {
            severity: Some("red".into()),
            hospital_prefix: Some("H5101".into()),
            visible_statuses: vec!["notified".into(), "appealed".into()],
            ..FindingQuery::default()
        };
        let (clause, values, _) = finding_query_sql(&q);
        assert_eq!(
            clause,
            "WHERE severity_rank = 0 AND hospital_code >= $1 AND hospital_code < $2 AND status IN ($3, $4)"
        );
        assert_eq!(values, ["H5101", "H5101~", "notified", "appealed"]);
        assert_eq!(finding_query_sql(&FindingQuery::default()).0, "");
    }

    #[test]
    fn totals_answer_whole_months_only() {
        let month = FindingQuery {
            from: Some("2026-10-01".into()),
            to: Some("2026-10-31".into()),
            ..FindingQuery::default()
        };
        let (clause, values) = totals_query_sql(&month).unwrap();
        assert_eq!(clause, "WHERE month >= $1 AND month <= $2");
        assert_eq!(values, ["2026-10", "2026-10"]);
        let february = FindingQuery {
            from: Some("2026-02-01".into()),
            to: Some("2026-02-28".into()),
            ..FindingQuery::default()
        };
        assert!(totals_query_sql(&february).is_some());
        let days = FindingQuery {
            from: Some("2026-10-10".into()),
            to: Some("2026-10-12".into()),
            ..FindingQuery::default()
        };
        assert!(totals_query_sql(&days).is_none());
    }
}
