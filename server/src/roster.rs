//! Rosters: patients, staff, 五定 plans and price lists, imported from CSV
//! and delivered to each terminal of a hospital as changes since a cursor.
//!
//! CSV layouts (header row, UTF-8):
//!
//! * patients: `insured_id,card_uid,name,hospital_code`
//! * staff: `staff_id,card_uid,name,role,hospital_code,pin` (the PIN is
//!   hashed with argon2id on import and never stored in the clear)
//! * plans: `plan_id,insured_id,hospital_code,department_code,doctor_ids,kinds,drug_code,max_dose,max_sessions_per_week,valid_from,valid_to`
//!   (`doctor_ids` and `kinds` separated by `;`, `max_dose` like `75mg`)
//! * prices: `hospital_code,code,unit_price_fen`
//!
//! Names: terminals receive a masked display name only; the full name stays
//! on the server (kind `person`, never delivered).

use std::io::Read;

use serde::Deserialize;
use wuding_protocol::api::{RosterDelta, RosterPatient, RosterPrice, RosterStaff, mask_name};
use wuding_protocol::{Date, Dose, TreatmentKind, TreatmentPlan};

use crate::claims::{ImportError, ImportReport, RowError};
use crate::store::{RosterItem, Store, StoreError};

/// Which roster file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RosterKind {
    Patients,
    Staff,
    Plans,
    Prices,
}

#[derive(Deserialize)]
struct PatientRow {
    insured_id: String,
    card_uid: String,
    name: String,
    hospital_code: String,
}

#[derive(Deserialize)]
struct StaffRow {
    staff_id: String,
    card_uid: String,
    name: String,
    role: String,
    hospital_code: String,
    pin: String,
}

#[derive(Deserialize)]
struct PlanRow {
    plan_id: String,
    insured_id: String,
    hospital_code: String,
    department_code: String,
    doctor_ids: String,
    kinds: String,
    drug_code: String,
    max_dose: String,
    max_sessions_per_week: String,
    valid_from: String,
    valid_to: String,
}

#[derive(Deserialize)]
struct PriceRow {
    hospital_code: String,
    code: String,
    unit_price_fen: u64,
}

fn uid_ok(uid: &str) -> bool {
    matches!(uid.len(), 8 | 14 | 20) && uid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

type PinReuse<'a> = dyn FnMut(&str, &str, &str) -> Option<String> + 'a;

fn items_for(
    kind: RosterKind,
    record: &csv::StringRecord,
    header: &csv::StringRecord,
    reuse_pin: &mut PinReuse<'_>,
) -> Result<Vec<RosterItem>, (String, String)> {
    let bad = |column: &str, why: String| (column.to_owned(), why);
    let json = |v: &dyn erased::Json| v.to_json();
    match kind {
        RosterKind::Patients => {
            let r: PatientRow = record
                .deserialize(Some(header))
                .map_err(|e| bad("-", e.to_string()))?;
            if !uid_ok(&r.card_uid) {
                return Err(bad(
                    "card_uid",
                    "must be upper-case hex of a 4-, 7- or 10-byte UID".into(),
                ));
            }
            if r.name.trim().is_empty() {
                return Err(bad("name", "is empty".into()));
            }
            let patient = RosterPatient {
                insured_id: r.insured_id.clone(),
                card_uid: r.card_uid,
                display_name: mask_name(&r.name),
            };
            Ok(vec![
                RosterItem {
                    hospital_code: r.hospital_code.clone(),
                    kind: "patient".into(),
                    key: r.insured_id.clone(),
                    body: json(&patient),
                },
                RosterItem {
                    hospital_code: r.hospital_code,
                    kind: "person".into(),
                    key: r.insured_id.clone(),
                    body: serde_json::json!({"insured_id": r.insured_id, "name": r.name.trim()})
                        .to_string(),
                },
            ])
        }
        RosterKind::Staff => {
            let r: StaffRow = record
                .deserialize(Some(header))
                .map_err(|e| bad("-", e.to_string()))?;
            if !uid_ok(&r.card_uid) {
                return Err(bad(
                    "card_uid",
                    "must be upper-case hex of a 4-, 7- or 10-byte UID".into(),
                ));
            }
            if !matches!(r.role.as_str(), "nurse" | "doctor") {
                return Err(bad("role", format!("`{}` is not nurse or doctor", r.role)));
            }
            if r.pin.len() < 4 || r.pin.len() > 12 || !r.pin.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("pin", "must be 4 to 12 digits".into()));
            }
            let staff = RosterStaff {
                staff_id: r.staff_id.clone(),
                card_uid: r.card_uid,
                display_name: r.name.trim().to_owned(),
                role: r.role,
                // An unchanged PIN keeps its stored hash, so re-importing the
                // same file changes nothing.
                pin_hash: reuse_pin(&r.hospital_code, &r.staff_id, &r.pin)
                    .unwrap_or_else(|| hash_pin(&r.pin)),
            };
            Ok(vec![RosterItem {
                hospital_code: r.hospital_code,
                kind: "staff".into(),
                key: r.staff_id,
                body: json(&staff),
            }])
        }
        RosterKind::Plans => {
            let r: PlanRow = record
                .deserialize(Some(header))
                .map_err(|e| bad("-", e.to_string()))?;
            let date = |column: &str, v: &str| {
                v.trim()
                    .parse::<Date>()
                    .map_err(|_| bad(column, format!("`{v}` is not a date YYYY-MM-DD")))
            };
            let kinds = r
                .kinds
                .split(';')
                .map(|k| {
                    TreatmentKind::from_code(k.trim())
                        .ok_or_else(|| bad("kinds", format!("`{k}` is not a treatment kind")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let max_dose = if r.max_dose.trim().is_empty() {
                None
            } else {
                Some(Dose::parse_text(&r.max_dose).map_err(|e| bad("max_dose", e.to_string()))?)
            };
            let max_sessions_per_week = if r.max_sessions_per_week.trim().is_empty() {
                None
            } else {
                Some(r.max_sessions_per_week.trim().parse().map_err(|_| {
                    bad(
                        "max_sessions_per_week",
                        "is not a number from 0 to 255".into(),
                    )
                })?)
            };
            let plan = TreatmentPlan {
                plan_id: r.plan_id.clone(),
                insured_id: r.insured_id,
                hospital_code: r.hospital_code.clone(),
                department_code: r.department_code,
                doctor_ids: r
                    .doctor_ids
                    .split(';')
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty())
                    .collect(),
                kinds,
                drug_code: (!r.drug_code.trim().is_empty()).then(|| r.drug_code.trim().to_owned()),
                max_dose,
                max_sessions_per_week,
                valid_from: date("valid_from", &r.valid_from)?,
                valid_to: date("valid_to", &r.valid_to)?,
            };
            plan.validate()
                .map_err(|e| bad(e.field, e.reason.to_owned()))?;
            Ok(vec![RosterItem {
                hospital_code: r.hospital_code,
                kind: "plan".into(),
                key: r.plan_id,
                body: json(&plan),
            }])
        }
        RosterKind::Prices => {
            let r: PriceRow = record
                .deserialize(Some(header))
                .map_err(|e| bad("-", e.to_string()))?;
            if r.unit_price_fen > wuding_protocol::types::MAX_FEN {
                return Err(bad("unit_price_fen", "above the maximum amount".into()));
            }
            Ok(vec![RosterItem {
                hospital_code: r.hospital_code,
                kind: "price".into(),
                key: r.code.clone(),
                body: json(&RosterPrice {
                    code: r.code,
                    unit_price_fen: r.unit_price_fen,
                }),
            }])
        }
    }
}

mod erased {
    /// Serialises any roster type to its delivered JSON.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).expect("roster types serialise")
        }
    }
}

/// argon2id hash of a PIN with a random salt.
pub fn hash_pin(pin: &str) -> String {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(pin.as_bytes())
        .expect("argon2 with default parameters")
        .to_string()
}

/// Imports one roster file; bad rows are reported, good rows go in, and
/// re-importing the same file changes nothing.
pub fn import(
    store: &dyn Store,
    kind: RosterKind,
    reader: impl Read,
) -> Result<ImportReport, ImportError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let mut report = ImportReport::default();
    let mut items = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut known: std::collections::HashMap<String, Vec<RosterStaff>> =
        std::collections::HashMap::new();
    let mut store_error = None;
    let mut reuse_pin = |hospital: &str, staff_id: &str, pin: &str| -> Option<String> {
        if !known.contains_key(hospital) {
            match delta_for(store, hospital, 0) {
                Ok(d) => {
                    known.insert(hospital.to_owned(), d.staff);
                }
                Err(e) => {
                    store_error = Some(e);
                    return None;
                }
            }
        }
        known[hospital]
            .iter()
            .find(|s| s.staff_id == staff_id && pin_matches(pin, &s.pin_hash))
            .map(|s| s.pin_hash.clone())
    };
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
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
        match items_for(kind, &record, &header, &mut reuse_pin) {
            Ok(mut new) => items.append(&mut new),
            Err((column, why)) => report.errors.push(RowError { line, column, why }),
        }
        if items.len() >= 5_000 {
            report.inserted += store.put_roster_items(&items)?;
            items.clear();
        }
    }
    if let Some(e) = store_error {
        return Err(e.into());
    }
    report.inserted += store.put_roster_items(&items)?;
    Ok(report)
}

fn pin_matches(pin: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(pin.as_bytes(), hash)
        .is_ok()
}

/// What changed for a hospital's terminals since `since`.
pub fn delta_for(
    store: &dyn Store,
    hospital_code: &str,
    since: u64,
) -> Result<RosterDelta, StoreError> {
    delta_with_templates(store, None, hospital_code, since)
}

/// Like [`delta_for`], with templates re-sealed for the hospital's
/// terminals when the server holds the template key.
pub fn delta_with_templates(
    store: &dyn Store,
    vault: Option<&crate::templates::TemplateVault>,
    hospital_code: &str,
    since: u64,
) -> Result<RosterDelta, StoreError> {
    let (items, cursor) = store.roster_since(hospital_code, since)?;
    let mut delta = RosterDelta {
        cursor,
        ..RosterDelta::default()
    };
    for item in items {
        let bad = |_| StoreError::Corrupt("roster item");
        match item.kind.as_str() {
            "patient" => delta
                .patients
                .push(serde_json::from_str(&item.body).map_err(bad)?),
            "staff" => delta
                .staff
                .push(serde_json::from_str(&item.body).map_err(bad)?),
            "plan" => delta
                .plans
                .push(serde_json::from_str(&item.body).map_err(bad)?),
            "price" => delta
                .prices
                .push(serde_json::from_str(&item.body).map_err(bad)?),
            crate::templates::KIND => {
                if let Some(vault) = vault {
                    let t = vault.deliver(&item).map_err(|e| match e {
                        crate::templates::TemplateError::Store(e) => e,
                        _ => StoreError::Corrupt(
                            "a stored template does not open under the template key",
                        ),
                    })?;
                    delta.templates.push(t);
                }
            }
            // Server-only kinds (full names) are never delivered.
            _ => {}
        }
    }
    Ok(delta)
}
