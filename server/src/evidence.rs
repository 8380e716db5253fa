//! Evidence bundles: one ZIP file per finding or per case (several
//! findings) that an auditor, a hospital or a court can check offline with
//! nothing but `wuding-server verify-bundle`.
//!
//! Layout of a bundle:
//! - `manifest.json`: format version, the findings as stored, the claim
//!   lines they rest on, every record (id, terminal, seq, log index, base64
//!   payload and signature, inclusion proof), the terminals' keys and
//!   registry states, one signed checkpoint and the log's public key.
//! - `summary.txt`: what was found, the money at stake, what each record
//!   attests and how to verify, in Chinese and English, patient
//!   identifiers masked.
//! - `records/<id>.payload`, `records/<id>.sig`: the original signed bytes
//!   and the 64-byte Ed25519 signature.
//!
//! Verification reuses the protocol's own checks ([`Envelope::verify`],
//! [`Checkpoint::verify`], [`verify_inclusion`]): one concept, one place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Cursor, Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wuding_protocol::transparency::{Checkpoint, Hash, leaf_hash, verify_inclusion};
use wuding_protocol::{
    ClaimLine, Envelope, IdentityEvidence, Record, RecordId, RecordType, TerminalKey, format_yuan,
};

use crate::casework::mask_id;
use crate::ingest::Log;
use crate::store::{FindingRow, Store, StoreError, TerminalRow};

/// The format tag in `manifest.json`.
pub const BUNDLE_FORMAT: &str = "wuding-evidence/v1";

/// Largest file inside a bundle that the verifier reads (a guard against
/// ZIP bombs; real manifests are a few hundred kilobytes).
const MAX_ENTRY_BYTES: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("finding {0} is not stored")]
    UnknownFinding(String),
    #[error("no finding given")]
    NoFindings,
    #[error("finding {finding} names claim line {claim}, which is not stored")]
    MissingClaim { finding: String, claim: String },
    #[error("record {record}: {why}")]
    BadRecord { record: String, why: String },
    #[error("not an evidence bundle: {0}")]
    NotABundle(String),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    pub created_at_ms: i64,
    /// The user (or `cli:<login>`) who made the bundle.
    pub created_by: String,
    /// The findings as stored.
    pub findings: Vec<FindingRow>,
    /// Every claim line a finding names.
    pub claims: Vec<ClaimLine>,
    /// Every record a finding names that is in the log.
    pub records: Vec<BundledRecord>,
    /// Records a finding names that the log does not hold (refused at
    /// ingest): nothing to verify, listed so nothing is silently dropped.
    pub records_not_in_log: Vec<String>,
    /// The terminals that signed the records, as the registry has them.
    pub terminals: Vec<BundledTerminal>,
    /// The signed checkpoint every inclusion proof leads to.
    pub checkpoint: Checkpoint,
    /// The log's Ed25519 public key, 64 hex digits.
    pub log_public_key: String,
}

/// One signed record in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledRecord {
    /// SHA-256 of the payload, 64 hex digits.
    pub record_id: String,
    /// `session` or `enrolment`: selects the signing context.
    pub record_type: String,
    pub terminal_id: String,
    pub seq: u64,
    pub key_id: String,
    pub log_index: u64,
    pub received_at_ms: i64,
    /// The original payload bytes, base64.
    pub payload: String,
    /// The Ed25519 signature, base64 of 64 bytes.
    pub signature: String,
    /// Sibling hashes (hex) from the leaf to the checkpoint's root.
    pub inclusion_proof: Vec<String>,
}

/// A terminal as the registry has it when the bundle is made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledTerminal {
    pub terminal_id: String,
    pub hospital_code: String,
    pub department_code: String,
    /// Ed25519 public key, 64 hex digits.
    pub public_key: String,
    pub key_id: String,
    pub status: String,
    pub requested_at_ms: i64,
    pub approved_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub revoked_at_seq: Option<u64>,
}

impl From<&TerminalRow> for BundledTerminal {
    fn from(t: &TerminalRow) -> BundledTerminal {
        BundledTerminal {
            terminal_id: t.terminal_id.clone(),
            hospital_code: t.hospital_code.clone(),
            department_code: t.department_code.clone(),
            public_key: hex::encode(t.public_key),
            key_id: t.key_id.clone(),
            status: t.status.clone(),
            requested_at_ms: t.requested_at_ms,
            approved_at_ms: t.approved_at_ms,
            revoked_at_ms: t.revoked_at_ms,
            revoked_at_seq: t.revoked_at_seq,
        }
    }
}

/// Builds the bundle for stored findings (one finding, or a case: e.g. all
/// findings of one patient-month) as ZIP bytes. Syncs `log` with the store
/// first; every inclusion proof leads to one checkpoint signed now.
pub fn bundle_for_findings(
    store: &dyn Store,
    log: &Log,
    finding_ids: &[String],
    created_by: &str,
    now_ms: i64,
) -> Result<Vec<u8>, EvidenceError> {
    let mut findings = Vec::new();
    let mut seen = BTreeSet::new();
    for id in finding_ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        findings.push(
            store
                .finding(id)?
                .ok_or_else(|| EvidenceError::UnknownFinding(id.clone()))?,
        );
    }
    let manifest = build_manifest(store, log, findings, created_by, now_ms)?;
    write_bundle(&manifest)
}

/// The manifest for findings already read from the store.
pub fn build_manifest(
    store: &dyn Store,
    log: &Log,
    findings: Vec<FindingRow>,
    created_by: &str,
    now_ms: i64,
) -> Result<Manifest, EvidenceError> {
    if findings.is_empty() {
        return Err(EvidenceError::NoFindings);
    }
    log.sync(store)?;

    // Records, in the order the findings name them.
    let mut record_ids: Vec<String> = Vec::new();
    for f in &findings {
        for r in &f.record_ids {
            if !record_ids.contains(r) {
                record_ids.push(r.clone());
            }
        }
    }
    let mut rows = Vec::new();
    let mut not_in_log = Vec::new();
    for hex_id in &record_ids {
        let id = parse_record_id(hex_id).ok_or_else(|| EvidenceError::BadRecord {
            record: hex_id.clone(),
            why: "not 64 lowercase hex digits".into(),
        })?;
        match store.record(&id)? {
            Some((row, index)) => rows.push((row, index)),
            None => not_in_log.push(hex_id.clone()),
        }
    }
    let receipts = log.receipts(
        &rows
            .iter()
            .map(|(r, i)| (r.record_id, *i))
            .collect::<Vec<_>>(),
        now_ms,
    );
    let checkpoint = receipts
        .first()
        .map(|r| r.checkpoint.clone())
        .unwrap_or_else(|| log.checkpoint(now_ms));

    let mut terminals: BTreeMap<String, BundledTerminal> = BTreeMap::new();
    let mut records = Vec::new();
    for ((row, index), receipt) in rows.iter().zip(&receipts) {
        if !terminals.contains_key(&row.terminal_id) {
            let t = store
                .terminal(&row.terminal_id)?
                .ok_or_else(|| EvidenceError::BadRecord {
                    record: row.record_id.to_hex(),
                    why: format!("terminal {} is not in the registry", row.terminal_id),
                })?;
            terminals.insert(row.terminal_id.clone(), BundledTerminal::from(&t));
        }
        records.push(BundledRecord {
            record_id: row.record_id.to_hex(),
            record_type: row.record_type.clone(),
            terminal_id: row.terminal_id.clone(),
            seq: row.seq,
            key_id: row.key_id.clone(),
            log_index: *index,
            received_at_ms: row.received_at_ms,
            payload: BASE64.encode(&row.payload),
            signature: BASE64.encode(row.signature),
            inclusion_proof: receipt.inclusion_proof.clone(),
        });
    }

    // Claim lines: looked up on the days of the findings and records
    // first (one day of a national month is small), then around them.
    let wanted: BTreeSet<&str> = findings
        .iter()
        .flat_map(|f| f.claim_ids.iter().map(String::as_str))
        .collect();
    let mut claims = Vec::new();
    if !wanted.is_empty() {
        let dates: BTreeSet<&str> = findings
            .iter()
            .filter_map(|f| f.service_date.as_deref())
            .chain(rows.iter().map(|(r, _)| r.service_date.as_str()))
            .collect();
        let mut found: BTreeMap<String, ClaimLine> = BTreeMap::new();
        let take = |found: &mut BTreeMap<String, ClaimLine>, lines: Vec<ClaimLine>| {
            for c in lines {
                if wanted.contains(c.claim_id.as_str()) {
                    found.insert(c.claim_id.as_str().to_owned(), c);
                }
            }
        };
        for d in &dates {
            take(&mut found, store.claims_between(d, d)?);
        }
        if found.len() < wanted.len() {
            let (from, to) = match (dates.first(), dates.last()) {
                (Some(a), Some(b)) => (shift_date(a, -31), shift_date(b, 31)),
                _ => ("0001-01-01".to_owned(), "9999-12-31".to_owned()),
            };
            take(&mut found, store.claims_between(&from, &to)?);
        }
        for f in &findings {
            for c in &f.claim_ids {
                match found.remove(c) {
                    Some(line) => claims.push(line),
                    None if claims.iter().any(|l: &ClaimLine| l.claim_id == *c) => {}
                    None => {
                        return Err(EvidenceError::MissingClaim {
                            finding: f.id.clone(),
                            claim: c.clone(),
                        });
                    }
                }
            }
        }
    }

    Ok(Manifest {
        format: BUNDLE_FORMAT.into(),
        created_at_ms: now_ms,
        created_by: created_by.into(),
        findings,
        claims,
        records,
        records_not_in_log: not_in_log,
        terminals: terminals.into_values().collect(),
        checkpoint,
        log_public_key: log.public_key().to_hex(),
    })
}

/// Writes a manifest, its summary and the raw record files as ZIP bytes.
pub fn write_bundle(manifest: &Manifest) -> Result<Vec<u8>, EvidenceError> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("manifest.json", options)?;
    zip.write_all(
        serde_json::to_string_pretty(manifest)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .as_bytes(),
    )?;
    zip.start_file("summary.txt", options)?;
    zip.write_all(summary(manifest).as_bytes())?;
    for r in &manifest.records {
        let payload = BASE64.decode(&r.payload).unwrap_or_default();
        let signature = BASE64.decode(&r.signature).unwrap_or_default();
        zip.start_file(format!("records/{}.payload", r.record_id), options)?;
        zip.write_all(&payload)?;
        zip.start_file(format!("records/{}.sig", r.record_id), options)?;
        zip.write_all(&signature)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// One check of a bundle and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`record 1a2b3c4d…: signature`).
    pub what: String,
    /// `None` when it passed; otherwise why it failed.
    pub failure: Option<String>,
}

/// The outcome of [`verify_bundle`]: every check, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub checks: Vec<Check>,
    /// Facts printed for the reader that are neither ok nor failed (records
    /// named by a finding that the log does not hold).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failure.is_some())
    }

    fn check(&mut self, what: impl Into<String>, failure: Option<String>) {
        self.checks.push(Check {
            what: what.into(),
            failure,
        });
    }

    /// One line per check: `ok: WHAT` or `FAILED: WHAT: WHY`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            match &c.failure {
                None => writeln!(out, "ok: {}", c.what),
                Some(why) => writeln!(out, "FAILED: {}: {why}", c.what),
            }
            .expect("writing to a String");
        }
        for n in &self.notes {
            writeln!(out, "note: {n}").expect("writing to a String");
        }
        out
    }
}

fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<Vec<u8>>, EvidenceError> {
    let entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    entry.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_ENTRY_BYTES {
        return Err(EvidenceError::NotABundle(format!(
            "{name} is larger than {MAX_ENTRY_BYTES} bytes"
        )));
    }
    Ok(Some(out))
}

/// Verifies a bundle offline, from its bytes alone (no store, no network):
/// every record's id is the SHA-256 of its payload, its signature verifies
/// under the bundled terminal key and its raw files match the manifest;
/// every inclusion proof leads to the checkpoint's root; the checkpoint's
/// signature verifies under the bundled log key; every record and claim
/// line a finding names is in the bundle. An unreadable file is an error;
/// a check that fails is a `FAILED` line in the report.
pub fn verify_bundle(bytes: &[u8]) -> Result<VerifyReport, EvidenceError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))?;
    let manifest_bytes = read_entry(&mut zip, "manifest.json")?
        .ok_or_else(|| EvidenceError::NotABundle("no manifest.json".into()))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| EvidenceError::NotABundle(format!("manifest.json: {e}")))?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(EvidenceError::NotABundle(format!(
            "format `{}`, this program reads {BUNDLE_FORMAT}",
            manifest.format
        )));
    }
    let mut report = VerifyReport::default();

    // The checkpoint under the log key.
    let log_key = TerminalKey::from_hex(&manifest.log_public_key);
    let cp = &manifest.checkpoint;
    let root = cp.root_hash();
    report.check(
        format!(
            "checkpoint: size {}, root {}, signed by the log key {}",
            cp.size,
            short(&cp.root),
            short(&manifest.log_public_key)
        ),
        match &log_key {
            Err(e) => Some(format!("the log public key is unusable: {e}")),
            Ok(k) if !cp.verify(k) => {
                Some("the checkpoint signature does not verify under the log key".into())
            }
            Ok(_) => None,
        },
    );

    let terminals: BTreeMap<&str, &BundledTerminal> = manifest
        .terminals
        .iter()
        .map(|t| (t.terminal_id.as_str(), t))
        .collect();
    for r in &manifest.records {
        verify_record(&mut zip, r, &terminals, cp, root.as_ref(), &mut report)?;
    }

    // Every finding's evidence is present.
    let claims: BTreeSet<&str> = manifest
        .claims
        .iter()
        .map(|c| c.claim_id.as_str())
        .collect();
    let bundled: BTreeSet<&str> = manifest
        .records
        .iter()
        .map(|r| r.record_id.as_str())
        .collect();
    let not_in_log: BTreeSet<&str> = manifest
        .records_not_in_log
        .iter()
        .map(String::as_str)
        .collect();
    for f in &manifest.findings {
        let missing_claims: Vec<&str> = f
            .claim_ids
            .iter()
            .map(String::as_str)
            .filter(|c| !claims.contains(c))
            .collect();
        let missing_records: Vec<&str> = f
            .record_ids
            .iter()
            .map(String::as_str)
            .filter(|r| !bundled.contains(r) && !not_in_log.contains(r))
            .collect();
        let mut why = Vec::new();
        if !missing_claims.is_empty() {
            why.push(format!(
                "claim lines not in the bundle: {}",
                missing_claims.join(", ")
            ));
        }
        if !missing_records.is_empty() {
            why.push(format!(
                "records not in the bundle: {}",
                missing_records
                    .iter()
                    .map(|r| short(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        report.check(
            format!(
                "finding {} ({}): its {} record(s) and {} claim line(s) are in the bundle",
                f.id,
                f.rule_id,
                f.record_ids.len(),
                f.claim_ids.len()
            ),
            (!why.is_empty()).then(|| why.join("; ")),
        );
        for r in f
            .record_ids
            .iter()
            .filter(|r| not_in_log.contains(r.as_str()))
        {
            report.notes.push(format!(
                "finding {}: record {} is not in the transparency log (refused at ingest or never received); nothing to verify",
                f.id,
                short(r)
            ));
        }
    }
    Ok(report)
}

/// Checks one bundled record, adding its checks to the report.
fn verify_record(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    r: &BundledRecord,
    terminals: &BTreeMap<&str, &BundledTerminal>,
    cp: &Checkpoint,
    root: Option<&Hash>,
    report: &mut VerifyReport,
) -> Result<(), EvidenceError> {
    let name = format!("record {}", short(&r.record_id));
    let payload = BASE64.decode(&r.payload).ok();
    let signature: Option<[u8; 64]> = BASE64
        .decode(&r.signature)
        .ok()
        .and_then(|s| s.try_into().ok());
    let id = parse_record_id(&r.record_id);

    // The raw files are the same bytes as the manifest.
    let raw_payload = read_entry(zip, &format!("records/{}.payload", r.record_id))?;
    let raw_sig = read_entry(zip, &format!("records/{}.sig", r.record_id))?;
    let mut why = Vec::new();
    match (&raw_payload, &payload) {
        (None, _) => why.push(format!("records/{}.payload is missing", r.record_id)),
        (Some(raw), Some(p)) if raw != p => why.push(format!(
            "records/{}.payload differs from manifest.json",
            r.record_id
        )),
        _ => {}
    }
    match (&raw_sig, &signature) {
        (None, _) => why.push(format!("records/{}.sig is missing", r.record_id)),
        (Some(raw), Some(s)) if raw.as_slice() != s.as_slice() => why.push(format!(
            "records/{}.sig differs from manifest.json",
            r.record_id
        )),
        _ => {}
    }
    report.check(
        format!("{name}: raw payload and signature files match the manifest"),
        (!why.is_empty()).then(|| why.join("; ")),
    );

    // The id is the hash the protocol defines.
    report.check(
        format!("{name}: id is the SHA-256 of the payload"),
        match (&payload, id) {
            (None, _) => Some("the payload is not base64".into()),
            (_, None) => Some("the record id is not 64 lowercase hex digits".into()),
            (Some(p), Some(id)) if RecordId::of_payload(p) != id => Some(format!(
                "the payload hashes to {}",
                RecordId::of_payload(p).to_hex()
            )),
            _ => None,
        },
    );

    // The signature under the terminal's registered key.
    let terminal = terminals.get(r.terminal_id.as_str());
    let sig_failure = match (
        terminal,
        RecordType::from_code(&r.record_type),
        &payload,
        signature,
    ) {
        (None, ..) => Some(format!("terminal {} is not in the bundle", r.terminal_id)),
        (_, None, ..) => Some(format!("unknown record type `{}`", r.record_type)),
        (_, _, None, _) => Some("the payload is not base64".into()),
        (_, _, _, None) => Some("the signature is not base64 of 64 bytes".into()),
        (Some(t), Some(record_type), Some(p), Some(sig)) => {
            match TerminalKey::from_hex(&t.public_key) {
                Err(e) => Some(format!(
                    "terminal {}'s public key is unusable: {e}",
                    t.terminal_id
                )),
                Ok(key) => {
                    let envelope = Envelope {
                        record_type,
                        key_id: key.id(),
                        payload: p.clone(),
                        signature: sig,
                    };
                    match envelope.verify(&key) {
                        Err(e) => Some(format!(
                            "does not verify under terminal {}'s key {}: {e}",
                            t.terminal_id,
                            short(&key.to_hex())
                        )),
                        Ok(v) => {
                            let (tid, seq) = match &v.record {
                                Record::Session(s) => (s.terminal_id.as_str(), s.seq),
                                Record::Enrolment(e) => (e.terminal_id.as_str(), e.seq),
                            };
                            if tid != r.terminal_id || seq != r.seq {
                                Some(format!(
                                    "the payload says terminal {tid} seq {seq}, the manifest terminal {} seq {}",
                                    r.terminal_id, r.seq
                                ))
                            } else if key.id().to_hex() != r.key_id {
                                Some(format!(
                                    "the manifest names key {}, the terminal's key is {}",
                                    r.key_id,
                                    key.id().to_hex()
                                ))
                            } else if t.revoked_at_seq.is_some_and(|at| seq > at) {
                                Some(format!(
                                    "signed at seq {seq}, after the key was revoked at seq {}",
                                    t.revoked_at_seq.unwrap_or_default()
                                ))
                            } else {
                                None
                            }
                        }
                    }
                }
            }
        }
    };
    report.check(
        format!(
            "{name}: signature by terminal {} (seq {})",
            r.terminal_id, r.seq
        ),
        sig_failure,
    );

    // Inclusion in the log under the checkpoint.
    let proof: Option<Vec<Hash>> = r
        .inclusion_proof
        .iter()
        .map(|h| wuding_protocol::ids::parse_lower_hex(h))
        .collect();
    report.check(
        format!(
            "{name}: included in the log at index {} under the checkpoint (size {})",
            r.log_index, cp.size
        ),
        match (id, proof, root) {
            (None, ..) => Some("the record id is not 64 lowercase hex digits".into()),
            (_, None, _) => Some("the inclusion proof is not a list of 64-hex-digit hashes".into()),
            (_, _, None) => Some("the checkpoint root is not 64 lowercase hex digits".into()),
            (Some(id), Some(proof), Some(root)) => {
                (!verify_inclusion(&leaf_hash(&id), r.log_index, cp.size, &proof, root))
                    .then(|| "the inclusion proof does not lead to the checkpoint root".into())
            }
        },
    );
    Ok(())
}

fn parse_record_id(hex_id: &str) -> Option<RecordId> {
    wuding_protocol::ids::parse_lower_hex(hex_id).map(RecordId)
}

fn short(hex: &str) -> String {
    match hex.get(..12) {
        Some(s) if hex.len() > 12 => format!("{s}…"),
        _ => hex.to_owned(),
    }
}

fn shift_date(date: &str, days: i64) -> String {
    match date.parse::<jiff::civil::Date>() {
        Ok(d) => d
            .checked_add(jiff::Span::new().days(days))
            .map(|d| d.to_string())
            .unwrap_or_else(|_| date.to_owned()),
        Err(_) => date.to_owned(),
    }
}

/// `2026-10-05 08:01 (UTC+08:00)`.
fn local_time(ms: i64, offset_min: i16) -> String {
    let shifted = ms + i64::from(offset_min) * 60_000;
    match jiff::Timestamp::from_millisecond(shifted) {
        Ok(t) => format!(
            "{} (UTC{}{:02}:{:02})",
            t.strftime("%Y-%m-%d %H:%M"),
            if offset_min < 0 { '-' } else { '+' },
            offset_min.unsigned_abs() / 60,
            offset_min.unsigned_abs() % 60
        ),
        Err(_) => format!("{ms} ms"),
    }
}

fn utc_time(ms: i64) -> String {
    local_time(ms, 0)
}

/// Replaces every identifier in `ids` found in `text` by its mask.
fn mask_in(text: &str, ids: &BTreeSet<String>) -> String {
    let mut out = text.to_owned();
    for id in ids {
        if id.len() > 6 {
            out = out.replace(id.as_str(), &mask_id(id));
        }
    }
    out
}

fn identity(e: &IdentityEvidence) -> String {
    match e {
        IdentityEvidence::Fingerprint {
            finger,
            score,
            attempts,
            ..
        } => format!(
            "指纹比对 fingerprint match: {}, score {score}, attempt {attempts}",
            finger.code()
        ),
        IdentityEvidence::Supervised {
            reason,
            nurse_id,
            witness_id,
            attempts,
        } => format!(
            "人工核验 supervised fallback: {}, nurse {nurse_id}, witness {witness_id}, {attempts} fingerprint attempt(s) before",
            reason.code()
        ),
    }
}

/// The human-readable `summary.txt`, Chinese and English, insured ids
/// masked (first four and last two characters).
pub fn summary(m: &Manifest) -> String {
    let mut ids: BTreeSet<String> = BTreeSet::new();
    ids.extend(m.findings.iter().filter_map(|f| f.insured_id.clone()));
    ids.extend(m.claims.iter().map(|c| c.insured_id.as_str().to_owned()));
    let decoded: Vec<(&BundledRecord, Option<Record>)> = m
        .records
        .iter()
        .map(|r| {
            let record = BASE64.decode(&r.payload).ok().and_then(|p| {
                RecordType::from_code(&r.record_type).and_then(|t| Record::decode_as(t, &p).ok())
            });
            (r, record)
        })
        .collect();
    for (_, rec) in &decoded {
        match rec {
            Some(Record::Session(s)) => ids.insert(s.patient.insured_id.clone()),
            Some(Record::Enrolment(e)) => ids.insert(e.patient.insured_id.clone()),
            None => false,
        };
    }
    let total: u64 = m
        .findings
        .iter()
        .map(|f| f.amount_fen)
        .fold(0, u64::saturating_add);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "五定 医保结算核查 证据包 / wuding evidence bundle ({BUNDLE_FORMAT})"
    );
    let _ = writeln!(
        w,
        "生成 Created: {} by {}",
        utc_time(m.created_at_ms),
        m.created_by
    );
    let _ = writeln!(
        w,
        "发现 Findings: {}   涉及金额 Money at stake: ¥{}   签名记录 Signed records: {}   申报明细 Claim lines: {}",
        m.findings.len(),
        format_yuan(total),
        m.records.len(),
        m.claims.len()
    );
    let _ = writeln!(
        w,
        "参保人编号已脱敏 (前4后2位) / Insured ids are masked (first 4 and last 2 characters); manifest.json holds the full data.\n"
    );
    for (i, f) in m.findings.iter().enumerate() {
        let _ = writeln!(w, "== 发现 Finding {}: {}", i + 1, f.id);
        let _ = writeln!(
            w,
            "规则 Rule: {} (规则集 ruleset {})   严重程度 Severity: {}   状态 Status: {}",
            f.rule_id, f.ruleset_version, f.severity, f.status
        );
        let _ = writeln!(
            w,
            "日期 Date: {}   医院 Hospital: {}   参保人 Insured: {}   金额 Amount: ¥{}",
            f.service_date.as_deref().unwrap_or("-"),
            f.hospital_code.as_deref().unwrap_or("-"),
            f.insured_id.as_deref().map(mask_id).unwrap_or("-".into()),
            format_yuan(f.amount_fen)
        );
        let _ = writeln!(w, "说明: {}", mask_in(&f.explanation_zh, &ids));
        let _ = writeln!(w, "Explanation: {}", mask_in(&f.explanation_en, &ids));
        let _ = writeln!(
            w,
            "依据的申报明细 Claim lines: {}",
            if f.claim_ids.is_empty() {
                "-".into()
            } else {
                f.claim_ids.join(", ")
            }
        );
        let _ = writeln!(
            w,
            "依据的签名记录 Records: {}\n",
            if f.record_ids.is_empty() {
                "- (无签名记录 no signed record)".into()
            } else {
                f.record_ids
                    .iter()
                    .map(|r| short(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    if !m.claims.is_empty() {
        let _ = writeln!(w, "== 申报明细 Claim lines");
        for c in &m.claims {
            let _ = writeln!(
                w,
                "{}  {}  医院/科室 {}/{}  医生 doctor {}  {} {}{}  数量 qty {}  ¥{}  参保人 insured {}",
                c.claim_id,
                c.service_date,
                c.hospital_code,
                c.department_code,
                c.doctor_id,
                c.service_kind,
                c.service_code,
                match (&c.drug_code, &c.dose) {
                    (Some(d), Some(dose)) => format!(" drug {d} {dose}"),
                    (Some(d), None) => format!(" drug {d}"),
                    _ => String::new(),
                },
                c.quantity,
                format_yuan(c.amount_fen),
                mask_id(&c.insured_id)
            );
        }
        let _ = writeln!(w);
    }
    if !m.records.is_empty() {
        let _ = writeln!(w, "== 签名记录 Signed records (what each record attests)");
    }
    for (r, rec) in &decoded {
        let _ = writeln!(
            w,
            "记录 Record {} ({})  终端 terminal {} seq {}  日志位置 log index {}  服务器接收 received {}",
            r.record_id,
            r.record_type,
            r.terminal_id,
            r.seq,
            r.log_index,
            utc_time(r.received_at_ms)
        );
        match rec {
            Some(Record::Session(s)) => {
                let _ = writeln!(
                    w,
                    "  医院/科室 Hospital/department: {}/{}  床位 bed {}{}",
                    s.hospital_code,
                    s.department_code,
                    s.bed,
                    s.machine
                        .as_deref()
                        .map(|m| format!("  机器 machine {m}"))
                        .unwrap_or_default()
                );
                let _ = writeln!(
                    w,
                    "  参保人 Insured: {}  医生 doctor {}  护士 nurse {}",
                    mask_id(&s.patient.insured_id),
                    s.doctor_id,
                    s.nurse_id
                );
                let _ = writeln!(
                    w,
                    "  治疗 Treatment: {} {}{}{}",
                    s.treatment.kind,
                    s.treatment.service_code,
                    s.treatment
                        .drug_code
                        .as_deref()
                        .map(|d| format!(" drug {d}"))
                        .unwrap_or_default(),
                    s.treatment
                        .dose
                        .as_ref()
                        .map(|d| format!(" {d}"))
                        .unwrap_or_default()
                );
                let _ = writeln!(
                    w,
                    "  签到 Check-in: {}, {}",
                    local_time(s.check_in.at_ms, s.utc_offset_min),
                    identity(&s.check_in.identity)
                );
                match &s.check_out {
                    Some(out) => {
                        let _ = writeln!(
                            w,
                            "  签退 Check-out: {}, {}",
                            local_time(out.at_ms, s.utc_offset_min),
                            identity(&out.identity)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            w,
                            "  签退 Check-out: 无 none (终端自动关闭 closed by the terminal)"
                        );
                    }
                }
                let _ = writeln!(w, "  收费 Charge: ¥{}", format_yuan(s.charge.total_fen));
            }
            Some(Record::Enrolment(e)) => {
                let _ = writeln!(
                    w,
                    "  指纹登记 Enrolment: {}/{}  参保人 insured {}  手指 finger {}  护士 nurse {}  签名时间 signed {}",
                    e.hospital_code,
                    e.department_code,
                    mask_id(&e.patient.insured_id),
                    e.finger.code(),
                    e.nurse_id,
                    local_time(e.signed_at_ms, e.utc_offset_min)
                );
            }
            None => {
                let _ = writeln!(
                    w,
                    "  (载荷无法解读 the payload cannot be read; verify-bundle will say why)"
                );
            }
        }
        if let Some(t) = m.terminals.iter().find(|t| t.terminal_id == r.terminal_id) {
            let _ = writeln!(
                w,
                "  终端密钥 Terminal key {}: {}{}{}",
                t.key_id,
                t.status,
                t.approved_at_ms
                    .map(|a| format!(", 批准 approved {}", utc_time(a)))
                    .unwrap_or_default(),
                t.revoked_at_ms
                    .map(|a| format!(", 吊销 revoked {}", utc_time(a)))
                    .unwrap_or_default()
            );
        }
    }
    if !m.records_not_in_log.is_empty() {
        let _ = writeln!(
            w,
            "\n不在日志中的记录 Records not in the log (refused at ingest): {}",
            m.records_not_in_log.join(", ")
        );
    }
    let _ = writeln!(
        w,
        "\n== 如何验证 How to verify
离线运行 Run offline:  wuding-server verify-bundle THIS_FILE.zip
它检查 It checks: (1) 每条记录的编号是载荷的 SHA-256 / each record id is the SHA-256 of
records/<id>.payload; (2) 签名 (Ed25519, 上下文 context `wuding/<type>/v1` NUL || payload)
在终端登记的公钥下成立 / the signature in records/<id>.sig verifies under the terminal's
registered public key (manifest.json `terminals`); (3) 包含证明 (RFC 6962) 通向检查点的根 /
each inclusion proof leads from the record's leaf to the checkpoint root; (4) 检查点由日志
公钥签名 / the checkpoint (size {}, root {}) is signed by the log key {};
(5) 每个发现所依据的记录和申报明细都在包中 / every record and claim line a finding names
is in the bundle. 任何一项失败即输出 FAILED 并以非零状态退出 / any failure prints FAILED
and exits non-zero.",
        m.checkpoint.size, m.checkpoint.root, m.log_public_key
    );
    s
}
