//! The dashboard's drill-down below a hospital, on both backends: a
//! generated month loaded and reconciled, then read over real HTTP as the
//! auditor application does. Patient figures add up to the hospital's,
//! patients are named by opaque references with masked ids, a patient
//! opens to a calendar whose records verify, a 五定 finding's case shows
//! the breached item row by row, hospital users reach only their own
//! patients and records, and the terminals page counts waiting records
//! per terminal.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

use common::{App, Browser};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use wuding_protocol::TerminalSigner;
use wuding_server::casework::Role;
use wuding_server::http::{AppState, Metrics, ServerOptions, router_with};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::store::{FindingFilter, PatientQuery, Store};
use wuding_server::web::add_user;
use wuding_server::{month, reconcile};

const PASSWORD: &str = "correct horse battery";

fn month_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| common::generated_month(80, 20_261_124, 0.25))
        .path()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn all_patients(store: &dyn Store, prefix: &str) -> Vec<wuding_server::store::PatientMonth> {
    store
        .patient_page(&PatientQuery {
            hospital_prefix: prefix.into(),
            from_month: "2026-10".into(),
            to_month: "2026-10".into(),
            sort: "amount".into(),
            offset: 0,
            limit: 100_000,
        })
        .unwrap()
        .0
}

async fn get(app: &App, who: &Browser, path: &str) -> (StatusCode, Value) {
    app.json(who, Method::GET, path, None).await
}

fn drilldown(db: common::TestDb) {
    let store: Arc<dyn Store> = Arc::from(wuding_server::store::open(&db.url).unwrap());
    let log = Log::new(TerminalSigner::from_seed(&[7; 32]));
    month::load_dir(&*store, &log, month_dir(), &now_ms).unwrap();
    let rules = reconcile::load_rules(None).unwrap();
    let period = reconcile::period("2026-10-01", "2026-10-31").unwrap();
    reconcile::run(&*store, &rules, period, now_ms(), false).unwrap();

    // Patient figures add up to each hospital's.
    let hospitals = store.hospital_months("2026-10", "2026-10").unwrap();
    assert!(hospitals.len() >= 2, "{hospitals:?}");
    for h in &hospitals {
        let ps = all_patients(&*store, &h.hospital_code);
        let sum = |f: fn(&wuding_server::store::HospitalMonth) -> u64| -> u64 {
            ps.iter().map(|p| f(&p.figures)).sum()
        };
        assert_eq!(
            sum(|m| m.attested_sessions),
            h.attested_sessions,
            "{}",
            h.hospital_code
        );
        assert_eq!(sum(|m| m.fallback_sessions), h.fallback_sessions);
        assert_eq!(sum(|m| m.claimed_lines), h.claimed_lines);
        assert_eq!(sum(|m| m.claimed_fen), h.claimed_fen);
        assert_eq!(sum(|m| m.phantom_claims), h.phantom_claims);
        assert_eq!(sum(|m| m.phantom_fen), h.phantom_fen);
        assert_eq!(sum(|m| m.attested_patients), h.attested_patients);
        assert_eq!(sum(|m| m.claimed_patients), h.claimed_patients);
        assert!(
            sum(|m| m.red) <= h.red,
            "patients' findings are the hospital's"
        );
    }
    // A patient's reference is stable across runs (the key is kept).
    let before = all_patients(&*store, "");
    reconcile::run(&*store, &rules, period, now_ms(), false).unwrap();
    assert_eq!(
        all_patients(&*store, ""),
        before,
        "a second run changes nothing"
    );

    // The hospital with the most money at stake, and another one.
    let mut by_money: Vec<_> = hospitals.iter().collect();
    by_money.sort_by_key(|h| std::cmp::Reverse(h.findings_fen));
    let own = by_money[0].hospital_code.clone();
    let other = by_money[1].hospital_code.clone();
    for (name, role, hospital) in [
        ("auditor", Role::Auditor, None),
        ("hospital", Role::Hospital, Some(own.as_str())),
    ] {
        add_user(&*store, name, name, role, hospital, PASSWORD, now_ms()).unwrap();
    }
    let five_fixed = store
        .findings(&FindingFilter::default())
        .unwrap()
        .into_iter()
        .find(|f| {
            f.rule_id.starts_with("plan_") && f.rule_id != "plan_none" && !f.record_ids.is_empty()
        })
        .expect("the generated month has a 五定 finding on a signed record");

    // Read before the server runs (the PostgreSQL client blocks).
    let expected = all_patients(&*store, &own);
    let theirs = all_patients(&*store, &other);
    let only_there = theirs
        .iter()
        .find(|p| !expected.iter().any(|q| q.patient_ref == p.patient_ref))
        .expect("a patient treated only at the other hospital");
    let their_record = store
        .patient_calendar(&only_there.insured_id, "2026-10-01", "2026-10-31")
        .unwrap()
        .into_iter()
        .find(|e| e.source == "attested")
        .expect("an attested session at the other hospital");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let state = AppState {
            store: store.clone(),
            log: Arc::new(log),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(now_ms),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = router_with(state, ServerOptions::default());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let app = App {
            base,
            clock: Arc::new(AtomicI64::new(0)),
            store: store.clone(),
            http: reqwest::Client::new(),
        };
        let (_, auditor, _) = app.login("auditor", PASSWORD).await;
        let auditor = auditor.unwrap();

        // The hospital's patients: all of them, money at stake first, ids masked.
        let (status, page) = get(
            &app,
            &auditor,
            &format!("/api/v1/app/patients?region={own}&from=2026-10&to=2026-10"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let rows = page["rows"].as_array().unwrap();
        assert_eq!(page["total"].as_u64().unwrap() as usize, expected.len());
        assert!(!rows.is_empty());
        let money: Vec<u64> = rows
            .iter()
            .map(|r| r["findings_fen"].as_u64().unwrap())
            .collect();
        assert!(money.windows(2).all(|w| w[0] >= w[1]), "{money:?}");
        let text = page.to_string();
        for p in &expected {
            assert!(
                !text.contains(&p.insured_id),
                "raw id {} in the list",
                p.insured_id
            );
        }
        assert!(
            rows.iter()
                .all(|r| r["insured_id"].as_str().unwrap().contains('*'))
        );
        let (_, by_attested) = get(
            &app,
            &auditor,
            &format!("/api/v1/app/patients?region={own}&sort=attested"),
        )
        .await;
        let attested: Vec<u64> = by_attested["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["attested_sessions"].as_u64().unwrap())
            .collect();
        assert!(attested.windows(2).all(|w| w[0] >= w[1]), "{attested:?}");
        let (status, body) = get(&app, &auditor, "/api/v1/app/patients?sort=name").await;
        assert!(status.is_client_error(), "{status}");
        assert_eq!(body["error"], "bad_sort");

        // A patient with attested sessions opens to its month; every
        // attested entry is a record that verifies and names this patient.
        let top = rows
            .iter()
            .find(|r| r["attested_sessions"].as_u64().unwrap() > 0)
            .unwrap();
        let patient_ref = top["patient_ref"].as_str().unwrap();
        let (status, p) = get(
            &app,
            &auditor,
            &format!("/api/v1/app/patients/{patient_ref}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{p}");
        assert_eq!(p["month"], "2026-10");
        let cal = p["calendar"].as_array().unwrap();
        let count = |src: &str| cal.iter().filter(|e| e["source"] == src).count() as u64;
        let own_month = &p["months"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["hospital_code"] == own)
            .unwrap()
            .clone();
        assert!(count("attested") >= own_month["attested_sessions"].as_u64().unwrap());
        assert!(count("claimed") >= own_month["claimed_lines"].as_u64().unwrap());
        let findings = p["findings"].as_array().unwrap();
        assert_eq!(
            p["findings_total"].as_u64().unwrap() as usize,
            findings.len()
        );
        let record_id = cal.iter().find(|e| e["source"] == "attested").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, r) = get(&app, &auditor, &format!("/api/v1/app/records/{record_id}")).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["record"]["signature_ok"], true);
        assert_eq!(r["record"]["inclusion_ok"], true);
        assert_eq!(r["patient_ref"], patient_ref);
        let checks = r["plan_checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1);
        if !checks[0]["plan_id"].is_null() {
            assert_eq!(checks[0]["lines"].as_array().unwrap().len(), 6);
        }
        // The findings list filtered to the patient: the same findings.
        let (_, list) = get(
            &app,
            &auditor,
            &format!("/api/v1/app/findings?patient={patient_ref}&per_page=500"),
        )
        .await;
        assert_eq!(list["total"], p["findings_total"]);

        // A 五定 finding's case: the breached item row by row.
        let (status, case) = get(
            &app,
            &auditor,
            &format!("/api/v1/app/findings/{}", five_fixed.id),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{case}");
        let breached: Vec<&Value> = case["plan_checks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["lines"].as_array().unwrap().iter())
            .filter(|l| l["ok"] == false)
            .collect();
        assert!(
            breached
                .iter()
                .any(|l| l["rule"] == five_fixed.rule_id.as_str()),
            "{} not shown as breached: {}",
            five_fixed.rule_id,
            case["plan_checks"]
        );
        let line = breached
            .iter()
            .find(|l| l["rule"] == five_fixed.rule_id.as_str())
            .unwrap();
        assert_ne!(line["planned"], line["actual"]);
        assert!(line["breach_zh"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(case["patient_ref"].is_string());

        // A hospital user: only its own institution's patients and records.
        let (_, hosp, _) = app.login("hospital", PASSWORD).await;
        let hosp = hosp.unwrap();
        let (status, mine) =
            get(&app, &hosp, &format!("/api/v1/app/patients?region={other}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            mine["region"],
            own.as_str(),
            "the region is forced to its own"
        );
        assert!(
            mine["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["hospital_code"] == own.as_str())
        );
        let (status, body) = get(
            &app,
            &hosp,
            &format!("/api/v1/app/patients/{}", only_there.patient_ref),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = get(
            &app,
            &auditor,
            &format!("/api/v1/app/patients/{}", only_there.patient_ref),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get(
            &app,
            &hosp,
            &format!("/api/v1/app/records/{}", their_record.id),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = get(
            &app,
            &hosp,
            &format!("/api/v1/app/findings?patient={}", only_there.patient_ref),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get(&app, &auditor, "/api/v1/app/records/00").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Terminals: waiting records per terminal add up to the total.
        let (_, terms) = get(&app, &auditor, "/api/v1/app/terminals").await;
        let per: BTreeMap<String, u64> = terms["terminals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["terminal_id"].as_str().unwrap().to_owned(),
                    t["held_records"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            per.values().sum::<u64>(),
            terms["held_records"].as_u64().unwrap()
        );
        let heads: u64 = terms["terminals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["chain_head"].as_u64().unwrap())
            .sum();
        assert!(heads > 0, "chain heads are read: {terms}");
    });
    drop(runtime);
    drop(store);
    drop(db);
}

#[test]
fn drilldown_sqlite() {
    drilldown(common::sqlite());
}

#[test]
fn drilldown_postgres() {
    drilldown(common::postgres());
}

/// Patient pages straight from the store: one month (rows as stored) and
/// several months (summed per patient and hospital) agree with sums
/// computed here, in the asked order, under a region prefix, and paging
/// through them yields every patient exactly once.
fn patient_pages(store: &dyn Store) {
    use wuding_server::store::{HospitalMonth, PatientMonth};
    let hospitals = ["H51010100001", "H51010100002", "H52010100003"];
    let mut rows = Vec::new();
    for (m, month) in ["2026-09", "2026-10"].into_iter().enumerate() {
        for p in 0..40u64 {
            // Patients 30.. only in October; some patients at two hospitals.
            if m == 0 && p >= 30 {
                continue;
            }
            for (h, hospital) in hospitals.iter().enumerate() {
                if (p as usize + h).is_multiple_of(3) && h != 0 {
                    continue;
                }
                let money = (p * 7_919 + h as u64 * 104_729 + m as u64 * 1_299_709) % 90_000;
                rows.push(PatientMonth {
                    patient_ref: format!("ref{p:03}"),
                    insured_id: format!("P5101{p:08}"),
                    figures: HospitalMonth {
                        hospital_code: (*hospital).into(),
                        month: month.into(),
                        attested_sessions: (p + h as u64 + m as u64) % 14,
                        claimed_lines: 13,
                        findings_fen: money,
                        ..Default::default()
                    },
                });
            }
        }
    }
    store
        .put_patient_months("2026-09", "2026-10", &rows)
        .unwrap();
    let page = |prefix: &str, from: &str, to: &str, sort: &str, offset: u64, limit: u64| {
        store
            .patient_page(&PatientQuery {
                hospital_prefix: prefix.into(),
                from_month: from.into(),
                to_month: to.into(),
                sort: sort.into(),
                offset,
                limit,
            })
            .unwrap()
    };
    for (prefix, from, to) in [
        ("", "2026-10", "2026-10"),
        ("H51", "2026-10", "2026-10"),
        ("H51010100002", "2026-09", "2026-09"),
        ("", "2026-09", "2026-10"),
        ("H51", "2026-09", "2026-10"),
    ] {
        // Expected: summed per (patient, hospital) here.
        let mut sums: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for r in &rows {
            let f = &r.figures;
            if f.hospital_code.starts_with(prefix)
                && f.month.as_str() >= from
                && f.month.as_str() <= to
            {
                let e = sums
                    .entry((r.patient_ref.clone(), f.hospital_code.clone()))
                    .or_default();
                e.0 += f.findings_fen;
                e.1 += f.attested_sessions;
            }
        }
        for sort in ["amount", "attested"] {
            let (all, total) = page(prefix, from, to, sort, 0, 1_000);
            assert_eq!(total as usize, sums.len(), "{prefix} {from}..{to}");
            assert_eq!(all.len(), sums.len());
            let key =
                |(money, attested): (u64, u64)| if sort == "amount" { money } else { attested };
            let mut expected: Vec<_> = sums.iter().collect();
            expected.sort_by(|a, b| key(*b.1).cmp(&key(*a.1)).then(a.0.cmp(b.0)));
            let got: Vec<_> = all
                .iter()
                .map(|p| {
                    assert_eq!(
                        p.figures.month,
                        if from == to { from } else { "" },
                        "{prefix} {from}..{to}"
                    );
                    (
                        (p.patient_ref.clone(), p.figures.hospital_code.clone()),
                        (p.figures.findings_fen, p.figures.attested_sessions),
                    )
                })
                .collect();
            let want: Vec<_> = expected.into_iter().map(|(k, v)| (k.clone(), *v)).collect();
            assert_eq!(got, want, "{prefix} {from}..{to} by {sort}");
            // Pages of 7 put back together are the same list.
            let mut paged = Vec::new();
            for offset in (0..total).step_by(7) {
                let (p, t) = page(prefix, from, to, sort, offset, 7);
                assert_eq!(t, total);
                paged.extend(p);
            }
            assert_eq!(paged, all, "{prefix} {from}..{to} paged by {sort}");
        }
    }
}

both_backends!(patient_pages_agree_with_sums, patient_pages);

/// A second run over a month replaces that month's patient rows: unchanged
/// rows stay, changed rows take the new figures, new rows appear, rows the
/// run no longer produced go, and other months are untouched.
fn patient_months_rerun(store: &dyn Store) {
    use wuding_server::store::{HospitalMonth, PatientMonth, PatientQuery};
    let row = |p: u64, hospital: &str, month: &str, fen: u64| PatientMonth {
        patient_ref: format!("ref{p:03}"),
        insured_id: format!("P5101{p:08}"),
        figures: HospitalMonth {
            hospital_code: hospital.into(),
            month: month.into(),
            attested_sessions: 12,
            claimed_lines: 13,
            red: u64::from(fen > 0),
            findings_fen: fen,
            ..Default::default()
        },
    };
    let month_rows = |month: &str| {
        let (mut rows, _) = store
            .patient_page(&PatientQuery {
                hospital_prefix: String::new(),
                from_month: month.into(),
                to_month: month.into(),
                sort: "amount".into(),
                offset: 0,
                limit: 1_000,
            })
            .unwrap();
        rows.sort_by(|a, b| {
            (&a.figures.hospital_code, &a.insured_id)
                .cmp(&(&b.figures.hospital_code, &b.insured_id))
        });
        rows
    };
    let september: Vec<_> = (0..5)
        .map(|p| row(p, "H51010100001", "2026-09", p * 100))
        .collect();
    let first: Vec<_> = (0..6)
        .map(|p| row(p, "H51010100001", "2026-10", p * 10))
        .collect();
    store
        .put_patient_months("2026-09", "2026-09", &september)
        .unwrap();
    store
        .put_patient_months("2026-10", "2026-10", &first)
        .unwrap();
    assert_eq!(month_rows("2026-10"), first);
    // Patients 0 and 1 unchanged, 2 changed, 3 moved hospital, 4 and 5
    // gone, 6 new.
    let second = vec![
        row(0, "H51010100001", "2026-10", 0),
        row(1, "H51010100001", "2026-10", 10),
        row(2, "H51010100001", "2026-10", 999),
        row(6, "H51010100001", "2026-10", 60),
        row(3, "H51010100002", "2026-10", 30),
    ];
    store
        .put_patient_months("2026-10", "2026-10", &second)
        .unwrap();
    assert_eq!(month_rows("2026-10"), second);
    assert_eq!(month_rows("2026-09"), september);
    // The same rows again change nothing.
    store
        .put_patient_months("2026-10", "2026-10", &second)
        .unwrap();
    assert_eq!(month_rows("2026-10"), second);
    // An empty run empties the month.
    store.put_patient_months("2026-10", "2026-10", &[]).unwrap();
    assert!(month_rows("2026-10").is_empty());
    assert_eq!(month_rows("2026-09"), september);
}

both_backends!(patient_months_follow_a_rerun, patient_months_rerun);
