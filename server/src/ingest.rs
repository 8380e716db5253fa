//! Verified ingest: strict (batch) signature verification, registry rules,
//! per-terminal chain checks, the transparency log, and receipts.
//!
//! Rules, in order, for each uploaded envelope:
//! 1. The key must belong to a registered terminal (`unknown_key`), approved
//!    (`not_approved`).
//! 2. The signature must verify strictly and the payload decode
//!    (`bad_signature`, `malformed`); the record must name that terminal
//!    (`wrong_terminal`) and its hospital (`wrong_hospital`).
//! 3. Revocation has a time: a record signed at or after the key's
//!    revocation is refused (`revoked`); one signed before stays valid, and
//!    if it sits beyond the chain head the server had when revoking, it is
//!    accepted with an `after_revocation` alarm for a person to look at.
//! 4. Chain: the same record again is accepted again with its receipt
//!    (idempotent); another record at a sequence number already taken is an
//!    equivocation (`fork`, refused, alarm kept); a record whose `prev` is
//!    not the head is refused (`broken_link`); a record beyond the next
//!    sequence number is **held** (kept durably, `gap` alarm) until the
//!    missing ones arrive, then enters the log in order. Nothing signed is
//!    dropped.
//! 5. Times: a record dated in the future beyond the skew allowance gets a
//!    `clock_skew` alarm, one dated before its predecessor a `backdated`
//!    alarm, one arriving long after signing a `late_sync` alarm. These are
//!    flags for reconciliation, not refusals: the record is evidence either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use wuding_protocol::transparency::{Checkpoint, MerkleTree, Receipt, leaf_hash};
use wuding_protocol::{
    Envelope, EnvelopeError, Record, RecordId, TerminalKey, TerminalSigner, VerifiedRecord,
    verify_many,
};

use crate::store::{Alarm, RecordRow, Store, StoreError, TerminalRow};

/// Thresholds for time flags.
#[derive(Debug, Clone, Copy)]
pub struct IngestPolicy {
    /// How far a terminal clock may run ahead of the server's.
    pub max_future_skew_ms: i64,
    /// After how long between signing and arrival a record is "late".
    pub late_after_ms: i64,
}

impl Default for IngestPolicy {
    fn default() -> IngestPolicy {
        IngestPolicy {
            max_future_skew_ms: 5 * 60_000,
            late_after_ms: 7 * 86_400_000,
        }
    }
}

/// The verdict on one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        record_id: RecordId,
        log_index: u64,
    },
    Held {
        record_id: RecordId,
        missing_from: u64,
    },
    Rejected {
        record_id: RecordId,
        reason: &'static str,
        detail: String,
    },
}

impl Outcome {
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Held { .. } => "held",
            Outcome::Rejected { reason, .. } => reason,
        }
    }
}

/// The in-memory Merkle tree, kept in step with the store's log, and the
/// log's signing key.
pub struct Log {
    tree: Mutex<MerkleTree>,
    signer: TerminalSigner,
}

impl Log {
    pub fn new(signer: TerminalSigner) -> Log {
        Log {
            tree: Mutex::new(MerkleTree::new()),
            signer,
        }
    }

    pub fn public_key(&self) -> &TerminalKey {
        self.signer.public_key()
    }

    /// Appends what other replicas (or this one) added since the last sync.
    pub fn sync(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let mut tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        for id in store.log_leaves(tree.len())? {
            tree.push(leaf_hash(&id));
        }
        Ok(tree.len())
    }

    pub fn checkpoint(&self, now_ms: i64) -> Checkpoint {
        let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        Checkpoint::sign(&self.signer, tree.len(), &tree.root(), now_ms)
    }

    /// Receipts for log indexes, all under one fresh checkpoint.
    pub fn receipts(&self, items: &[(RecordId, u64)], now_ms: i64) -> Vec<Receipt> {
        let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        let size = tree.len();
        let checkpoint = Checkpoint::sign(&self.signer, size, &tree.root(), now_ms);
        items
            .iter()
            .map(|(id, index)| Receipt {
                record_id: *id,
                log_index: *index,
                inclusion_proof: tree
                    .inclusion_proof(*index, size)
                    .unwrap_or_default()
                    .iter()
                    .map(hex::encode)
                    .collect(),
                checkpoint: checkpoint.clone(),
            })
            .collect()
    }

    pub fn consistency(&self, from: u64, to: u64) -> Option<Vec<String>> {
        let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        tree.consistency_proof(from, to)
            .map(|p| p.iter().map(hex::encode).collect())
    }

    pub fn root_at(&self, size: u64) -> Option<String> {
        let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        tree.root_at(size).map(hex::encode)
    }
}

/// A record that passed signature and registry checks, ready for the chain.
struct Candidate {
    index: usize,
    terminal: TerminalRow,
    verified: VerifiedRecord,
    row: RecordRow,
}

/// Verifies and stores a batch. Returns one outcome per envelope, in order.
pub fn ingest(
    store: &dyn Store,
    log: &Log,
    policy: &IngestPolicy,
    envelopes: &[Envelope],
    now_ms: i64,
) -> Result<Vec<Outcome>, StoreError> {
    ingest_at(
        store,
        log,
        policy,
        envelopes,
        &vec![now_ms; envelopes.len()],
    )
}

/// [`ingest`] with one arrival time per envelope (`received_ms[i]` for
/// `envelopes[i]`): replaying a terminal's upload history, as
/// `import-records --receipts` does. Time flags are measured from each
/// record's own arrival.
pub fn ingest_at(
    store: &dyn Store,
    log: &Log,
    policy: &IngestPolicy,
    envelopes: &[Envelope],
    received_ms: &[i64],
) -> Result<Vec<Outcome>, StoreError> {
    let checked = check(store, envelopes, received_ms)?;
    commit(store, log, policy, checked)
}

/// A batch after the registry and signature checks (the CPU-heavy half of
/// ingest), waiting for the chain checks and the log (the storage half).
pub struct CheckedBatch {
    outcomes: Vec<Option<Outcome>>,
    /// Refusals found while checking, stored with the batch.
    alarms: Vec<Alarm>,
    /// Terminals in id order, records in sequence order: arrival order
    /// within a batch does not matter.
    by_terminal: BTreeMap<String, Vec<Candidate>>,
}

/// Ingests a stream of batches with verification and storage overlapped:
/// the calling thread checks batch N+1 (registry, signatures) while a second
/// thread runs the chain checks and commits batch N. Batches are committed
/// in order, exactly as [`ingest_at`] would, several per transaction when
/// the checks run ahead of the disk (see [`commit_all`]);
/// `done` gets each batch and its outcomes after the batch's commit, so
/// every record it reports accepted or held is durable by then. Stops at the
/// first storage error (later batches are not stored) and returns it.
pub fn ingest_pipelined(
    store: &dyn Store,
    log: &Log,
    policy: &IngestPolicy,
    batches: impl Iterator<Item = (Vec<Envelope>, Vec<i64>)>,
    mut done: impl FnMut(Vec<Envelope>, Vec<Outcome>) + Send,
) -> Result<(), StoreError> {
    // Checked batches wait here while the writer commits; whatever waits
    // when it is free goes into its next transaction (group commit: one
    // durable write for several batches).
    const WAITING: usize = 8;
    let (to_writer, checked) =
        std::sync::mpsc::sync_channel::<(Vec<Envelope>, CheckedBatch)>(WAITING);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), StoreError> {
            while let Ok(first) = checked.recv() {
                let mut group = vec![first];
                while group.len() < WAITING
                    && let Ok(next) = checked.try_recv()
                {
                    group.push(next);
                }
                let (envelopes, batches): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                let outcomes = commit_all(store, log, policy, batches)?;
                for (envelopes, outcomes) in envelopes.into_iter().zip(outcomes) {
                    done(envelopes, outcomes);
                }
            }
            Ok(())
        });
        let mut failed = None;
        for (envelopes, received_ms) in batches {
            match check(store, &envelopes, &received_ms) {
                Ok(batch) => {
                    if to_writer.send((envelopes, batch)).is_err() {
                        // The writer stopped on a storage error; it says why below.
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(to_writer);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the ingest writer thread panicked")));
        match (failed, written) {
            (_, Err(e)) | (Some(e), Ok(())) => Err(e),
            (None, Ok(())) => Ok(()),
        }
    })
}

/// The registry and signature checks of a batch: everything that needs no
/// chain state, so it can run while the previous batch is being stored.
pub fn check(
    store: &dyn Store,
    envelopes: &[Envelope],
    received_ms: &[i64],
) -> Result<CheckedBatch, StoreError> {
    assert_eq!(envelopes.len(), received_ms.len(), "one time per envelope");
    let mut outcomes: Vec<Option<Outcome>> = vec![None; envelopes.len()];
    let mut terminals: HashMap<String, Option<(TerminalRow, TerminalKey)>> = HashMap::new();
    let mut to_verify: Vec<(usize, TerminalRow, TerminalKey)> = Vec::new();
    let mut alarms: Vec<Alarm> = Vec::new();

    for (i, e) in envelopes.iter().enumerate() {
        let now_ms = received_ms[i];
        let key_id = e.key_id.to_hex();
        if !terminals.contains_key(&key_id) {
            let found = store
                .terminal_by_key(&key_id)?
                .and_then(|t| TerminalKey::from_bytes(&t.public_key).ok().map(|k| (t, k)));
            terminals.insert(key_id.clone(), found);
        }
        let reject = |reason, detail: String| Outcome::Rejected {
            record_id: e.record_id(),
            reason,
            detail,
        };
        match &terminals[&key_id] {
            None => {
                let detail = format!("key {key_id} is not registered");
                let claimed = Record::decode(&e.payload)
                    .map(|r| r.terminal_id().to_owned())
                    .unwrap_or_else(|_| format!("key:{key_id}"));
                alarms.push(refusal(&claimed, "unknown_key", e, detail.clone(), now_ms));
                outcomes[i] = Some(reject("unknown_key", detail))
            }
            Some((t, _)) if t.status == "pending" => {
                let detail = format!("terminal {} is awaiting approval", t.terminal_id);
                alarms.push(refusal(
                    &t.terminal_id,
                    "not_approved",
                    e,
                    detail.clone(),
                    now_ms,
                ));
                outcomes[i] = Some(reject("not_approved", detail))
            }
            Some((t, k)) => to_verify.push((i, t.clone(), k.clone())),
        }
    }

    let pairs: Vec<(&Envelope, &TerminalKey)> = to_verify
        .iter()
        .map(|(i, _, k)| (&envelopes[*i], k))
        .collect();
    let verdicts = verify_many(&pairs);
    let mut candidates = Vec::new();
    for ((i, terminal, _), verdict) in to_verify.into_iter().zip(verdicts) {
        let e = &envelopes[i];
        let now_ms = received_ms[i];
        let reject = |reason, detail: String| Outcome::Rejected {
            record_id: e.record_id(),
            reason,
            detail,
        };
        let verified = match verdict {
            Ok(v) => v,
            Err(err @ EnvelopeError::BadSignature(_)) => {
                alarms.push(refusal(
                    &terminal.terminal_id,
                    "bad_signature",
                    e,
                    err.to_string(),
                    now_ms,
                ));
                outcomes[i] = Some(reject("bad_signature", err.to_string()));
                continue;
            }
            Err(err) => {
                alarms.push(refusal(
                    &terminal.terminal_id,
                    "malformed",
                    e,
                    err.to_string(),
                    now_ms,
                ));
                outcomes[i] = Some(reject("malformed", err.to_string()));
                continue;
            }
        };
        if verified.check_terminal(&terminal.terminal_id).is_err() {
            let detail = format!(
                "record names terminal {}, key belongs to {}",
                verified.record.terminal_id(),
                terminal.terminal_id
            );
            alarms.push(refusal(
                &terminal.terminal_id,
                "wrong_terminal",
                e,
                detail.clone(),
                now_ms,
            ));
            outcomes[i] = Some(reject("wrong_terminal", detail));
            continue;
        }
        if verified.record.hospital_code() != terminal.hospital_code {
            alarms.push(refusal(
                &terminal.terminal_id,
                "wrong_hospital",
                e,
                format!("record for hospital {}", verified.record.hospital_code()),
                now_ms,
            ));
            outcomes[i] = Some(reject(
                "wrong_hospital",
                format!(
                    "terminal {} is approved for hospital {}, record names {}",
                    terminal.terminal_id,
                    terminal.hospital_code,
                    verified.record.hospital_code()
                ),
            ));
            continue;
        }
        if let Some(revoked_at) = terminal.revoked_at_ms {
            if verified.record.signed_at_ms() >= revoked_at {
                let detail = format!("signed after the key was revoked at {revoked_at}");
                alarms.push(refusal(
                    &terminal.terminal_id,
                    "revoked",
                    e,
                    detail.clone(),
                    now_ms,
                ));
                outcomes[i] = Some(reject("revoked", detail));
                continue;
            }
            // A revocation imported from a file has a time but no chain
            // position; then the time rule alone applies.
            if let Some(at_seq) = terminal.revoked_at_seq
                && verified.record.seq() > at_seq
            {
                alarms.push(Alarm {
                    hospital_code: Some(terminal.hospital_code.clone()),
                    service_date: Some(record_date(&verified.record)),
                    ..alarm(
                        &terminal.terminal_id,
                        "after_revocation",
                        Some(verified.record.seq()),
                        Some(verified.id),
                        "signed before revocation but first seen after it".into(),
                        now_ms,
                    )
                });
            }
        }
        let row = row_for(e, &verified, &terminal.terminal_id, now_ms);
        candidates.push(Candidate {
            index: i,
            terminal,
            verified,
            row,
        });
    }

    let mut by_terminal: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for c in candidates {
        by_terminal
            .entry(c.terminal.terminal_id.clone())
            .or_default()
            .push(c);
    }
    for list in by_terminal.values_mut() {
        list.sort_by_key(|c| c.verified.record.seq());
    }
    Ok(CheckedBatch {
        outcomes,
        alarms,
        by_terminal,
    })
}

/// The chain checks and the log for a checked batch, in one transaction;
/// returns one outcome per envelope, in order, once the batch is durable.
pub fn commit(
    store: &dyn Store,
    log: &Log,
    policy: &IngestPolicy,
    batch: CheckedBatch,
) -> Result<Vec<Outcome>, StoreError> {
    Ok(commit_all(store, log, policy, vec![batch])?
        .pop()
        .expect("one batch in, one out"))
}

/// [`commit`] for several checked batches in one transaction (group
/// commit: one durable write for all of them), in order, each exactly as if
/// committed alone. Returns each batch's outcomes once all are durable.
pub fn commit_all(
    store: &dyn Store,
    log: &Log,
    policy: &IngestPolicy,
    batches: Vec<CheckedBatch>,
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let mut decided: Vec<Vec<(usize, Outcome)>> = Vec::new();
    store.transaction(&mut |tx| {
        decided.clear();
        for batch in &batches {
            let mut d = Vec::new();
            chain_and_log(tx, policy, batch, &mut d)?;
            decided.push(d);
        }
        Ok(())
    })?;
    log.sync(store)?;
    Ok(batches
        .into_iter()
        .zip(decided)
        .map(|(batch, decided)| {
            let mut outcomes = batch.outcomes;
            for (i, o) in decided {
                outcomes[i] = Some(o);
            }
            outcomes
                .into_iter()
                .map(|o| o.expect("every envelope decided"))
                .collect()
        })
        .collect())
}

/// One checked batch inside the ingest transaction: chain checks, held
/// records, the log, and the batch's alarms.
fn chain_and_log(
    tx: &mut dyn crate::store::Tx,
    policy: &IngestPolicy,
    batch: &CheckedBatch,
    decided: &mut Vec<(usize, Outcome)>,
) -> Result<(), StoreError> {
    let (by_terminal, alarms) = (&batch.by_terminal, &batch.alarms);
    let mut tx_alarms: Vec<Alarm> = Vec::new();
    let mut heads = BTreeMap::new();
    for terminal_id in by_terminal.keys() {
        heads.insert(terminal_id.clone(), tx.chain_head(terminal_id)?);
    }
    for (terminal_id, list) in by_terminal {
        let (mut head_seq, mut head_id) = heads[terminal_id];
        let mut prev_at: Option<i64> = None;
        let last_ms = list.iter().map(|c| c.row.received_at_ms).max().unwrap_or(0);
        tx.touch_terminal(terminal_id, last_ms)?;
        for c in list {
            let id = c.verified.id;
            let now_ms = c.row.received_at_ms;
            let about = |a: Alarm| Alarm {
                hospital_code: Some(c.row.hospital_code.clone()),
                service_date: Some(c.row.service_date.clone()),
                ..a
            };
            let seq = c.verified.record.seq();
            if seq <= head_seq {
                // Either this very record again (idempotent) or a fork.
                let stored = tx.record_at(terminal_id, seq)?;
                if let Some((sid, index)) = stored
                    && sid == id
                {
                    decided.push((
                        c.index,
                        Outcome::Accepted {
                            record_id: id,
                            log_index: index,
                        },
                    ));
                    continue;
                }
                let stored = stored.map(|(sid, _)| sid).unwrap_or(RecordId::GENESIS);
                tx_alarms.push(Alarm {
                    other_record_id: (stored != RecordId::GENESIS).then_some(stored),
                    ..about(alarm(
                        terminal_id,
                        "fork",
                        Some(seq),
                        Some(id),
                        format!(
                            "two records at sequence {seq}: {} stored, {} offered",
                            stored.short(),
                            id.short()
                        ),
                        now_ms,
                    ))
                });
                decided.push((
                    c.index,
                    Outcome::Rejected {
                        record_id: id,
                        reason: "fork",
                        detail: format!("sequence {seq} already holds record {stored}"),
                    },
                ));
                continue;
            }
            if seq > head_seq + 1 {
                tx.hold(&c.row)?;
                tx_alarms.push(Alarm {
                    missing: Some((head_seq + 1, seq - 1)),
                    ..about(alarm(
                        terminal_id,
                        "gap",
                        Some(seq),
                        Some(id),
                        format!("records {} to {} have not arrived", head_seq + 1, seq - 1),
                        now_ms,
                    ))
                });
                decided.push((
                    c.index,
                    Outcome::Held {
                        record_id: id,
                        missing_from: head_seq + 1,
                    },
                ));
                continue;
            }
            if c.verified.record.prev() != head_id {
                tx_alarms.push(about(alarm(
                    terminal_id,
                    "broken_link",
                    Some(seq),
                    Some(id),
                    format!(
                        "prev {} is not the head {}",
                        c.verified.record.prev().short(),
                        head_id.short()
                    ),
                    now_ms,
                )));
                decided.push((
                    c.index,
                    Outcome::Rejected {
                        record_id: id,
                        reason: "broken_link",
                        detail: format!("prev does not name record {head_id}"),
                    },
                ));
                continue;
            }
            let index = accept(tx, &c.row, head_seq, &mut prev_at, policy, &mut tx_alarms)?;
            head_seq = seq;
            head_id = id;
            decided.push((
                c.index,
                Outcome::Accepted {
                    record_id: id,
                    log_index: index,
                },
            ));
        }
        // Held successors may now follow (one query per terminal).
        for held in tx.held(terminal_id)? {
            if held.seq <= head_seq {
                tx.unhold(&held.record_id)?;
                continue;
            }
            if held.seq != head_seq + 1 {
                break;
            }
            let payload_prev = Record::decode(&held.payload).map(|r| r.prev()).ok();
            if payload_prev != Some(head_id) {
                break;
            }
            accept(tx, &held, head_seq, &mut prev_at, policy, &mut tx_alarms)?;
            tx.unhold(&held.record_id)?;
            head_seq = held.seq;
            head_id = held.record_id;
        }
        tx.set_chain_head(terminal_id, head_seq, head_id)?;
    }
    for a in alarms.iter().chain(tx_alarms.iter()) {
        tx.alarm(a)?;
    }
    Ok(())
}

fn accept(
    tx: &mut dyn crate::store::Tx,
    row: &RecordRow,
    head_seq: u64,
    prev_signed_at: &mut Option<i64>,
    policy: &IngestPolicy,
    alarms: &mut Vec<Alarm>,
) -> Result<u64, StoreError> {
    // Measured from the record's own arrival (a held record arrived before
    // the batch that releases it).
    let now_ms = row.received_at_ms;
    let about = |a: Alarm, measured_ms: i64| Alarm {
        hospital_code: Some(row.hospital_code.clone()),
        service_date: Some(row.service_date.clone()),
        measured_ms: Some(measured_ms),
        ..a
    };
    if row.signed_at_ms > now_ms + policy.max_future_skew_ms {
        alarms.push(about(
            alarm(
                &row.terminal_id,
                "clock_skew",
                Some(row.seq),
                Some(row.record_id),
                format!(
                    "signed {} s in the future",
                    (row.signed_at_ms - now_ms) / 1000
                ),
                now_ms,
            ),
            row.signed_at_ms - now_ms,
        ));
    }
    if prev_signed_at.is_none() && head_seq > 0 {
        *prev_signed_at = tx.signed_at(&row.terminal_id, head_seq)?;
    }
    if let Some(prev_at) = *prev_signed_at
        && row.signed_at_ms < prev_at
    {
        alarms.push(about(
            alarm(
                &row.terminal_id,
                "backdated",
                Some(row.seq),
                Some(row.record_id),
                format!(
                    "signed {} s before its predecessor",
                    (prev_at - row.signed_at_ms) / 1000
                ),
                now_ms,
            ),
            prev_at - row.signed_at_ms,
        ));
    }
    if now_ms - row.signed_at_ms > policy.late_after_ms {
        alarms.push(about(
            alarm(
                &row.terminal_id,
                "late_sync",
                Some(row.seq),
                Some(row.record_id),
                format!(
                    "arrived {} h after signing",
                    (now_ms - row.signed_at_ms) / 3_600_000
                ),
                now_ms,
            ),
            now_ms - row.signed_at_ms,
        ));
    }
    *prev_signed_at = Some(row.signed_at_ms);
    tx.append(row)
}

fn alarm(
    terminal_id: &str,
    kind: &str,
    seq: Option<u64>,
    record_id: Option<RecordId>,
    detail: String,
    at_ms: i64,
) -> Alarm {
    Alarm {
        terminal_id: terminal_id.to_owned(),
        kind: kind.to_owned(),
        seq,
        record_id,
        detail,
        at_ms,
        hospital_code: None,
        service_date: None,
        measured_ms: None,
        missing: None,
        other_record_id: None,
    }
}

/// The alarm for a refused record, with what its payload says (read without
/// trusting it: the hospital and date only place the alarm in a period).
fn refusal(terminal_id: &str, kind: &str, e: &Envelope, detail: String, at_ms: i64) -> Alarm {
    let record = Record::decode(&e.payload).ok();
    Alarm {
        hospital_code: record.as_ref().map(|r| r.hospital_code().to_owned()),
        service_date: record.as_ref().map(record_date),
        ..alarm(
            terminal_id,
            kind,
            record.as_ref().map(Record::seq),
            Some(e.record_id()),
            detail,
            at_ms,
        )
    }
}

/// The local date a record is about: check-in for a session, signing for
/// an enrolment.
fn record_date(record: &Record) -> String {
    match record {
        Record::Session(s) => local_date(s.check_in.at_ms, s.utc_offset_min),
        Record::Enrolment(r) => local_date(r.signed_at_ms, r.utc_offset_min),
    }
}

fn row_for(e: &Envelope, v: &VerifiedRecord, terminal_id: &str, now_ms: i64) -> RecordRow {
    let (insured_id, date_ms, offset, kind) = match &v.record {
        Record::Session(s) => (
            s.patient.insured_id.clone(),
            s.check_in.at_ms,
            s.utc_offset_min,
            Some(s.treatment.kind.code().to_owned()),
        ),
        Record::Enrolment(r) => (
            r.patient.insured_id.clone(),
            r.signed_at_ms,
            r.utc_offset_min,
            None,
        ),
    };
    RecordRow {
        record_id: v.id,
        terminal_id: terminal_id.to_owned(),
        seq: v.record.seq(),
        record_type: v.record.record_type().code().to_owned(),
        key_id: e.key_id.to_hex(),
        payload: e.payload.clone(),
        signature: e.signature,
        signed_at_ms: v.record.signed_at_ms(),
        received_at_ms: now_ms,
        hospital_code: v.record.hospital_code().to_owned(),
        insured_id,
        service_date: local_date(date_ms, offset),
        kind,
    }
}

/// `YYYY-MM-DD` of a Unix-millisecond instant at a UTC offset.
pub fn local_date(ms: i64, offset_min: i16) -> String {
    let secs = ms.div_euclid(1000) + i64::from(offset_min) * 60;
    let days = secs.div_euclid(86_400);
    jiff::civil::Date::constant(1970, 1, 1)
        .checked_add(jiff::Span::new().days(days))
        .map(|d| d.to_string())
        .unwrap_or_default()
}

/// Keeps the shared state for the HTTP layer.
pub struct Ingest {
    pub store: Arc<dyn Store>,
    pub log: Arc<Log>,
    pub policy: IngestPolicy,
}

/// What [`import_records`] did with a file of envelopes.
#[derive(Debug, Default)]
pub struct ImportRecordsReport {
    /// Outcomes by reason (`accepted`, `held`, `fork`, ...).
    pub counts: BTreeMap<&'static str, u64>,
    /// Every refused record: id, reason, detail.
    pub rejected: Vec<(RecordId, &'static str, String)>,
    /// Lines that are not envelopes: line number, why.
    pub bad_lines: Vec<(u64, String)>,
}

/// Reads `receipts.csv` (`record_id,terminal_id,seq,received_at_ms`, as the
/// scenario generator writes it): when each record reached the server.
pub fn read_receipts(reader: impl std::io::Read) -> anyhow::Result<HashMap<RecordId, i64>> {
    let mut csv = csv::Reader::from_reader(reader);
    let headers = csv.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow::anyhow!("receipts: no `{name}` column"))
    };
    let (id_col, at_col) = (col("record_id")?, col("received_at_ms")?);
    let mut out = HashMap::new();
    for (n, row) in csv.records().enumerate() {
        let row = row?;
        let line = n + 2;
        let id = wuding_protocol::ids::parse_lower_hex::<32>(row.get(id_col).unwrap_or(""))
            .map(RecordId)
            .ok_or_else(|| anyhow::anyhow!("receipts line {line}: record_id is not 64 hex"))?;
        let at: i64 =
            row.get(at_col).unwrap_or("").parse().map_err(|_| {
                anyhow::anyhow!("receipts line {line}: received_at_ms is not a number")
            })?;
        out.insert(id, at);
    }
    Ok(out)
}

/// Imports JSON lines of envelopes (`records.jsonl`) in batches of 500, as
/// `import-records` does. With `receipts`, each record is ingested as if it
/// arrived at its receipt time (a replayed upload history: clock skew and
/// late sync are measured against it); records without one arrive `now()`.
pub fn import_records(
    store: &dyn Store,
    log: &Log,
    policy: &IngestPolicy,
    reader: impl std::io::BufRead,
    receipts: Option<&HashMap<RecordId, i64>>,
    now: &dyn Fn() -> i64,
) -> anyhow::Result<ImportRecordsReport> {
    const BATCH: usize = 500;
    let mut report = ImportRecordsReport::default();
    let mut bad_lines = Vec::new();
    let mut read_error: Option<std::io::Error> = None;
    let mut lines = reader.lines().enumerate();
    // Reading and verification on this thread, chain checks and commits on
    // another (see `ingest_pipelined`).
    let batches = std::iter::from_fn(|| {
        let mut batch: Vec<Envelope> = Vec::new();
        while batch.len() < BATCH {
            let Some((n, line)) = lines.next() else { break };
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match Envelope::from_json(line.as_bytes()) {
                Ok(e) => batch.push(e),
                Err(e) => bad_lines.push((n as u64 + 1, e.to_string())),
            }
        }
        if batch.is_empty() {
            return None;
        }
        let now_ms = now();
        let times: Vec<i64> = batch
            .iter()
            .map(|e| {
                receipts
                    .and_then(|r| r.get(&e.record_id()).copied())
                    .unwrap_or(now_ms)
            })
            .collect();
        Some((batch, times))
    });
    ingest_pipelined(store, log, policy, batches, |_, outcomes| {
        for o in outcomes {
            *report.counts.entry(o.reason()).or_insert(0) += 1;
            if let Outcome::Rejected {
                record_id,
                reason,
                detail,
            } = o
            {
                report.rejected.push((record_id, reason, detail));
            }
        }
    })?;
    // What reconciliation reads of the new sessions, written once the
    // records are in (see `Store::catch_up_sessions`).
    store.catch_up_sessions()?;
    if let Some(e) = read_error {
        return Err(e.into());
    }
    report.bad_lines = bad_lines;
    Ok(report)
}
