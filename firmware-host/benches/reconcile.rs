//! Reconciliation speed on a generated month, the data already in memory
//! (what the server holds after loading a period).
//!
//!     cargo bench -p wuding-firmware-host --bench reconcile            # 50,000 patients
//!     WUDING_BENCH_PATIENTS=200000 cargo bench -p wuding-firmware-host --bench reconcile
//!
//! Prints generation time (not measured against any goal), then the records
//! and claim lines reconciled, the best and median of several full
//! `reconcile` runs with the default rules (`WUDING_BENCH_RUNS`, default 5),
//! `WUDING_BENCH_THREADS` (default: the CPUs available; 1 = single-threaded
//! engine), the findings by rule and severity, a SHA-256 digest of the findings (equal
//! digests = identical findings, to compare engine versions), and the
//! process's peak memory (VmHWM; it includes the generator's data). Goal
//! (issue 8): a province month, 50,000 patients, in under 1 s. Under `cargo
//! nextest run --all-targets` it lists one smoke case, `reconcile_smoke`,
//! which runs with 300 patients.

use std::time::Instant;

use sha2::{Digest, Sha256};

use wuding_firmware_host::scenario::{ClaimRow, PlanRow, Scenario, ScenarioConfig, generate};
use wuding_protocol::types::{Dose, TreatmentKind};
use wuding_protocol::{ClaimLine, Record, TreatmentPlan};
use wuding_rules::{AttestedSession, Dataset, Period, Ruleset, reconcile_on};

fn date(s: &str) -> wuding_protocol::Date {
    s.parse().expect("generated dates parse")
}

fn dose(s: &str) -> Option<Dose> {
    (!s.is_empty()).then(|| Dose::parse_text(s).expect("generated doses parse"))
}

fn claim(c: &ClaimRow) -> ClaimLine {
    ClaimLine {
        claim_id: c.claim_id.as_str().into(),
        insured_id: c.insured_id.as_str().into(),
        hospital_code: c.hospital_code.as_str().into(),
        department_code: c.department_code.into(),
        doctor_id: c.doctor_id.as_str().into(),
        service_date: date(&c.service_date),
        service_code: c.service_code.into(),
        service_kind: TreatmentKind::from_code(c.service_kind).expect("kind"),
        quantity: c.quantity,
        amount_fen: c.amount_fen,
        drug_code: (!c.drug_code.is_empty()).then(|| c.drug_code.into()),
        dose: dose(&c.dose),
    }
}

fn plan(p: &PlanRow) -> TreatmentPlan {
    TreatmentPlan {
        plan_id: p.plan_id.clone(),
        insured_id: p.insured_id.clone(),
        hospital_code: p.hospital_code.clone(),
        department_code: p.department_code.into(),
        doctor_ids: p.doctor_ids.split(';').map(str::to_string).collect(),
        kinds: p
            .kinds
            .split(';')
            .map(|k| TreatmentKind::from_code(k).expect("kind"))
            .collect(),
        drug_code: (!p.drug_code.is_empty()).then(|| p.drug_code.into()),
        max_dose: dose(&p.max_dose),
        max_sessions_per_week: p.max_sessions_per_week,
        valid_from: date(&p.valid_from),
        valid_to: date(&p.valid_to),
    }
}

fn sessions(s: &Scenario) -> Vec<AttestedSession> {
    s.records
        .iter()
        .zip(&s.receipts)
        .filter_map(|(e, r)| match e.decode().ok()?.record {
            Record::Session(record) => Some(AttestedSession::of_record(
                e.record_id(),
                r.received_at_ms,
                &record,
            )),
            Record::Enrolment(_) => None,
        })
        .collect()
}

/// Peak resident memory of this process, from /proc/self/status (Linux).
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A digest of every field of every finding, in output order.
fn digest(findings: &[wuding_rules::Finding]) -> String {
    let mut h = Sha256::new();
    for f in findings {
        h.update(format!("{f:?}\n").as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

fn main() {
    // Under a test runner (cargo nextest --all-targets lists every target)
    // this bench offers one small smoke case; `cargo bench` runs it in full.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("reconcile_smoke: test");
        }
        return;
    }
    let smoke = args.iter().any(|a| a == "reconcile_smoke" || a == "--test");
    let patients: u32 = if smoke {
        300
    } else {
        std::env::var("WUDING_BENCH_PATIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50_000)
    };
    let t = Instant::now();
    let scenario = generate(&ScenarioConfig::new(patients, 2026, 10));
    let sessions = sessions(&scenario);
    let claims: Vec<ClaimLine> = scenario.claims.iter().map(claim).collect();
    let plans: Vec<TreatmentPlan> = scenario.plans.iter().map(plan).collect();
    println!(
        "generated {patients} patients: {} sessions, {} claim lines, {} plans in {:.1} s",
        sessions.len(),
        claims.len(),
        plans.len(),
        t.elapsed().as_secs_f64()
    );
    let data = Dataset {
        period: Period::month(2026, 10).expect("valid month"),
        sessions: &sessions,
        claims: &claims,
        plans: &plans,
        integrity: &[],
    };
    let rules = Ruleset::default_rules();
    let runs = if smoke {
        1
    } else {
        std::env::var("WUDING_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
    };
    // WUDING_BENCH_THREADS=1 runs the engine on one thread, for comparison.
    let threads = std::env::var("WUDING_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut times = Vec::new();
    let mut findings = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        findings = reconcile_on(&rules, &data, threads);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mut by_sev = std::collections::BTreeMap::new();
    let mut by_rule = std::collections::BTreeMap::new();
    for f in &findings {
        *by_sev.entry(format!("{:?}", f.severity)).or_insert(0usize) += 1;
        *by_rule
            .entry(format!("{} {:?}", f.rule_id, f.severity))
            .or_insert(0usize) += 1;
    }
    let injected: usize = scenario.fraud_counts().iter().map(|(_, n)| n).sum();
    println!("injected frauds: {injected}; findings by rule:");
    for (rule, n) in &by_rule {
        println!("  {rule:<40} {n}");
    }
    println!(
        "reconcile {} records, {} claim lines on {threads} thread(s): best {:.3} s, median {:.3} s over {runs} runs; {} findings {by_sev:?}, digest {}",
        sessions.len(),
        claims.len(),
        times[0],
        times[times.len() / 2],
        findings.len(),
        digest(&findings)
    );
    match peak_memory_mib() {
        Some(mib) => println!("peak memory (VmHWM, generator included): {mib:.0} MiB"),
        None => println!("peak memory: unavailable (no /proc/self/status)"),
    }
    assert!(
        !findings.is_empty(),
        "a month with injected frauds has findings"
    );
    // The engine splits its work over threads; one thread must give the
    // very same findings, in the same order.
    let other = if threads > 1 { 1 } else { 2 };
    assert!(
        reconcile_on(&rules, &data, other) == findings,
        "reconcile on {other} thread(s) differs from {threads}"
    );
    println!("same findings on {other} thread(s)");
}
