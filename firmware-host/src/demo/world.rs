//! The demo's small world: two hospitals (one honest, one not), their
//! terminals, staff, prices, patients with 五定 plans and weekly schedules,
//! and the claims each hospital sends once the week is over.

use wuding_protocol::{Finger, TreatmentKind};
use wuding_server::roster::{RosterKind, import};
use wuding_server::store::Store;
use wuding_terminal::flow::default_service_code;

use super::bedside::Attended;
use crate::scenario::ClaimRow;
use crate::scenario::calendar;

#[derive(Debug, Clone)]
pub struct Hospital {
    pub code: String,
    pub name: String,
    pub honest: bool,
    /// Two nurses: (staff id, card UID, name, PIN); the second witnesses
    /// supervised fallbacks.
    pub nurses: [(String, String, String, String); 2],
    /// Nephrologists and oncologists named in plans.
    pub nephrologist: String,
    pub oncologist: String,
    pub hd_price_fen: u64,
    pub hdf_price_fen: u64,
    pub chemo_price_fen: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ward {
    Dialysis,
    Oncology,
}

#[derive(Debug, Clone)]
pub struct TerminalSpec {
    pub id: String,
    pub hospital: usize,
    pub ward: Ward,
    pub department_code: &'static str,
    pub department_name: &'static str,
    pub beds: Vec<String>,
    pub duty_doctor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Care {
    /// Maintenance haemodialysis on these ISO weekdays (Monday = 0).
    Dialysis { weekdays: Vec<u32> },
    /// A chemotherapy cycle day in the week, under a fixed drug and dose.
    Chemo {
        weekday: u32,
        drug_code: &'static str,
        dose_mg: u64,
    },
}

#[derive(Debug, Clone)]
pub struct DemoPatient {
    pub insured_id: String,
    pub card_uid: String,
    pub name: String,
    pub hospital: usize,
    pub terminal: usize,
    pub care: Care,
    /// The enrolled finger (dialysis: the hand without the fistula).
    pub finger: Finger,
    /// The emulator's name of that finger.
    pub finger_name: String,
    /// Worn fingertips: the first check-in of the week fails on the
    /// sensor and the nurse falls back to a supervised attestation.
    pub worn: bool,
}

impl DemoPatient {
    pub fn attends(&self, day: i64) -> bool {
        let wd = calendar::weekday(day);
        match &self.care {
            Care::Dialysis { weekdays } => weekdays.contains(&wd),
            Care::Chemo { weekday, .. } => *weekday == wd,
        }
    }

    pub fn kind(&self) -> TreatmentKind {
        match self.care {
            Care::Dialysis { .. } => TreatmentKind::HD,
            Care::Chemo { .. } => TreatmentKind::CHEMO,
        }
    }
}

/// A claim line the dishonest hospital adds, and what should find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub claim_id: String,
    /// phantom_session, extra_session, service_swapped, dose_above_plan.
    pub kind: &'static str,
    /// The rule expected to find it (red).
    pub rule_id: &'static str,
    pub note: String,
}

pub struct Claims {
    pub rows: Vec<ClaimRow>,
    pub injected: Vec<Injected>,
}

pub struct DemoWorld {
    pub hospitals: Vec<Hospital>,
    pub terminals: Vec<TerminalSpec>,
    pub patients: Vec<DemoPatient>,
    pub first_day: i64,
    pub days: u32,
}

const NAMES: [&str; 24] = [
    "王建国",
    "李秀英",
    "张伟民",
    "刘桂兰",
    "陈志强",
    "杨淑珍",
    "赵德明",
    "黄丽华",
    "周国庆",
    "吴美玲",
    "徐长林",
    "孙玉梅",
    "马文华",
    "朱秀兰",
    "胡建平",
    "郭凤英",
    "何国平",
    "林淑芬",
    "罗志明",
    "高桂芳",
    "郑家豪",
    "梁秀云",
    "宋金山",
    "谢春梅",
];

/// The check digit of an 18-character resident identity number (ISO 7064
/// MOD 11-2), which Chinese medical-insurance numbers follow.
fn id_check_digit(first17: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(W)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

impl DemoWorld {
    pub fn build(terminals: usize, patients: usize, first_day: i64, days: u32) -> DemoWorld {
        let nurse = |h: usize, i: usize, name: &str, pin: &str| {
            (
                format!("N{}{:02}", h + 1, i + 31),
                format!("04FF{:02X}{:02X}", h + 1, i + 1),
                name.to_string(),
                pin.to_string(),
            )
        };
        let hospitals = vec![
            Hospital {
                code: "H33010200017".into(),
                name: "城东人民医院".into(),
                honest: true,
                nurses: [nurse(0, 0, "李护士", "2468"), nurse(0, 1, "陈护士", "1357")],
                nephrologist: "D0107".into(),
                oncologist: "D0311".into(),
                hd_price_fen: 42_000,
                hdf_price_fen: 61_000,
                chemo_price_fen: 18_000,
            },
            Hospital {
                code: "H33010500023".into(),
                name: "江南康复医院".into(),
                honest: false,
                nurses: [nurse(1, 0, "王护士", "8642"), nurse(1, 1, "赵护士", "7531")],
                nephrologist: "D2104".into(),
                oncologist: "D2208".into(),
                hd_price_fen: 45_000,
                hdf_price_fen: 66_000,
                chemo_price_fen: 19_500,
            },
        ];
        let mut specs = Vec::new();
        for t in 0..terminals {
            let hospital = t % 2;
            let ward = if t / 2 == 1 {
                Ward::Oncology
            } else {
                Ward::Dialysis
            };
            let district = if hospital == 0 { "330102" } else { "330105" };
            let h = &hospitals[hospital];
            specs.push(TerminalSpec {
                id: format!("T-{district}-{:04}", t + 1),
                hospital,
                ward,
                department_code: match ward {
                    Ward::Dialysis => "NEPH",
                    Ward::Oncology => "ONC",
                },
                department_name: match ward {
                    Ward::Dialysis => "血液透析室",
                    Ward::Oncology => "肿瘤日间病房",
                },
                beds: Vec::new(),
                duty_doctor: match ward {
                    Ward::Dialysis => h.nephrologist.clone(),
                    Ward::Oncology => h.oncologist.clone(),
                },
            });
        }
        let chemo_drugs: Vec<_> = crate::scenario::catalog::DRUGS
            .iter()
            .filter(|d| d.kind == TreatmentKind::CHEMO && d.unit == "mg")
            .collect();
        let mut list = Vec::new();
        let mut served = vec![0usize; specs.len()];
        for p in 0..patients {
            let hospital = p % 2;
            let k = p / 2;
            let oncology: Vec<usize> = (0..specs.len())
                .filter(|&t| specs[t].hospital == hospital && specs[t].ward == Ward::Oncology)
                .collect();
            let dialysis: Vec<usize> = (0..specs.len())
                .filter(|&t| specs[t].hospital == hospital && specs[t].ward == Ward::Dialysis)
                .collect();
            let chemo = k % 4 == 3 && !oncology.is_empty();
            let (terminal, care) = if chemo {
                let drug = chemo_drugs[k % chemo_drugs.len()];
                let (lo, hi) = drug.dose_milli;
                let dose_mg = ((lo + hi) / 2 / 1000).div_ceil(10) * 10;
                (
                    oncology[k % oncology.len()],
                    Care::Chemo {
                        weekday: (k % 5) as u32,
                        drug_code: drug.code,
                        dose_mg,
                    },
                )
            } else {
                // Three sessions a week (Mon/Wed/Fri or Tue/Thu/Sat); every
                // third patient dialyses twice (residual kidney function).
                let weekdays = match (k % 3 == 2, k % 2 == 0) {
                    (false, true) => vec![0, 2, 4],
                    (false, false) => vec![1, 3, 5],
                    (true, true) => vec![1, 4],
                    (true, false) => vec![0, 3],
                };
                (dialysis[k % dialysis.len()], Care::Dialysis { weekdays })
            };
            served[terminal] += 1;
            let district = if hospital == 0 { "330102" } else { "330105" };
            let year = 1938 + (p * 7 % 38);
            let month = 1 + p * 5 % 12;
            let day = 1 + p * 11 % 28;
            let first17 = format!(
                "{district}{year:04}{month:02}{day:02}{:03}",
                (p * 2 + 1) % 1000
            );
            let insured_id = format!("{first17}{}", id_check_digit(&first17));
            let finger = if chemo || p % 3 != 0 {
                Finger::LeftIndex
            } else {
                // Fistula in the left arm: the right hand is enrolled.
                Finger::RightIndex
            };
            let name = NAMES[p % NAMES.len()].to_string();
            list.push(DemoPatient {
                card_uid: format!("04{:06X}", 0xA1_B200 + p * 37),
                finger_name: format!("{insured_id}-{finger:?}"),
                insured_id,
                name,
                hospital,
                terminal,
                care,
                finger,
                worn: k % 5 == 1,
            });
        }
        for (t, spec) in specs.iter_mut().enumerate() {
            let n = served[t].max(2);
            spec.beds = (1..=n).map(|b| format!("B{b:02}")).collect();
        }
        DemoWorld {
            hospitals,
            terminals: specs,
            patients: list,
            first_day,
            days,
        }
    }

    pub fn staff_count(&self) -> usize {
        self.hospitals.len() * 4
    }

    /// (staff id, card UID, PIN) of every nurse.
    pub fn staff_logins(&self) -> Vec<(String, String, String)> {
        self.hospitals
            .iter()
            .flat_map(|h| h.nurses.iter())
            .map(|(id, card, _, pin)| (id.clone(), card.clone(), pin.clone()))
            .collect()
    }

    /// Patients, staff, 五定 plans and prices, through the server's roster
    /// import (as `wuding-server import-roster` does).
    pub fn import_roster(&self, store: &dyn Store) -> anyhow::Result<()> {
        let mut patients = String::from("insured_id,card_uid,name,hospital_code\n");
        let mut plans = String::from(
            "plan_id,insured_id,hospital_code,department_code,doctor_ids,kinds,drug_code,max_dose,max_sessions_per_week,valid_from,valid_to\n",
        );
        for (i, p) in self.patients.iter().enumerate() {
            let h = &self.hospitals[p.hospital];
            patients.push_str(&format!(
                "{},{},{},{}\n",
                p.insured_id, p.card_uid, p.name, h.code
            ));
            let t = &self.terminals[p.terminal];
            let line = match &p.care {
                Care::Dialysis { weekdays } => format!(
                    "PL-{:04},{},{},{},{},HD,,,{},2026-01-01,2027-12-31\n",
                    i + 1,
                    p.insured_id,
                    h.code,
                    t.department_code,
                    h.nephrologist,
                    weekdays.len()
                ),
                Care::Chemo {
                    drug_code, dose_mg, ..
                } => format!(
                    "PL-{:04},{},{},{},{},CHEMO,{drug_code},{dose_mg}mg,,2026-01-01,2027-12-31\n",
                    i + 1,
                    p.insured_id,
                    h.code,
                    t.department_code,
                    h.oncologist,
                ),
            };
            plans.push_str(&line);
        }
        let mut staff = String::from("staff_id,card_uid,name,role,hospital_code,pin\n");
        let mut prices = String::from("hospital_code,code,unit_price_fen\n");
        for h in &self.hospitals {
            for (id, card, name, pin) in &h.nurses {
                staff.push_str(&format!("{id},{card},{name},nurse,{},{pin}\n", h.code));
            }
            staff.push_str(&format!(
                "{},04DD{}01,张医生,doctor,{},9999\n{},04DD{}02,孙医生,doctor,{},9998\n",
                h.nephrologist,
                &h.code[10..],
                h.code,
                h.oncologist,
                &h.code[10..],
                h.code
            ));
            for (kind, fen) in [
                (TreatmentKind::HD, h.hd_price_fen),
                (TreatmentKind::HDF, h.hdf_price_fen),
                (TreatmentKind::CHEMO, h.chemo_price_fen),
            ] {
                prices.push_str(&format!(
                    "{},{},{fen}\n",
                    h.code,
                    default_service_code(kind)
                ));
            }
        }
        for (kind, text) in [
            (RosterKind::Patients, patients),
            (RosterKind::Staff, staff),
            (RosterKind::Plans, plans),
            (RosterKind::Prices, prices),
        ] {
            let report = import(store, kind, text.as_bytes())?;
            if !report.errors.is_empty() {
                anyhow::bail!("roster {kind:?}: {:?}", report.errors);
            }
        }
        Ok(())
    }

    /// The claims both hospitals send: what happened, and for the
    /// dishonest hospital more (phantom sessions, an extra session, a
    /// swapped service, a dose above the plan).
    pub fn claims(&self, attended: &[Attended]) -> Claims {
        let mut sorted: Vec<&Attended> = attended.iter().collect();
        sorted.sort_by_key(|a| (a.day, a.patient));
        let mut rows = Vec::new();
        let mut injected = Vec::new();
        let mut seq = [0u32; 2];
        let mut next_id = |h: usize, day: i64| {
            seq[h] += 1;
            let (y, m, d) = calendar::civil_from_days(day);
            format!(
                "C{}{y:04}{m:02}{d:02}{:05}",
                &self.hospitals[h].code[6..],
                seq[h] * 7 + 3
            )
        };
        let dishonest = 1usize;
        let mut swapped = false;
        let mut dose_raised = false;
        let mut extra = 0;
        for a in &sorted {
            let p = &self.patients[a.patient];
            let h = &self.hospitals[p.hospital];
            let t = &self.terminals[p.terminal];
            let (doctor, drug, dose) = match &p.care {
                Care::Dialysis { .. } => (h.nephrologist.clone(), "", String::new()),
                Care::Chemo {
                    drug_code, dose_mg, ..
                } => (h.oncologist.clone(), *drug_code, format!("{dose_mg}mg")),
            };
            let mut row = ClaimRow {
                claim_id: next_id(p.hospital, a.day),
                insured_id: p.insured_id.clone(),
                hospital_code: h.code.clone(),
                department_code: t.department_code,
                doctor_id: doctor,
                service_date: calendar::format_date(a.day),
                service_code: default_service_code(a.kind),
                service_kind: a.kind.code(),
                quantity: 1,
                amount_fen: a.total_fen,
                drug_code: drug,
                dose,
            };
            if p.hospital == dishonest {
                if !swapped && a.kind == TreatmentKind::HD {
                    // HDF claimed, HD done (串换).
                    swapped = true;
                    row.service_kind = TreatmentKind::HDF.code();
                    row.service_code = default_service_code(TreatmentKind::HDF);
                    row.amount_fen = h.hdf_price_fen;
                    injected.push(Injected {
                        claim_id: row.claim_id.clone(),
                        kind: "service_swapped",
                        rule_id: "service_swapped",
                        note: format!(
                            "{} {}: HDF claimed at {} yuan, HD attested",
                            p.name,
                            row.service_date,
                            h.hdf_price_fen / 100
                        ),
                    });
                } else if !dose_raised && let Care::Chemo { dose_mg, .. } = &p.care {
                    dose_raised = true;
                    row.dose = format!("{}mg", dose_mg + dose_mg / 5);
                    injected.push(Injected {
                        claim_id: row.claim_id.clone(),
                        kind: "dose_above_plan",
                        rule_id: "plan_dose",
                        note: format!(
                            "{} {}: {} claimed, the plan allows {dose_mg}mg",
                            p.name, row.service_date, row.dose
                        ),
                    });
                } else if extra < 2 && a.kind == TreatmentKind::HD && !a.fallback {
                    // One more session claimed on a day the patient came.
                    extra += 1;
                    let mut more = row.clone();
                    more.claim_id = next_id(p.hospital, a.day);
                    injected.push(Injected {
                        claim_id: more.claim_id.clone(),
                        kind: "extra_session",
                        rule_id: "inflated_count",
                        note: format!(
                            "{} {}: two HD sessions claimed, one attested",
                            p.name, more.service_date
                        ),
                    });
                    rows.push(row);
                    rows.push(more);
                    continue;
                }
            }
            rows.push(row);
        }
        // Phantom sessions: dialysis claimed on days the patient never came.
        let mut phantoms = 0;
        for (i, p) in self.patients.iter().enumerate() {
            if p.hospital != dishonest || phantoms >= 3 {
                continue;
            }
            let Care::Dialysis { .. } = p.care else {
                continue;
            };
            let Some(day) = (0..self.days)
                .map(|d| self.first_day + i64::from(d))
                .filter(|&d| calendar::weekday(d) < 6)
                .find(|&d| !attended.iter().any(|a| a.patient == i && a.day == d))
            else {
                continue;
            };
            phantoms += 1;
            let h = &self.hospitals[p.hospital];
            let row = ClaimRow {
                claim_id: next_id(p.hospital, day),
                insured_id: p.insured_id.clone(),
                hospital_code: h.code.clone(),
                department_code: self.terminals[p.terminal].department_code,
                doctor_id: h.nephrologist.clone(),
                service_date: calendar::format_date(day),
                service_code: default_service_code(TreatmentKind::HD),
                service_kind: TreatmentKind::HD.code(),
                quantity: 1,
                amount_fen: h.hd_price_fen,
                drug_code: "",
                dose: String::new(),
            };
            injected.push(Injected {
                claim_id: row.claim_id.clone(),
                kind: "phantom_session",
                rule_id: "phantom_session",
                note: format!(
                    "{} {}: HD claimed, the patient never came",
                    p.name, row.service_date
                ),
            });
            rows.push(row);
        }
        Claims { rows, injected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_numbers_carry_a_valid_check_digit() {
        // GB 11643 example number.
        assert_eq!(id_check_digit("11010519491231002"), 'X');
        let w = DemoWorld::build(4, 16, calendar::days_from_civil(2026, 11, 16), 7);
        for p in &w.patients {
            assert_eq!(p.insured_id.len(), 18);
            assert_eq!(
                p.insured_id.chars().last(),
                Some(id_check_digit(&p.insured_id[..17]))
            );
        }
        let ids: std::collections::BTreeSet<_> = w.patients.iter().map(|p| &p.insured_id).collect();
        assert_eq!(ids.len(), 16, "identity numbers repeat");
        let cards: std::collections::BTreeSet<_> = w.patients.iter().map(|p| &p.card_uid).collect();
        assert_eq!(cards.len(), 16, "card UIDs repeat");
        assert!(
            w.patients
                .iter()
                .any(|p| matches!(p.care, Care::Chemo { .. }))
        );
        assert!(w.patients.iter().any(|p| p.worn));
    }
}
