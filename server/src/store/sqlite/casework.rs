//! The auditor application's storage on SQLite.

use rusqlite::{OptionalExtension, params, params_from_iter};

use super::{SqliteStore, finding_from};
use crate::store::FINDING_COLUMNS;
use crate::store::casework::{
    AuditEntry, CalendarEntry, Casework, FindingEvent, FindingPage, FindingQuery, HospitalMonth,
    MOVE_TOTALS_SQL, PATIENT_MONTH_COLUMNS, PatientMonth, PatientQuery, REFRESH_TOTALS_SQL,
    RUN_TABLES, RulesetVersion, TerminalBacklog, UserRow, WebSession, finding_query_sql,
    patient_query_sql, totals_query_sql,
};
use crate::store::{FindingRow, StoreError};
use wuding_protocol::ClaimLine;
use wuding_rules::fx::{FxMap, map_with};

const USER_COLUMNS: &str = "username, display_name, role, hospital_code, password_hash, failed_logins, \
     locked_until_ms, created_at_ms";

fn user_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        username: r.get(0)?,
        display_name: r.get(1)?,
        role: r.get(2)?,
        hospital_code: r.get(3)?,
        password_hash: r.get(4)?,
        failed_logins: r.get::<_, i64>(5)? as u32,
        locked_until_ms: r.get(6)?,
        created_at_ms: r.get(7)?,
    })
}

const EVENT_COLUMNS: &str = "finding_id, action, from_status, to_status, actor, actor_role, reason, \
     amount_fen, attachment_name, at_ms";

fn event_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<FindingEvent> {
    Ok(FindingEvent {
        finding_id: r.get(0)?,
        action: r.get(1)?,
        from_status: r.get(2)?,
        to_status: r.get(3)?,
        actor: r.get(4)?,
        actor_role: r.get(5)?,
        reason: r.get(6)?,
        amount_fen: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        attachment_name: r.get(8)?,
        attachment: None,
        at_ms: r.get(9)?,
    })
}

const MONTH_COLUMNS: &str = "hospital_code, month, attested_sessions, fallback_sessions, attested_patients, \
     claimed_lines, claimed_fen, claimed_patients, phantom_claims, phantom_fen, red, yellow, green, findings_fen";

fn month_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<HospitalMonth> {
    month_at(r, 0)
}

/// A [`HospitalMonth`] whose `hospital_code` is column `b`.
fn month_at(r: &rusqlite::Row<'_>, b: usize) -> rusqlite::Result<HospitalMonth> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(b + i)? as u64) };
    Ok(HospitalMonth {
        hospital_code: r.get(b)?,
        month: r.get(b + 1)?,
        attested_sessions: n(2)?,
        fallback_sessions: n(3)?,
        attested_patients: n(4)?,
        claimed_lines: n(5)?,
        claimed_fen: n(6)?,
        claimed_patients: n(7)?,
        phantom_claims: n(8)?,
        phantom_fen: n(9)?,
        red: n(10)?,
        yellow: n(11)?,
        green: n(12)?,
        findings_fen: n(13)?,
    })
}

/// Binds `m` to parameters `b..` of `stmt` in [`MONTH_COLUMNS`] order (the
/// writing side of [`month_at`]).
fn bind_month_at(
    stmt: &mut rusqlite::Statement<'_>,
    b: usize,
    m: &HospitalMonth,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(b, &m.hospital_code)?;
    stmt.raw_bind_parameter(b + 1, &m.month)?;
    for (i, n) in counters(m).into_iter().enumerate() {
        stmt.raw_bind_parameter(b + 2 + i, n as i64)?;
    }
    Ok(())
}

/// `m`'s counters in [`MONTH_COLUMNS`] order (after the hospital and
/// month).
fn counters(m: &HospitalMonth) -> [u64; 12] {
    [
        m.attested_sessions,
        m.fallback_sessions,
        m.attested_patients,
        m.claimed_lines,
        m.claimed_fen,
        m.claimed_patients,
        m.phantom_claims,
        m.phantom_fen,
        m.red,
        m.yellow,
        m.green,
        m.findings_fen,
    ]
}

fn patient_month_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<PatientMonth> {
    Ok(PatientMonth {
        patient_ref: r.get(0)?,
        insured_id: r.get(1)?,
        figures: month_at(r, 2)?,
    })
}

/// The findings' totals of the findings dated `from..=to` and of the
/// undated ones, keyed by [`totals_key`]: (count, money). What
/// `REFRESH_TOTALS_SQL` inserts, counted here from the entries of the day
/// index (`findings_by_day_figures`, which holds every column needed; the
/// planner reads it alone, and a store missing it still answers, slower)
/// instead of SQLite's grouping, which sorted every finding through a
/// temporary b-tree (0.37 s for a national month's 469,000 findings).
fn count_totals(
    conn: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> Result<FxMap<String, (i64, i64)>, StoreError> {
    let mut totals: FxMap<String, (i64, i64)> = map_with(1024);
    let mut key = String::new();
    for (clause, values) in [
        ("service_date IS NULL", vec![]),
        ("service_date >= ?1 AND service_date <= ?2", vec![from, to]),
    ] {
        let mut stmt = conn.prepare(&format!(
            "SELECT service_date, hospital_code, rule_id, severity, status, amount_fen
               FROM findings WHERE {clause}"
        ))?;
        let mut rows = stmt.query(params_from_iter(values))?;
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> Result<&str, StoreError> {
                let value = r.get_ref(i)?.as_str_or_null();
                Ok(value
                    .map_err(|_| StoreError::Corrupt("a finding's text"))?
                    .unwrap_or(""))
            };
            let date = text(0)?;
            let month = date.get(..7).unwrap_or(date);
            totals_key(&mut key, [month, text(1)?, text(2)?, text(3)?, text(4)?]);
            let fen: i64 = r.get(5)?;
            match totals.get_mut(key.as_str()) {
                Some(t) => {
                    t.0 += 1;
                    t.1 += fen;
                }
                None => {
                    totals.insert(key.clone(), (1, fen));
                }
            }
        }
    }
    Ok(totals)
}

/// Writes `totals` ([`count_totals`]) as the finding totals of the months
/// `from_month..=to_month` and of the undated findings: a stored total
/// that is the same is left alone, one that changed rewritten, one no
/// longer counted deleted (a run again over the same findings writes
/// nothing).
fn put_totals(
    tx: &rusqlite::Transaction<'_>,
    from_month: &str,
    to_month: &str,
    mut totals: FxMap<String, (i64, i64)>,
) -> Result<(), StoreError> {
    let mut gone: Vec<String> = Vec::new();
    {
        let mut stored = tx.prepare(
            "SELECT month, hospital_code, rule_id, severity, status, findings, amount_fen
               FROM finding_totals WHERE month = '' OR (month >= ?1 AND month <= ?2)",
        )?;
        let mut rows = stored.query(params![from_month, to_month])?;
        let mut key = String::new();
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> Result<&str, StoreError> {
                let value = r.get_ref(i)?.as_str();
                value.map_err(|_| StoreError::Corrupt("a finding total's text"))
            };
            totals_key(&mut key, [text(0)?, text(1)?, text(2)?, text(3)?, text(4)?]);
            let was: (i64, i64) = (r.get(5)?, r.get(6)?);
            match totals.get(key.as_str()) {
                Some(now) if *now == was => {
                    totals.remove(key.as_str());
                }
                Some(_) => {}
                None => gone.push(key.clone()),
            }
        }
    }
    let parts = |key: &str| -> Result<[String; 5], StoreError> {
        let parts: Vec<String> = key.split('\0').map(str::to_owned).collect();
        parts
            .try_into()
            .map_err(|_| StoreError::Corrupt("a finding total's key"))
    };
    let mut delete = tx.prepare(
        "DELETE FROM finding_totals
          WHERE month = ?1 AND hospital_code = ?2 AND rule_id = ?3 AND severity = ?4
            AND status = ?5",
    )?;
    for key in gone {
        delete.execute(params_from_iter(parts(&key)?))?;
    }
    let mut put = tx.prepare(
        "INSERT INTO finding_totals
           (month, hospital_code, rule_id, severity, status, findings, amount_fen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (month, hospital_code, rule_id, severity, status)
         DO UPDATE SET findings = excluded.findings, amount_fen = excluded.amount_fen",
    )?;
    for (key, (findings, fen)) in totals {
        let [m, h, r, s, st] = parts(&key)?;
        put.execute(params![m, h, r, s, st, findings, fen])?;
    }
    Ok(())
}

/// A finding total's key (month, hospital, rule, severity, status) as one
/// text, into `out`: codes hold no NUL.
fn totals_key(out: &mut String, parts: [&str; 5]) {
    out.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('\0');
        }
        out.push_str(p);
    }
}

impl Casework for SqliteStore {
    fn add_user(&self, u: &UserRow) -> Result<(), StoreError> {
        let conn = self.conn();
        let added = conn.execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (username) DO NOTHING"
            ),
            params![
                u.username,
                u.display_name,
                u.role,
                u.hospital_code,
                u.password_hash,
                u.failed_logins as i64,
                u.locked_until_ms,
                u.created_at_ms
            ],
        )?;
        if added == 0 {
            return Err(StoreError::Conflict(format!(
                "user {} already exists",
                u.username
            )));
        }
        Ok(())
    }

    fn user(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
                [username],
                user_from,
            )
            .optional()?)
    }

    fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))?;
        let rows = stmt.query_map([], user_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_login_state(
        &self,
        username: &str,
        failed_logins: u32,
        locked_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE users SET failed_logins = ?2, locked_until_ms = ?3 WHERE username = ?1",
            params![username, failed_logins as i64, locked_until_ms],
        )?;
        Ok(())
    }

    fn set_password(&self, username: &str, password_hash: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET password_hash = ?2, failed_logins = 0, locked_until_ms = NULL
             WHERE username = ?1",
            params![username, password_hash],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        Ok(())
    }

    fn put_web_session(&self, s: &WebSession) -> Result<(), StoreError> {
        let conn = self.conn();
        // Expired sessions go when new ones come.
        conn.execute(
            "DELETE FROM web_sessions WHERE expires_at_ms < ?1",
            [s.created_at_ms],
        )?;
        conn.execute(
            "INSERT INTO web_sessions (token_hash, username, csrf_token, created_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                s.token_hash,
                s.username,
                s.csrf_token,
                s.created_at_ms,
                s.expires_at_ms
            ],
        )?;
        Ok(())
    }

    fn web_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<WebSession>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT token_hash, username, csrf_token, created_at_ms, expires_at_ms
                 FROM web_sessions WHERE token_hash = ?1 AND expires_at_ms > ?2",
                params![token_hash, now_ms],
                |r| {
                    Ok(WebSession {
                        token_hash: r.get(0)?,
                        username: r.get(1)?,
                        csrf_token: r.get(2)?,
                        created_at_ms: r.get(3)?,
                        expires_at_ms: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn end_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            [token_hash],
        )?;
        Ok(())
    }

    fn finding(&self, id: &str) -> Result<Option<FindingRow>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {FINDING_COLUMNS} FROM findings WHERE finding_id = ?1"),
                [id],
                finding_from,
            )
            .optional()?
            .transpose()
    }

    fn finding_page(&self, q: &FindingQuery) -> Result<FindingPage, StoreError> {
        let (clause, values, order) = finding_query_sql(q);
        let conn = self.conn();
        let mut page = FindingPage::default();
        {
            let (sql, args) = match totals_query_sql(q) {
                Some((t_clause, t_values)) => (
                    format!(
                        "SELECT severity, SUM(findings), COALESCE(SUM(amount_fen), 0)
                         FROM finding_totals {t_clause} GROUP BY severity"
                    ),
                    t_values,
                ),
                None => (
                    format!(
                        "SELECT severity, COUNT(*), COALESCE(SUM(amount_fen), 0) FROM findings {clause}
                         GROUP BY severity"
                    ),
                    values.clone(),
                ),
            };
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            while let Some(r) = rows.next()? {
                let (sev, n, fen): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                page.total += n as u64;
                page.total_fen += fen as u64;
                page.by_severity.insert(sev, (n as u64, fen as u64));
            }
        }
        // `+service_date` keeps SQLite from walking a date range in date
        // order and sorting it: the list's order index is scanned instead and
        // the period checked per row (docs/auditor-app.md, "Speed"). Counting
        // above uses the date index, which covers it.
        let row_clause = clause
            .replace("service_date >= ", "+service_date >= ")
            .replace("service_date <= ", "+service_date <= ");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings {row_clause} {order} LIMIT {} OFFSET {}",
            q.limit.min(10_000),
            q.offset
        ))?;
        let rows = stmt.query_map(params_from_iter(values.iter()), finding_from)?;
        page.rows = rows.map(|r| r?).collect::<Result<_, _>>()?;
        Ok(page)
    }

    fn refresh_statistics(&self) -> Result<(), StoreError> {
        // The tables a run writes, and only those: `PRAGMA optimize` also
        // analysed every table the connection had read that had no
        // statistics or had grown tenfold, which on a first run is the
        // signed records and the claims, and ANALYZE counts every entry of
        // every index even under `analysis_limit` (5.0 of a 24 s national
        // first run; these five tables: 0.16-0.19 s in that run).
        self.conn().execute_batch(&format!(
            "PRAGMA analysis_limit = 1000; {}",
            RUN_TABLES.map(|t| format!("ANALYZE {t};")).join(" ")
        ))?;
        Ok(())
    }

    fn refresh_finding_totals(&self, from_month: &str, to_month: &str) -> Result<(), StoreError> {
        // Derived from the findings (see `SqliteStore::derived_write`).
        self.derived_write(|conn| {
            let tx = conn.transaction()?;
            let (from, to) = (format!("{from_month}-01"), format!("{to_month}-31"));
            tx.execute(REFRESH_TOTALS_SQL[0], params![from_month, to_month])?;
            tx.execute(REFRESH_TOTALS_SQL[1], [])?;
            tx.execute(REFRESH_TOTALS_SQL[2], params![from, to])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn put_run_figures(
        &self,
        from_month: &str,
        to_month: &str,
        hospitals: &[HospitalMonth],
        patients: &[PatientMonth],
    ) -> Result<(), StoreError> {
        // The findings' totals are counted on a connection of their own
        // (the findings are committed) while the writer stores the
        // patients' figures; then the writer writes the totals that
        // changed. Each half took most of a second of a national run's
        // last, one-core stretch.
        let (from, to) = (format!("{from_month}-01"), format!("{to_month}-31"));
        std::thread::scope(|scope| {
            let totals =
                scope.spawn(|| self.on_own_connection(|conn| count_totals(conn, &from, &to)));
            self.put_hospital_months(from_month, to_month, hospitals)?;
            self.put_patient_months(from_month, to_month, patients)?;
            let totals = totals
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            self.derived_write(|conn| {
                let tx = conn.transaction()?;
                put_totals(&tx, from_month, to_month, totals)?;
                tx.commit()?;
                Ok(())
            })
        })
    }

    fn transition(&self, e: &FindingEvent) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let key: Option<(String, String, String, String, i64)> = tx
            .query_row(
                "SELECT COALESCE(substr(service_date, 1, 7), ''), COALESCE(hospital_code, ''),
                        rule_id, severity, amount_fen
                   FROM findings WHERE finding_id = ?1",
                [&e.finding_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let moved = tx.execute(
            "UPDATE findings SET status = ?3 WHERE finding_id = ?1 AND status = ?2",
            params![e.finding_id, e.from_status, e.to_status],
        )?;
        if moved == 0 {
            return Err(StoreError::Conflict(format!(
                "finding {} is no longer `{}`; reload the case",
                e.finding_id, e.from_status
            )));
        }
        if let Some((month, hospital, rule, severity, fen)) = key {
            for (status, sign) in [(&e.from_status, -1i64), (&e.to_status, 1)] {
                tx.execute(
                    MOVE_TOTALS_SQL,
                    params![month, hospital, rule, severity, status, sign, sign * fen],
                )?;
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO finding_events ({EVENT_COLUMNS}, attachment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                e.finding_id,
                e.action,
                e.from_status,
                e.to_status,
                e.actor,
                e.actor_role,
                e.reason,
                e.amount_fen.map(|v| v as i64),
                e.attachment_name,
                e.at_ms,
                e.attachment
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn finding_events(&self, finding_id: &str) -> Result<Vec<FindingEvent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM finding_events WHERE finding_id = ?1 ORDER BY event_id"
        ))?;
        let rows = stmt.query_map([finding_id], event_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn event_attachment(
        &self,
        finding_id: &str,
        n: usize,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT attachment_name, attachment FROM finding_events
                 WHERE finding_id = ?1 ORDER BY event_id LIMIT 1 OFFSET ?2",
                params![finding_id, n as i64],
                |r| {
                    Ok(
                        match (
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<Vec<u8>>>(1)?,
                        ) {
                            (Some(name), Some(bytes)) => Some((name, bytes)),
                            _ => None,
                        },
                    )
                },
            )
            .optional()?
            .flatten())
    }

    fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO audit_trail (at_ms, actor, action, subject, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.at_ms, e.actor, e.action, e.subject, e.reason],
        )?;
        Ok(())
    }

    fn audit_trail(&self, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at_ms, actor, action, subject, reason FROM audit_trail
             ORDER BY entry_id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(AuditEntry {
                at_ms: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                subject: r.get(3)?,
                reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_hospital_months(
        &self,
        from_month: &str,
        to_month: &str,
        rows: &[HospitalMonth],
    ) -> Result<(), StoreError> {
        self.derived_write(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM hospital_months WHERE month >= ?1 AND month <= ?2",
                params![from_month, to_month],
            )?;
            {
                let mut put = tx.prepare(&format!(
                    "INSERT INTO hospital_months ({MONTH_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))?;
                for m in rows {
                    bind_month_at(&mut put, 1, m)?;
                    put.raw_execute()?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn hospital_months(
        &self,
        from_month: &str,
        to_month: &str,
    ) -> Result<Vec<HospitalMonth>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MONTH_COLUMNS} FROM hospital_months WHERE month >= ?1 AND month <= ?2
             ORDER BY month, hospital_code"
        ))?;
        let rows = stmt.query_map(params![from_month, to_month], month_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_patient_months(
        &self,
        from_month: &str,
        to_month: &str,
        rows: &[PatientMonth],
    ) -> Result<(), StoreError> {
        // A re-run mostly reproduces the stored rows: the months' rows are
        // read once and compared where they lie, and only rows that changed
        // are written and rows no longer produced deleted. Deleting and
        // inserting them all rewrote four b-trees per patient (4.4 of a 25
        // s national re-run); reading them out as owned rows into a map of
        // owned keys took 0.36 s of a national run's last stretch.
        self.derived_write(|conn| {
            let tx = conn.transaction()?;
            {
                // Each row of this run by its key; whether the store holds
                // it already as it is.
                let mut by_key: FxMap<(&str, &str, &str), usize> = map_with(rows.len());
                for (i, p) in rows.iter().enumerate() {
                    by_key.insert(
                        (&p.figures.hospital_code, &p.insured_id, &p.figures.month),
                        i,
                    );
                }
                let mut same = vec![false; rows.len()];
                let mut unproduced: Vec<[String; 3]> = Vec::new();
                {
                    let mut stored = tx.prepare(&format!(
                        "SELECT {PATIENT_MONTH_COLUMNS} FROM patient_months
                         WHERE month >= ?1 AND month <= ?2"
                    ))?;
                    let mut read = stored.query(params![from_month, to_month])?;
                    while let Some(r) = read.next()? {
                        let text = |i: usize| -> Result<&str, StoreError> {
                            let value = r.get_ref(i)?.as_str();
                            value.map_err(|_| StoreError::Corrupt("a patient month's text"))
                        };
                        let (hospital, insured_id, month) = (text(2)?, text(1)?, text(3)?);
                        let Some(&i) = by_key.get(&(hospital, insured_id, month)) else {
                            unproduced.push([hospital.into(), insured_id.into(), month.into()]);
                            continue;
                        };
                        let p = &rows[i];
                        let mut equal = text(0)? == p.patient_ref;
                        for (k, n) in counters(&p.figures).into_iter().enumerate() {
                            equal &= r.get::<_, i64>(4 + k)? == n as i64;
                        }
                        same[i] = equal;
                    }
                }
                let mut put = tx.prepare(&format!(
                    "INSERT INTO patient_months ({PATIENT_MONTH_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT (hospital_code, insured_id, month) DO UPDATE SET
                        patient_ref = excluded.patient_ref,
                        attested_sessions = excluded.attested_sessions,
                        fallback_sessions = excluded.fallback_sessions,
                        attested_patients = excluded.attested_patients,
                        claimed_lines = excluded.claimed_lines,
                        claimed_fen = excluded.claimed_fen,
                        claimed_patients = excluded.claimed_patients,
                        phantom_claims = excluded.phantom_claims,
                        phantom_fen = excluded.phantom_fen,
                        red = excluded.red, yellow = excluded.yellow, green = excluded.green,
                        findings_fen = excluded.findings_fen"
                ))?;
                let changed: Vec<&PatientMonth> = rows
                    .iter()
                    .zip(&same)
                    .filter(|(_, same)| !**same)
                    .map(|(p, _)| p)
                    .collect();
                // A first run of a period writes every row: into a small
                // table, cheaper without the secondary indexes, built again
                // before this transaction commits.
                let deferred = !changed.is_empty() && {
                    let table_rows: i64 =
                        tx.query_row("SELECT count(*) FROM patient_months", [], |r| r.get(0))?;
                    super::worth_deferring(changed.len() as u64, table_rows as u64)
                };
                if deferred {
                    super::PATIENT_MONTH_INDEXES.drop_all(&tx)?;
                }
                for p in changed {
                    put.raw_bind_parameter(1, &p.patient_ref)?;
                    put.raw_bind_parameter(2, &p.insured_id)?;
                    bind_month_at(&mut put, 3, &p.figures)?;
                    put.raw_execute()?;
                }
                let mut delete = tx.prepare(
                    "DELETE FROM patient_months
                     WHERE hospital_code = ?1 AND insured_id = ?2 AND month = ?3",
                )?;
                for key in unproduced {
                    delete.execute(params_from_iter(key))?;
                }
                if deferred {
                    super::PATIENT_MONTH_INDEXES.build_missing(&tx)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn patient_page(&self, q: &PatientQuery) -> Result<(Vec<PatientMonth>, u64), StoreError> {
        let (page, count, values) = patient_query_sql(q);
        let conn = self.conn();
        let total: i64 = conn.query_row(&count, params_from_iter(values.iter()), |r| r.get(0))?;
        let mut stmt = conn.prepare(&page)?;
        let rows = stmt.query_map(params_from_iter(values.iter()), patient_month_from)?;
        Ok((rows.collect::<Result<_, _>>()?, total as u64))
    }

    fn patient_months_of(&self, patient_ref: &str) -> Result<Vec<PatientMonth>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PATIENT_MONTH_COLUMNS} FROM patient_months WHERE patient_ref = ?1
             ORDER BY month, hospital_code"
        ))?;
        let rows = stmt.query_map(params![patient_ref], patient_month_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn claim_lines(&self, claim_ids: &[String]) -> Result<Vec<ClaimLine>, StoreError> {
        let mut out = Vec::new();
        for id in claim_ids {
            out.extend(self.claims_where("WHERE claim_id = ?1", &[id.as_str()])?);
        }
        out.sort_by(|a, b| (a.service_date, &a.claim_id).cmp(&(b.service_date, &b.claim_id)));
        Ok(out)
    }

    fn terminal_backlog(&self) -> Result<Vec<TerminalBacklog>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT t.terminal_id, COALESCE(c.seq, 0),
                    (SELECT COUNT(*) FROM held_records h WHERE h.terminal_id = t.terminal_id)
               FROM terminals t LEFT JOIN chain_heads c ON c.terminal_id = t.terminal_id
              ORDER BY t.terminal_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TerminalBacklog {
                terminal_id: r.get(0)?,
                chain_head: r.get::<_, i64>(1)? as u64,
                held_records: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn patient_calendar(
        &self,
        insured_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<CalendarEntry>, StoreError> {
        let mut entries: Vec<CalendarEntry> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT service_date, COALESCE(kind, ''), hospital_code, lower(hex(record_id))
                   FROM records WHERE insured_id = ?1 AND record_type = 'session'
                    AND service_date BETWEEN ?2 AND ?3",
            )?;
            let rows = stmt.query_map(params![insured_id, from, to], |r| {
                Ok(CalendarEntry {
                    date: r.get(0)?,
                    source: "attested".into(),
                    kind: r.get(1)?,
                    hospital_code: r.get(2)?,
                    id: r.get(3)?,
                    amount_fen: None,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        // A claim line's fields are packed (`store::packed`): read as lines.
        let lines = self.claims_where(
            "WHERE insured_id = ?1 AND service_date BETWEEN ?2 AND ?3",
            &[insured_id, from, to],
        )?;
        entries.extend(lines.into_iter().map(|c| CalendarEntry {
            date: c.service_date.to_string(),
            source: "claimed".into(),
            kind: c.service_kind.code().to_owned(),
            hospital_code: c.hospital_code.to_string(),
            id: c.claim_id.to_string(),
            amount_fen: Some(c.amount_fen),
        }));
        entries.sort_by(|a, b| (&a.date, &a.source, &a.id).cmp(&(&b.date, &b.source, &b.id)));
        Ok(entries)
    }

    fn put_ruleset(&self, v: &RulesetVersion) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "INSERT INTO rulesets (version, toml, author, reason, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (version) DO NOTHING",
            params![v.version, v.toml, v.author, v.reason, v.at_ms],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "rules version {} already exists; give the changed rules a new version",
                v.version
            )));
        }
        Ok(())
    }

    fn rulesets(&self) -> Result<Vec<RulesetVersion>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, toml, author, reason, at_ms FROM rulesets ORDER BY at_ms DESC, version DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RulesetVersion {
                version: r.get(0)?,
                toml: r.get(1)?,
                author: r.get(2)?,
                reason: r.get(3)?,
                at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}
