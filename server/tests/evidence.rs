//! Evidence bundles on both backends: a generated month loaded and
//! reconciled, a bundle built for a red finding with signed records,
//! verified offline (every check ok), then tampered in each way a forger
//! could try, each caught with its own reason. The commands `evidence`,
//! `verify-bundle` and `findings --format xlsx` run as the built binary.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use wuding_protocol::TerminalSigner;
use wuding_server::evidence::{self, Manifest, VerifyReport};
use wuding_server::ingest::Log;
use wuding_server::store::{FindingFilter, FindingRow, Store, sqlite::SqliteStore};
use wuding_server::{export, month, reconcile};

const LOG_SEED: [u8; 32] = [7; 32];

fn month_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| common::generated_month(60, 20_261_106, 0.2))
        .path()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Loads and reconciles the month; returns the log.
fn load(store: &dyn Store) -> Log {
    let log = Log::new(TerminalSigner::from_seed(&LOG_SEED));
    month::load_dir(store, &log, month_dir(), &now_ms).unwrap();
    let rules = reconcile::load_rules(None).unwrap();
    let period = reconcile::period("2026-10-01", "2026-10-31").unwrap();
    reconcile::run(store, &rules, period, now_ms(), false).unwrap();
    log
}

/// A red finding resting on signed records and claim lines.
fn red_finding(store: &dyn Store) -> FindingRow {
    let all = store.findings(&FindingFilter::default()).unwrap();
    all.iter()
        .find(|f| f.severity == "red" && !f.record_ids.is_empty() && !f.claim_ids.is_empty())
        .or_else(|| {
            all.iter()
                .find(|f| f.severity == "red" && !f.record_ids.is_empty())
        })
        .cloned()
        .expect("the month has a red finding with signed records")
}

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.insert(f.name().unwrap().to_string(), data);
    }
    out
}

fn rezip(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn manifest(files: &BTreeMap<String, Vec<u8>>) -> Manifest {
    serde_json::from_slice(&files["manifest.json"]).unwrap()
}

fn with_manifest(files: &BTreeMap<String, Vec<u8>>, edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let mut m = manifest(files);
    edit(&mut m);
    let mut files = files.clone();
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec_pretty(&m).unwrap(),
    );
    rezip(&files)
}

/// Verifies and asserts exactly the failures expected: each `(what, why)`
/// pair is a substring of one failed check's subject and reason.
fn expect_failures(bytes: &[u8], expected: &[(&str, &str)], case: &str) -> VerifyReport {
    let report = evidence::verify_bundle(bytes).unwrap();
    let failures: Vec<_> = report.failures().collect();
    assert!(
        !failures.is_empty(),
        "{case}: nothing failed\n{}",
        report.render()
    );
    for (what, why) in expected {
        assert!(
            failures
                .iter()
                .any(|c| c.what.contains(what) && c.failure.as_deref().unwrap_or("").contains(why)),
            "{case}: no failure `{what}`: `{why}`\n{}",
            report.render()
        );
    }
    report
}

fn bundle_verifies_and_every_tamper_is_caught(store: &dyn Store) {
    let log = load(store);
    let finding = red_finding(store);
    let bytes = evidence::bundle_for_findings(
        store,
        &log,
        std::slice::from_ref(&finding.id),
        "auditor-1",
        now_ms(),
    )
    .unwrap();
    let report = evidence::verify_bundle(&bytes).unwrap();
    assert!(report.passed(), "{}", report.render());
    // checkpoint + 4 per record + 1 per finding.
    assert_eq!(report.checks.len(), 1 + 4 * finding.record_ids.len() + 1);

    let files = unzip(&bytes);
    let m = manifest(&files);
    assert_eq!(m.findings, vec![finding.clone()]);
    assert_eq!(m.created_by, "auditor-1");
    assert_eq!(m.records.len(), finding.record_ids.len());
    assert_eq!(
        m.claims
            .iter()
            .map(|c| c.claim_id.clone())
            .collect::<Vec<_>>(),
        finding.claim_ids
    );
    assert_eq!(
        m.log_public_key,
        TerminalSigner::from_seed(&LOG_SEED).public_key().to_hex()
    );
    let first = m.records[0].clone();
    let (row, index) = store
        .record(&wuding_protocol::RecordId(
            wuding_protocol::ids::parse_lower_hex(&first.record_id).unwrap(),
        ))
        .unwrap()
        .unwrap();
    assert_eq!(
        files[&format!("records/{}.payload", first.record_id)],
        row.payload
    );
    assert_eq!(
        files[&format!("records/{}.sig", first.record_id)],
        row.signature
    );
    assert_eq!(first.log_index, index);

    // The summary: bilingual, money, insured ids masked.
    let summary = String::from_utf8(files["summary.txt"].clone()).unwrap();
    assert!(summary.contains("涉及金额 Money at stake"), "{summary}");
    assert!(summary.contains("verify-bundle"));
    assert!(summary.contains(&wuding_protocol::format_yuan(finding.amount_fen)));
    let insured = finding.insured_id.clone().expect("a patient finding");
    assert!(
        !summary.contains(&insured),
        "insured id unmasked:\n{summary}"
    );
    assert!(summary.contains(&wuding_server::casework::mask_id(&insured)));

    let short = &first.record_id[..12];

    // A flipped payload byte, in the raw file.
    let mut t = files.clone();
    t.get_mut(&format!("records/{}.payload", first.record_id))
        .unwrap()[10] ^= 1;
    expect_failures(
        &rezip(&t),
        &[(short, "payload differs from manifest.json")],
        "raw payload",
    );

    // A flipped payload byte, in the manifest (raw file left alone).
    let tampered = with_manifest(&files, |m| {
        let mut p = BASE64.decode(&m.records[0].payload).unwrap();
        p[10] ^= 1;
        m.records[0].payload = BASE64.encode(p);
    });
    expect_failures(
        &tampered,
        &[
            (short, "the payload hashes to"),
            (short, "does not verify under terminal"),
            (short, "payload differs from manifest.json"),
        ],
        "manifest payload",
    );

    // A signature swapped for another (valid) signature of the same terminal.
    let other_sig = BASE64.encode(
        store
            .records_of(&first.terminal_id)
            .unwrap()
            .into_iter()
            .find(|r| r.record_id.to_hex() != first.record_id)
            .expect("the terminal signed other records")
            .signature,
    );
    let mut t = files.clone();
    t.insert(
        format!("records/{}.sig", first.record_id),
        BASE64.decode(&other_sig).unwrap(),
    );
    let swapped = {
        let mut m = manifest(&t);
        m.records[0].signature = other_sig;
        t.insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
        rezip(&t)
    };
    expect_failures(
        &swapped,
        &[(short, "does not verify under terminal")],
        "swapped signature",
    );

    // An altered inclusion proof, or a moved log index.
    let tampered = with_manifest(&files, |m| {
        let h = &mut m.records[0].inclusion_proof[0];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
    });
    expect_failures(
        &tampered,
        &[(
            short,
            "the inclusion proof does not lead to the checkpoint root",
        )],
        "proof",
    );
    let tampered = with_manifest(&files, |m| m.records[0].log_index += 1);
    expect_failures(
        &tampered,
        &[(
            short,
            "the inclusion proof does not lead to the checkpoint root",
        )],
        "log index",
    );

    // An altered checkpoint: a grown size, a root from elsewhere, a key
    // that is not the log's.
    let tampered = with_manifest(&files, |m| m.checkpoint.size += 1);
    expect_failures(
        &tampered,
        &[("checkpoint", "signature does not verify under the log key")],
        "checkpoint size",
    );
    let forger = TerminalSigner::from_seed(&[9; 32]);
    let tampered = with_manifest(&files, |m| m.log_public_key = forger.public_key().to_hex());
    expect_failures(
        &tampered,
        &[("checkpoint", "signature does not verify under the log key")],
        "log key",
    );

    // A record removed (from the manifest and its files).
    let mut t = files.clone();
    t.remove(&format!("records/{}.payload", first.record_id));
    t.remove(&format!("records/{}.sig", first.record_id));
    let mut m2 = manifest(&t);
    m2.records.remove(0);
    t.insert("manifest.json".into(), serde_json::to_vec(&m2).unwrap());
    expect_failures(
        &rezip(&t),
        &[(&finding.id, "records not in the bundle")],
        "removed record",
    );
    // Its raw files only.
    let mut t = files.clone();
    t.remove(&format!("records/{}.payload", first.record_id));
    expect_failures(
        &rezip(&t),
        &[(short, ".payload is missing")],
        "removed file",
    );

    // A claim line removed.
    if !finding.claim_ids.is_empty() {
        let tampered = with_manifest(&files, |m| {
            m.claims.remove(0);
        });
        expect_failures(
            &tampered,
            &[(&finding.id, "claim lines not in the bundle")],
            "removed claim",
        );
    }

    // The terminal's key replaced by another.
    let tampered = with_manifest(&files, |m| {
        let t = m
            .terminals
            .iter_mut()
            .find(|t| t.terminal_id == first.terminal_id)
            .unwrap();
        t.public_key = forger.public_key().to_hex();
    });
    expect_failures(
        &tampered,
        &[(short, "does not verify under terminal")],
        "terminal key",
    );

    // Not a bundle at all: an error, not a report.
    assert!(evidence::verify_bundle(b"not a zip").is_err());
    let mut t = files.clone();
    t.remove("manifest.json");
    assert!(evidence::verify_bundle(&rezip(&t)).is_err());

    // An unknown finding is refused by name.
    let err =
        evidence::bundle_for_findings(store, &log, &["0".repeat(32)], "a", now_ms()).unwrap_err();
    assert!(err.to_string().contains(&"0".repeat(32)), "{err}");
}

both_backends!(
    bundle_verifies_and_tampering_fails,
    bundle_verifies_and_every_tamper_is_caught
);

/// A case: several findings of one patient in one bundle.
fn case_bundle_carries_every_finding(store: &dyn Store) {
    let log = load(store);
    let red = red_finding(store);
    let ids: Vec<String> = store
        .findings(&FindingFilter::default())
        .unwrap()
        .into_iter()
        .filter(|f| f.insured_id == red.insured_id)
        .map(|f| f.id)
        .collect();
    let bytes = evidence::bundle_for_findings(store, &log, &ids, "auditor-2", now_ms()).unwrap();
    let report = evidence::verify_bundle(&bytes).unwrap();
    assert!(report.passed(), "{}", report.render());
    let m = manifest(&unzip(&bytes));
    assert_eq!(m.findings.len(), ids.len());
    for f in &m.findings {
        for r in &f.record_ids {
            assert!(
                m.records.iter().any(|b| &b.record_id == r) || m.records_not_in_log.contains(r)
            );
        }
    }
}

both_backends!(case_bundle, case_bundle_carries_every_finding);

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wuding-server"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn commands_write_verify_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let key = dir.path().join("log.key");
    std::fs::write(&key, hex::encode(LOG_SEED)).unwrap();
    let (finding, count) = {
        let store = SqliteStore::open(&db).unwrap();
        load(&store);
        let n = store.findings(&FindingFilter::default()).unwrap().len();
        (red_finding(&store), n)
    };
    let db = db.to_str().unwrap();
    let out = dir.path().join("case.zip");
    let o = run(&[
        "evidence",
        "--finding",
        &finding.id,
        "--out",
        out.to_str().unwrap(),
        "--db",
        db,
        "--log-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = run(&["verify-bundle", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        1 + 4 * finding.record_ids.len() + 1,
        "{stdout}"
    );

    // One flipped byte in a raw payload: FAILED, non-zero exit.
    let mut files = unzip(&std::fs::read(&out).unwrap());
    let name = files
        .keys()
        .find(|k| k.ends_with(".payload"))
        .unwrap()
        .clone();
    files.get_mut(&name).unwrap()[5] ^= 0x20;
    let bad = dir.path().join("bad.zip");
    std::fs::write(&bad, rezip(&files)).unwrap();
    let o = run(&["verify-bundle", bad.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: record"), "{stdout}");

    // Not a bundle: a clear error, non-zero exit.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"junk").unwrap();
    let o = run(&["verify-bundle", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("junk.zip"));

    // XLSX: one sheet, the bilingual header and one row per finding.
    let xlsx = dir.path().join("findings.xlsx");
    let o = run(&[
        "findings",
        "--format",
        "xlsx",
        "--out",
        xlsx.to_str().unwrap(),
        "--db",
        db,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = unzip(&std::fs::read(&xlsx).unwrap());
    let sheet = String::from_utf8(files["xl/worksheets/sheet1.xml"].clone()).unwrap();
    let strings = String::from_utf8(files["xl/sharedStrings.xml"].clone()).unwrap();
    for title in export::XLSX_HEADER {
        assert!(strings.contains(title), "header {title} missing");
    }
    assert_eq!(sheet.matches("<row ").count(), count + 1);
    assert!(sheet.contains("<autoFilter"), "no autofilter");
    assert!(sheet.contains("state=\"frozen\""), "header not frozen");
    assert!(strings.contains(&finding.id));
    // xlsx without --out is refused.
    let o = run(&["findings", "--format", "xlsx", "--db", db]);
    assert!(!o.status.success());

    // CSV still the same layout.
    let o = run(&["findings", "--db", db]);
    let csv = String::from_utf8(o.stdout).unwrap();
    assert_eq!(csv.lines().next().unwrap(), export::CSV_HEADER.join(","));
    assert_eq!(csv.lines().count(), count + 1);
}
