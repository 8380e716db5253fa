//! Test backends: SQLite in a temporary file, and a fresh database on the
//! real PostgreSQL (`$WUDING_TEST_PG`, default the local `test` database).
//! PostgreSQL tests fail, never skip, when the server is unreachable.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use wuding_server::store::{Store, postgres::PgStore, sqlite::SqliteStore};

pub struct TestDb {
    pub store: Box<dyn Store>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

pub fn pg_admin_url() -> String {
    std::env::var("WUDING_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    TestDb {
        store: Box::new(SqliteStore::open(&path).unwrap()),
        url: path.display().to_string(),
        _dir: Some(dir),
        drop_pg: None,
    }
}

/// A fresh, uniquely named database on the test PostgreSQL server.
pub fn postgres() -> TestDb {
    let admin = pg_admin_url();
    let name = format!(
        "wuding_t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for these tests: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("WUDING_TEST_PG must end in /DATABASE"),
    };
    TestDb {
        store: Box::new(PgStore::connect(&url).unwrap()),
        url,
        _dir: None,
        drop_pg: Some((admin, name)),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.drop_pg.take() {
            // Close our connections first by replacing the store.
            self.store = Box::new(SqliteStore::in_memory().unwrap());
            if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Runs a test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                let db = $crate::common::sqlite();
                ($body)(&*db.store);
            }
            #[test]
            fn postgres() {
                let db = $crate::common::postgres();
                ($body)(&*db.store);
            }
        }
    };
}
