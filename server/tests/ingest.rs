//! The tamper matrix, on SQLite and on the real PostgreSQL: each case is
//! accepted, held, refused or flagged with the right reason.

mod common;

use wuding_protocol::api::RegistrationRequest;
use wuding_protocol::example::example_session;
use wuding_protocol::transparency::verify_consistency;
use wuding_protocol::{Envelope, Record, RecordId, TerminalSigner, verify_chain};
use wuding_server::ingest::{
    IngestPolicy, Log, Outcome, check, commit_all, ingest, ingest_pipelined,
};
use wuding_server::registry::{RegistryError, register};
use wuding_server::store::Store;

const NOW: i64 = 1_794_900_000_000; // the server's clock in these tests
const HOSPITAL: &str = "H33010200017";

fn signer(n: u8) -> TerminalSigner {
    TerminalSigner::from_seed(&[n; 32])
}

fn terminal_id(n: u8) -> String {
    format!("T-330102-{n:04}")
}

fn enrol(store: &dyn Store, n: u8, approve: bool) {
    register(
        store,
        &RegistrationRequest {
            terminal_id: terminal_id(n),
            hospital_code: HOSPITAL.into(),
            department_code: "NEPH-HD".into(),
            public_key: signer(n).public_key().to_hex(),
        },
        NOW - 86_400_000,
    )
    .unwrap();
    if approve {
        store
            .approve_terminal(&terminal_id(n), NOW - 86_000_000)
            .unwrap();
    }
}

/// `count` chained session records of terminal `n`, one hour apart.
fn chain(n: u8, count: u64) -> Vec<Envelope> {
    let s = signer(n);
    let mut prev = RecordId::GENESIS;
    (1..=count)
        .map(|seq| {
            let mut r = example_session();
            r.terminal_id = terminal_id(n);
            r.seq = seq;
            r.prev = prev;
            let shift = seq as i64 * 3_600_000 - 30 * 86_400_000 + 26 * 86_400_000;
            r.check_in.at_ms += shift;
            r.check_out.as_mut().unwrap().at_ms += shift;
            r.signed_at_ms += shift;
            let e = s.sign(&Record::Session(r)).unwrap();
            prev = e.record_id();
            e
        })
        .collect()
}

fn run(store: &dyn Store, log: &Log, batch: &[Envelope]) -> Vec<Outcome> {
    ingest(store, log, &IngestPolicy::default(), batch, NOW).unwrap()
}

fn reasons(outcomes: &[Outcome]) -> Vec<&'static str> {
    outcomes.iter().map(Outcome::reason).collect()
}

fn alarm_kinds(store: &dyn Store) -> Vec<String> {
    store
        .alarms()
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect()
}

fn log() -> Log {
    Log::new(TerminalSigner::from_seed(&[200; 32]))
}

both_backends!(
    clean_chain_is_accepted_with_verifiable_receipts,
    |store: &dyn Store| {
        enrol(store, 1, true);
        let log = log();
        let records = chain(1, 5);
        let out = run(store, &log, &records);
        assert_eq!(reasons(&out), vec!["accepted"; 5]);
        let items: Vec<(RecordId, u64)> = out
            .iter()
            .map(|o| match o {
                Outcome::Accepted {
                    record_id,
                    log_index,
                } => (*record_id, *log_index),
                other => panic!("{other:?}"),
            })
            .collect();
        for receipt in log.receipts(&items, NOW) {
            assert!(receipt.verify(log.public_key()));
        }
        // The stored bytes are the uploaded bytes, and the chain is intact.
        let stored = store.records_of(&terminal_id(1)).unwrap();
        assert_eq!(stored[2].payload, records[2].payload);
        let links = stored.iter().map(|r| {
            let rec = Record::decode(&r.payload).unwrap();
            rec.chain_link(r.record_id)
        });
        assert!(verify_chain(links, None).is_clean());
    }
);

both_backends!(replay_is_idempotent, |store: &dyn Store| {
    enrol(store, 1, true);
    let log = log();
    let records = chain(1, 3);
    let first = run(store, &log, &records);
    let again = run(store, &log, &records);
    assert_eq!(first, again, "the same record again gets the same answer");
    assert_eq!(store.log_leaves(0).unwrap().len(), 3);
});

both_backends!(
    forged_signature_and_modified_payload_are_refused,
    |store: &dyn Store| {
        enrol(store, 1, true);
        let log = log();
        let mut records = chain(1, 2);
        records[0].signature[3] ^= 0x10;
        records[1].payload[40] ^= 0x01;
        let out = run(store, &log, &records);
        assert_eq!(reasons(&out), vec!["bad_signature", "bad_signature"]);
        assert!(alarm_kinds(store).iter().all(|k| k == "bad_signature"));
        assert!(store.log_leaves(0).unwrap().is_empty());
    }
);

both_backends!(
    unknown_and_unapproved_keys_are_refused,
    |store: &dyn Store| {
        enrol(store, 2, false);
        let log = log();
        let out = run(store, &log, &[chain(1, 1).remove(0), chain(2, 1).remove(0)]);
        assert_eq!(reasons(&out), vec!["unknown_key", "not_approved"]);
        // One alarm per refusal, stored once.
        assert_eq!(alarm_kinds(store), vec!["unknown_key", "not_approved"]);
    }
);

both_backends!(
    deleted_record_is_a_gap_held_until_it_arrives,
    |store: &dyn Store| {
        enrol(store, 1, true);
        let log = log();
        let records = chain(1, 5);
        let out = run(
            store,
            &log,
            &[
                records[0].clone(),
                records[1].clone(),
                records[3].clone(),
                records[4].clone(),
            ],
        );
        assert_eq!(reasons(&out), vec!["accepted", "accepted", "held", "held"]);
        assert_eq!(
            out[2],
            Outcome::Held {
                record_id: records[3].record_id(),
                missing_from: 3
            }
        );
        assert!(alarm_kinds(store).contains(&"gap".to_string()));
        assert_eq!(store.held_count().unwrap(), 2);
        // The terminals page: this terminal's chain ends at 2, two records wait.
        let backlog = store.terminal_backlog().unwrap();
        let mine: Vec<_> = backlog.iter().filter(|b| b.held_records > 0).collect();
        assert_eq!(mine.len(), 1, "{backlog:?}");
        assert_eq!((mine[0].chain_head, mine[0].held_records), (2, 2));
        // The deleted record turns up: everything enters the log, in order.
        let out = run(store, &log, &[records[2].clone()]);
        assert_eq!(reasons(&out), vec!["accepted"]);
        assert_eq!(store.held_count().unwrap(), 0);
        let backlog = store.terminal_backlog().unwrap();
        assert!(backlog.iter().all(|b| b.held_records == 0), "{backlog:?}");
        assert!(backlog.iter().any(|b| b.chain_head == 5), "{backlog:?}");
        let ids: Vec<RecordId> = store.log_leaves(0).unwrap();
        assert_eq!(
            ids,
            records.iter().map(Envelope::record_id).collect::<Vec<_>>()
        );
    }
);

both_backends!(
    reordered_batch_is_accepted_in_chain_order,
    |store: &dyn Store| {
        enrol(store, 1, true);
        let log = log();
        let mut records = chain(1, 4);
        records.reverse();
        let out = run(store, &log, &records);
        assert_eq!(reasons(&out), vec!["accepted"; 4]);
        records.reverse();
        assert_eq!(
            store.log_leaves(0).unwrap(),
            records.iter().map(Envelope::record_id).collect::<Vec<_>>()
        );
    }
);

both_backends!(
    fork_is_refused_and_raises_an_equivocation_alarm,
    |store: &dyn Store| {
        enrol(store, 1, true);
        let log = log();
        let records = chain(1, 2);
        run(store, &log, &records);
        // Another record at sequence 2.
        let mut rival = example_session();
        rival.terminal_id = terminal_id(1);
        rival.seq = 2;
        rival.prev = records[0].record_id();
        rival.bed = "B09".into();
        let rival = signer(1).sign(&Record::Session(rival)).unwrap();
        let out = run(store, &log, &[rival]);
        assert_eq!(reasons(&out), vec!["fork"]);
        assert!(alarm_kinds(store).contains(&"fork".to_string()));
    }
);

both_backends!(broken_link_is_refused, |store: &dyn Store| {
    enrol(store, 1, true);
    let log = log();
    run(store, &log, &chain(1, 1));
    let mut r = example_session();
    r.terminal_id = terminal_id(1);
    r.seq = 2;
    r.prev = RecordId([0x77; 32]);
    let out = run(store, &log, &[signer(1).sign(&Record::Session(r)).unwrap()]);
    assert_eq!(reasons(&out), vec!["broken_link"]);
});

both_backends!(key_of_another_hospital_is_refused, |store: &dyn Store| {
    enrol(store, 1, true);
    let log = log();
    let mut r = example_session();
    r.terminal_id = terminal_id(1);
    r.hospital_code = "H44030500003".into();
    let out = run(store, &log, &[signer(1).sign(&Record::Session(r)).unwrap()]);
    assert_eq!(reasons(&out), vec!["wrong_hospital"]);
    assert!(alarm_kinds(store).contains(&"wrong_hospital".to_string()));
});

both_backends!(revocation_has_a_time, |store: &dyn Store| {
    enrol(store, 1, true);
    let log = log();
    let records = chain(1, 3);
    run(store, &log, &records[..1]);
    let revoked_at = {
        let r = Record::decode(&records[1].payload).unwrap();
        r.signed_at_ms() + 1
    };
    store.revoke_terminal(&terminal_id(1), revoked_at).unwrap();
    // Record 2 was signed before the revocation: still valid (flagged, as it
    // is beyond the head the server knew); record 3 after: refused.
    let out = run(store, &log, &records[1..]);
    assert_eq!(reasons(&out), vec!["accepted", "revoked"]);
    assert!(alarm_kinds(store).contains(&"after_revocation".to_string()));
});

both_backends!(times_are_flagged_not_refused, |store: &dyn Store| {
    enrol(store, 1, true);
    let log = log();
    let s = signer(1);
    let mut first = example_session();
    first.terminal_id = terminal_id(1);
    let first = s.sign(&Record::Session(first)).unwrap();
    // Future-dated: signed a day ahead of the server's clock.
    let mut future = example_session();
    future.terminal_id = terminal_id(1);
    future.seq = 2;
    future.prev = first.record_id();
    let shift = NOW - future.check_in.at_ms + 86_400_000;
    future.check_in.at_ms += shift;
    future.check_out.as_mut().unwrap().at_ms += shift;
    future.signed_at_ms += shift;
    let future = s.sign(&Record::Session(future)).unwrap();
    // Back-dated: signed before its predecessor.
    let mut back = example_session();
    back.terminal_id = terminal_id(1);
    back.seq = 3;
    back.prev = future.record_id();
    let back = s.sign(&Record::Session(back)).unwrap();
    // Arrival more than 12 hours after signing counts as late here.
    let policy = IngestPolicy {
        late_after_ms: 12 * 3_600_000,
        ..IngestPolicy::default()
    };
    let out = ingest(store, &log, &policy, &[first, future, back], NOW).unwrap();
    assert_eq!(reasons(&out), vec!["accepted"; 3]);
    let kinds = alarm_kinds(store);
    assert!(kinds.contains(&"clock_skew".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"backdated".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"late_sync".to_string()), "{kinds:?}");
});

both_backends!(
    small_and_mixed_order_keys_are_refused_at_registration,
    |store: &dyn Store| {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let honest =
            curve25519_dalek::edwards::CompressedEdwardsY(signer(5).public_key().to_bytes())
                .decompress()
                .unwrap();
        let small = EIGHT_TORSION[1].compress().to_bytes();
        let mixed = (honest + EIGHT_TORSION[1]).compress().to_bytes();
        for (key, expected) in [(small, "small order"), (mixed, "torsion")] {
            let err = register(
                store,
                &RegistrationRequest {
                    terminal_id: "T-EVIL".into(),
                    hospital_code: HOSPITAL.into(),
                    department_code: "NEPH-HD".into(),
                    public_key: hex::encode(key),
                },
                NOW,
            )
            .unwrap_err();
            assert!(matches!(err, RegistryError::Key(_)));
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert!(store.terminals().unwrap().is_empty());
    }
);

both_backends!(log_stays_consistent_across_batches, |store: &dyn Store| {
    enrol(store, 1, true);
    enrol(store, 2, true);
    let log = log();
    run(store, &log, &chain(1, 3));
    let old = log.checkpoint(NOW);
    run(store, &log, &chain(2, 4));
    let new = log.checkpoint(NOW);
    let proof: Vec<[u8; 32]> = log
        .consistency(old.size, new.size)
        .unwrap()
        .iter()
        .map(|h| wuding_protocol::ids::parse_lower_hex(h).unwrap())
        .collect();
    assert!(verify_consistency(
        old.size,
        new.size,
        &old.root_hash().unwrap(),
        &new.root_hash().unwrap(),
        &proof
    ));
    // A fresh replica rebuilds the same tree from the store.
    let replica = Log::new(TerminalSigner::from_seed(&[200; 32]));
    replica.sync(store).unwrap();
    assert_eq!(replica.root_at(7), log.root_at(7));
});

/// Uploads that depend on each other (a gap filled two uploads later, a
/// replay, a fork, interleaved terminals) and the answers each gets when
/// ingested alone, in order.
fn dependent_uploads() -> (Vec<Vec<Envelope>>, Vec<Vec<&'static str>>) {
    let (a, b) = (chain(1, 20), chain(2, 10));
    let mut rival = example_session();
    rival.terminal_id = terminal_id(1);
    rival.seq = 3;
    rival.prev = a[1].record_id();
    rival.bed = "B09".into();
    let rival = signer(1).sign(&Record::Session(rival)).unwrap();
    let uploads = vec![
        a[..10].to_vec(),
        [&b[..5], &a[12..15]].concat(),
        vec![a[10].clone(), b[5].clone()],
        vec![a[11].clone(), a[4].clone(), rival],
        [&a[15..], &b[6..]].concat(),
    ];
    let expected = vec![
        vec!["accepted"; 10],
        [vec!["accepted"; 5], vec!["held"; 3]].concat(),
        vec!["accepted", "accepted"],
        vec!["accepted", "accepted", "fork"],
        vec!["accepted"; 9],
    ];
    (uploads, expected)
}

/// Every record of [`dependent_uploads`] once, chains intact, nothing held.
fn assert_dependent_uploads_stored(store: &dyn Store, log: &Log) {
    assert_eq!(store.held_count().unwrap(), 0);
    for (n, len) in [(1, 20), (2, 10)] {
        let stored = store.records_of(&terminal_id(n)).unwrap();
        assert_eq!(stored.len(), len);
        let links = stored.iter().map(|r| {
            let rec = Record::decode(&r.payload).unwrap();
            rec.chain_link(r.record_id)
        });
        assert!(verify_chain(links, None).is_clean());
    }
    assert_eq!(store.log_leaves(0).unwrap().len(), 30);
    assert_eq!(log.checkpoint(NOW).size, 30);
}

both_backends!(
    pipelined_ingest_decides_each_upload_as_if_alone,
    |store: &dyn Store| {
        enrol(store, 1, true);
        enrol(store, 2, true);
        let log = log();
        let (uploads, expected) = dependent_uploads();
        let batches = uploads
            .iter()
            .map(|u| (u.clone(), vec![NOW; u.len()]))
            .collect::<Vec<_>>();
        let mut answers: Vec<(Vec<Envelope>, Vec<Outcome>)> = Vec::new();
        ingest_pipelined(
            store,
            &log,
            &IngestPolicy::default(),
            batches.into_iter(),
            |e, o| answers.push((e, o)),
        )
        .unwrap();
        let got: Vec<Vec<&str>> = answers.iter().map(|(_, o)| reasons(o)).collect();
        assert_eq!(got, expected);
        for ((sent, _), upload) in answers.iter().zip(&uploads) {
            assert_eq!(sent, upload, "each answer comes with its own upload");
        }
        assert_dependent_uploads_stored(store, &log);
    }
);

both_backends!(
    one_group_commit_decides_each_upload_as_if_alone,
    |store: &dyn Store| {
        enrol(store, 1, true);
        enrol(store, 2, true);
        let log = log();
        let (uploads, expected) = dependent_uploads();
        // All checked before any is stored, then one transaction for all.
        let checked = uploads
            .iter()
            .map(|u| check(store, u, &vec![NOW; u.len()]).unwrap())
            .collect();
        let outcomes = commit_all(store, &log, &IngestPolicy::default(), checked).unwrap();
        let got: Vec<Vec<&str>> = outcomes.iter().map(|o| reasons(o)).collect();
        assert_eq!(got, expected);
        assert_dependent_uploads_stored(store, &log);
    }
);
