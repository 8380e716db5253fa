//! A terminal's outbox synced to a real wuding-server over loopback through
//! a misbehaving network: server down, slow, answers lost after the server
//! committed, duplicate deliveries. Every record arrives exactly once and
//! every outbox entry is retired only on a verified receipt.

use std::sync::Arc;
use std::time::Duration;

use wuding_protocol::example::example_session;
use wuding_protocol::{Record, TerminalKey, TerminalSigner};
use wuding_server::store::Store as ServerStore;
use wuding_terminal::store::Store;
use wuding_terminal::sync::{SyncClient, SyncError};
use wuding_tests::faults::{FaultProxy, Mode};

use wuding_tests::now_ms;

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
        let base = wuding_tests::start_server(store_for_server.clone(), 7).await;
        let server_addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
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

#[test]
fn a_terminal_pulls_its_hospital_roster_and_a_nurse_logs_in_with_it() {
    use wuding_server::roster::{RosterKind, import};
    use wuding_terminal::app::pin_matches;

    let dir = tempfile::tempdir().unwrap();
    let server_store: Arc<dyn ServerStore> = Arc::from(
        wuding_server::store::open(dir.path().join("server.db").to_str().unwrap()).unwrap(),
    );
    import(
        &*server_store,
        RosterKind::Patients,
        "insured_id,card_uid,name,hospital_code\n330102195403170012,04A1B2C3,王小明,H33010200017\n440305197001010011,04C0FFEE,张三丰,H44030500003\n"
            .as_bytes(),
    )
    .unwrap();
    import(
        &*server_store,
        RosterKind::Staff,
        "staff_id,card_uid,name,role,hospital_code,pin\nN0231,04FF0001,李护士,nurse,H33010200017,2468\n".as_bytes(),
    )
    .unwrap();
    import(
        &*server_store,
        RosterKind::Prices,
        "hospital_code,code,unit_price_fen\nH33010200017,003105010010000,42000\n".as_bytes(),
    )
    .unwrap();
    let signer = TerminalSigner::from_seed(&[43; 32]);
    let mut local = Store::open(&dir.path().join("terminal.db")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store_for_server = server_store.clone();
    let local_ref = &mut local;
    runtime.block_on(async move {
        let local = local_ref;
        let base = wuding_tests::start_server(store_for_server.clone(), 7).await;
        let client = SyncClient::new(&base, signer, Duration::from_secs(5));
        client
            .register("T-330102-0043", "H33010200017", "NEPH-HD", now_ms())
            .await
            .unwrap();
        // Not approved yet: no roster.
        assert!(client.pull_roster(local, now_ms()).await.is_err());
        let s = store_for_server.clone();
        tokio::task::spawn_blocking(move || s.approve_terminal("T-330102-0043", now_ms()).unwrap())
            .await
            .unwrap();
        assert_eq!(client.pull_roster(local, now_ms()).await.unwrap(), 3);
        assert_eq!(
            client.pull_roster(local, now_ms()).await.unwrap(),
            0,
            "the cursor remembers"
        );
    });
    drop(runtime);
    let p = local.patient_by_card("04A1B2C3").unwrap().unwrap();
    assert_eq!(p.display_name, "王*明", "terminals get masked names only");
    assert!(
        local.patient_by_card("04C0FFEE").unwrap().is_none(),
        "another hospital's patient"
    );
    let nurse = local.staff_by_card("04FF0001").unwrap().unwrap();
    assert!(pin_matches("2468", &nurse.pin_hash));
    assert!(!pin_matches("2469", &nurse.pin_hash));
    assert_eq!(
        local.price_list().unwrap().unit_price_fen["003105010010000"],
        42_000
    );
}
