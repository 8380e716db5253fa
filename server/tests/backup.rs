//! `wuding-server backup`: a consistent copy of a live SQLite database that
//! opens as a store with everything in it; never over an existing file.

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
