//! Test backends: SQLite in a temporary file, and a fresh database on the
//! real PostgreSQL (`$WUDING_TEST_PG`, default the local `test` database).
//! PostgreSQL tests fail, never skip, when the server is unreachable.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

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

/// The auditor application over real HTTP, for tests.
pub struct App {
    pub base: String,
    pub clock: Arc<AtomicI64>,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
}

/// A logged-in browser: its cookie and CSRF token.
#[derive(Clone)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

impl App {
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> (StatusCode, Option<Browser>, Value) {
        let res = self
            .http
            .post(format!("{}/api/v1/app/login", self.base))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let cookie = res
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let browser = cookie.map(|c| {
            assert!(
                c.contains("HttpOnly") && c.contains("SameSite=Strict"),
                "{c}"
            );
            Browser {
                cookie: c.split(';').next().unwrap().to_owned(),
                csrf: body["csrf_token"].as_str().unwrap_or("").to_owned(),
            }
        });
        (status, browser, body)
    }

    pub async fn call(
        &self,
        who: Option<&Browser>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path));
        if let Some(b) = who {
            req = req.header("cookie", &b.cookie);
            if method != Method::GET {
                req = req.header("x-csrf-token", &b.csrf);
            }
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.bytes().await.unwrap().to_vec())
    }

    pub async fn json(
        &self,
        who: &Browser,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, bytes) = self.call(Some(who), method, path, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A generated month of `patients` (the scenario generator's files in a
/// temporary directory), deterministic for `seed`.
pub fn generated_month(patients: u32, seed: u64, fraud_rate: f64) -> tempfile::TempDir {
    let mut cfg = wuding_firmware_host::scenario::ScenarioConfig::new(patients, 2026, 10);
    cfg.seed = seed;
    cfg.fraud_rate = fraud_rate;
    let dir = tempfile::tempdir().unwrap();
    wuding_firmware_host::scenario::generate(&cfg)
        .write_to(dir.path())
        .unwrap();
    dir
}
