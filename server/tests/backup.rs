//! `wuding-server backup`: a consistent copy of a live SQLite database that
//! opens as a store with everything in it; never over an existing file.
//! `wuding-server setting`: the appeal deadline, validated.

use std::process::Command;

use wuding_server::casework::Role;
use wuding_server::store::Casework;
use wuding_server::store::sqlite::SqliteStore;

fn server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wuding-server"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn backup_copies_a_live_database_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let live = SqliteStore::open(&db).unwrap();
    wuding_server::web::add_user(
        &live,
        "li.auditor",
        "李审核",
        Role::Auditor,
        None,
        "long enough pw",
        1,
    )
    .unwrap();
    let out = dir.path().join("copy.db");
    // The live store stays open (a running server) while the copy is made.
    let o = server(&[
        "backup",
        "--out",
        out.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let copy = SqliteStore::open(&out).unwrap();
    let user = copy
        .user("li.auditor")
        .unwrap()
        .expect("the user is in the copy");
    assert_eq!(user.display_name, "李审核");
    assert!(wuding_server::casework::verify_password(
        "long enough pw",
        &user.password_hash
    ));
    let again = server(&[
        "backup",
        "--out",
        out.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let pg = server(&[
        "backup",
        "--out",
        "x.db",
        "--db",
        "postgres://postgres@127.0.0.1:5432/test",
    ]);
    assert!(!pg.status.success());
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));
    drop(live);
}

#[test]
fn the_appeal_deadline_is_configurable_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let db = db.to_str().unwrap();
    let shown = server(&["setting", "appeal_days", "--db", db]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("appeal_days = 15 (default)"));
    let set = server(&["setting", "appeal_days", "20", "--db", db]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let store = SqliteStore::open(std::path::Path::new(db)).unwrap();
    assert_eq!(store.setting("appeal_days").unwrap().as_deref(), Some("20"));
    drop(store);
    for bad in ["0", "400", "two weeks"] {
        let o = server(&["setting", "appeal_days", bad, "--db", db]);
        assert!(!o.status.success(), "{bad} accepted");
        assert!(String::from_utf8_lossy(&o.stderr).contains("1 to 365"));
    }
    let o = server(&["setting", "colour", "red", "--db", db]);
    assert!(!o.status.success());
}
