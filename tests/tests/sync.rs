//! A terminal's outbox synced to a real wuding-server over loopback through
//! a misbehaving network: server down, slow, answers lost after the server
//! committed, duplicate deliveries. Every record arrives exactly once and
//! every outbox entry is retired only on a verified receipt.

use std::sync::Arc;
use std::time::Duration;

use wuding_protocol::example::example_session;
use wuding_protocol::{Record, TerminalKey, TerminalSigner};
use wuding_server::http::{AppState, Metrics, router};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::store::Store as ServerStore;
use wuding_terminal::store::Store;
use wuding_terminal::sync::{SyncClient, SyncError};
use wuding_tests::faults::{FaultProxy, Mode};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn every_record_arrives_exactly_once_through_a_bad_network() {
    let dir = tempfile::tempdir().unwrap();
    let server_store: Arc<dyn ServerStore> = Arc::from(
        wuding_server::store::open(dir.path().join("server.db").to_str().unwrap()).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let signer = TerminalSigner::from_seed(&[42; 32]);
    let mut outbox = Store::open(&dir.path().join("terminal.db")).unwrap();
    for i in 0..30 {
        let mut s = example_session();
        s.terminal_id = "T-330102-0042".into();
        s.bed = format!("B{:02}", i % 8);
        outbox
            .sign_and_store(&signer, Record::Session(s), None)
            .unwrap();
    }

    let store_for_server = server_store.clone();
    let outbox_ref = &mut outbox;
    runtime.block_on(async move {
        let outbox = outbox_ref;
        let state = AppState {
            store: store_for_server.clone(),
            log: Arc::new(Log::new(TerminalSigner::from_seed(&[7; 32]))),
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(now_ms),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        let proxy = FaultProxy::start(server_addr).await;
        let client = SyncClient::new(
            &format!("http://{}", proxy.addr),
            signer.clone(),
            Duration::from_secs(1),
        );

        let reg = client
            .register("T-330102-0042", "H33010200017", "NEPH-HD", now_ms())
            .await
            .unwrap();
        let log_key = TerminalKey::from_hex(&reg.log_public_key).unwrap();
        let s = store_for_server.clone();
        tokio::task::spawn_blocking(move || s.approve_terminal("T-330102-0042", now_ms()).unwrap())
            .await
            .unwrap();

        // Server down: nothing changes locally.
        proxy.set(Mode::Refuse);
        let err = client
            .sync_once(outbox, &log_key, 10, now_ms())
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Network(_)), "{err}");
        assert_eq!(outbox.outbox_status().unwrap().waiting, 30);

        // Slow: the client gives up after its timeout; nothing is lost.
        proxy.set(Mode::Slow);
        assert!(
            client
                .sync_once(outbox, &log_key, 10, now_ms())
                .await
                .is_err()
        );
        assert_eq!(outbox.outbox_status().unwrap().waiting, 30);

        // The server commits but the answer is lost: the terminal keeps the
        // records and sends them again later (duplicates).
        proxy.set(Mode::DropAnswers);
        for _ in 0..2 {
            assert!(
                client
                    .sync_once(outbox, &log_key, 10, now_ms())
                    .await
                    .is_err()
            );
        }
        assert_eq!(outbox.outbox_status().unwrap().waiting, 30);
        let s = store_for_server.clone();
        let committed = tokio::task::spawn_blocking(move || s.log_leaves(0).unwrap().len())
            .await
            .unwrap();
        assert_eq!(
            committed, 10,
            "the server committed the batch whose answer was lost"
        );

        // The network heals: those ten are sent again (duplicates).
        proxy.set(Mode::Pass);
        let mut rounds = 0;
        while outbox.outbox_status().unwrap().waiting > 0 {
            let r = client
                .sync_once(outbox, &log_key, 7, now_ms())
                .await
                .unwrap();
            assert_eq!(r.rejected, 0);
            rounds += 1;
            assert!(rounds < 20);
        }
    });
    drop(runtime);

    // Exactly once on the server, in chain order, and every local entry
    // retired with a receipt.
    assert_eq!(server_store.log_leaves(0).unwrap().len(), 30);
    assert_eq!(server_store.records_of("T-330102-0042").unwrap().len(), 30);
    let status = outbox.outbox_status().unwrap();
    assert_eq!((status.waiting, status.retired), (0, 30));
}
