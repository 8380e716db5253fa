//! How fast the auditor application answers with a national month of
//! findings stored: the findings list (filters, sorts, deep pages, totals
//! per filter), the dashboard and the drill-down's patient level, over real
//! HTTP on loopback, logged in as an auditor. Prints p50 / p95 / max per
//! query and overall.
//!
//! `cargo bench -p wuding-server --bench auditor_app`
//! (`WUDING_BENCH_FINDINGS=N`, default 1,100,000 -- about what a national
//! month of 13 million claim lines produces at the province month's rate;
//! `WUDING_BENCH_PATIENTS=N` patient rows per month, default 1,000,000, two
//! months stored; `WUDING_BENCH_PG=postgres://.../db` adds PostgreSQL,
//! `WUDING_BENCH_ONLY_PG=1` skips SQLite). Goal: p95 under 150 ms for the
//! findings list and the dashboard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use wuding_protocol::TerminalSigner;
use wuding_server::casework::Role;
use wuding_server::http::{AppState, Metrics, ServerOptions, router_with};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::store::{FindingRow, HospitalMonth, PatientMonth, Store};

const RULES: [(&str, &str, u32); 8] = [
    ("phantom_session", "red", 20),
    ("inflated_count", "red", 6),
    ("service_swapped", "red", 5),
    ("plan_dose", "red", 4),
    ("short_dialysis", "yellow", 25),
    ("missing_checkout", "yellow", 10),
    ("supervised_fallback", "green", 25),
    ("late_sync", "green", 5),
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hospital(i: usize) -> String {
    // 31 provinces, ~8 cities each, counties below; 5-digit serial.
    let province = 11 + (i % 31);
    let city = 1 + (i / 31) % 8;
    let county = 2 + (i / 248) % 8;
    format!("H{province:02}{city:02}{county:02}{:05}", i)
}

fn fill(store: &dyn Store, n: usize, patients: usize, hospitals: usize) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let total_weight: u32 = RULES.iter().map(|r| r.2).sum();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(50_000);
    for i in 0..n {
        let mut w = rng.random_range(0..total_weight);
        let (rule, severity, _) = RULES
            .iter()
            .find(|r| {
                if w < r.2 {
                    true
                } else {
                    w -= r.2;
                    false
                }
            })
            .copied()
            .unwrap_or(RULES[0]);
        let h = hospital(rng.random_range(0..hospitals));
        let patient = format!("P{}{:07}", &h[1..7], rng.random_range(0..2_000));
        batch.push(FindingRow {
            id: format!("{i:032x}"),
            rule_id: rule.into(),
            ruleset_version: "2026.10".into(),
            severity: severity.into(),
            service_date: Some(format!("2026-10-{:02}", 1 + rng.random_range(0..31))),
            subject_type: "claim".into(),
            subject_id: format!("C{i:012}"),
            hospital_code: Some(h),
            insured_id: Some(patient),
            claim_ids: vec![format!("C{i:012}")],
            record_ids: vec![],
            amount_fen: if severity == "red" {
                rng.random_range(30_000..90_000)
            } else {
                0
            },
            params: Default::default(),
            explanation_zh: "申报了一次终端没有证实的透析".into(),
            explanation_en: "a claimed session no terminal attested".into(),
            status: "open".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
        });
        if batch.len() == batch.capacity() {
            store.upsert_findings(&batch, 1).unwrap();
            batch.clear();
        }
    }
    store.upsert_findings(&batch, 1).unwrap();
    // As a reconciliation run does after storing findings.
    store.refresh_finding_totals("2026-10", "2026-10").unwrap();
    let months: Vec<HospitalMonth> = (0..hospitals)
        .map(|i| HospitalMonth {
            hospital_code: hospital(i),
            month: "2026-10".into(),
            attested_sessions: 6_000,
            fallback_sessions: 300,
            attested_patients: 500,
            claimed_lines: 6_100,
            claimed_fen: 6_100 * 50_000,
            claimed_patients: 500,
            phantom_claims: 100,
            phantom_fen: 100 * 50_000,
            red: 150,
            yellow: 200,
            green: 300,
            findings_fen: 150 * 50_000,
        })
        .collect();
    store
        .put_hospital_months("2026-10", "2026-10", &months)
        .unwrap();
    // The patient level: every patient of every hospital, two months.
    let per_hospital = (patients / hospitals).max(1);
    for month in ["2026-09", "2026-10"] {
        let rows: Vec<PatientMonth> = (0..hospitals)
            .flat_map(|h| (0..per_hospital).map(move |p| (h, p)))
            .map(|(h, p)| {
                let code = hospital(h);
                let findings_fen = if rng.random_range(0..10) == 0 {
                    rng.random_range(30_000..300_000)
                } else {
                    0
                };
                PatientMonth {
                    patient_ref: format!("{:032x}", rng.random::<u128>()),
                    insured_id: format!("P{}{:07}", &code[1..7], h * per_hospital + p),
                    figures: HospitalMonth {
                        hospital_code: code,
                        month: month.into(),
                        attested_sessions: rng.random_range(8..14),
                        attested_patients: 1,
                        claimed_lines: rng.random_range(8..15),
                        claimed_fen: 13 * 50_000,
                        claimed_patients: 1,
                        findings_fen,
                        red: u64::from(findings_fen > 0),
                        ..Default::default()
                    },
                }
            })
            .collect();
        store.put_patient_months(month, month, &rows).unwrap();
    }
    // As a reconciliation run ends.
    store.refresh_statistics().unwrap();
    wuding_server::web::add_user(
        store,
        "bench",
        "bench",
        Role::Auditor,
        None,
        "bench-password-1",
        1,
    )
    .unwrap();
    println!(
        "stored {n} findings and {} patient rows per month for {hospitals} hospitals in {:.1} s",
        per_hospital * hospitals,
        t.elapsed().as_secs_f64()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(name: &str, store: Arc<dyn Store>, n: usize, patients: usize, rounds: usize) {
    let hospitals = (n / 550).clamp(10, 2_000);
    fill(&*store, n, patients, hospitals);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let state = AppState {
            store: store.clone(),
            log: Arc::new(Log::new(TerminalSigner::from_seed(&[1; 32]))),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(|| 1_790_000_000_000),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, router_with(state, ServerOptions::default()))
                .await
                .unwrap()
        });
        let http = reqwest::Client::new();
        let res = http
            .post(format!("{base}/api/v1/app/login"))
            .json(&serde_json::json!({"username": "bench", "password": "bench-password-1"}))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let one = hospital(3);
        let city = one[..5].to_owned();
        let list_queries = vec![
            "findings".to_owned(),
            "findings?severity=red".into(),
            "findings?rule=phantom_session".into(),
            "findings?status=open&sort=amount".into(),
            format!("findings?hospital={one}"),
            format!("findings?hospital={city}&severity=red"),
            "findings?from=2026-10-10&to=2026-10-12".into(),
            "findings?sort=date&page=200".into(),
        ];
        let dash_queries = vec![
            "dashboard".to_owned(),
            format!("dashboard?region={}", &one[..3]),
            format!("dashboard?region={city}"),
        ];
        let province = &one[..3];
        let patient_queries = vec![
            format!("patients?region={one}&from=2026-10&to=2026-10"),
            format!("patients?region={city}&from=2026-10&to=2026-10"),
            format!("patients?region={province}&from=2026-10&to=2026-10"),
            "patients?from=2026-10&to=2026-10&page=100".to_owned(),
            format!("patients?region={one}&from=2026-09&to=2026-10"),
            format!("patients?region={province}&from=2026-09&to=2026-10&sort=attested"),
        ];
        let mut all = [Vec::new(), Vec::new(), Vec::new()];
        for (k, queries) in [&list_queries, &dash_queries, &patient_queries]
            .into_iter()
            .enumerate()
        {
            for q in queries {
                let mut times = Vec::new();
                let mut total = 0;
                for _ in 0..rounds {
                    let t = Instant::now();
                    let res = http
                        .get(format!("{base}/api/v1/app/{q}"))
                        .header("cookie", &cookie)
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success(), "{q}: {}", res.status());
                    let body: serde_json::Value = res.json().await.unwrap();
                    times.push(t.elapsed());
                    total = body["total"].as_u64().unwrap_or(0);
                }
                times.sort();
                println!(
                    "[{name}] {q:<45} p50 {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms  ({total} matching)",
                    percentile(&times, 0.5).as_secs_f64() * 1e3,
                    percentile(&times, 0.95).as_secs_f64() * 1e3,
                    times.last().unwrap().as_secs_f64() * 1e3,
                );
                all[k].extend(times);
            }
        }
        for (k, what) in ["findings list", "dashboard", "patients"].iter().enumerate() {
            all[k].sort();
            println!(
                "[{name}] {what}: {n} findings stored, {} requests: p50 {:.1} ms, p95 {:.1} ms{}",
                all[k].len(),
                percentile(&all[k], 0.5).as_secs_f64() * 1e3,
                percentile(&all[k], 0.95).as_secs_f64() * 1e3,
                if k < 2 { " (goal p95 < 150 ms)" } else { "" }
            );
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("auditor_app_smoke: test");
        }
        return;
    }
    let smoke = args.iter().any(|a| a == "auditor_app_smoke");
    let (n, patients, rounds) = if smoke {
        (5_000, 2_000, 3)
    } else {
        (
            env("WUDING_BENCH_FINDINGS", 1_100_000),
            env("WUDING_BENCH_PATIENTS", 1_000_000),
            20,
        )
    };
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("WUDING_BENCH_ONLY_PG").is_none() {
        let sqlite: Arc<dyn Store> = Arc::new(
            wuding_server::store::sqlite::SqliteStore::open(&dir.path().join("bench.db")).unwrap(),
        );
        run("sqlite", sqlite, n, patients, rounds);
    }
    if let Ok(url) = std::env::var("WUDING_BENCH_PG") {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let name = format!("wuding_app_bench_{}", std::process::id());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let db_url = format!("{}/{name}", &url[..url.rfind('/').unwrap()]);
        {
            let pg: Arc<dyn Store> =
                Arc::new(wuding_server::store::postgres::PgStore::connect(&db_url).unwrap());
            run("postgres", pg, n, patients, rounds);
        }
        let _ = admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
    }
}
