//! Shared harness for wuding's end-to-end tests.
//!
//! * [`Browser`]: a real headless Chromium (Debian's `chromium` and
//!   `chromium-driver` packages, installed by `tests/run-all.sh`) driven
//!   over WebDriver, for the nurse screen and the auditor application.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0} is not installed; run tests/run-all.sh, which installs it")]
    Missing(&'static str),
    #[error("chromedriver did not start: {0}")]
    Driver(String),
    #[error("webdriver: {0}")]
    WebDriver(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// A headless Chromium session. Dropping it ends the browser and the driver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A scratch profile directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> Result<Browser, HarnessError> {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or(HarnessError::Missing("chromium"))?;
        if !std::path::Path::new("/usr/bin/chromedriver").exists() {
            return Err(HarnessError::Missing("chromedriver"));
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HarnessError::Driver(e.to_string()))?;
        let profile =
            std::env::temp_dir().join(format!("wuding-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::create_dir_all(&profile);
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("capabilities are an object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    return Err(HarnessError::Driver(e.to_string()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Ok(Browser {
            client,
            driver,
            _profile: tempdir::Dir(profile),
        })
    }

    /// Waits until the element with `data-testid=id` contains `text`.
    pub async fn wait_text(
        &self,
        testid: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let selector = format!("[data-testid=\"{testid}\"]");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(&selector)).await
                && let Ok(found) = el.text().await
                && found.contains(text)
            {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout(
                    timeout,
                    format!("{testid} to show {text:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element with `data-testid=id`, waiting for it to appear.
    pub async fn click(&self, testid: &str, timeout: Duration) -> Result<(), HarnessError> {
        let selector = format!("[data-testid=\"{testid}\"]");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(&selector)).await
                && el.click().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout(
                    timeout,
                    format!("{testid} to be clickable"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an element matching the CSS selector contains `text`
    /// ("" = merely exists) and returns its text.
    pub async fn wait_css(
        &self,
        css: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(found) = el.text().await
                && found.contains(text)
            {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout(
                    timeout,
                    format!("`{css}` to contain {text:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element matching the CSS selector, waiting for it.
    pub async fn click_css(&self, css: &str, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && el.click().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout(
                    timeout,
                    format!("`{css}` to be clickable"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types into the input matching the CSS selector (after clearing it).
    pub async fn fill(&self, css: &str, value: &str) -> Result<(), HarnessError> {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(|e| HarnessError::WebDriver(e.to_string()))?;
        el.clear()
            .await
            .map_err(|e| HarnessError::WebDriver(e.to_string()))?;
        el.send_keys(value)
            .await
            .map_err(|e| HarnessError::WebDriver(e.to_string()))
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn js(&self, script: &str) -> Result<serde_json::Value, HarnessError> {
        self.client
            .execute(script, vec![])
            .await
            .map_err(|e| HarnessError::WebDriver(e.to_string()))
    }

    /// Saves a screenshot under `artifacts/screenshots/NAME.png` (kept as a
    /// test artefact).
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, HarnessError> {
        let png = self
            .client
            .screenshot()
            .await
            .map_err(|e| HarnessError::WebDriver(e.to_string()))?;
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../artifacts/screenshots"
        ));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| HarnessError::WebDriver(e.to_string()))?;
        Ok(path)
    }

    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A TCP proxy on loopback that can misbehave like a real network: refuse
/// connections, delay them, or forward a request and then drop the
/// connection before the answer gets back (the server committed; the client
/// never heard).
pub mod faults {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Mode {
        Pass = 0,
        Refuse = 1,
        /// Forward the request, swallow the answer, close.
        DropAnswers = 2,
        /// Hold every connection for two seconds first.
        Slow = 3,
    }

    pub struct FaultProxy {
        pub addr: std::net::SocketAddr,
        mode: Arc<AtomicU8>,
        /// Bumped on every mode change: open connections then close, so
        /// kept-alive connections cannot escape the new mode.
        changed: tokio::sync::watch::Sender<u64>,
    }

    impl FaultProxy {
        pub async fn start(upstream: std::net::SocketAddr) -> FaultProxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
            let (changed, watch) = tokio::sync::watch::channel(0u64);
            let m = Arc::clone(&mode);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let mode = m.load(Ordering::SeqCst);
                    let mut watch = watch.clone();
                    watch.mark_unchanged();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = handle(client, upstream, mode) => {}
                            _ = watch.changed() => {}
                        }
                    });
                }
            });
            FaultProxy {
                addr,
                mode,
                changed,
            }
        }

        pub fn set(&self, mode: Mode) {
            self.mode.store(mode as u8, Ordering::SeqCst);
            self.changed.send_modify(|g| *g += 1);
        }
    }

    async fn handle(mut client: TcpStream, upstream: std::net::SocketAddr, mode: u8) {
        if mode == Mode::Refuse as u8 {
            return; // dropped: connection reset
        }
        if mode == Mode::Slow as u8 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        if mode == Mode::DropAnswers as u8 {
            let (mut cr, _cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let forward = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            let swallow = async {
                let mut buf = vec![0u8; 64 * 1024];
                // Wait for the server's answer (it has committed), then hang up.
                let _ = sr.read(&mut buf).await;
            };
            tokio::select! {
                _ = forward => {}
                _ = swallow => {}
            }
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// Starts a real wuding-server on a loopback port, inside the current tokio
/// runtime. Returns its base URL.
pub async fn start_server(
    store: std::sync::Arc<dyn wuding_server::store::Store>,
    log_seed: u8,
) -> String {
    start_server_with(
        store,
        log_seed,
        wuding_server::http::ServerOptions::default(),
    )
    .await
}

/// Like [`start_server`], with server options (an administrator token, the
/// template key that lets terminals fetch roster keys and upload templates).
pub async fn start_server_with(
    store: std::sync::Arc<dyn wuding_server::store::Store>,
    log_seed: u8,
    options: wuding_server::http::ServerOptions,
) -> String {
    let log = std::sync::Arc::new(wuding_server::ingest::Log::new(
        wuding_protocol::TerminalSigner::from_seed(&[log_seed; 32]),
    ));
    // A store that already holds records: rebuild the tree, as `serve` does.
    let (s, l) = (store.clone(), log.clone());
    tokio::task::spawn_blocking(move || l.sync(&*s))
        .await
        .expect("log sync task")
        .expect("log sync");
    let state = wuding_server::http::AppState {
        store,
        log,
        policy: wuding_server::ingest::IngestPolicy::default(),
        metrics: std::sync::Arc::new(wuding_server::http::Metrics::default()),
        clock: std::sync::Arc::new(now_ms),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, wuding_server::http::router_with(state, options)).await;
    });
    base
}

/// Unix milliseconds now (the wall clock, for end-to-end tests).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
