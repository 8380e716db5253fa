//! The auditor application's storage on PostgreSQL.

use postgres::types::ToSql;

use super::{PgStore, finding_from};
use crate::store::FINDING_COLUMNS;
use crate::store::casework::{
    AuditEntry, CalendarEntry, Casework, FindingEvent, FindingPage, FindingQuery, HospitalMonth,
    MOVE_TOTALS_SQL, PATIENT_MONTH_COLUMNS, PatientMonth, PatientQuery, REFRESH_TOTALS_SQL,
    RUN_TABLES, RulesetVersion, TerminalBacklog, UserRow, WebSession, finding_query_sql,
    patient_query_sql, totals_query_sql,
};
use crate::store::{FindingRow, StoreError};
use wuding_protocol::ClaimLine;

const USER_COLUMNS: &str = "username, display_name, role, hospital_code, password_hash, failed_logins, \
     locked_until_ms, created_at_ms";

fn user_from(r: &postgres::Row) -> UserRow {
    UserRow {
        username: r.get(0),
        display_name: r.get(1),
        role: r.get(2),
        hospital_code: r.get(3),
        password_hash: r.get(4),
        failed_logins: r.get::<_, i64>(5) as u32,
        locked_until_ms: r.get(6),
        created_at_ms: r.get(7),
    }
}

const EVENT_COLUMNS: &str = "finding_id, action, from_status, to_status, actor, actor_role, reason, \
     amount_fen, attachment_name, at_ms";

fn event_from(r: &postgres::Row) -> FindingEvent {
    FindingEvent {
        finding_id: r.get(0),
        action: r.get(1),
        from_status: r.get(2),
        to_status: r.get(3),
        actor: r.get(4),
        actor_role: r.get(5),
        reason: r.get(6),
        amount_fen: r.get::<_, Option<i64>>(7).map(|v| v as u64),
        attachment_name: r.get(8),
        attachment: None,
        at_ms: r.get(9),
    }
}

const MONTH_COLUMNS: &str = "hospital_code, month, attested_sessions, fallback_sessions, attested_patients, \
     claimed_lines, claimed_fen, claimed_patients, phantom_claims, phantom_fen, red, yellow, green, findings_fen";

fn month_from(r: &postgres::Row) -> HospitalMonth {
    month_at(r, 0)
}

fn patient_month_from(r: &postgres::Row) -> PatientMonth {
    PatientMonth {
        patient_ref: r.get(0),
        insured_id: r.get(1),
        figures: month_at(r, 2),
    }
}

/// A [`HospitalMonth`] whose `hospital_code` is column `b`.
fn month_at(r: &postgres::Row, b: usize) -> HospitalMonth {
    let n = |i: usize| r.get::<_, i64>(b + i) as u64;
    HospitalMonth {
        hospital_code: r.get(b),
        month: r.get(b + 1),
        attested_sessions: n(2),
        fallback_sessions: n(3),
        attested_patients: n(4),
        claimed_lines: n(5),
        claimed_fen: n(6),
        claimed_patients: n(7),
        phantom_claims: n(8),
        phantom_fen: n(9),
        red: n(10),
        yellow: n(11),
        green: n(12),
        findings_fen: n(13),
    }
}

impl Casework for PgStore {
    fn add_user(&self, u: &UserRow) -> Result<(), StoreError> {
        let added = self.client()?.execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (username) DO NOTHING"
            ),
            &[
                &u.username,
                &u.display_name,
                &u.role,
                &u.hospital_code,
                &u.password_hash,
                &(u.failed_logins as i64),
                &u.locked_until_ms,
                &u.created_at_ms,
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
            .client()?
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"),
                &[&username],
            )?
            .as_ref()
            .map(user_from))
    }

    fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        Ok(self
            .client()?
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
                &[],
            )?
            .iter()
            .map(user_from)
            .collect())
    }

    fn set_login_state(
        &self,
        username: &str,
        failed_logins: u32,
        locked_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.client()?.execute(
            "UPDATE users SET failed_logins = $2, locked_until_ms = $3 WHERE username = $1",
            &[&username, &(failed_logins as i64), &locked_until_ms],
        )?;
        Ok(())
    }

    fn set_password(&self, username: &str, password_hash: &str) -> Result<(), StoreError> {
        let n = self.client()?.execute(
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until_ms = NULL
             WHERE username = $1",
            &[&username, &password_hash],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        Ok(())
    }

    fn put_web_session(&self, s: &WebSession) -> Result<(), StoreError> {
        let mut c = self.client()?;
        c.execute(
            "DELETE FROM web_sessions WHERE expires_at_ms < $1",
            &[&s.created_at_ms],
        )?;
        c.execute(
            "INSERT INTO web_sessions (token_hash, username, csrf_token, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.token_hash,
                &s.username,
                &s.csrf_token,
                &s.created_at_ms,
                &s.expires_at_ms,
            ],
        )?;
        Ok(())
    }

    fn web_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<WebSession>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT token_hash, username, csrf_token, created_at_ms, expires_at_ms
                 FROM web_sessions WHERE token_hash = $1 AND expires_at_ms > $2",
                &[&token_hash, &now_ms],
            )?
            .map(|r| WebSession {
                token_hash: r.get(0),
                username: r.get(1),
                csrf_token: r.get(2),
                created_at_ms: r.get(3),
                expires_at_ms: r.get(4),
            }))
    }

    fn end_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.client()?.execute(
            "DELETE FROM web_sessions WHERE token_hash = $1",
            &[&token_hash],
        )?;
        Ok(())
    }

    fn finding(&self, id: &str) -> Result<Option<FindingRow>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {FINDING_COLUMNS} FROM findings WHERE finding_id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(finding_from)
            .transpose()
    }

    fn finding_page(&self, q: &FindingQuery) -> Result<FindingPage, StoreError> {
        let (clause, values, order) = finding_query_sql(q);
        let args: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let mut c = self.client()?;
        let mut page = FindingPage::default();
        let (count_sql, count_values) = match totals_query_sql(q) {
            Some((t_clause, t_values)) => (
                format!(
                    "SELECT severity, SUM(findings)::BIGINT, COALESCE(SUM(amount_fen), 0)::BIGINT
                     FROM finding_totals {t_clause} GROUP BY severity"
                ),
                t_values,
            ),
            None => (
                format!(
                    "SELECT severity, COUNT(*), COALESCE(SUM(amount_fen), 0)::BIGINT FROM findings {clause}
                     GROUP BY severity"
                ),
                values.clone(),
            ),
        };
        let count_args: Vec<&(dyn ToSql + Sync)> = count_values
            .iter()
            .map(|v| v as &(dyn ToSql + Sync))
            .collect();
        for r in c.query(&count_sql, &count_args)? {
            let (sev, n, fen): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
            page.total += n as u64;
            page.total_fen += fen as u64;
            page.by_severity.insert(sev, (n as u64, fen as u64));
        }
        page.rows = c
            .query(
                &format!(
                    "SELECT {FINDING_COLUMNS} FROM findings {clause} {order} LIMIT {} OFFSET {}",
                    q.limit.min(10_000),
                    q.offset
                ),
                &args,
            )?
            .iter()
            .map(finding_from)
            .collect::<Result<_, _>>()?;
        Ok(page)
    }

    fn refresh_statistics(&self) -> Result<(), StoreError> {
        // ANALYZE samples a bounded number of rows per table, so this
        // stays cheap however large the tables grow.
        self.client()?
            .batch_execute(&format!("ANALYZE {}", RUN_TABLES.join(", ")))?;
        Ok(())
    }

    fn refresh_finding_totals(&self, from_month: &str, to_month: &str) -> Result<(), StoreError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let (from, to) = (format!("{from_month}-01"), format!("{to_month}-31"));
        tx.execute(REFRESH_TOTALS_SQL[0], &[&from_month, &to_month])?;
        tx.execute(REFRESH_TOTALS_SQL[1], &[])?;
        tx.execute(REFRESH_TOTALS_SQL[2], &[&from, &to])?;
        tx.commit()?;
        Ok(())
    }

    fn transition(&self, e: &FindingEvent) -> Result<(), StoreError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        let key = tx.query_opt(
            "SELECT COALESCE(substr(service_date, 1, 7), ''), COALESCE(hospital_code, ''),
                    rule_id, severity, amount_fen
               FROM findings WHERE finding_id = $1 FOR UPDATE",
            &[&e.finding_id],
        )?;
        let moved = tx.execute(
            "UPDATE findings SET status = $3 WHERE finding_id = $1 AND status = $2",
            &[&e.finding_id, &e.from_status, &e.to_status],
        )?;
        if moved == 0 {
            return Err(StoreError::Conflict(format!(
                "finding {} is no longer `{}`; reload the case",
                e.finding_id, e.from_status
            )));
        }
        if let Some(k) = key {
            let (month, hospital, rule, severity, fen): (String, String, String, String, i64) =
                (k.get(0), k.get(1), k.get(2), k.get(3), k.get(4));
            for (status, sign) in [(&e.from_status, -1i64), (&e.to_status, 1)] {
                tx.execute(
                    MOVE_TOTALS_SQL,
                    &[
                        &month,
                        &hospital,
                        &rule,
                        &severity,
                        status,
                        &sign,
                        &(sign * fen),
                    ],
                )?;
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO finding_events ({EVENT_COLUMNS}, attachment)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &e.finding_id,
                &e.action,
                &e.from_status,
                &e.to_status,
                &e.actor,
                &e.actor_role,
                &e.reason,
                &e.amount_fen.map(|v| v as i64),
                &e.attachment_name,
                &e.at_ms,
                &e.attachment,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn finding_events(&self, finding_id: &str) -> Result<Vec<FindingEvent>, StoreError> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM finding_events WHERE finding_id = $1 ORDER BY event_id"
                ),
                &[&finding_id],
            )?
            .iter()
            .map(event_from)
            .collect())
    }

    fn event_attachment(
        &self,
        finding_id: &str,
        n: usize,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT attachment_name, attachment FROM finding_events
                 WHERE finding_id = $1 ORDER BY event_id LIMIT 1 OFFSET $2",
                &[&finding_id, &(n as i64)],
            )?
            .and_then(|r| {
                match (
                    r.get::<_, Option<String>>(0),
                    r.get::<_, Option<Vec<u8>>>(1),
                ) {
                    (Some(name), Some(bytes)) => Some((name, bytes)),
                    _ => None,
                }
            }))
    }

    fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO audit_trail (at_ms, actor, action, subject, reason) VALUES ($1, $2, $3, $4, $5)",
            &[&e.at_ms, &e.actor, &e.action, &e.subject, &e.reason],
        )?;
        Ok(())
    }

    fn audit_trail(&self, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT at_ms, actor, action, subject, reason FROM audit_trail
                 ORDER BY entry_id DESC LIMIT $1",
                &[&(limit as i64)],
            )?
            .iter()
            .map(|r| AuditEntry {
                at_ms: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                subject: r.get(3),
                reason: r.get(4),
            })
            .collect())
    }

    fn put_hospital_months(
        &self,
        from_month: &str,
        to_month: &str,
        rows: &[HospitalMonth],
    ) -> Result<(), StoreError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.execute(
            "DELETE FROM hospital_months WHERE month >= $1 AND month <= $2",
            &[&from_month, &to_month],
        )?;
        let put = tx.prepare(&format!(
            "INSERT INTO hospital_months ({MONTH_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))?;
        for m in rows {
            tx.execute(
                &put,
                &[
                    &m.hospital_code,
                    &m.month,
                    &(m.attested_sessions as i64),
                    &(m.fallback_sessions as i64),
                    &(m.attested_patients as i64),
                    &(m.claimed_lines as i64),
                    &(m.claimed_fen as i64),
                    &(m.claimed_patients as i64),
                    &(m.phantom_claims as i64),
                    &(m.phantom_fen as i64),
                    &(m.red as i64),
                    &(m.yellow as i64),
                    &(m.green as i64),
                    &(m.findings_fen as i64),
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn hospital_months(
        &self,
        from_month: &str,
        to_month: &str,
    ) -> Result<Vec<HospitalMonth>, StoreError> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT {MONTH_COLUMNS} FROM hospital_months WHERE month >= $1 AND month <= $2
                     ORDER BY month, hospital_code"
                ),
                &[&from_month, &to_month],
            )?
            .iter()
            .map(month_from)
            .collect())
    }

    fn put_patient_months(
        &self,
        from_month: &str,
        to_month: &str,
        rows: &[PatientMonth],
    ) -> Result<(), StoreError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.execute(
            "DELETE FROM patient_months WHERE month >= $1 AND month <= $2",
            &[&from_month, &to_month],
        )?;
        // Column arrays through unnest: one statement per 10,000 rows.
        let put = tx.prepare(&format!(
            "INSERT INTO patient_months ({PATIENT_MONTH_COLUMNS})
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[],
                 $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[],
                 $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[])"
        ))?;
        for chunk in rows.chunks(10_000) {
            let text =
                |f: fn(&PatientMonth) -> &str| -> Vec<&str> { chunk.iter().map(f).collect() };
            let num = |f: fn(&HospitalMonth) -> u64| -> Vec<i64> {
                chunk.iter().map(|p| f(&p.figures) as i64).collect()
            };
            let (refs, ids) = (text(|p| &p.patient_ref), text(|p| &p.insured_id));
            let (hospitals, months) = (
                text(|p| &p.figures.hospital_code),
                text(|p| &p.figures.month),
            );
            let counters = [
                num(|m| m.attested_sessions),
                num(|m| m.fallback_sessions),
                num(|m| m.attested_patients),
                num(|m| m.claimed_lines),
                num(|m| m.claimed_fen),
                num(|m| m.claimed_patients),
                num(|m| m.phantom_claims),
                num(|m| m.phantom_fen),
                num(|m| m.red),
                num(|m| m.yellow),
                num(|m| m.green),
                num(|m| m.findings_fen),
            ];
            let mut values: Vec<&(dyn ToSql + Sync)> = vec![&refs, &ids, &hospitals, &months];
            values.extend(counters.iter().map(|c| c as &(dyn ToSql + Sync)));
            tx.execute(&put, &values)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn patient_page(&self, q: &PatientQuery) -> Result<(Vec<PatientMonth>, u64), StoreError> {
        let (page, count, values) = patient_query_sql(q);
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let mut c = self.client()?;
        let total: i64 = c.query_one(&count, &params)?.get(0);
        let rows = c.query(&page, &params)?;
        Ok((rows.iter().map(patient_month_from).collect(), total as u64))
    }

    fn patient_months_of(&self, patient_ref: &str) -> Result<Vec<PatientMonth>, StoreError> {
        Ok(self
            .client()?
            .query(
                &format!(
                    "SELECT {PATIENT_MONTH_COLUMNS} FROM patient_months WHERE patient_ref = $1
                     ORDER BY month, hospital_code"
                ),
                &[&patient_ref],
            )?
            .iter()
            .map(patient_month_from)
            .collect())
    }

    fn claim_lines(&self, claim_ids: &[String]) -> Result<Vec<ClaimLine>, StoreError> {
        let mut out = self.claims_where("claim_id = ANY($1)", &[&claim_ids])?;
        out.sort_by(|a, b| (a.service_date, &a.claim_id).cmp(&(b.service_date, &b.claim_id)));
        Ok(out)
    }

    fn terminal_backlog(&self) -> Result<Vec<TerminalBacklog>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT t.terminal_id, COALESCE(c.seq, 0),
                        (SELECT COUNT(*) FROM held_records h WHERE h.terminal_id = t.terminal_id)
                   FROM terminals t LEFT JOIN chain_heads c ON c.terminal_id = t.terminal_id
                  ORDER BY t.terminal_id",
                &[],
            )?
            .iter()
            .map(|r| TerminalBacklog {
                terminal_id: r.get(0),
                chain_head: r.get::<_, i64>(1) as u64,
                held_records: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    fn patient_calendar(
        &self,
        insured_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<CalendarEntry>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT service_date, 'attested', COALESCE(kind, ''), hospital_code,
                        encode(record_id, 'hex'), NULL::BIGINT
                   FROM records WHERE insured_id = $1 AND record_type = 'session'
                    AND service_date BETWEEN $2 AND $3
                 UNION ALL
                 SELECT service_date, 'claimed', service_kind, hospital_code, claim_id, amount_fen
                   FROM claims WHERE insured_id = $1 AND service_date BETWEEN $2 AND $3
                 ORDER BY 1, 2, 5",
                &[&insured_id, &from, &to],
            )?
            .iter()
            .map(|r| CalendarEntry {
                date: r.get(0),
                source: r.get(1),
                kind: r.get(2),
                hospital_code: r.get(3),
                id: r.get(4),
                amount_fen: r.get::<_, Option<i64>>(5).map(|v| v as u64),
            })
            .collect())
    }

    fn put_ruleset(&self, v: &RulesetVersion) -> Result<(), StoreError> {
        let n = self.client()?.execute(
            "INSERT INTO rulesets (version, toml, author, reason, at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (version) DO NOTHING",
            &[&v.version, &v.toml, &v.author, &v.reason, &v.at_ms],
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
        Ok(self
            .client()?
            .query(
                "SELECT version, toml, author, reason, at_ms FROM rulesets
                 ORDER BY at_ms DESC, version DESC",
                &[],
            )?
            .iter()
            .map(|r| RulesetVersion {
                version: r.get(0),
                toml: r.get(1),
                author: r.get(2),
                reason: r.get(3),
                at_ms: r.get(4),
            })
            .collect())
    }

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()?
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }
}
