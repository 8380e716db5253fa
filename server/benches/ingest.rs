//! Ingest throughput beside the signature-verification ceiling, and claims
//! import throughput, printed as numbers.
//!
//!   cargo bench -p wuding-server --bench ingest                # SQLite
//!   WUDING_BENCH_PG=postgres://postgres@127.0.0.1:5432/test cargo bench -p wuding-server --bench ingest
//!
//! Sizes: WUDING_BENCH_RECORDS (default 20000), WUDING_BENCH_CLAIMS
//! (default 1000000).

use std::io::Write;
use std::time::Instant;

use wuding_protocol::api::RegistrationRequest;
use wuding_protocol::example::example_session;
use wuding_protocol::{Envelope, Record, RecordId, TerminalKey, TerminalSigner, verify_many};
use wuding_server::claims::{Mapping, import};
use wuding_server::ingest::{IngestPolicy, Log, ingest, ingest_pipelined};
use wuding_server::registry::register;
use wuding_server::store::Store;

const NOW: i64 = 1_794_900_000_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn records(terminals: u16, per_terminal: u64) -> Vec<(u16, Vec<Envelope>)> {
    (0..terminals)
        .map(|t| {
            let mut seed = [0u8; 32];
            seed[..2].copy_from_slice(&t.to_le_bytes());
            seed[31] = 1;
            let s = TerminalSigner::from_seed(&seed);
            let mut prev = RecordId::GENESIS;
            let chain = (1..=per_terminal)
                .map(|seq| {
                    let mut r = example_session();
                    r.terminal_id = format!("T-{t:05}");
                    r.seq = seq;
                    r.prev = prev;
                    let e = s.sign(&Record::Session(r)).unwrap();
                    prev = e.record_id();
                    e
                })
                .collect();
            (t, chain)
        })
        .collect()
}

fn signer_of(t: u16) -> TerminalSigner {
    let mut seed = [0u8; 32];
    seed[..2].copy_from_slice(&t.to_le_bytes());
    seed[31] = 1;
    TerminalSigner::from_seed(&seed)
}

fn register_all(store: &dyn Store, data: &[(u16, Vec<Envelope>)]) {
    for (t, _) in data {
        register(
            store,
            &RegistrationRequest {
                terminal_id: format!("T-{t:05}"),
                hospital_code: "H33010200017".into(),
                department_code: "NEPH-HD".into(),
                public_key: signer_of(*t).public_key().to_hex(),
            },
            NOW,
        )
        .unwrap();
        store.approve_terminal(&format!("T-{t:05}"), NOW).unwrap();
    }
}

fn bench_backend(name: &str, store: &dyn Store, n: usize) {
    const BATCH: usize = 100;
    let per_terminal = 100u64;
    let terminals = (n as u64 / per_terminal).max(1) as u16;
    // Two sets of terminals with the same shape: one for uploads ingested
    // one at a time, one for the pipelined ingest.
    let all = records(2 * terminals, per_terminal);
    register_all(store, &all);
    let (one_at_a_time, pipelined) = all.split_at(terminals as usize);
    let total: usize = pipelined.iter().map(|(_, c)| c.len()).sum();

    // The ceiling: batch verification alone, same records, same batch size,
    // one thread.
    let keys: Vec<TerminalKey> = pipelined
        .iter()
        .map(|(t, _)| signer_of(*t).public_key().clone())
        .collect();
    let started = Instant::now();
    for ((_, chain), key) in pipelined.iter().zip(&keys) {
        for batch in chain.chunks(BATCH) {
            let pairs: Vec<(&Envelope, &TerminalKey)> = batch.iter().map(|e| (e, key)).collect();
            assert!(verify_many(&pairs).iter().all(Result::is_ok));
        }
    }
    let verify_rate = total as f64 / started.elapsed().as_secs_f64();

    // Uploads one after another, each verified then committed (what a
    // single terminal syncing sees).
    let log = Log::new(TerminalSigner::from_seed(&[9; 32]));
    let started = Instant::now();
    for (_, chain) in one_at_a_time {
        for batch in chain.chunks(BATCH) {
            let out = ingest(store, &log, &IngestPolicy::default(), batch, NOW).unwrap();
            assert!(out.iter().all(|o| o.reason() == "accepted"));
        }
    }
    let serial_rate = total as f64 / started.elapsed().as_secs_f64();

    // The pipeline (import-records, and many terminals uploading at once):
    // batch N+1 verified while batch N is committed.
    let batches: Vec<(Vec<Envelope>, Vec<i64>)> = pipelined
        .iter()
        .flat_map(|(_, chain)| chain.chunks(BATCH))
        .map(|b| (b.to_vec(), vec![NOW; b.len()]))
        .collect();
    let mut accepted = 0usize;
    let started = Instant::now();
    ingest_pipelined(
        store,
        &log,
        &IngestPolicy::default(),
        batches.into_iter(),
        |_, out| {
            assert!(out.iter().all(|o| o.reason() == "accepted"));
            accepted += out.len();
        },
    )
    .unwrap();
    let ingest_rate = total as f64 / started.elapsed().as_secs_f64();
    assert_eq!(accepted, total);
    println!(
        "ingest[{name}]: {total} records, {ingest_rate:.0} durable records/s pipelined \
         ({serial_rate:.0}/s one upload at a time); batch verification alone {verify_rate:.0}/s; \
         ratio {:.2} (one at a time {:.2})",
        ingest_rate / verify_rate,
        serial_rate / verify_rate
    );
}

fn bench_claims(name: &str, store: &dyn Store, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "claim_id,insured_id,hospital_code,department_code,doctor_id,service_date,service_code,service_kind,quantity,amount_fen,drug_code,dose").unwrap();
        for i in 0..n {
            writeln!(
                f,
                "C{i:09},3301021954{:08},H330102{:05},NEPH-HD,D{:04},2026-11-{:02},003105010010000,HD,1,42000,,",
                i / 13,
                i % 300,
                i % 97,
                1 + i % 28
            )
            .unwrap();
        }
    }
    let started = Instant::now();
    let report = import(
        store,
        std::fs::File::open(&path).unwrap(),
        &Mapping::standard(),
        "bench",
        |_| {},
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.inserted as usize, n);
    println!(
        "claims import[{name}]: {n} lines in {secs:.2} s = {:.0} lines/s",
        n as f64 / secs
    );
}

fn main() {
    // Under a test runner (cargo nextest --all-targets lists every target),
    // this bench offers one small smoke case; `cargo bench` runs it in full.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("bench_smoke: test");
        }
        return;
    }
    let smoke = args.iter().any(|a| a == "bench_smoke");
    let (n, claims) = if smoke {
        (500, 5_000)
    } else {
        (
            env("WUDING_BENCH_RECORDS", 20_000),
            env("WUDING_BENCH_CLAIMS", 1_000_000),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        wuding_server::store::sqlite::SqliteStore::open(&dir.path().join("bench.db")).unwrap();
    bench_backend("sqlite", &sqlite, n);
    bench_claims("sqlite", &sqlite, claims);
    if let Ok(url) = std::env::var("WUDING_BENCH_PG") {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let name = format!("wuding_bench_{}", std::process::id());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let db_url = format!("{}/{name}", &url[..url.rfind('/').unwrap()]);
        {
            let pg = wuding_server::store::postgres::PgStore::connect(&db_url).unwrap();
            bench_backend("postgres", &pg, n);
            bench_claims("postgres", &pg, claims);
        }
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .unwrap();
    }
}
