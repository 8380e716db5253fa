//! wuding-server: terminal registry, verified ingest with receipts, the
//! transparency log, claims import, reconciliation. The binary (`main.rs`) is a thin shell
//! around this library; tests bind `127.0.0.1:0` and call [`http::router`].

pub mod allocator;
pub mod casework;
pub mod claims;
pub mod evidence;
pub mod export;
pub mod http;
pub mod ingest;
pub mod month;
pub mod reconcile;
pub mod registry;
pub mod roster;
pub mod store;
pub mod templates;
pub mod web;
