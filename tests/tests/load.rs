//! Load: thousands of simulated terminals registering and syncing at the
//! same time over loopback against one wuding-server (SQLite). No request
//! may fail; the latency percentiles are printed.
//!
//! `WUDING_LOAD_TERMINALS` sets the count (default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wuding_protocol::example::example_session;
use wuding_protocol::{Record, RecordId, TerminalKey, TerminalSigner};
use wuding_server::store::Store as ServerStore;
use wuding_terminal::store::Store;
use wuding_terminal::sync::SyncClient;

use wuding_tests::now_ms;

fn signer(i: u32) -> TerminalSigner {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    TerminalSigner::from_seed(&seed)
}

#[test]
fn thousands_of_terminals_sync_concurrently_without_errors() {
    let n: u32 = std::env::var("WUDING_LOAD_TERMINALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let per_terminal = 3u64;
    let dir = tempfile::tempdir().unwrap();
    let server_store: Arc<dyn ServerStore> = Arc::from(
        wuding_server::store::open(dir.path().join("server.db").to_str().unwrap()).unwrap(),
    );
    // Each terminal's outbox, filled before the storm.
    let outboxes: Vec<Store> = (0..n)
        .map(|i| {
            let mut outbox = Store::in_memory().unwrap();
            let s = signer(i);
            for seq in 1..=per_terminal {
                let mut r = example_session();
                r.terminal_id = format!("T-{i:06}");
                r.seq = seq;
                r.prev = RecordId::GENESIS;
                outbox.sign_and_store(&s, Record::Session(r), None).unwrap();
            }
            outbox
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = server_store.clone();
    let (latencies, elapsed) = runtime.block_on(async move {
        let base = wuding_tests::start_server(store.clone(), 1).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(4096)
            .build()
            .unwrap();

        // Everyone registers at once.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let client = SyncClient::with_http(http.clone(), &base, signer(i));
            tasks.spawn(async move {
                client
                    .register(&format!("T-{i:06}"), "H33010200017", "NEPH-HD", now_ms())
                    .await
                    .map(|r| r.log_public_key)
            });
        }
        let mut log_key = None;
        while let Some(r) = tasks.join_next().await {
            log_key = Some(r.unwrap().expect("registration succeeds under load"));
        }
        let log_key = TerminalKey::from_hex(&log_key.unwrap()).unwrap();
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..n {
                s.approve_terminal(&format!("T-{i:06}"), now_ms()).unwrap();
            }
        })
        .await
        .unwrap();

        // Everyone syncs at once.
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut outbox) in outboxes.into_iter().enumerate() {
            let client = SyncClient::with_http(http.clone(), &base, signer(i as u32));
            let key = log_key.clone();
            tasks.spawn(async move {
                let t = Instant::now();
                let report = client.sync_once(&mut outbox, &key, 50, now_ms()).await;
                (
                    t.elapsed(),
                    report.map(|r| r.retired),
                    outbox.outbox_status().unwrap().waiting,
                )
            });
        }
        let mut latencies = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (latency, retired, waiting) = r.unwrap();
            assert_eq!(
                retired.expect("no upload fails under load"),
                per_terminal as usize
            );
            assert_eq!(waiting, 0);
            latencies.push(latency);
        }
        (latencies, started.elapsed())
    });
    drop(runtime);

    let mut latencies = latencies;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "load: {n} terminals x {per_terminal} records synced concurrently in {:.2} s; upload latency p50 {:?}, p99 {:?}, max {:?}",
        elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap()
    );
    assert_eq!(
        server_store.log_leaves(0).unwrap().len() as u64,
        n as u64 * per_terminal
    );
}
