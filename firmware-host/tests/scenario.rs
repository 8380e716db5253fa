//! The scenario generator (`docs/data-formats.md`): determinism, genuinely
//! signed records and clean chains except where frauds were injected, every
//! fraud kind present, honest claims backed by attested sessions, exact CSV
//! layouts that the server's roster importer reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use wuding_firmware_host::scenario::{self, FraudKind, Scenario, ScenarioConfig, headers};
use wuding_protocol::{
    ChainDefect, Closure, Dose, Envelope, IdentityEvidence, Record, TerminalKey, TreatmentKind,
    TreatmentPlan, verify_chain,
};

fn config(patients: u32, seed: u64) -> ScenarioConfig {
    let mut cfg = ScenarioConfig::new(patients, 2026, 10);
    cfg.seed = seed;
    cfg
}

fn small() -> &'static Scenario {
    static S: std::sync::OnceLock<Scenario> = std::sync::OnceLock::new();
    S.get_or_init(|| scenario::generate(&config(400, 7)))
}

fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    out
}

const FILES: [&str; 10] = [
    "claims.csv",
    "hospitals.csv",
    "plans.csv",
    "prices.csv",
    "receipts.csv",
    "records.jsonl",
    "roster.csv",
    "staff.csv",
    "terminals.csv",
    "truth.csv",
];

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let mut one_thread = config(150, 3);
    one_thread.threads = 1;
    let mut three_threads = config(150, 3);
    three_threads.threads = 3;
    scenario::generate(&one_thread).write_to(a.path()).unwrap();
    scenario::generate(&three_threads)
        .write_to(b.path())
        .unwrap();
    scenario::generate(&config(150, 4))
        .write_to(c.path())
        .unwrap();
    let (fa, fb, fc) = (read_dir(a.path()), read_dir(b.path()), read_dir(c.path()));
    assert_eq!(fa.keys().map(String::as_str).collect::<Vec<_>>(), FILES);
    for name in FILES {
        assert!(fa[name] == fb[name], "{name} differs for the same seed");
        assert!(
            fa[name] != fc[name] || name == "hospitals.csv",
            "{name} equal for another seed"
        );
    }
}

fn header_of(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines().next().unwrap().to_owned()
}

#[test]
fn csv_headers_are_exactly_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    small().write_to(dir.path()).unwrap();
    let files = read_dir(dir.path());
    let spec: [(&str, &str); 9] = [
        (
            "hospitals.csv",
            "hospital_code,name,level,province_code,city_code,county_code,department_codes",
        ),
        (
            "terminals.csv",
            "terminal_id,hospital_code,department_code,public_key_hex,key_id_hex,approved_at_ms,revoked_at_ms",
        ),
        ("roster.csv", "insured_id,card_uid,name,hospital_code"),
        ("staff.csv", "staff_id,card_uid,name,role,hospital_code,pin"),
        ("prices.csv", "hospital_code,code,unit_price_fen"),
        (
            "plans.csv",
            "plan_id,insured_id,hospital_code,department_code,doctor_ids,kinds,drug_code,max_dose,max_sessions_per_week,valid_from,valid_to",
        ),
        ("receipts.csv", "record_id,terminal_id,seq,received_at_ms"),
        (
            "claims.csv",
            "claim_id,insured_id,hospital_code,department_code,doctor_id,service_date,service_code,service_kind,quantity,amount_fen,drug_code,dose",
        ),
        (
            "truth.csv",
            "fraud_id,kind,rule_id,severity,hospital_code,insured_id,subject,claim_ids,record_ids,note",
        ),
    ];
    let consts = [
        headers::HOSPITALS,
        headers::TERMINALS,
        headers::ROSTER,
        headers::STAFF,
        headers::PRICES,
        headers::PLANS,
        headers::RECEIPTS,
        headers::CLAIMS,
        headers::TRUTH,
    ];
    for ((name, header), cols) in spec.iter().zip(consts) {
        assert_eq!(header_of(&files[*name]), *header, "{name}");
        assert_eq!(cols.join(","), *header, "{name}");
        let text = std::str::from_utf8(&files[*name]).unwrap();
        assert!(!text.contains('\r'), "{name} has CR line ends");
        assert!(text.ends_with('\n'));
        // Sorted by the first column.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let firsts: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
        if *name != "receipts.csv" {
            let mut sorted = firsts.clone();
            sorted.sort();
            assert_eq!(firsts, sorted, "{name} is not sorted by its first column");
        }
    }
}

fn keys(s: &Scenario) -> HashMap<String, (TerminalKey, String, Option<i64>)> {
    s.terminals
        .iter()
        .map(|t| {
            let key = TerminalKey::from_hex(&t.public_key_hex).unwrap();
            assert_eq!(key.id().to_hex(), t.key_id_hex);
            (
                t.key_id_hex.clone(),
                (key, t.terminal_id.clone(), t.revoked_at_ms),
            )
        })
        .collect()
}

fn truth_records(s: &Scenario, kind: &str) -> BTreeSet<String> {
    s.truth
        .iter()
        .filter(|t| t.kind == kind)
        .flat_map(|t| {
            t.record_ids
                .split(';')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn records_verify_except_the_injected_ones() {
    records_verify(small());
}

#[test]
fn other_seeds_and_sizes_keep_their_integrity() {
    for (patients, seed) in [(250, 11), (250, 12), (600, 13), (90, 14)] {
        let s = scenario::generate(&config(patients, seed));
        records_verify(&s);
        chains_clean(&s);
    }
}

fn records_verify(s: &Scenario) {
    let keys = keys(s);
    let mut bad_signature = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    assert_eq!(s.records.len(), s.receipts.len());
    for (env, receipt) in s.records.iter().zip(&s.receipts) {
        let line = env.to_json();
        let env = Envelope::from_json(line.as_bytes()).unwrap();
        let id = env.record_id().to_hex();
        assert_eq!(id, receipt.record_id);
        let Some((key, terminal_id, revoked_at)) = keys.get(&env.key_id.to_hex()) else {
            unknown.insert(id);
            continue;
        };
        match env.verify(key) {
            Ok(v) => {
                v.check_terminal(terminal_id).unwrap();
                assert_eq!(v.record.terminal_id(), receipt.terminal_id);
                assert_eq!(v.record.seq(), receipt.seq);
                if revoked_at.is_some_and(|r| v.record.signed_at_ms() >= r) {
                    revoked.insert(id);
                }
            }
            Err(_) => {
                // Altered after signing: still decodes, signature fails.
                env.decode().unwrap();
                bad_signature.insert(id);
            }
        }
    }
    assert_eq!(bad_signature, truth_records(s, "bad_signature"));
    assert_eq!(unknown, truth_records(s, "unknown_key"));
    assert_eq!(revoked, truth_records(s, "revoked_key"));
    assert!(!bad_signature.is_empty() && !unknown.is_empty() && !revoked.is_empty());
}

#[test]
fn chains_are_clean_except_injected_gaps_and_forks() {
    chains_clean(small());
}

fn chains_clean(s: &Scenario) {
    let mut by_terminal: BTreeMap<String, Vec<(Record, wuding_protocol::RecordId)>> =
        BTreeMap::new();
    let mut order = Vec::new();
    for env in &s.records {
        let v = env.decode().unwrap();
        let t = v.record.terminal_id().to_owned();
        if order.last() != Some(&t) {
            assert!(!by_terminal.contains_key(&t), "terminal {t} not contiguous");
            order.push(t.clone());
        }
        by_terminal.entry(t).or_default().push((v.record, v.id));
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "terminals in id order");
    let gap_subjects: BTreeSet<&str> = s
        .truth
        .iter()
        .filter(|t| t.kind == "chain_gap")
        .map(|t| t.subject.as_str())
        .collect();
    let fork_records = truth_records(s, "chain_fork");
    let tampered = truth_records(s, "bad_signature");
    let (mut gaps, mut forks) = (0, 0);
    for (t, records) in &by_terminal {
        assert_eq!(records[0].0.seq(), 1, "{t} starts at seq 1");
        // Signing times never go backwards (no honest `backdated` alarm);
        // a fork's second record is the exception.
        let mut last_signed = i64::MIN;
        for (r, id) in records {
            if fork_records.contains(&id.to_hex()) {
                continue;
            }
            assert!(
                r.signed_at_ms() >= last_signed,
                "{t} backdated at {}",
                r.seq()
            );
            last_signed = r.signed_at_ms();
        }
        let report = verify_chain(records.iter().map(|(r, id)| r.chain_link(*id)), None);
        for d in &report.defects {
            match d {
                ChainDefect::Gap { from, to } => {
                    assert_eq!(from, to);
                    assert!(gap_subjects.contains(t.as_str()), "unexpected gap on {t}");
                    gaps += 1;
                }
                ChainDefect::Fork { second, .. } => {
                    assert!(
                        fork_records.contains(&second.to_hex()),
                        "unexpected fork on {t}"
                    );
                    forks += 1;
                }
                ChainDefect::BrokenLink {
                    seq, found_prev, ..
                } => {
                    // Only the successor of a tampered record: there is none,
                    // tampered records are last.
                    panic!("broken link on {t} at {seq} ({found_prev:?}); tampered: {tampered:?}");
                }
                other => panic!("{t}: {other}"),
            }
        }
    }
    assert_eq!(gaps, gap_subjects.len());
    assert_eq!(
        forks,
        s.truth.iter().filter(|t| t.kind == "chain_fork").count()
    );
    assert!(gaps > 0 && forks > 0);
}

#[test]
fn every_fraud_kind_appears_with_its_rule() {
    let s = small();
    let counts = s.fraud_counts();
    for (kind, n) in &counts {
        assert!(*n > 0, "no {kind} injected: {counts:?}");
    }
    assert_eq!(counts.len(), FraudKind::ALL.len());
    for (i, t) in s.truth.iter().enumerate() {
        assert_eq!(t.fraud_id, format!("F{:05}", i + 1));
        let k = FraudKind::ALL.iter().find(|k| k.code() == t.kind).unwrap();
        assert_eq!(t.rule_id, k.rule_id());
        assert!(matches!(t.severity, "red" | "yellow" | "green"));
        assert!(!t.claim_ids.is_empty() || !t.record_ids.is_empty(), "{t:?}");
        assert!(!t.note.is_empty());
    }
    let claim_ids: HashSet<&str> = s.claims.iter().map(|c| c.claim_id.as_str()).collect();
    let record_ids: HashSet<&str> = s.receipts.iter().map(|r| r.record_id.as_str()).collect();
    for t in &s.truth {
        for c in t.claim_ids.split(';').filter(|c| !c.is_empty()) {
            assert!(
                claim_ids.contains(c),
                "{} names unknown claim {c}",
                t.fraud_id
            );
        }
        for r in t.record_ids.split(';').filter(|r| !r.is_empty()) {
            assert!(
                record_ids.contains(r),
                "{} names unknown record {r}",
                t.fraud_id
            );
        }
    }
    // The rule ids are the lower-case ids of the data-formats table.
    let rules: BTreeSet<&str> = s.truth.iter().map(|t| t.rule_id).collect();
    for r in &rules {
        assert!(
            r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{r}"
        );
    }
}

#[test]
fn no_fraud_at_rate_zero() {
    let mut cfg = config(120, 5);
    cfg.fraud_rate = 0.0;
    let s = scenario::generate(&cfg);
    assert!(s.truth.is_empty());
    let keys = keys(&s);
    for env in &s.records {
        let (key, _, _) = &keys[&env.key_id.to_hex()];
        env.verify(key).unwrap();
    }
    assert!(s.terminals.iter().all(|t| t.revoked_at_ms.is_none()));
}

struct Attested {
    hospital: String,
    kind: TreatmentKind,
}

#[test]
fn honest_claims_have_an_attested_session_behind_them() {
    let s = small();
    let keys = keys(s);
    let fraud_claims: HashSet<&str> = s
        .truth
        .iter()
        .flat_map(|t| t.claim_ids.split(';'))
        .filter(|c| !c.is_empty())
        .collect();
    // (patient, date) -> attested sessions, from records that verify.
    let mut sessions: HashMap<(String, String), Vec<Attested>> = HashMap::new();
    for env in &s.records {
        let Some((key, _, revoked_at)) = keys.get(&env.key_id.to_hex()) else {
            continue;
        };
        let Ok(v) = env.verify(key) else { continue };
        if revoked_at.is_some_and(|r| v.record.signed_at_ms() >= r) {
            continue;
        }
        if let Record::Session(r) = v.record {
            let local = r.check_in.at_ms + i64::from(r.utc_offset_min) * 60_000;
            let day = local.div_euclid(86_400_000);
            let date = date_of(day);
            sessions
                .entry((r.patient.insured_id.clone(), date))
                .or_default()
                .push(Attested {
                    hospital: r.hospital_code,
                    kind: r.treatment.kind,
                });
        }
    }
    let mut honest = 0;
    for c in &s.claims {
        if fraud_claims.contains(c.claim_id.as_str()) {
            continue;
        }
        honest += 1;
        assert_eq!(c.quantity, 1, "{c:?}");
        let found = sessions
            .get(&(c.insured_id.clone(), c.service_date.clone()))
            .is_some_and(|v| {
                v.iter()
                    .any(|a| a.hospital == c.hospital_code && a.kind.code() == c.service_kind)
            });
        assert!(found, "honest claim without an attested session: {c:?}");
    }
    assert!(honest > s.claims.len() * 9 / 10);
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date_of(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn the_month_looks_like_a_dialysis_month() {
    let s = small();
    let mut per_patient: HashMap<String, usize> = HashMap::new();
    let mut durations = Vec::new();
    let mut fallback = 0usize;
    let mut sessions = 0usize;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut enrolments = 0;
    for env in &s.records {
        match env.decode().unwrap().record {
            Record::Session(r) => {
                sessions += 1;
                *kinds.entry(r.treatment.kind.code()).or_default() += 1;
                if r.treatment.kind == TreatmentKind::HD {
                    *per_patient.entry(r.patient.insured_id.clone()).or_default() += 1;
                    if let Some(d) = r.duration_min() {
                        durations.push(d);
                    }
                }
                if r.closure == Closure::Completed
                    && !matches!(r.check_in.identity, IdentityEvidence::Fingerprint { .. })
                {
                    fallback += 1;
                }
            }
            Record::Enrolment(_) => enrolments += 1,
        }
    }
    durations.sort();
    let median = durations[durations.len() / 2];
    assert!(
        (235..=265).contains(&median),
        "median HD duration {median} min"
    );
    let hd_sessions: usize = per_patient.values().sum();
    let mean = hd_sessions as f64 / per_patient.len() as f64;
    assert!(
        (8.0..=13.5).contains(&mean),
        "HD sessions per patient {mean}"
    );
    assert!(
        fallback * 100 < sessions * 8,
        "fallback share {fallback}/{sessions}"
    );
    assert!(fallback > 0);
    assert!(enrolments > 0);
    for k in ["HD", "HDF", "CHEMO", "RADIO"] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 0, "no {k}: {kinds:?}");
    }
    // Some terminals synced late (honest offline days).
    let late = s
        .records
        .iter()
        .zip(&s.receipts)
        .filter(|(e, r)| {
            r.received_at_ms - e.decode().unwrap().record.signed_at_ms() > 72 * 3_600_000
        })
        .count();
    assert!(late > 0, "no late sync");
    // Hospitals in counties and cities.
    assert!(s.hospitals.iter().any(|h| h.level == "county"));
    assert!(s.hospitals.iter().any(|h| h.level == "city"));
}

#[test]
fn roster_files_parse_as_the_server_reads_them() {
    let s = small();
    let dir = tempfile::tempdir().unwrap();
    s.write_to(dir.path()).unwrap();
    let uid_ok = |u: &str| {
        matches!(u.len(), 8 | 14 | 20) && u.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
    };
    let mut reader = csv::Reader::from_path(dir.path().join("plans.csv")).unwrap();
    let mut plans = 0;
    for row in reader.records() {
        let row = row.unwrap();
        let kinds: Vec<TreatmentKind> = row[5]
            .split(';')
            .map(|k| TreatmentKind::from_code(k).unwrap())
            .collect();
        let plan = TreatmentPlan {
            plan_id: row[0].into(),
            insured_id: row[1].into(),
            hospital_code: row[2].into(),
            department_code: row[3].into(),
            doctor_ids: row[4].split(';').map(str::to_owned).collect(),
            kinds,
            drug_code: (!row[6].is_empty()).then(|| row[6].to_owned()),
            max_dose: (!row[7].is_empty()).then(|| Dose::parse_text(&row[7]).unwrap()),
            max_sessions_per_week: (!row[8].is_empty()).then(|| row[8].parse().unwrap()),
            valid_from: row[9].parse().unwrap(),
            valid_to: row[10].parse().unwrap(),
        };
        plan.validate().unwrap();
        plans += 1;
    }
    assert_eq!(plans, s.plans.len());
    let mut reader = csv::Reader::from_path(dir.path().join("roster.csv")).unwrap();
    let mut ids = HashSet::new();
    let mut uids = HashSet::new();
    for row in reader.records() {
        let row = row.unwrap();
        assert!(uid_ok(&row[1]));
        assert!(row[2].starts_with("患者"));
        assert!(ids.insert(row[0].to_owned()), "duplicate insured id");
        assert!(uids.insert(row[1].to_owned()), "duplicate card");
    }
    let mut reader = csv::Reader::from_path(dir.path().join("staff.csv")).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        assert!(uid_ok(&row[1]));
        assert!(uids.insert(row[1].to_owned()), "duplicate card");
        assert!(matches!(&row[3], "nurse" | "doctor"));
        assert!(row[5].len() == 6 && row[5].bytes().all(|b| b.is_ascii_digit()));
        assert!(row[0].starts_with(&row[4]));
    }
    let mut reader = csv::Reader::from_path(dir.path().join("claims.csv")).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        let line = wuding_protocol::ClaimLine {
            claim_id: row[0].into(),
            insured_id: row[1].into(),
            hospital_code: row[2].into(),
            department_code: row[3].into(),
            doctor_id: row[4].into(),
            service_date: row[5].parse().unwrap(),
            service_code: row[6].into(),
            service_kind: TreatmentKind::from_code(&row[7]).unwrap(),
            quantity: row[8].parse().unwrap(),
            amount_fen: row[9].parse().unwrap(),
            drug_code: (!row[10].is_empty()).then(|| row[10].into()),
            dose: (!row[11].is_empty()).then(|| Dose::parse_text(&row[11]).unwrap()),
        };
        line.validate().unwrap();
        assert!(
            line.claim_id
                .starts_with(&format!("C{}-", line.hospital_code))
        );
    }
    // Every price a record charges is in prices.csv.
    let prices: HashSet<(String, String, u64)> = s
        .prices
        .iter()
        .map(|p| (p.hospital_code.clone(), p.code.to_owned(), p.unit_price_fen))
        .collect();
    for env in s.records.iter().take(2000) {
        if let Record::Session(r) = env.decode().unwrap().record {
            for item in &r.charge.items {
                assert!(prices.contains(&(
                    r.hospital_code.clone(),
                    item.code.clone(),
                    item.unit_price_fen
                )));
            }
        }
    }
}

/// `wuding-sim generate ... | head -1`: the reader goes away before the
/// summary is printed. The month is written all the same and the command
/// ends without an error (it used to panic on the closed pipe).
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("month");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wuding-sim"))
        .args([
            "generate",
            "--patients",
            "40",
            "--month",
            "2026-10",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closing the only read end before anything is written: the summary's
    // write meets a broken pipe.
    drop(child.stdout.take());
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{:?}: {}",
        done.status,
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        done.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let written = read_dir(&out);
    for f in FILES {
        assert!(
            written.get(f).is_some_and(|b| !b.is_empty()),
            "{f} missing or empty"
        );
    }
}
