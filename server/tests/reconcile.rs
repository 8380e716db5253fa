//! Reconciliation wired to the store, on both backends: a generated month
//! loaded as README "Load a generated month" does, reconciled, and checked
//! against the generator's ground truth (`truth.csv`); stable findings
//! across runs; the `findings` command's output; threshold what-if.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use wuding_firmware_host::scenario::{ScenarioConfig, generate};
use wuding_protocol::{ClaimLine, TerminalSigner};
use wuding_rules::{Finding, Period, Ruleset, Subject};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::reconcile::{self, Format};
use wuding_server::store::{FindingFilter, Store};

const PATIENTS: u32 = 400;
const SEED: u64 = 20_261_001;

/// The generated month, written once per test process.
fn month_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let t = Instant::now();
        let mut cfg = ScenarioConfig::new(PATIENTS, 2026, 10);
        cfg.seed = SEED;
        let scenario = generate(&cfg);
        let dir = tempfile::tempdir().unwrap();
        scenario.write_to(dir.path()).unwrap();
        eprintln!(
            "generated {PATIENTS} patients: {} records, {} claim lines, {} frauds in {:.1} s",
            scenario.records.len(),
            scenario.claims.len(),
            scenario.truth.len(),
            t.elapsed().as_secs_f64()
        );
        dir
    })
    .path()
}

fn file(name: &str) -> std::io::BufReader<std::fs::File> {
    std::io::BufReader::new(std::fs::File::open(month_dir().join(name)).unwrap())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn october() -> Period {
    reconcile::period("2026-10-01", "2026-10-31").unwrap()
}

/// Loads the month exactly as README "Load a generated month" does, through
/// the library functions behind each command.
fn load_month(store: &dyn Store) {
    let t = Instant::now();
    let log = Log::new(TerminalSigner::from_seed(&[7; 32]));
    let report = wuding_server::month::load_dir(store, &log, month_dir(), &now_ms).unwrap();
    eprintln!(
        "loaded in {:.1} s: {:?}",
        t.elapsed().as_secs_f64(),
        report.counts
    );
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Truth {
    kind: String,
    rule_id: String,
    severity: String,
    subject: String,
    claim_ids: String,
    record_ids: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(';')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn truth() -> Vec<Truth> {
    csv::Reader::from_reader(file("truth.csv"))
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

fn subject_id(f: &Finding) -> Option<&str> {
    match &f.subject {
        Subject::Terminal(s) | Subject::Nurse(s) | Subject::Hospital(s) => Some(s),
        _ => None,
    }
}

/// Whether a finding rests on this fraud: its claims or records, or its
/// subject (docs/data-formats.md, truth.csv).
fn rests_on(f: &Finding, t: &Truth) -> bool {
    let claims = list(&t.claim_ids);
    let records = list(&t.record_ids);
    f.claim_ids.iter().any(|c| claims.contains(c))
        || f.record_ids.iter().any(|r| records.contains(&r.to_hex()))
        || (!t.subject.is_empty() && subject_id(f) == Some(t.subject.as_str()))
}

/// Everything the frauds rest on, for "does this finding belong to some
/// fraud".
struct FraudIndex {
    claims: HashSet<String>,
    records: HashSet<String>,
    subjects: HashSet<String>,
}

impl FraudIndex {
    fn new(truth: &[Truth]) -> FraudIndex {
        let mut ix = FraudIndex {
            claims: HashSet::new(),
            records: HashSet::new(),
            subjects: HashSet::new(),
        };
        for t in truth {
            ix.claims.extend(list(&t.claim_ids));
            ix.records.extend(list(&t.record_ids));
            if !t.subject.is_empty() {
                ix.subjects.insert(t.subject.clone());
            }
        }
        ix
    }

    fn owns(&self, f: &Finding) -> bool {
        f.claim_ids.iter().any(|c| self.claims.contains(c))
            || f.record_ids
                .iter()
                .any(|r| self.records.contains(&r.to_hex()))
            || subject_id(f).is_some_and(|s| self.subjects.contains(s))
    }
}

fn detection_quality(store: &dyn Store) {
    load_month(store);
    let rules = Ruleset::default_rules();
    let t = Instant::now();
    let (summary, findings) = reconcile::run(store, &rules, october(), now_ms(), false).unwrap();
    eprintln!(
        "reconcile (load + engine + store) in {:.2} s\n{}",
        t.elapsed().as_secs_f64(),
        summary.render()
    );
    assert_eq!(summary.stored.new as usize, findings.len());
    let truth = truth();
    assert!(!truth.is_empty());
    let ix = FraudIndex::new(&truth);

    // Recall per fraud kind: found by its rule with its severity.
    let mut per_kind: BTreeMap<&str, (&str, usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for t in &truth {
        let e = per_kind
            .entry(t.kind.as_str())
            .or_insert((t.rule_id.as_str(), 0, 0));
        e.1 += 1;
        let found = findings
            .iter()
            .any(|f| f.rule_id == t.rule_id && f.severity.code() == t.severity && rests_on(f, t));
        if found {
            e.2 += 1;
        } else {
            missed.push(t.clone());
        }
    }
    // Precision per rule: of the rule's findings, how many rest on a fraud.
    let mut per_rule: HashMap<&str, (usize, usize)> = HashMap::new();
    for f in &findings {
        let e = per_rule.entry(f.rule_id.as_str()).or_default();
        e.0 += 1;
        if ix.owns(f) {
            e.1 += 1;
        }
    }
    eprintln!(
        "{:<22} {:<26} {:>8} {:>6} {:>7} {:>9} {:>9}",
        "kind", "rule", "injected", "found", "recall", "findings", "precision"
    );
    for (kind, (rule, injected, found)) in &per_kind {
        let (n, ok) = per_rule.get(rule).copied().unwrap_or_default();
        eprintln!(
            "{kind:<22} {rule:<26} {injected:>8} {found:>6} {:>6.1}% {n:>9} {:>8.1}%",
            100.0 * *found as f64 / *injected as f64,
            if n == 0 {
                0.0
            } else {
                100.0 * ok as f64 / n as f64
            }
        );
    }
    assert!(missed.is_empty(), "frauds not found: {missed:#?}");

    // No honest claim or session gets a red finding.
    let honest_red: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity.code() == "red" && !ix.owns(f))
        .collect();
    assert!(
        honest_red.is_empty(),
        "red findings on honest data: {honest_red:#?}"
    );
    // Yellow findings on honest sessions stay under 1%.
    let honest_sessions = summary.sessions - ix.records.len().min(summary.sessions);
    let honest_yellow = findings
        .iter()
        .filter(|f| f.severity.code() == "yellow" && !ix.owns(f))
        .count();
    eprintln!(
        "honest yellow findings: {honest_yellow} over {honest_sessions} honest sessions ({:.2}%)",
        100.0 * honest_yellow as f64 / honest_sessions as f64
    );
    assert!(
        (honest_yellow as f64) < 0.01 * honest_sessions as f64,
        "{honest_yellow} yellow findings on honest data: {:#?}",
        findings
            .iter()
            .filter(|f| f.severity.code() == "yellow" && !ix.owns(f))
            .collect::<Vec<_>>()
    );
}

both_backends!(every_injected_fraud_is_found, detection_quality);

fn all(store: &dyn Store) -> Vec<wuding_server::store::FindingRow> {
    store.findings(&FindingFilter::default()).unwrap()
}

both_backends!(
    findings_are_stable_and_updated_in_place,
    |store: &dyn Store| {
        load_month(store);
        let rules = Ruleset::default_rules();
        let (first, f1) = reconcile::run(store, &rules, october(), 1_000, false).unwrap();
        let stored1 = all(store);
        assert_eq!(stored1.len(), f1.len());
        // Same data: same findings, nothing new, nothing changed.
        let (second, f2) = reconcile::run(store, &rules, october(), 2_000, false).unwrap();
        assert_eq!(
            f1.iter().map(|f| f.id).collect::<Vec<_>>(),
            f2.iter().map(|f| f.id).collect::<Vec<_>>()
        );
        assert_eq!(second.stored.new, 0);
        assert_eq!(second.stored.updated, 0);
        assert_eq!(second.stored.unchanged as usize, f1.len());
        assert_eq!(second.total, first.total);
        let stored2 = all(store);
        assert_eq!(stored2.len(), stored1.len());
        for (a, b) in stored1.iter().zip(&stored2) {
            assert_eq!((a.id.as_str(), a.first_seen_ms), (b.id.as_str(), 1_000));
            assert_eq!(b.last_seen_ms, 2_000);
            assert_eq!(b.status, "open");
        }

        // New data: a phantom claim (a copy of an honest line on a day the
        // patient has nothing) adds one finding; nothing is duplicated.
        let period = october();
        let claims = store
            .claims_between(&period.from.to_string(), &period.to.to_string())
            .unwrap();
        let busy: HashSet<(String, String)> = claims
            .iter()
            .map(|c| (c.insured_id.to_string(), c.service_date.to_string()))
            .collect();
        let base = claims
            .iter()
            .find(|c| c.service_kind.code() == "HD")
            .unwrap();
        let free_day = (1..=31)
            .map(|d| format!("2026-10-{d:02}"))
            .find(|d| !busy.contains(&(base.insured_id.to_string(), d.clone())))
            .unwrap();
        let extra = ClaimLine {
            claim_id: "C-EXTRA-0000001".into(),
            service_date: free_day.parse().unwrap(),
            ..base.clone()
        };
        assert_eq!(store.insert_claims(&[extra], "test").unwrap(), 1);
        let (third, f3) = reconcile::run(store, &rules, october(), 3_000, false).unwrap();
        assert!(third.stored.new >= 1, "{:?}", third.stored);
        assert!(f3.iter().any(|f| f.rule_id == "phantom_session"
            && f.claim_ids == vec!["C-EXTRA-0000001".to_string()]));
        let stored3 = all(store);
        let ids: HashSet<&str> = stored3.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids.len(), stored3.len(), "one row per finding id");
        assert_eq!(
            stored3.len(),
            stored2.len() + third.stored.new as usize,
            "new data adds findings, it does not duplicate them"
        );
        for old in &stored2 {
            let now = stored3.iter().find(|f| f.id == old.id).unwrap();
            assert_eq!(now.first_seen_ms, 1_000, "first seen is kept");
        }

        // New evidence for a known id updates the row in place.
        let mut changed = stored3[0].clone();
        changed.amount_fen += 100;
        let counts = store.upsert_findings(&[changed.clone()], 4_000).unwrap();
        assert_eq!((counts.new, counts.updated, counts.unchanged), (0, 1, 0));
        let after = all(store);
        assert_eq!(after.len(), stored3.len());
        let row = after.iter().find(|f| f.id == changed.id).unwrap();
        assert_eq!(row.amount_fen, changed.amount_fen);
        assert_eq!(row.first_seen_ms, stored3[0].first_seen_ms);
        assert_eq!(row.last_seen_ms, 4_000);
    }
);

both_backends!(what_if_is_monotone, |store: &dyn Store| {
    load_month(store);
    let rules = Ruleset::default_rules();
    for (rule, param, values) in [
        ("fallback_rate_nurse", "max_rate", "0.05,0.1,0.25,0.5,0.9"),
        (
            "peer_sessions",
            "max_ratio_to_median",
            "1.0,1.05,1.12,1.3,2.0",
        ),
        ("late_sync", "min_delay_hours", "1,24,72,200"),
    ] {
        let values: Vec<toml::Value> = values.split(',').map(reconcile::parse_value).collect();
        let rows = reconcile::whatif(store, &rules, october(), rule, param, &values).unwrap();
        eprint!("{}", reconcile::render_whatif(rule, param, &rows));
        assert_eq!(rows.len(), values.len());
        for w in rows.windows(2) {
            assert!(
                w[1].findings <= w[0].findings && w[1].amount_fen <= w[0].amount_fen,
                "{rule}.{param}: a stricter threshold never finds more: {rows:?}"
            );
        }
        assert!(
            rows[0].findings > 0,
            "{rule}: the loosest threshold finds something"
        );
    }
    // Nothing is stored by a what-if.
    assert!(all(store).is_empty());
    // Unknown rule or parameter: a clear error.
    assert!(reconcile::whatif(store, &rules, october(), "nope", "x", &[]).is_err());
    assert!(reconcile::whatif(store, &rules, october(), "late_sync", "nope", &[]).is_err());
});

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wuding-server"))
}

fn run_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(server_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn findings_command(db: &common::TestDb) {
    load_month(&*db.store);
    let summary = run_cli(&[
        "reconcile",
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
        "--db",
        db.url.as_str(),
    ]);
    assert!(summary.contains("findings: "), "{summary}");
    let expected = db
        .store
        .findings(&FindingFilter {
            from: Some("2026-10-01".into()),
            to: Some("2026-10-31".into()),
            severity: Some("red".into()),
            rule_id: Some("phantom_session".into()),
        })
        .unwrap();
    assert!(!expected.is_empty());
    let filter = [
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
        "--severity",
        "red",
        "--rule",
        "phantom_session",
        "--db",
        db.url.as_str(),
    ];
    // CSV: the documented header, one row per finding.
    let csv_text = run_cli(&[&["findings", "--format", "csv"][..], &filter[..]].concat());
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        reconcile::CSV_HEADER
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), expected.len());
    for (row, f) in rows.iter().zip(&expected) {
        assert_eq!(&row[0], f.id);
        assert_eq!(&row[1], "phantom_session");
        assert_eq!(&row[2], "red");
        assert_eq!(&row[3], f.service_date.as_deref().unwrap_or(""));
        assert_eq!(&row[5], f.insured_id.as_deref().unwrap_or(""));
        assert_eq!(&row[6], f.claim_ids.join(";"));
        assert!(!row[6].is_empty(), "a phantom names its claim");
        assert_eq!(row[8].parse::<u64>().unwrap(), f.amount_fen);
        assert_eq!(&row[9], "open");
    }
    // The same through the library writer the command uses.
    let mut buf = Vec::new();
    reconcile::write_findings(&expected, Format::Csv, &mut buf).unwrap();
    assert_eq!(String::from_utf8(buf).unwrap(), csv_text);
    // JSON: the same findings with every stored field.
    let json_text = run_cli(&[&["findings", "--format", "json"][..], &filter[..]].concat());
    let v: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    let list = v["findings"].as_array().unwrap();
    assert_eq!(list.len(), expected.len());
    for (j, f) in list.iter().zip(&expected) {
        assert_eq!(j["id"], f.id.as_str());
        assert_eq!(j["rule_id"], "phantom_session");
        assert_eq!(j["severity"], "red");
        assert_eq!(j["amount_fen"], f.amount_fen);
        assert_eq!(j["status"], "open");
        assert!(j["explanation_en"].as_str().unwrap().len() > 5);
    }
    // A bad filter is a clear error.
    let out = std::process::Command::new(server_bin())
        .args(["findings", "--severity", "purple", "--db", db.url.as_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a severity"));
    // A reader that stops after the first line (`| head -1`) ends the
    // command quietly: the whole JSON listing is far larger than a pipe.
    assert!(json_text.len() > 1 << 17, "{} bytes", json_text.len());
    let mut child = std::process::Command::new(server_bin())
        .args(["findings", "--format", "json", "--db", db.url.as_str()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first.trim(), "{");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn findings_command_sqlite() {
    findings_command(&common::sqlite());
}

#[test]
fn findings_command_postgres() {
    findings_command(&common::postgres());
}

/// `POST /api/v1/admin/reconcile` and `GET /api/v1/admin/findings` behind
/// the admin token.
fn admin_api(db: common::TestDb) {
    use wuding_server::http::{AdminToken, AppState, Metrics, ServerOptions, router_with};
    const TOKEN: &str = "reconcile-admin-token-1234";
    load_month(&*db.store);
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::from(wuding_server::store::open(&db.url).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let state = AppState {
            store: store.clone(),
            log: std::sync::Arc::new(Log::new(TerminalSigner::from_seed(&[5; 32]))),
            policy: IngestPolicy::default(),
            metrics: std::sync::Arc::new(Metrics::default()),
            clock: std::sync::Arc::new(now_ms),
        };
        let options = ServerOptions {
            admin_token: AdminToken::new(TOKEN),
            ..ServerOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router_with(state, options);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::new();
        let url = format!("{base}/api/v1/admin/reconcile");
        let body = r#"{"from":"2026-10-01","to":"2026-10-31"}"#;
        // No token: refused.
        let r = http.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http
            .post(&url)
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let summary: serde_json::Value = r.json().await.unwrap();
        let total = summary["total"]["findings"].as_u64().unwrap();
        assert!(total > 0);
        assert_eq!(summary["stored"]["new"].as_u64().unwrap(), total);
        assert!(summary["by_severity"]["red"]["findings"].as_u64().unwrap() > 0);
        // A bad period: 422.
        let r = http
            .post(&url)
            .bearer_auth(TOKEN)
            .body(r#"{"from":"2026-10-31","to":"2026-10-01"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let r = http
            .get(format!(
                "{base}/api/v1/admin/findings?from=2026-10-01&to=2026-10-31&severity=red&rule=phantom_session"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        let list = v["findings"].as_array().unwrap();
        assert!(!list.is_empty());
        assert!(
            list.iter()
                .all(|f| f["rule_id"] == "phantom_session" && f["severity"] == "red")
        );
        let all: serde_json::Value = http
            .get(format!("{base}/api/v1/admin/findings"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(all["findings"].as_array().unwrap().len() as u64, total);
    });
    drop(runtime);
    drop(store);
    drop(db);
}

#[test]
fn admin_api_sqlite() {
    admin_api(common::sqlite());
}

#[test]
fn admin_api_postgres() {
    admin_api(common::postgres());
}

// Automatic reconciliation (`serve --reconcile-every-secs`): a run when
// records or claims arrived, none otherwise; a late phantom claim becomes a
// red finding on the next step.
both_backends!(
    reconciles_automatically_when_data_arrives,
    |store: &dyn Store| {
        load_month(store);
        // 5 November 2026, 10:00 in China: October and November are covered.
        let now = 1_793_844_000_000;
        let p = reconcile::recent_period(now).unwrap();
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2026-10-01".to_owned(), "2026-11-30".to_owned())
        );
        let rules = Ruleset::default_rules();
        let log = Log::new(TerminalSigner::from_seed(&[7; 32]));
        let size = log.sync(store).unwrap();
        let mut mark = reconcile::Watermark::default();
        let first = reconcile::reconcile_if_changed(store, &rules, size, &mut mark, now)
            .unwrap()
            .expect("a first run");
        assert!(first.total.findings > 0);
        assert_eq!(first.stored.new, first.total.findings);
        assert!(
            reconcile::reconcile_if_changed(store, &rules, size, &mut mark, now)
                .unwrap()
                .is_none(),
            "nothing arrived: no run"
        );
        // A hospital claims one more session nobody attested.
        let mut late: ClaimLine = store
            .claims_between("2026-10-20", "2026-10-20")
            .unwrap()
            .into_iter()
            .find(|c| c.service_kind.code() == "HD")
            .expect("an HD claim on 20 October");
        late.claim_id = "LATE-PHANTOM-1".into();
        late.service_date = "2026-10-21".parse().unwrap();
        late.insured_id = "P5199999999999".into();
        store.insert_claims(&[late], "late.csv").unwrap();
        let second = reconcile::reconcile_if_changed(store, &rules, size, &mut mark, now)
            .unwrap()
            .expect("a run after the new claim");
        assert!(second.stored.new >= 1);
        let phantom = all(store)
            .into_iter()
            .find(|f| {
                f.claim_ids.contains(&"LATE-PHANTOM-1".to_owned()) && f.rule_id == "phantom_session"
            })
            .expect("the late claim is a phantom finding");
        assert_eq!(phantom.severity, "red");
    }
);

/// Every patient-level row of October, in a fixed order.
fn patient_rows(store: &dyn Store) -> Vec<wuding_server::store::PatientMonth> {
    let (mut rows, total) = store
        .patient_page(&wuding_server::store::PatientQuery {
            hospital_prefix: String::new(),
            from_month: "2026-10".into(),
            to_month: "2026-10".into(),
            sort: "amount".into(),
            offset: 0,
            limit: 1_000_000,
        })
        .unwrap();
    assert_eq!(rows.len() as u64, total);
    rows.sort_by(|a, b| {
        (&a.figures.hospital_code, &a.insured_id).cmp(&(&b.figures.hospital_code, &b.insured_id))
    });
    rows
}

both_backends!(
    a_month_in_parts_gives_the_findings_of_one_run,
    |store: &dyn Store| {
        load_month(store);
        let rules = Ruleset::default_rules();
        // The reference: the engine over the whole month at once.
        let loaded = reconcile::load(store, october(), &mut |_| {}).unwrap();
        let whole = wuding_rules::reconcile(&rules, &loaded.dataset());
        // The month must exercise the rules that look across patients
        // and the integrity events routed to their records' part.
        for rule in [
            "fallback_rate_nurse",
            "peer_sessions",
            "chain_fork",
            "chain_gap",
            "late_sync",
            "frequency_week",
        ] {
            assert!(whole.iter().any(|f| f.rule_id == rule), "{rule}");
        }

        let one = reconcile::run_in_parts(
            store,
            &rules,
            october(),
            1_000,
            false,
            usize::MAX,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(one.parts, 1);
        let months_one = store.hospital_months("2026-10", "2026-10").unwrap();
        let patients_one = patient_rows(store);
        // The dashboard figures count what was loaded and found.
        let sum = |f: fn(&wuding_server::store::HospitalMonth) -> u64| -> u64 {
            months_one.iter().map(f).sum()
        };
        assert_eq!(sum(|m| m.attested_sessions) as usize, one.sessions);
        assert_eq!(sum(|m| m.claimed_lines) as usize, one.claims);
        assert_eq!(
            sum(|m| m.red + m.yellow + m.green) as usize,
            whole
                .iter()
                .filter(|f| f.hospital_code.is_some() && f.date.is_some())
                .count()
        );
        assert_eq!(
            sum(|m| m.phantom_claims) as usize,
            whole
                .iter()
                .filter(|f| f.rule_id == "phantom_session")
                .map(|f| f.claim_ids.len())
                .sum::<usize>()
        );
        let patient_sessions: u64 = patients_one
            .iter()
            .map(|p| p.figures.attested_sessions)
            .sum();
        assert_eq!(patient_sessions as usize, one.sessions);

        let mut parted = Vec::new();
        let many = reconcile::run_in_parts(store, &rules, october(), 2_000, false, 37, &mut |f| {
            parted.extend_from_slice(f)
        })
        .unwrap();
        assert!(many.parts >= 10, "{} parts", many.parts);
        assert_eq!(many.sessions, one.sessions);
        assert_eq!(many.claims, one.claims);
        assert_eq!(many.plans, one.plans);
        assert_eq!(many.integrity_events, one.integrity_events);
        assert_eq!(many.total, one.total);
        assert_eq!(many.by_rule, one.by_rule);
        // Same findings, field by field; the second run stored nothing new.
        wuding_rules::sort_findings(&mut parted);
        assert_eq!(parted.len(), whole.len());
        for (a, b) in parted.iter().zip(&whole) {
            assert_eq!(a, b);
        }
        assert_eq!(many.stored.new, 0);
        assert_eq!(many.stored.updated, 0);
        // Same dashboard and patient figures.
        assert_eq!(
            store.hospital_months("2026-10", "2026-10").unwrap(),
            months_one
        );
        assert_eq!(patient_rows(store), patients_one);
    }
);

/// The findings' indexes of a SQLite store (name and key columns), and the
/// schema's version, which every DROP and CREATE moves on.
fn finding_indexes(path: &str) -> (Vec<(String, String)>, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let indexes = conn
        .prepare(
            "SELECT m.name, group_concat(x.name || CASE x.desc WHEN 1 THEN ' DESC' ELSE '' END, ',')
               FROM sqlite_master m, pragma_index_xinfo(m.name) x
              WHERE m.type = 'index' AND m.tbl_name = 'findings' AND x.key = 1
              GROUP BY m.name ORDER BY m.name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let version = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap();
    (indexes, version)
}

/// A run that adds many findings to a small table stores them without the
/// table's secondary indexes and builds those once at the end: whether the
/// table is empty (decided before the first part) or holds a few findings
/// (decided from the first part's new ones). Either way the store ends with
/// every index as it was and the findings of a run that kept them; a run
/// that adds nothing leaves the schema alone.
#[test]
fn a_run_adding_many_findings_builds_the_indexes_once() {
    let db = common::sqlite();
    let store = db.store.as_ref();
    load_month(store);
    let (fresh, v0) = finding_indexes(&db.url);
    assert_eq!(fresh.len(), 10, "{fresh:?}");
    let rules = Ruleset::default_rules();
    let mut found = Vec::new();
    let first = reconcile::run_in_parts(store, &rules, october(), 1_000, false, 37, &mut |f| {
        found.extend_from_slice(f)
    })
    .unwrap();
    assert!(first.parts >= 10);
    // Held a few parts at a time and written once each.
    assert_eq!(first.stored.new as usize, found.len());
    assert_eq!((first.stored.updated, first.stored.unchanged), (0, 0));
    let (after, v1) = finding_indexes(&db.url);
    assert_eq!(after, fresh);
    assert!(v1 > v0, "the indexes were dropped and built again");
    let stored = all(store);
    assert_eq!(stored.len(), found.len());

    let again =
        reconcile::run_in_parts(store, &rules, october(), 2_000, false, 37, &mut |_| {}).unwrap();
    assert_eq!(again.stored.new, 0);
    assert_eq!(
        finding_indexes(&db.url),
        (fresh.clone(), v1),
        "nothing deferred"
    );

    // Keep three findings: the first part adds many more than that.
    let conn = rusqlite::Connection::open(&db.url).unwrap();
    conn.execute_batch(
        "DELETE FROM findings WHERE finding_id NOT IN
             (SELECT finding_id FROM findings ORDER BY finding_id LIMIT 3);
         DELETE FROM finding_seen WHERE finding_id NOT IN (SELECT finding_id FROM findings);",
    )
    .unwrap();
    drop(conn);
    let third =
        reconcile::run_in_parts(store, &rules, october(), 3_000, false, 37, &mut |_| {}).unwrap();
    assert_eq!(third.stored.new as usize, found.len() - 3);
    let (after, v3) = finding_indexes(&db.url);
    assert_eq!(after, fresh);
    assert!(v3 > v1, "deferred after the first part");
    let restored = all(store);
    assert_eq!(restored.len(), stored.len());
    for (a, b) in restored.iter().zip(&stored) {
        assert_eq!(
            (&a.id, &a.rule_id, a.amount_fen),
            (&b.id, &b.rule_id, b.amount_fen)
        );
    }
    // The lists the indexes serve read the same.
    let reds = store
        .findings(&FindingFilter {
            severity: Some("red".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        reds.len(),
        stored.iter().filter(|f| f.severity == "red").count()
    );
}

both_backends!(
    the_sessions_read_are_the_facts_of_the_signed_records,
    |store: &dyn Store| {
        load_month(store);
        let all = wuding_server::store::PatientRange::all();
        let mut read = store
            .attested_sessions("2026-10-01", "2026-10-31", &all)
            .unwrap();
        read.sort_by_key(|s| s.record_id);
        // Every accepted session record of October, from the records
        // themselves.
        let mut expected = Vec::new();
        for t in store.terminals().unwrap() {
            for row in store.records_of(&t.terminal_id).unwrap() {
                if row.record_type != "session" || !row.service_date.starts_with("2026-10") {
                    continue;
                }
                let facts = wuding_server::store::facts_of_payload(&row.payload)
                    .unwrap()
                    .expect("a session payload");
                expected.push(wuding_rules::AttestedSession {
                    record_id: row.record_id,
                    received_at_ms: row.received_at_ms,
                    facts,
                });
            }
        }
        expected.sort_by_key(|s| s.record_id);
        assert!(expected.len() > 4_000, "{} sessions", expected.len());
        // The month has fallbacks, missing check-outs and doses to carry.
        assert!(expected.iter().any(|s| s.facts.check_in.fallback.is_some()));
        assert!(expected.iter().any(|s| s.facts.check_out.is_none()));
        assert!(expected.iter().any(|s| s.facts.dose.is_some()));
        assert_eq!(read.len(), expected.len());
        for (a, b) in read.iter().zip(&expected) {
            assert_eq!(a, b);
        }
        // A range of patients reads exactly its patients' sessions.
        let mut patients: Vec<&str> = expected
            .iter()
            .map(|s| s.facts.insured_id.as_str())
            .collect();
        patients.sort_unstable();
        patients.dedup();
        let range = wuding_server::store::PatientRange {
            from: Some(patients[patients.len() / 3].to_owned()),
            to: Some(patients[2 * patients.len() / 3].to_owned()),
        };
        let some = store
            .attested_sessions("2026-10-01", "2026-10-31", &range)
            .unwrap();
        let inside = expected
            .iter()
            .filter(|s| range.contains(&s.facts.insured_id))
            .count();
        assert!(inside > 0 && inside < expected.len());
        assert_eq!(some.len(), inside);
        assert!(some.iter().all(|s| range.contains(&s.facts.insured_id)));
    }
);

/// A PostgreSQL store from before `attested_sessions` gets the facts of
/// every accepted session record it holds when the migration runs (the
/// SQLite store's counterpart is a unit test of `store::sqlite`).
#[test]
fn postgres_fills_attested_sessions_from_the_stored_records() {
    let db = common::postgres();
    load_month(&*db.store);
    let all = wuding_server::store::PatientRange::all();
    let read = |store: &dyn Store| {
        let mut s = store
            .attested_sessions("2026-10-01", "2026-10-31", &all)
            .unwrap();
        s.sort_by_key(|s| s.record_id);
        s
    };
    let before = read(&*db.store);
    assert!(before.len() > 4_000, "{} sessions", before.len());
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    // As the store was before the migration (and the later ones): no facts.
    admin
        .batch_execute(&format!(
            "DROP TABLE attested_sessions; DROP TABLE finding_seen;
             DROP TABLE attested_sessions_head; UPDATE schema_version SET version = {}",
            wuding_server::store::postgres::ATTESTED_SESSIONS_MIGRATION
        ))
        .unwrap();
    let again = wuding_server::store::postgres::PgStore::connect(&db.url).unwrap();
    assert_eq!(read(&again), before);
}
