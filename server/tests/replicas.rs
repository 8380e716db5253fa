//! Two server replicas (each with its own connections and its own in-memory
//! log) over one PostgreSQL, ingesting overlapping batches at the same time:
//! every record is stored exactly once, chains are intact, the log has no
//! hole or duplicate, and both replicas compute the same root.

mod common;

use std::sync::Arc;

use wuding_protocol::api::RegistrationRequest;
use wuding_protocol::example::example_session;
use wuding_protocol::{Envelope, Record, RecordId, TerminalSigner, verify_chain};
use wuding_server::ingest::{IngestPolicy, Log, ingest};
use wuding_server::registry::register;
use wuding_server::store::{Store, postgres::PgStore};

const NOW: i64 = 1_794_900_000_000;

fn chain(n: u8, count: u64) -> Vec<Envelope> {
    let s = TerminalSigner::from_seed(&[n; 32]);
    let mut prev = RecordId::GENESIS;
    (1..=count)
        .map(|seq| {
            let mut r = example_session();
            r.terminal_id = format!("T-{n:03}");
            r.seq = seq;
            r.prev = prev;
            let e = s.sign(&Record::Session(r)).unwrap();
            prev = e.record_id();
            e
        })
        .collect()
}

#[test]
fn two_replicas_on_one_postgres_store_every_record_once() {
    let db = common::postgres();
    let terminals: Vec<u8> = (1..=6).collect();
    for &n in &terminals {
        register(
            &*db.store,
            &RegistrationRequest {
                terminal_id: format!("T-{n:03}"),
                hospital_code: "H33010200017".into(),
                department_code: "NEPH-HD".into(),
                public_key: TerminalSigner::from_seed(&[n; 32]).public_key().to_hex(),
            },
            NOW,
        )
        .unwrap();
        db.store
            .approve_terminal(&format!("T-{n:03}"), NOW)
            .unwrap();
    }
    let chains: Vec<Vec<Envelope>> = terminals.iter().map(|&n| chain(n, 40)).collect();
    let replicas: Vec<(Arc<dyn Store>, Arc<Log>)> = (0..2)
        .map(|_| {
            let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).unwrap());
            (
                store,
                Arc::new(Log::new(TerminalSigner::from_seed(&[77; 32]))),
            )
        })
        .collect();

    std::thread::scope(|scope| {
        for (r, (store, log)) in replicas.iter().enumerate() {
            for worker in 0..3 {
                let chains = &chains;
                scope.spawn(move || {
                    // Every worker uploads every chain in batches of 7, with a
                    // different phase: batches overlap across replicas.
                    for (t, chain) in chains.iter().enumerate() {
                        let offset = (r * 3 + worker + t) % 7;
                        let mut start = 0;
                        let mut batches = vec![chain[..offset].to_vec()];
                        start += offset;
                        while start < chain.len() {
                            let end = (start + 7).min(chain.len());
                            batches.push(chain[start..end].to_vec());
                            start = end;
                        }
                        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
                            ingest(&**store, log, &IngestPolicy::default(), &batch, NOW).unwrap();
                        }
                    }
                });
            }
        }
    });

    let leaves = db.store.log_leaves(0).unwrap();
    assert_eq!(leaves.len(), 6 * 40, "every record exactly once in the log");
    let mut unique = leaves.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), leaves.len());
    for &n in &terminals {
        let rows = db.store.records_of(&format!("T-{n:03}")).unwrap();
        assert_eq!(rows.len(), 40);
        let links = rows
            .iter()
            .map(|r| Record::decode(&r.payload).unwrap().chain_link(r.record_id));
        assert!(verify_chain(links, None).is_clean());
    }
    assert!(
        db.store.alarms().unwrap().iter().all(|a| a.kind == "gap"),
        "only transient gaps, never forks"
    );
    assert_eq!(db.store.held_count().unwrap(), 0);
    for (store, log) in &replicas {
        log.sync(&**store).unwrap();
    }
    assert_eq!(replicas[0].1.root_at(240), replicas[1].1.root_at(240));
}
