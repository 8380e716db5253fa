//! The region (hospitals, staff, terminals, patients, 五定 plans, prices)
//! and the honest month of sessions and claims.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use wuding_protocol::{
    FallbackReason, Finger, TemplateKey, TemplateRef, TerminalSigner, TreatmentKind, template_ref,
};

use super::ScenarioConfig;
use super::calendar::{self, MINUTE_MS};
use super::catalog::{self, DRUGS, Dept};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    County,
    City,
}

pub struct Hospital {
    pub code: String,
    pub name: String,
    pub level: Level,
    pub province_code: String,
    pub city_code: String,
    pub county_code: String,
    pub depts: Vec<Dept>,
    /// Staff indices per department (`Dept as usize`).
    pub nurses: [Vec<u32>; 4],
    pub doctors: [Vec<u32>; 4],
    pub terminals: [Vec<u32>; 4],
    pub template_key: TemplateKey,
    pub machine_model: &'static str,
    pub shifts: u32,
    pub beds: u32,
    /// Priced codes, sorted by code.
    pub prices: Vec<(&'static str, u64)>,
    /// Terminal numbers handed out so far (registered and rogue).
    pub next_terminal_no: u32,
}

impl Hospital {
    pub fn price(&self, code: &str) -> u64 {
        match self.prices.binary_search_by(|(c, _)| (*c).cmp(code)) {
            Ok(i) => self.prices[i].1,
            Err(_) => panic!("no price for {code} at {}", self.code),
        }
    }

    pub fn has(&self, dept: Dept) -> bool {
        self.depts.contains(&dept)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Nurse,
    Doctor,
}

pub struct Staff {
    pub id: String,
    pub card_uid: String,
    pub name: String,
    pub role: Role,
    pub hospital: u32,
    pub pin: String,
}

pub struct Terminal {
    pub id: String,
    pub hospital: u32,
    pub dept: Dept,
    pub signer: TerminalSigner,
    pub approved_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// False for an injected unknown key: not written to terminals.csv.
    pub registered: bool,
    /// Offline window (UTC ms): records signed inside arrive at its end.
    pub outage: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Care {
    /// Centre dialysis on a fixed weekly pattern.
    Dialysis,
    Pd,
    Chemo,
    Radio,
    Antireject,
}

pub struct Patient {
    pub insured_id: String,
    pub card_uid: String,
    pub name: String,
    pub hospital: u32,
    pub care: Care,
    pub fingers: [Finger; 2],
    pub template_refs: [TemplateRef; 2],
    pub worn: bool,
    pub plans: Vec<u32>,
    /// Dialysis: 2 or 3 a week.
    pub per_week: u8,
    /// Drug index (chemotherapy, anti-rejection).
    pub drug: Option<usize>,
    /// Enrolled during the month, on this day.
    pub enrolled_day: Option<i64>,
}

pub struct Plan {
    pub plan_id: String,
    pub patient: u32,
    pub hospital: u32,
    pub dept: Dept,
    pub doctors: Vec<u32>,
    pub kinds: Vec<TreatmentKind>,
    pub drug: Option<usize>,
    /// Thousandths of the unit (`drug` unit, or Gy for radiotherapy); 0 = none.
    pub max_dose_milli: u64,
    pub dose_unit: &'static str,
    pub max_per_week: Option<u8>,
    pub valid_from: i64,
    pub valid_to: i64,
}

/// How presence was proven at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    Finger {
        alt: bool,
        score: u16,
        attempts: u8,
    },
    Supervised {
        reason: FallbackReason,
        witness: u32,
        attempts: u8,
    },
}

/// What happens to a session's record on its way to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    None,
    /// Signed, then deleted from the upload (chain gap).
    Deleted,
    /// Payload altered after signing (bad signature).
    Tampered,
    /// A second record at the seq of this session (chain fork).
    ForkOf(u32),
}

#[derive(Debug, Clone)]
pub struct Session {
    pub patient: u32,
    pub hospital: u32,
    pub dept: Dept,
    pub terminal: u32,
    pub bed: u16,
    pub kind: TreatmentKind,
    pub nurse: u32,
    pub doctor: u32,
    pub drug: Option<usize>,
    pub dose_milli: u64,
    pub dose_unit: &'static str,
    pub check_in: i64,
    pub check_out: Option<i64>,
    pub signed_at: i64,
    pub ev_in: Ev,
    pub ev_out: Ev,
    /// Charge lines: code and unit price (quantity 1 each).
    pub items: [(&'static str, u64); 2],
    pub n_items: u8,
    /// Terminal clock ahead of true time by this much.
    pub skew_ms: i64,
    pub flag: Flag,
    /// Already used by an injected fraud (or made fallback by one).
    pub taken: bool,
}

impl Session {
    pub fn total_fen(&self) -> u64 {
        self.items[..self.n_items as usize]
            .iter()
            .map(|i| i.1)
            .sum()
    }

    pub fn day(&self) -> i64 {
        calendar::local_day(self.check_in)
    }
}

/// One claim line before ids are assigned.
#[derive(Debug, Clone)]
pub struct ClaimDraft {
    pub hospital: u32,
    pub patient: u32,
    pub dept: &'static str,
    pub doctor: u32,
    pub day: i64,
    pub kind: TreatmentKind,
    pub service_code: &'static str,
    pub quantity: u32,
    pub amount_fen: u64,
    pub drug: Option<&'static str>,
    pub dose_milli: u64,
    pub dose_unit: &'static str,
}

/// An enrolment to sign on a terminal.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub patient: u32,
    pub terminal: u32,
    pub nurse: u32,
    pub signed_at: i64,
    pub slot: u16,
}

pub struct World {
    pub cfg_seed: u64,
    pub first_day: i64,
    pub n_days: u32,
    pub hospitals: Vec<Hospital>,
    pub staff: Vec<Staff>,
    pub terminals: Vec<Terminal>,
    pub patients: Vec<Patient>,
    pub plans: Vec<Plan>,
    pub sessions: Vec<Session>,
    pub claims: Vec<ClaimDraft>,
    /// Claim of each session (index into `claims`), if claimed.
    pub claim_of: Vec<Option<u32>>,
    pub enrolments: Vec<Enrolment>,
}

/// A sub-seed for a named purpose.
pub fn derive(seed: u64, purpose: &str, extra: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"wuding-sim/v1\0");
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(extra);
    h.finalize().into()
}

pub fn signer_for(seed: u64, terminal_id: &str) -> TerminalSigner {
    TerminalSigner::from_seed(&derive(seed, "terminal-key", terminal_id.as_bytes()))
}

pub fn template_for(key: &TemplateKey, seed: u64, insured_id: &str, finger: Finger) -> TemplateRef {
    let template = derive(
        seed,
        "template",
        format!("{insured_id}/{}", finger.code()).as_bytes(),
    );
    template_ref(key, &template)
}

fn pick<T: Copy>(rng: &mut ChaCha20Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Largest-remainder split of `n` by weights.
fn apportion(n: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    if weights.is_empty() || total <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut rest = n - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for i in order {
        if rest == 0 {
            break;
        }
        counts[i] += 1;
        rest -= 1;
    }
    counts
}

const CITY_PREFIXES: [u32; 21] = [
    1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 32, 33, 34,
];
const MACHINES: [&str; 4] = ["4008S", "DBB27", "AK96", "5008S"];
const CITY_NAMES: [&str; 6] = [
    "人民医院",
    "第二人民医院",
    "中心医院",
    "中医医院",
    "第三人民医院",
    "第一人民医院",
];

fn card_uid(seed: u64, index: u32) -> String {
    let d = derive(seed, "card-uid", &[]);
    let mult = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) | 1;
    let xor = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
    format!("{:08X}", index.wrapping_mul(mult) ^ xor)
}

pub fn build(cfg: &ScenarioConfig) -> World {
    let mut rng = ChaCha20Rng::from_seed(derive(cfg.seed, "world", &[]));
    let first_day = calendar::days_from_civil(cfg.year, cfg.month, 1);
    let n_days = calendar::days_in_month(cfg.year, cfg.month);
    let month_start_ms = calendar::local_ms(first_day, 0);
    let n = cfg.patients as usize;

    // ---- hospitals -------------------------------------------------------
    let n_hosp = (n as f64 / 110.0).round().max(8.0) as usize;
    let n_city_hosp = ((n_hosp as f64 * 0.35).round() as usize).max(3);
    let n_cities = (n_hosp / 25).clamp(2, CITY_PREFIXES.len());
    let mut seen_counties: Vec<(String, u32)> = Vec::new();
    let mut raw: Vec<(Level, usize, String, f64)> = Vec::new();
    for i in 0..n_hosp {
        let (level, city) = if i < n_city_hosp {
            (Level::City, i % n_cities)
        } else {
            (Level::County, rng.random_range(0..n_cities))
        };
        let prefix = cfg.province * 10_000 + CITY_PREFIXES[city] * 100;
        let county = match level {
            Level::City => prefix + rng.random_range(2..=7),
            Level::County => prefix + rng.random_range(21..=29),
        };
        let weight = match level {
            Level::City => 2.6,
            Level::County => 1.0,
        } * (0.6 + rng.random_range(0..800) as f64 / 1000.0);
        raw.push((level, city, county.to_string(), weight));
    }
    let mut hospitals: Vec<Hospital> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for (level, city, county, weight) in raw {
        let serial = match seen_counties.iter_mut().find(|(c, _)| *c == county) {
            Some((_, k)) => {
                *k += 1;
                *k
            }
            None => {
                seen_counties.push((county.clone(), 1));
                1
            }
        };
        let code = format!("H{county}{serial:05}");
        let city_code = format!("{}00", &county[..4]);
        let county_no = seen_counties
            .iter()
            .position(|(c, _)| *c == county)
            .unwrap()
            + 1;
        let name = match level {
            Level::City => {
                let k = hospitals
                    .iter()
                    .filter(|h| h.level == Level::City && h.city_code == city_code)
                    .count();
                match CITY_NAMES.get(k) {
                    Some(s) => format!("第{}市{s}", city + 1),
                    None => format!("第{}市第{}医院", city + 1, k + 1),
                }
            }
            Level::County => match serial {
                1 => format!("第{county_no}县人民医院"),
                2 => format!("第{county_no}县中医医院"),
                k => format!("第{county_no}县第{k}人民医院"),
            },
        };
        let mut depts = vec![Dept::Neph];
        let onc = level == Level::City || rng.random_bool(0.5);
        if onc {
            depts.push(Dept::Onc);
        }
        if level == Level::City && rng.random_bool(0.5) {
            depts.push(Dept::Rad);
        }
        if level == Level::City && rng.random_bool(0.2) {
            depts.push(Dept::Tx);
        }
        hospitals.push(Hospital {
            template_key: TemplateKey(derive(cfg.seed, "template-key", code.as_bytes())),
            code,
            name,
            level,
            province_code: format!("{}0000", cfg.province),
            city_code,
            county_code: county,
            depts,
            nurses: Default::default(),
            doctors: Default::default(),
            terminals: Default::default(),
            machine_model: pick(&mut rng, &MACHINES),
            shifts: 2,
            beds: 0,
            prices: Vec::new(),
            next_terminal_no: 1,
        });
        weights.push(weight);
    }
    // Every department somewhere (the first city hospitals).
    for (i, dept) in [(0usize, Dept::Onc), (1, Dept::Rad), (2, Dept::Tx)] {
        if !hospitals.iter().any(|h| h.has(dept)) {
            hospitals[i].depts.push(dept);
        }
    }
    for h in &mut hospitals {
        h.depts.sort();
    }
    // Sort by code; weights follow.
    let mut order: Vec<usize> = (0..hospitals.len()).collect();
    order.sort_by(|&a, &b| hospitals[a].code.cmp(&hospitals[b].code));
    let mut taken: Vec<Option<Hospital>> = hospitals.into_iter().map(Some).collect();
    let hospitals_sorted: Vec<Hospital> = order.iter().map(|&i| taken[i].take().unwrap()).collect();
    let weights: Vec<f64> = order.iter().map(|&i| weights[i]).collect();
    let mut hospitals = hospitals_sorted;

    // ---- prices ------------------------------------------------------------
    let bands = cfg.price_bands();
    for h in &mut hospitals {
        // County hospitals price in the lower part of each band.
        let (lo, hi) = match h.level {
            Level::County => (0.0, 0.65),
            Level::City => (0.35, 1.0),
        };
        let mut prices: Vec<(&'static str, u64)> = Vec::new();
        for b in &bands {
            let f = lo + (hi - lo) * rng.random_range(0..=1000) as f64 / 1000.0;
            let fen = b.min_fen as f64 + (b.max_fen - b.min_fen) as f64 * f;
            prices.push((b.code, (fen / 100.0).round() as u64 * 100));
        }
        for d in DRUGS.iter() {
            let needs = match d.kind {
                TreatmentKind::CHEMO => h.has(Dept::Onc),
                _ => h.has(Dept::Tx),
            };
            if needs {
                let f = lo + (hi - lo) * rng.random_range(0..=1000) as f64 / 1000.0;
                let fen = d.price_fen.0 as f64 + (d.price_fen.1 - d.price_fen.0) as f64 * f;
                prices.push((d.code, (fen / 100.0).round() as u64 * 100));
            }
        }
        prices.sort();
        h.prices = prices;
    }

    // ---- patients per care and hospital -------------------------------------
    let share = |f: f64, min: usize| {
        if n >= 40 {
            ((n as f64 * f).round() as usize).max(min)
        } else {
            (n as f64 * f).round() as usize
        }
    };
    let n_chemo = share(0.045, 4);
    let n_radio = share(0.03, 3);
    let n_anti = share(0.01, 1);
    let n_pd = share(0.015, 1);
    let n_dial = n.saturating_sub(n_chemo + n_radio + n_anti + n_pd);
    let per_care = [
        (Care::Dialysis, n_dial, Dept::Neph),
        (Care::Pd, n_pd, Dept::Neph),
        (Care::Chemo, n_chemo, Dept::Onc),
        (Care::Radio, n_radio, Dept::Rad),
        (Care::Antireject, n_anti, Dept::Tx),
    ];
    // counts[h][care]
    let mut counts = vec![[0usize; 5]; hospitals.len()];
    for (ci, (_, total, dept)) in per_care.iter().enumerate() {
        let w: Vec<f64> = hospitals
            .iter()
            .zip(&weights)
            .map(|(h, w)| if h.has(*dept) { *w } else { 0.0 })
            .collect();
        for (hi, c) in apportion(*total, &w).into_iter().enumerate() {
            counts[hi][ci] = c;
        }
    }

    // ---- staff and terminals ---------------------------------------------------
    let mut staff: Vec<Staff> = Vec::new();
    let mut terminals: Vec<Terminal> = Vec::new();
    let mut uid_index: u32 = cfg.patients;
    for (hi, h) in hospitals.iter_mut().enumerate() {
        let c = counts[hi];
        let n_d = c[0];
        h.shifts = if n_d > 150 { 3 } else { 2 };
        h.beds = (n_d as u32).div_ceil(2 * h.shifts).max(3) + 1;
        let mut nurse_no = 0u32;
        let mut doctor_no = 0u32;
        for dept in h.depts.clone() {
            let (nurses, doctors, terms) = match dept {
                Dept::Neph => (
                    (n_d + c[1]).div_ceil(12).clamp(3, 60),
                    (n_d + c[1]).div_ceil(50).clamp(3, 20),
                    h.beds.div_ceil(4).max(2) as usize,
                ),
                Dept::Onc => (
                    c[2].div_ceil(25).max(2),
                    c[2].div_ceil(30).max(2),
                    c[2].div_ceil(40).max(1),
                ),
                Dept::Rad => (2, c[3].div_ceil(30).max(1), c[3].div_ceil(30).max(1)),
                Dept::Tx => (2, 1, 1),
            };
            for (role, count) in [(Role::Nurse, nurses), (Role::Doctor, doctors)] {
                for _ in 0..count {
                    let (letter, no, zh) = match role {
                        Role::Nurse => {
                            nurse_no += 1;
                            ('N', nurse_no, "护士")
                        }
                        Role::Doctor => {
                            doctor_no += 1;
                            ('D', doctor_no, "医生")
                        }
                    };
                    let idx = staff.len() as u32;
                    match role {
                        Role::Nurse => h.nurses[dept as usize].push(idx),
                        Role::Doctor => h.doctors[dept as usize].push(idx),
                    }
                    staff.push(Staff {
                        id: format!("{}{letter}{no:02}", h.code),
                        card_uid: card_uid(cfg.seed, uid_index),
                        name: format!("{zh}{no}"),
                        role,
                        hospital: hi as u32,
                        pin: format!("{:06}", rng.random_range(0..1_000_000u32)),
                    });
                    uid_index += 1;
                }
            }
            for _ in 0..terms {
                let id = format!("T-{}-{:02}", h.code, h.next_terminal_no);
                h.next_terminal_no += 1;
                let approved_at_ms = month_start_ms
                    - rng.random_range(10..400i64) * calendar::DAY_MS
                    + rng.random_range(9 * 60..17 * 60i64) * MINUTE_MS;
                let outage = if rng.random_bool(0.04) {
                    let start =
                        month_start_ms + rng.random_range(0..i64::from(n_days) * 24) * 3_600_000;
                    let hours = if rng.random_bool(0.6) {
                        rng.random_range(80..150)
                    } else {
                        rng.random_range(6..40)
                    };
                    Some((start, start + hours * 3_600_000))
                } else {
                    None
                };
                h.terminals[dept as usize].push(terminals.len() as u32);
                terminals.push(Terminal {
                    signer: signer_for(cfg.seed, &id),
                    id,
                    hospital: hi as u32,
                    dept,
                    approved_at_ms,
                    revoked_at_ms: None,
                    registered: true,
                    outage,
                });
            }
        }
    }

    // ---- patients and plans ----------------------------------------------------
    let mut patients: Vec<Patient> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut city_counters: Vec<(String, u32, u32)> = Vec::new();
    let (y, m) = (cfg.year, cfg.month);
    let end_of = |delta: i32| {
        let (yy, mm) = calendar::add_months(y, m, delta + 1);
        calendar::days_from_civil(yy, mm, 1) - 1
    };
    let start_of = |delta: i32| {
        let (yy, mm) = calendar::add_months(y, m, delta);
        calendar::days_from_civil(yy, mm, 1)
    };
    for (hi, c) in counts.iter().enumerate() {
        for (ci, (care, _, dept)) in per_care.iter().enumerate() {
            for _ in 0..c[ci] {
                let h = &hospitals[hi];
                let pi = patients.len() as u32;
                let serial = match city_counters
                    .iter_mut()
                    .find(|(cc, _, _)| *cc == h.city_code)
                {
                    Some((_, k, off)) => {
                        *k += 1;
                        (u64::from(*k) * 7919 + u64::from(*off)) % 10_000_000
                    }
                    None => {
                        let off = rng.random_range(0..10_000_000u32);
                        city_counters.push((h.city_code.clone(), 0, off));
                        u64::from(off) % 10_000_000
                    }
                };
                let insured_id = format!("P{}{serial:07}", h.city_code);
                let left_fistula = *care == Care::Dialysis && rng.random_bool(0.8);
                let fingers = if *care == Care::Dialysis && !left_fistula {
                    [Finger::LeftIndex, Finger::LeftMiddle]
                } else {
                    [Finger::RightIndex, Finger::RightMiddle]
                };
                let template_refs = [
                    template_for(&h.template_key, cfg.seed, &insured_id, fingers[0]),
                    template_for(&h.template_key, cfg.seed, &insured_id, fingers[1]),
                ];
                let worn = rng.random_bool(match care {
                    Care::Dialysis => 0.08,
                    _ => 0.03,
                });
                let per_week = if rng.random_bool(0.12) { 2 } else { 3 };
                let drug = match care {
                    Care::Chemo => Some(pick(&mut rng, &catalog::drugs_of(TreatmentKind::CHEMO))),
                    Care::Antireject => Some(pick(
                        &mut rng,
                        &catalog::drugs_of(TreatmentKind::ANTIREJECT),
                    )),
                    _ => None,
                };
                let enrolled_day = (matches!(care, Care::Dialysis | Care::Chemo)
                    && n_days > 12
                    && rng.random_bool(0.03))
                .then(|| first_day + rng.random_range(2..i64::from(n_days) - 8));
                // The plan.
                let doctors_here = &h.doctors[*dept as usize];
                let d0 = rng.random_range(0..doctors_here.len());
                let mut doctors = vec![doctors_here[d0]];
                if doctors_here.len() > 1 && rng.random_bool(0.5) {
                    doctors.push(doctors_here[(d0 + 1) % doctors_here.len()]);
                }
                let kinds = match care {
                    Care::Dialysis => {
                        let r = rng.random_range(0..100);
                        match r {
                            0..62 => vec![TreatmentKind::HD],
                            62..87 => vec![TreatmentKind::HD, TreatmentKind::HDF],
                            87..92 => vec![TreatmentKind::HD, TreatmentKind::HF],
                            _ => vec![TreatmentKind::HD, TreatmentKind::HP],
                        }
                    }
                    Care::Pd => vec![TreatmentKind::PD],
                    Care::Chemo => vec![TreatmentKind::CHEMO],
                    Care::Radio => vec![TreatmentKind::RADIO],
                    Care::Antireject => vec![TreatmentKind::ANTIREJECT],
                };
                let (max_dose_milli, dose_unit) = match (care, drug) {
                    (_, Some(d)) => {
                        let dr = &DRUGS[d];
                        let steps = (dr.dose_milli.1 - dr.dose_milli.0) / dr.dose_step_milli;
                        (
                            dr.dose_milli.0 + rng.random_range(0..=steps) * dr.dose_step_milli,
                            dr.unit,
                        )
                    }
                    (Care::Radio, None) => {
                        let r = rng.random_range(0..100);
                        (
                            match r {
                                0..75 => 2000,
                                75..95 => 1800,
                                _ => 3000,
                            },
                            "Gy",
                        )
                    }
                    _ => (0, ""),
                };
                let max_per_week = match care {
                    Care::Dialysis => Some(per_week),
                    Care::Radio => Some(5),
                    _ => None,
                };
                let valid_from = match enrolled_day {
                    Some(d) => d - rng.random_range(0..5),
                    None => start_of(-rng.random_range(1..=5)),
                };
                let valid_to = end_of(rng.random_range(0..=5));
                let base = Plan {
                    plan_id: String::new(),
                    patient: pi,
                    hospital: hi as u32,
                    dept: *dept,
                    doctors,
                    kinds,
                    drug,
                    max_dose_milli,
                    dose_unit,
                    max_per_week,
                    valid_from,
                    valid_to,
                };
                let renew = *care != Care::Radio && n_days > 12 && rng.random_bool(0.08);
                let mut my_plans = Vec::new();
                if renew {
                    let r = first_day + rng.random_range(5..i64::from(n_days) - 5);
                    let mut first = base.clone_plan(format!("PL-{insured_id}-1"));
                    first.valid_to = r - 1;
                    first.valid_from = first.valid_from.min(r - 1);
                    let mut second = base.clone_plan(format!("PL-{insured_id}-2"));
                    second.valid_from = r;
                    second.valid_to = end_of(6);
                    my_plans.push(first);
                    my_plans.push(second);
                } else {
                    my_plans.push(base.clone_plan(format!("PL-{insured_id}-1")));
                }
                let mut plan_ids = Vec::new();
                for p in my_plans {
                    plan_ids.push(plans.len() as u32);
                    plans.push(p);
                }
                patients.push(Patient {
                    card_uid: card_uid(cfg.seed, pi),
                    name: format!("患者{}", pi + 1),
                    insured_id,
                    hospital: hi as u32,
                    care: *care,
                    fingers,
                    template_refs,
                    worn,
                    plans: plan_ids,
                    per_week,
                    drug,
                    enrolled_day,
                });
            }
        }
    }

    let mut world = World {
        cfg_seed: cfg.seed,
        first_day,
        n_days,
        hospitals,
        staff,
        terminals,
        patients,
        plans,
        sessions: Vec::new(),
        claims: Vec::new(),
        claim_of: Vec::new(),
        enrolments: Vec::new(),
    };
    schedule(&mut world, &mut rng);
    world
}

impl Plan {
    fn clone_plan(&self, plan_id: String) -> Plan {
        Plan {
            plan_id,
            patient: self.patient,
            hospital: self.hospital,
            dept: self.dept,
            doctors: self.doctors.clone(),
            kinds: self.kinds.clone(),
            drug: self.drug,
            max_dose_milli: self.max_dose_milli,
            dose_unit: self.dose_unit,
            max_per_week: self.max_per_week,
            valid_from: self.valid_from,
            valid_to: self.valid_to,
        }
    }
}

impl World {
    /// The plan of `patient` in force on `day`.
    pub fn plan_on(&self, patient: u32, day: i64) -> &Plan {
        let p = &self.patients[patient as usize];
        p.plans
            .iter()
            .map(|&i| &self.plans[i as usize])
            .find(|pl| pl.valid_from <= day && day <= pl.valid_to)
            .unwrap_or_else(|| &self.plans[*p.plans.last().unwrap() as usize])
    }

    /// A witness for a supervised fallback: another nurse of the department.
    pub fn witness(&self, hospital: u32, dept: Dept, nurse: u32) -> u32 {
        let h = &self.hospitals[hospital as usize];
        let nurses = &h.nurses[dept as usize];
        let i = nurses.iter().position(|&x| x == nurse).unwrap_or(0);
        let w = nurses[(i + 1) % nurses.len()];
        if w != nurse {
            w
        } else {
            h.doctors[dept as usize][0]
        }
    }

    pub fn claim_for(&self, s: &Session) -> ClaimDraft {
        let drug_line = s.kind.requires_drug();
        ClaimDraft {
            hospital: s.hospital,
            patient: s.patient,
            dept: s.dept.code(),
            doctor: s.doctor,
            day: s.day(),
            kind: s.kind,
            service_code: catalog::service_code(s.kind),
            quantity: 1,
            amount_fen: s.total_fen(),
            drug: if drug_line {
                s.drug.map(|d| DRUGS[d].code)
            } else {
                None
            },
            dose_milli: if drug_line { s.dose_milli } else { 0 },
            dose_unit: if drug_line { s.dose_unit } else { "" },
        }
    }

    /// Adds a session and, if `claimed`, its claim line. Returns its index.
    pub fn push_session(&mut self, s: Session, claimed: bool) -> u32 {
        let idx = self.sessions.len() as u32;
        if claimed {
            let c = self.claim_for(&s);
            self.claim_of.push(Some(self.claims.len() as u32));
            self.claims.push(c);
        } else {
            self.claim_of.push(None);
        }
        self.sessions.push(s);
        idx
    }

    /// Charge lines for a session of `kind` at `hospital`.
    pub fn items_for(
        &self,
        hospital: u32,
        kind: TreatmentKind,
        drug: Option<usize>,
    ) -> ([(&'static str, u64); 2], u8) {
        let h = &self.hospitals[hospital as usize];
        let service = catalog::service_code(kind);
        let first = (service, h.price(service));
        let second = if let Some(c) = catalog::consumable_code(kind) {
            Some((c, h.price(c)))
        } else {
            drug.map(|d| (DRUGS[d].code, h.price(DRUGS[d].code)))
        };
        match second {
            Some(s) => ([first, s], 2),
            None => ([first, ("", 0)], 1),
        }
    }

    /// Fingerprint or fallback evidence for an honest attestation.
    #[allow(clippy::too_many_arguments)]
    pub fn honest_ev(
        &self,
        rng: &mut ChaCha20Rng,
        patient: u32,
        kind: TreatmentKind,
        hospital: u32,
        dept: Dept,
        nurse: u32,
        check_out: bool,
    ) -> Ev {
        let p = &self.patients[patient as usize];
        let pricier = matches!(
            kind,
            TreatmentKind::HDF | TreatmentKind::HF | TreatmentKind::HP
        );
        if !pricier && rng.random_range(0..1000) < 2 {
            let reason = if rng.random_bool(0.7) {
                FallbackReason::DeviceFault
            } else {
                FallbackReason::FingerInjured
            };
            return Ev::Supervised {
                reason,
                witness: self.witness(hospital, dept, nurse),
                attempts: if reason == FallbackReason::DeviceFault {
                    0
                } else {
                    1
                },
            };
        }
        if p.worn {
            let p_fallback = if check_out { 0.08 } else { 0.12 };
            if !pricier && rng.random_bool(p_fallback) {
                return Ev::Supervised {
                    reason: FallbackReason::FingerprintUnreadable,
                    witness: self.witness(hospital, dept, nurse),
                    attempts: rng.random_range(3..=5),
                };
            }
            let attempts = rng.random_range(1..=4u8);
            return Ev::Finger {
                alt: attempts >= 3 && rng.random_bool(0.5),
                score: rng.random_range(45..=140),
                attempts,
            };
        }
        let r = rng.random_range(0..100);
        let attempts = match r {
            0..85 => 1,
            85..97 => 2,
            _ => 3,
        };
        Ev::Finger {
            alt: attempts >= 2 && rng.random_bool(0.1),
            score: rng.random_range(60..=280u16) - 10 * u16::from(attempts - 1),
            attempts,
        }
    }
}

/// Centre dialysis days of a pattern: Mon/Wed/Fri or Tue/Thu/Sat; twice a
/// week drops the middle day.
fn pattern_days(pattern: u32, per_week: u8) -> &'static [u32] {
    match (pattern, per_week) {
        (0, 3) => &[0, 2, 4],
        (1, 3) => &[1, 3, 5],
        (0, _) => &[0, 4],
        _ => &[1, 5],
    }
}

fn schedule(w: &mut World, rng: &mut ChaCha20Rng) {
    let first_day = w.first_day;
    let n_days = i64::from(w.n_days);
    // Dialysis slots per hospital: shuffled patients fill (pattern, shift, bed).
    let mut by_hospital: Vec<Vec<u32>> = vec![Vec::new(); w.hospitals.len()];
    for (pi, p) in w.patients.iter().enumerate() {
        by_hospital[p.hospital as usize].push(pi as u32);
    }
    let mut first_session_done: Vec<bool> = vec![false; w.patients.len()];
    for (hi, members) in by_hospital.iter().enumerate() {
        let hi32 = hi as u32;
        let mut dial: Vec<u32> = members
            .iter()
            .copied()
            .filter(|&p| w.patients[p as usize].care == Care::Dialysis)
            .collect();
        // Fisher-Yates with our rng.
        for i in (1..dial.len()).rev() {
            let j = rng.random_range(0..=i);
            dial.swap(i, j);
        }
        let shifts = w.hospitals[hi].shifts;
        for (k, &pi) in dial.iter().enumerate() {
            let k = k as u32;
            let pattern = k % 2;
            let shift = (k / 2) % shifts;
            let bed = (k / (2 * shifts)) as u16 + 1;
            let bay = (u32::from(bed) - 1) / 4;
            let p = &w.patients[pi as usize];
            let per_week = p.per_week;
            let enrolled = p.enrolled_day.is_some();
            let start = p.enrolled_day.unwrap_or(first_day);
            let end = if rng.random_bool(0.015) {
                first_day + rng.random_range(5..n_days - 2)
            } else {
                first_day + n_days
            };
            let gap = if rng.random_bool(0.02) {
                let a = first_day + rng.random_range(0..n_days);
                (a, a + rng.random_range(5..13))
            } else {
                (0, 0)
            };
            let phase = rng.random_range(0..2i64);
            let offset_min = rng.random_range(0..40i64);
            let days = pattern_days(pattern, per_week);
            let h = &w.hospitals[hi];
            let terms = &h.terminals[Dept::Neph as usize];
            let terminal = terms[(bay as usize).min(terms.len() - 1)];
            let nurses = h.nurses[Dept::Neph as usize].clone();
            for day in first_day..first_day + n_days {
                if !days.contains(&calendar::weekday(day)) || day < start || day >= end {
                    continue;
                }
                if day >= gap.0 && day < gap.1 {
                    continue;
                }
                if rng.random_range(0..1000) < 15 && first_session_done[pi as usize] {
                    continue;
                }
                let plan = w.plan_on(pi, day);
                let week = calendar::week_start(day) / 7;
                let first_of_week = calendar::weekday(day) == days[0];
                let alt_kind = plan.kinds.get(1).copied();
                let kind = match alt_kind {
                    Some(k) if first_of_week && (week + phase) % 2 == 0 => k,
                    _ => TreatmentKind::HD,
                };
                let doctor = if plan.doctors.len() > 1 && rng.random_bool(0.2) {
                    plan.doctors[1]
                } else {
                    plan.doctors[0]
                };
                let shift_base = [7 * 60, 12 * 60 + 10, 17 * 60 + 10][shift as usize];
                let check_in = calendar::local_ms(day, shift_base + offset_min)
                    + rng.random_range(-8 * 60..12 * 60i64) * 1000;
                let minutes = if kind == TreatmentKind::HP {
                    rng.random_range(150..=190)
                } else {
                    232 + rng.random_range(0..=12)
                        + rng.random_range(0..=12)
                        + rng.random_range(0..=12)
                };
                let check_out = check_in + minutes * MINUTE_MS + rng.random_range(0..60_000);
                let day_idx = day - first_day;
                let nurse =
                    nurses[((bay as i64) * 3 + i64::from(shift) + day_idx) as usize % nurses.len()];
                let ev_in = w.honest_ev(rng, pi, kind, hi32, Dept::Neph, nurse, false);
                let ev_out = w.honest_ev(rng, pi, kind, hi32, Dept::Neph, nurse, true);
                let (items, n_items) = w.items_for(hi32, kind, None);
                let s = Session {
                    patient: pi,
                    hospital: hi32,
                    dept: Dept::Neph,
                    terminal,
                    bed,
                    kind,
                    nurse,
                    doctor,
                    drug: None,
                    dose_milli: 0,
                    dose_unit: "",
                    check_in,
                    check_out: Some(check_out),
                    signed_at: check_out + rng.random_range(800..4000),
                    ev_in,
                    ev_out,
                    items,
                    n_items,
                    skew_ms: 0,
                    flag: Flag::None,
                    taken: false,
                };
                if !first_session_done[pi as usize] {
                    first_session_done[pi as usize] = true;
                    if enrolled {
                        let slot = 200 + w.enrolments.len() as u16 % 800;
                        w.enrolments.push(Enrolment {
                            patient: pi,
                            terminal,
                            nurse,
                            signed_at: check_in - rng.random_range(5..20) * MINUTE_MS,
                            slot,
                        });
                    }
                }
                w.push_session(s, true);
            }
        }
        // The other cares.
        let others: Vec<u32> = members
            .iter()
            .copied()
            .filter(|&p| w.patients[p as usize].care != Care::Dialysis)
            .collect();
        for (local, &pi) in others.iter().enumerate() {
            let care = w.patients[pi as usize].care;
            let plan0 = w.plan_on(pi, first_day);
            let dept = plan0.dept;
            let h = &w.hospitals[hi];
            let terms = h.terminals[dept as usize].clone();
            let nurses = h.nurses[dept as usize].clone();
            let mut days: Vec<(i64, i64, i64, u16, usize)> = Vec::new(); // day, start minute, minutes, bed, terminal slot
            match care {
                Care::Pd => {
                    let visits = if rng.random_bool(0.3) { 2 } else { 1 };
                    for v in 0..visits {
                        let mut day = first_day + rng.random_range(0..n_days.min(14)) + 14 * v;
                        while calendar::weekday(day) >= 5 {
                            day += 1;
                        }
                        if day < first_day + n_days {
                            days.push((
                                day,
                                rng.random_range(9 * 60..11 * 60),
                                rng.random_range(20..50),
                                1,
                                0,
                            ));
                        }
                    }
                }
                Care::Chemo | Care::Antireject => {
                    let drug = &DRUGS[w.patients[pi as usize].drug.unwrap()];
                    let cycle = i64::from(drug.cycle_days);
                    let phase = rng.random_range(0..cycle);
                    let start = w.patients[pi as usize].enrolled_day.unwrap_or(first_day);
                    let bed = rng.random_range(1..=20u16);
                    let mut d1 = first_day - cycle + phase;
                    while d1 < first_day + n_days {
                        let mut list = vec![d1];
                        if drug.day8 {
                            list.push(d1 + 7);
                        }
                        for mut day in list {
                            match calendar::weekday(day) {
                                5 => day += 2,
                                6 => day += 1,
                                _ => {}
                            }
                            if day >= start && day >= first_day && day < first_day + n_days {
                                let (lo, hi_) = drug.minutes;
                                let start_min = if care == Care::Chemo {
                                    rng.random_range(8 * 60..11 * 60)
                                } else {
                                    rng.random_range(9 * 60..16 * 60)
                                };
                                days.push((
                                    day,
                                    start_min,
                                    rng.random_range(lo..=hi_) + 15,
                                    bed,
                                    local,
                                ));
                            }
                        }
                        d1 += cycle;
                    }
                }
                Care::Radio => {
                    let fractions: i64 = if plan0.max_dose_milli == 3000 {
                        15
                    } else {
                        rng.random_range(25..=33)
                    };
                    let mut course_start = first_day + rng.random_range(-45..20i64);
                    while calendar::weekday(course_start) >= 5 {
                        course_start += 1;
                    }
                    let slot_min = 8 * 60 + 20 * rng.random_range(0..27i64);
                    let linac = local % terms.len();
                    let mut idx = 0;
                    let mut day = course_start;
                    while idx < fractions && day < first_day + n_days {
                        if calendar::weekday(day) < 5 {
                            if day >= first_day {
                                days.push((
                                    day,
                                    slot_min,
                                    rng.random_range(12..=25),
                                    linac as u16 + 1,
                                    linac,
                                ));
                            }
                            idx += 1;
                        }
                        day += 1;
                    }
                    // The course's plan covers it.
                    let last = day;
                    for &pl in &w.patients[pi as usize].plans {
                        let plan = &mut w.plans[pl as usize];
                        plan.valid_from =
                            plan.valid_from.min(course_start - rng.random_range(1..8));
                        plan.valid_to = plan.valid_to.max(last + 7);
                    }
                }
                Care::Dialysis => unreachable!(),
            }
            for (day, start_min, minutes, bed, tslot) in days {
                let plan = w.plan_on(pi, day);
                let kind = plan.kinds[0];
                let drug = plan.drug;
                let doctor = plan.doctors[rng.random_range(0..plan.doctors.len())];
                let (dose_milli, dose_unit) = match drug {
                    Some(d) => {
                        let dr = &DRUGS[d];
                        let max = plan.max_dose_milli;
                        let dose = if kind == TreatmentKind::CHEMO && rng.random_bool(0.2) {
                            let reduced = max * rng.random_range(85..=95) / 100;
                            (reduced / dr.dose_step_milli * dr.dose_step_milli)
                                .max(dr.dose_step_milli)
                        } else {
                            max
                        };
                        (dose, dr.unit)
                    }
                    None if kind == TreatmentKind::RADIO => (plan.max_dose_milli, "Gy"),
                    None => (0, ""),
                };
                let terminal = terms[tslot % terms.len()];
                let nurse = nurses[(day - first_day) as usize % nurses.len()];
                let check_in =
                    calendar::local_ms(day, start_min) + rng.random_range(-300..600i64) * 1000;
                let check_out = check_in + minutes * MINUTE_MS + rng.random_range(0..60_000);
                let ev_in = w.honest_ev(rng, pi, kind, hi32, dept, nurse, false);
                let ev_out = w.honest_ev(rng, pi, kind, hi32, dept, nurse, true);
                let (items, n_items) = w.items_for(hi32, kind, drug);
                let s = Session {
                    patient: pi,
                    hospital: hi32,
                    dept,
                    terminal,
                    bed,
                    kind,
                    nurse,
                    doctor,
                    drug,
                    dose_milli,
                    dose_unit,
                    check_in,
                    check_out: Some(check_out),
                    signed_at: check_out + rng.random_range(800..4000),
                    ev_in,
                    ev_out,
                    items,
                    n_items,
                    skew_ms: 0,
                    flag: Flag::None,
                    taken: false,
                };
                if !first_session_done[pi as usize] {
                    first_session_done[pi as usize] = true;
                    if w.patients[pi as usize].enrolled_day.is_some() {
                        let slot = 200 + w.enrolments.len() as u16 % 800;
                        w.enrolments.push(Enrolment {
                            patient: pi,
                            terminal,
                            nurse,
                            signed_at: check_in - rng.random_range(5..20) * MINUTE_MS,
                            slot,
                        });
                    }
                }
                w.push_session(s, true);
            }
        }
    }
}
