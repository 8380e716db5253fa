//! Scenario generator: a realistic month of a region's special-disease care,
//! as signed records and the claims hospitals submit, with injected frauds
//! and their ground truth (`docs/data-formats.md`).
//!
//! [`generate`] builds a [`Scenario`] in memory; [`Scenario::write_to`]
//! writes the files. Everything is derived from the seed (terminal keys
//! too), through ChaCha20 streams and ordered collections, so the same
//! configuration gives byte-identical files whatever the number of threads.
//!
//! The month, in brief:
//! * hospitals in cities (larger, pricier, with oncology, radiotherapy and
//!   transplant clinics) and counties, each with a dialysis centre whose
//!   beds are worked in two or three shifts;
//! * dialysis patients on Mon/Wed/Fri or Tue/Thu/Sat (12% twice a week),
//!   about four hours from check-in to check-out, HDF/HF/HP alternating
//!   with HD every other week where the plan allows; new patients enrolled
//!   during the month, some leaving, some in hospital for a week or two;
//! * chemotherapy in 14- or 21-day cycles (some day 1 and 8), radiotherapy
//!   fractions on weekdays, anti-rejection dispensing every 2-4 weeks, PD
//!   clinic visits, all under 五定 plans (drug and dose fixed);
//! * patients with worn fingers who sometimes need a supervised fallback
//!   (never on the pricier dialysis kinds), rare device faults;
//! * terminals that were offline for hours or days and synced late.

pub(crate) mod calendar;
pub(crate) mod catalog;
mod chain;
mod fraud;
mod world;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use wuding_protocol::Envelope;

pub use catalog::PriceBand;
pub use fraud::FraudKind;

use fraud::Subject;
use world::Role;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Patients in the region (all special diseases together).
    pub patients: u32,
    pub year: i32,
    /// 1..=12.
    pub month: u32,
    pub seed: u64,
    /// Share of sessions that receive an injected fraud (0 = none).
    pub fraud_rate: f64,
    /// Province code (the first two digits of the administrative division
    /// code: 51 = Sichuan). Hospital, patient, terminal, staff and claim ids
    /// all start from it, so months of different provinces can share one
    /// store (the national benchmark loads 20 of them).
    pub province: u32,
    /// HD session price band, yuan (inclusive).
    pub hd_price_yuan: (u64, u64),
    /// HDF session price band, yuan (inclusive).
    pub hdf_price_yuan: (u64, u64),
    /// Signing threads (0 = one per core). Does not change the output.
    pub threads: usize,
}

impl ScenarioConfig {
    /// Defaults for `patients` patients in `year`-`month`.
    pub fn new(patients: u32, year: i32, month: u32) -> ScenarioConfig {
        ScenarioConfig {
            patients,
            year,
            month,
            seed: 1,
            fraud_rate: 0.02,
            province: 51,
            hd_price_yuan: (400, 500),
            hdf_price_yuan: (600, 800),
            threads: 0,
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse_month(text: &str) -> anyhow::Result<(i32, u32)> {
        let (y, m) = text
            .split_once('-')
            .with_context(|| format!("month `{text}` is not YYYY-MM"))?;
        let year: i32 = y.parse().with_context(|| format!("year in `{text}`"))?;
        let month: u32 = m.parse().with_context(|| format!("month in `{text}`"))?;
        anyhow::ensure!(
            y.len() == 4
                && m.len() == 2
                && (1..=12).contains(&month)
                && (1971..=2199).contains(&year),
            "month `{text}` is not YYYY-MM"
        );
        Ok((year, month))
    }

    fn price_bands(&self) -> Vec<PriceBand> {
        let mut bands = catalog::default_bands();
        for b in &mut bands {
            let over = if b.code == catalog::service_code(wuding_protocol::TreatmentKind::HD) {
                Some(self.hd_price_yuan)
            } else if b.code == catalog::service_code(wuding_protocol::TreatmentKind::HDF) {
                Some(self.hdf_price_yuan)
            } else {
                None
            };
            if let Some((lo, hi)) = over {
                b.min_fen = lo * 100;
                b.max_fen = hi.max(lo) * 100;
            }
        }
        bands
    }
}

/// `hospitals.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HospitalRow {
    pub hospital_code: String,
    pub name: String,
    pub level: &'static str,
    pub province_code: String,
    pub city_code: String,
    pub county_code: String,
    pub department_codes: String,
}

/// `terminals.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerminalRow {
    pub terminal_id: String,
    pub hospital_code: String,
    pub department_code: &'static str,
    pub public_key_hex: String,
    pub key_id_hex: String,
    pub approved_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// `roster.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatientRow {
    pub insured_id: String,
    pub card_uid: String,
    pub name: String,
    pub hospital_code: String,
}

/// `staff.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffRow {
    pub staff_id: String,
    pub card_uid: String,
    pub name: String,
    pub role: &'static str,
    pub hospital_code: String,
    pub pin: String,
}

/// `prices.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceRow {
    pub hospital_code: String,
    pub code: &'static str,
    pub unit_price_fen: u64,
}

/// `plans.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    pub plan_id: String,
    pub insured_id: String,
    pub hospital_code: String,
    pub department_code: &'static str,
    pub doctor_ids: String,
    pub kinds: String,
    pub drug_code: &'static str,
    pub max_dose: String,
    pub max_sessions_per_week: Option<u8>,
    pub valid_from: String,
    pub valid_to: String,
}

/// `receipts.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptRow {
    pub record_id: String,
    pub terminal_id: String,
    pub seq: u64,
    pub received_at_ms: i64,
}

/// `claims.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimRow {
    pub claim_id: String,
    pub insured_id: String,
    pub hospital_code: String,
    pub department_code: &'static str,
    pub doctor_id: String,
    pub service_date: String,
    pub service_code: &'static str,
    pub service_kind: &'static str,
    pub quantity: u32,
    pub amount_fen: u64,
    pub drug_code: &'static str,
    pub dose: String,
}

/// `truth.csv`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TruthRow {
    pub fraud_id: String,
    pub kind: &'static str,
    pub rule_id: &'static str,
    pub severity: &'static str,
    pub hospital_code: String,
    pub insured_id: String,
    pub subject: String,
    pub claim_ids: String,
    pub record_ids: String,
    pub note: String,
}

/// The column names of every file, in order (`docs/data-formats.md`).
pub mod headers {
    pub const HOSPITALS: &[&str] = &[
        "hospital_code",
        "name",
        "level",
        "province_code",
        "city_code",
        "county_code",
        "department_codes",
    ];
    pub const TERMINALS: &[&str] = &[
        "terminal_id",
        "hospital_code",
        "department_code",
        "public_key_hex",
        "key_id_hex",
        "approved_at_ms",
        "revoked_at_ms",
    ];
    pub const ROSTER: &[&str] = &["insured_id", "card_uid", "name", "hospital_code"];
    pub const STAFF: &[&str] = &[
        "staff_id",
        "card_uid",
        "name",
        "role",
        "hospital_code",
        "pin",
    ];
    pub const PRICES: &[&str] = &["hospital_code", "code", "unit_price_fen"];
    pub const PLANS: &[&str] = &[
        "plan_id",
        "insured_id",
        "hospital_code",
        "department_code",
        "doctor_ids",
        "kinds",
        "drug_code",
        "max_dose",
        "max_sessions_per_week",
        "valid_from",
        "valid_to",
    ];
    pub const RECEIPTS: &[&str] = &["record_id", "terminal_id", "seq", "received_at_ms"];
    pub const CLAIMS: &[&str] = &[
        "claim_id",
        "insured_id",
        "hospital_code",
        "department_code",
        "doctor_id",
        "service_date",
        "service_code",
        "service_kind",
        "quantity",
        "amount_fen",
        "drug_code",
        "dose",
    ];
    pub const TRUTH: &[&str] = &[
        "fraud_id",
        "kind",
        "rule_id",
        "severity",
        "hospital_code",
        "insured_id",
        "subject",
        "claim_ids",
        "record_ids",
        "note",
    ];
}

/// A generated month.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub hospitals: Vec<HospitalRow>,
    pub terminals: Vec<TerminalRow>,
    pub roster: Vec<PatientRow>,
    pub staff: Vec<StaffRow>,
    pub prices: Vec<PriceRow>,
    pub plans: Vec<PlanRow>,
    /// In upload order; `receipts[i]` is the receipt of `records[i]`.
    pub records: Vec<Envelope>,
    pub receipts: Vec<ReceiptRow>,
    pub claims: Vec<ClaimRow>,
    pub truth: Vec<TruthRow>,
}

fn dose_text(milli: u64, unit: &str) -> String {
    if milli == 0 {
        return String::new();
    }
    let (whole, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        format!("{whole}{unit}")
    } else {
        let f = format!("{frac:03}");
        format!("{whole}.{}{unit}", f.trim_end_matches('0'))
    }
}

/// Generates a month in memory.
pub fn generate(cfg: &ScenarioConfig) -> Scenario {
    let mut w = world::build(cfg);
    let frauds = fraud::inject(&mut w, cfg.seed, cfg.fraud_rate);
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.threads
    };
    let signed = chain::sign_all(&w, threads);

    let hospitals = w
        .hospitals
        .iter()
        .map(|h| HospitalRow {
            hospital_code: h.code.clone(),
            name: h.name.clone(),
            level: match h.level {
                world::Level::City => "city",
                world::Level::County => "county",
            },
            province_code: h.province_code.clone(),
            city_code: h.city_code.clone(),
            county_code: h.county_code.clone(),
            department_codes: h
                .depts
                .iter()
                .map(|d| d.code())
                .collect::<Vec<_>>()
                .join(";"),
        })
        .collect();

    let mut terminals: Vec<TerminalRow> = w
        .terminals
        .iter()
        .filter(|t| t.registered)
        .map(|t| TerminalRow {
            terminal_id: t.id.clone(),
            hospital_code: w.hospitals[t.hospital as usize].code.clone(),
            department_code: t.dept.code(),
            public_key_hex: t.signer.public_key().to_hex(),
            key_id_hex: t.signer.key_id().to_hex(),
            approved_at_ms: t.approved_at_ms,
            revoked_at_ms: t.revoked_at_ms,
        })
        .collect();
    terminals.sort_by(|a, b| a.terminal_id.cmp(&b.terminal_id));

    let mut roster: Vec<PatientRow> = w
        .patients
        .iter()
        .map(|p| PatientRow {
            insured_id: p.insured_id.clone(),
            card_uid: p.card_uid.clone(),
            name: p.name.clone(),
            hospital_code: w.hospitals[p.hospital as usize].code.clone(),
        })
        .collect();
    roster.sort_by(|a, b| a.insured_id.cmp(&b.insured_id));

    let mut staff: Vec<StaffRow> = w
        .staff
        .iter()
        .map(|s| StaffRow {
            staff_id: s.id.clone(),
            card_uid: s.card_uid.clone(),
            name: s.name.clone(),
            role: match s.role {
                Role::Nurse => "nurse",
                Role::Doctor => "doctor",
            },
            hospital_code: w.hospitals[s.hospital as usize].code.clone(),
            pin: s.pin.clone(),
        })
        .collect();
    staff.sort_by(|a, b| a.staff_id.cmp(&b.staff_id));

    let prices = w
        .hospitals
        .iter()
        .flat_map(|h| {
            h.prices.iter().map(|(code, fen)| PriceRow {
                hospital_code: h.code.clone(),
                code,
                unit_price_fen: *fen,
            })
        })
        .collect();

    let mut plans: Vec<PlanRow> = w
        .plans
        .iter()
        .map(|p| PlanRow {
            plan_id: p.plan_id.clone(),
            insured_id: w.patients[p.patient as usize].insured_id.clone(),
            hospital_code: w.hospitals[p.hospital as usize].code.clone(),
            department_code: p.dept.code(),
            doctor_ids: p
                .doctors
                .iter()
                .map(|&d| w.staff[d as usize].id.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            kinds: p
                .kinds
                .iter()
                .map(|k| k.code())
                .collect::<Vec<_>>()
                .join(";"),
            drug_code: p.drug.map_or("", |d| catalog::DRUGS[d].code),
            max_dose: dose_text(p.max_dose_milli, p.dose_unit),
            max_sessions_per_week: p.max_per_week,
            valid_from: calendar::format_date(p.valid_from),
            valid_to: calendar::format_date(p.valid_to),
        })
        .collect();
    plans.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));

    // Claim ids: per hospital, serials in (date, patient, kind) order, so
    // injected lines sit among honest ones.
    let mut claim_order: Vec<u32> = (0..w.claims.len() as u32).collect();
    claim_order.sort_by(|&a, &b| {
        let (ca, cb) = (&w.claims[a as usize], &w.claims[b as usize]);
        (
            ca.hospital,
            ca.day,
            &w.patients[ca.patient as usize].insured_id,
            ca.kind,
            a,
        )
            .cmp(&(
                cb.hospital,
                cb.day,
                &w.patients[cb.patient as usize].insured_id,
                cb.kind,
                b,
            ))
    });
    let mut claim_ids = vec![String::new(); w.claims.len()];
    let mut claims = Vec::with_capacity(w.claims.len());
    let mut serial = 0u32;
    let mut last_hospital = u32::MAX;
    for &ci in &claim_order {
        let c = &w.claims[ci as usize];
        if c.hospital != last_hospital {
            last_hospital = c.hospital;
            serial = 0;
        }
        serial += 1;
        let id = format!("C{}-{serial:07}", w.hospitals[c.hospital as usize].code);
        claims.push(ClaimRow {
            claim_id: id.clone(),
            insured_id: w.patients[c.patient as usize].insured_id.clone(),
            hospital_code: w.hospitals[c.hospital as usize].code.clone(),
            department_code: c.dept,
            doctor_id: w.staff[c.doctor as usize].id.clone(),
            service_date: calendar::format_date(c.day),
            service_code: c.service_code,
            service_kind: c.kind.code(),
            quantity: c.quantity,
            amount_fen: c.amount_fen,
            drug_code: c.drug.unwrap_or(""),
            dose: dose_text(c.dose_milli, c.dose_unit),
        });
        claim_ids[ci as usize] = id;
    }

    let truth = frauds
        .iter()
        .enumerate()
        .map(|(i, f)| TruthRow {
            fraud_id: format!("F{:05}", i + 1),
            kind: f.kind.code(),
            rule_id: f.kind.rule_id(),
            severity: f.kind.severity(),
            hospital_code: w.hospitals[f.hospital as usize].code.clone(),
            insured_id: f
                .patient
                .map(|p| w.patients[p as usize].insured_id.clone())
                .unwrap_or_default(),
            subject: match f.subject {
                Subject::None => String::new(),
                Subject::Terminal(t) => w.terminals[t as usize].id.clone(),
                Subject::Nurse(n) => w.staff[n as usize].id.clone(),
                Subject::Hospital(h) => w.hospitals[h as usize].code.clone(),
            },
            claim_ids: f
                .claims
                .iter()
                .map(|&c| claim_ids[c as usize].as_str())
                .collect::<Vec<_>>()
                .join(";"),
            record_ids: f
                .sessions
                .iter()
                .filter_map(|&s| signed.record_of[s as usize].map(|id| id.to_hex()))
                .collect::<Vec<_>>()
                .join(";"),
            note: f.note.clone(),
        })
        .collect();
    let mut records = Vec::with_capacity(signed.records.len());
    let mut receipts = Vec::with_capacity(signed.records.len());
    for r in signed.records {
        receipts.push(ReceiptRow {
            record_id: r.record_id.to_hex(),
            terminal_id: w.terminals[r.terminal as usize].id.clone(),
            seq: r.seq,
            received_at_ms: r.received_at_ms,
        });
        records.push(r.envelope);
    }

    Scenario {
        hospitals,
        terminals,
        roster,
        staff,
        prices,
        plans,
        records,
        receipts,
        claims,
        truth,
    }
}

fn write_csv<T: Serialize>(
    dir: &Path,
    name: &str,
    header: &[&str],
    rows: &[T],
) -> anyhow::Result<()> {
    let path = dir.join(name);
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    w.write_record(header)?;
    for row in rows {
        w.serialize(row)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

impl Scenario {
    /// Writes every file into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_csv(dir, "hospitals.csv", headers::HOSPITALS, &self.hospitals)?;
        write_csv(dir, "terminals.csv", headers::TERMINALS, &self.terminals)?;
        write_csv(dir, "roster.csv", headers::ROSTER, &self.roster)?;
        write_csv(dir, "staff.csv", headers::STAFF, &self.staff)?;
        write_csv(dir, "prices.csv", headers::PRICES, &self.prices)?;
        write_csv(dir, "plans.csv", headers::PLANS, &self.plans)?;
        write_csv(dir, "receipts.csv", headers::RECEIPTS, &self.receipts)?;
        write_csv(dir, "claims.csv", headers::CLAIMS, &self.claims)?;
        write_csv(dir, "truth.csv", headers::TRUTH, &self.truth)?;
        let path = dir.join("records.jsonl");
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
        // Serialise chunks on every core, write them in order.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for batch in self.records.chunks(20_000 * threads) {
            let parts: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(batch.len().div_ceil(threads))
                    .map(|chunk| {
                        scope.spawn(move || {
                            let mut buf = Vec::with_capacity(chunk.len() * 1800);
                            for env in chunk {
                                serde_json::to_writer(&mut buf, env).expect("envelopes serialise");
                                buf.push(b'\n');
                            }
                            buf
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("serialiser thread"))
                    .collect()
            });
            for part in parts {
                out.write_all(&part)?;
            }
        }
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Injected frauds per kind, in the table's order (kinds with none included).
    pub fn fraud_counts(&self) -> Vec<(&'static str, usize)> {
        FraudKind::ALL
            .iter()
            .map(|k| {
                (
                    k.code(),
                    self.truth.iter().filter(|t| t.kind == k.code()).count(),
                )
            })
            .collect()
    }
}

/// Arguments of `wuding-sim generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Number of patients in the region.
    #[arg(long)]
    pub patients: u32,
    /// The month to generate, `YYYY-MM`.
    #[arg(long)]
    pub month: String,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of sessions that receive an injected fraud.
    #[arg(long, default_value_t = 0.02)]
    pub fraud_rate: f64,
    /// Province code, 11 to 65 (first two digits of the division codes).
    #[arg(long, default_value_t = 51)]
    pub province: u32,
}

/// `wuding-sim generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let (year, month) = ScenarioConfig::parse_month(&args.month)?;
    anyhow::ensure!(
        (0.0..=0.5).contains(&args.fraud_rate),
        "--fraud-rate must be between 0 and 0.5"
    );
    anyhow::ensure!(args.patients > 0, "--patients must be at least 1");
    let mut cfg = ScenarioConfig::new(args.patients, year, month);
    cfg.seed = args.seed;
    cfg.fraud_rate = args.fraud_rate;
    anyhow::ensure!(
        (11..=65).contains(&args.province),
        "--province must be a province code from 11 to 65"
    );
    cfg.province = args.province;
    let started = std::time::Instant::now();
    let scenario = generate(&cfg);
    let generated = started.elapsed();
    scenario.write_to(&args.out)?;
    let total = started.elapsed();
    let mut summary = format!(
        "{} hospitals, {} terminals, {} patients, {} plans, {} records, {} claim lines, {} injected frauds -> {}\n",
        scenario.hospitals.len(),
        scenario.terminals.len(),
        scenario.roster.len(),
        scenario.plans.len(),
        scenario.records.len(),
        scenario.claims.len(),
        scenario.truth.len(),
        args.out.display()
    );
    summary.push_str(&format!(
        "generated and signed in {:.1} s, written in {:.1} s\n",
        generated.as_secs_f64(),
        (total - generated).as_secs_f64()
    ));
    for (kind, n) in scenario.fraud_counts() {
        summary.push_str(&format!("  {kind:<22} {n}\n"));
    }
    // The files are written by now; a reader that stops early (`| head`)
    // loses nothing and is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), summary.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing the summary")?,
    }
    Ok(())
}
