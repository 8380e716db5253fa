//! `wuding-terminal run`: the bedside service. It ties the core to the
//! devices, the nurse screen and the server:
//!
//! * **core** (`runtime::spawn_core`): owns the session flow and the store,
//!   handles one [`Input`] at a time, ticks every second.
//! * **device worker**: owns the fingerprint module (a [`DeviceWorker`] over
//!   the driver on `devices.fingerprint`), runs the core's
//!   [`DeviceCommand`]s one at a time and answers with [`Input`]s. After an
//!   enrolment it seals the new template under the hospital's roster key,
//!   caches it, records the module slot and queues the upload, all before
//!   the core hears "stored".
//! * **card poll**: polls the reader (PN532 on a UART, or MFRC522 on SPI
//!   with the `rpi` feature); a new card is one `Input::Card`, and a card
//!   resting on the reader stays one tap until it has left the field.
//! * **nurse screen**: `ui::router` on `ui.listen` (tokio).
//! * **sync**: registers on first start and shows "waiting for approval"
//!   until an administrator approves; then every `server.sync_interval_s`
//!   fetches the roster key once, uploads enrolled templates and the
//!   outbox, pulls the roster; failures back off with jitter.
//!
//! A device that is missing or fails is reported on the nurse screen
//! (naming the path and what to check) and reopened every few seconds; the
//! service keeps serving the screen meanwhile.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use wuding_hardware::fingerprint::driver::{DriverConfig, Fingerprint};
use wuding_hardware::reader::CardReader;
use wuding_hardware::transport::SerialTransport;
use wuding_protocol::api::{
    RosterTemplate, SealKey, SealPurpose, TerminalStatus, open_template, seal_template,
};
use wuding_protocol::{Finger, TemplateKey, TerminalKey, TerminalSigner, template_ref};

use crate::app::{Core, DeviceCommand, Input, TemplateVault, UiState};
use crate::config::{CardReaderConfig, Config};
use crate::devices::{DeviceWorker, Indicator, NoIndicator, WorkerConfig};
use crate::flow::{EnrolResult, FingerResult};
use crate::messages::Text;
use crate::policy::RulesPolicy;
use crate::runtime::{Clock, spawn_core_with_clock, system_clock};
use crate::store::{CachedTemplate, Store};
use crate::sync::{Backoff, SyncClient, may_upload};

/// How often a failed device is opened again.
const REOPEN_EVERY: Duration = Duration::from_secs(3);
/// How long one card poll waits.
const CARD_POLL: Duration = Duration::from_millis(300);
/// The shortest time between two polls.
const CARD_POLL_MIN: Duration = Duration::from_millis(50);

/// The hospital's roster key, shared by the core (opening cached templates
/// for the module), the device worker (sealing new ones) and the sync
/// thread (which fetches it once and keeps it in `data_dir/roster.key`).
#[derive(Clone, Default)]
pub struct RosterKeyVault {
    key: Arc<RwLock<Option<SealKey>>>,
}

impl std::fmt::Debug for RosterKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RosterKeyVault(redacted)")
    }
}

impl RosterKeyVault {
    pub fn new(key: Option<SealKey>) -> RosterKeyVault {
        RosterKeyVault {
            key: Arc::new(RwLock::new(key)),
        }
    }

    pub fn key(&self) -> Option<SealKey> {
        self.key.read().expect("vault lock").clone()
    }

    pub fn set(&self, key: SealKey) {
        *self.key.write().expect("vault lock") = Some(key);
    }

    /// The key of template references in records, derived from the roster
    /// key: `HMAC-SHA-256(roster key, "wuding/template-ref/v1" NUL ||
    /// "wuding/template-ref-key/v1")`, so the server (which holds every
    /// roster key) can recompute any reference.
    pub fn template_key(&self) -> Option<TemplateKey> {
        self.key()
            .map(|k| TemplateKey(template_ref(&TemplateKey(k.0), b"wuding/template-ref-key/v1").0))
    }

    /// Seals a template enrolled here for the cache and the server.
    pub fn seal(&self, insured_id: &str, finger: Finger, template: &[u8]) -> Option<Vec<u8>> {
        let key = self.key()?;
        seal_template(
            &key,
            SealPurpose::Transit,
            insured_id,
            finger,
            template,
            None,
        )
        .ok()
    }
}

impl TemplateVault for RosterKeyVault {
    fn open(&self, insured_id: &str, finger: Finger, sealed: &[u8]) -> Option<Vec<u8>> {
        let key = self.key()?;
        open_template(&key, SealPurpose::Transit, insured_id, finger, sealed).ok()
    }
}

/// Reads `data_dir/roster.key` (64 hex digits) if it exists.
fn load_roster_key(path: &Path) -> anyhow::Result<Option<SealKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key: [u8; 32] = wuding_protocol::ids::parse_lower_hex(text.trim())
                .with_context(|| format!("{} is not 64 hex digits", path.display()))?;
            Ok(Some(SealKey(key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the roster key with mode 0600 (atomically, by rename).
fn save_roster_key(path: &Path, key: &SealKey) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(hex::encode(key.0).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The running service. Dropping it (or [`Service::shutdown`]) stops every
/// thread.
pub struct Service {
    ui_addr: SocketAddr,
    ui: Arc<Mutex<UiState>>,
    inputs: Sender<Input>,
    stop: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
    threads: Vec<JoinHandle<()>>,
}

impl Service {
    /// Opens the key, the store and the devices and starts every thread.
    /// Errors only for what the service cannot run without (the data
    /// directory, the key, the database, the screen's address); devices
    /// and the server may be missing and are retried.
    pub fn start(config: Config) -> anyhow::Result<Service> {
        Service::start_with_clock(config, system_clock())
    }

    /// Like [`Service::start`], with the time taken from `clock` instead of
    /// the wall clock: the core's sessions and records, and the signed
    /// requests to the server, all read it (a simulation plays a compressed
    /// week through it; the server must then share the same clock).
    pub fn start_with_clock(config: Config, clock: Clock) -> anyhow::Result<Service> {
        let data_dir = config.terminal.data_dir.clone();
        std::fs::create_dir_all(&data_dir).with_context(|| {
            format!(
                "cannot create the data directory {} (check `terminal.data_dir` and its owner)",
                data_dir.display()
            )
        })?;
        let (signer, created) = crate::identity::load_or_create(&data_dir.join("terminal.key"))?;
        if created {
            tracing::info!(key_id = %signer.key_id(), "created this terminal's key");
        }
        let db_path = data_dir.join("terminal.db");
        let store = Store::open(&db_path)
            .with_context(|| format!("opening the database {}", db_path.display()))?;
        let roster_key_path = data_dir.join("roster.key");
        let vault = RosterKeyVault::new(load_roster_key(&roster_key_path)?);
        let policy = RulesPolicy(wuding_rules::Ruleset::default_rules());
        let core = Core::new(config.flow(), policy, store, signer.clone(), vault.clone())
            .context("loading the terminal's state from its database")?;
        let ui = core.ui();
        if config.ui.language == "en" {
            ui.lock().expect("ui lock").lang = crate::messages::Lang::En;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let (inputs, input_rx) = mpsc::channel::<Input>();
        let (cmd_tx, cmd_rx) = mpsc::channel::<DeviceCommand>();
        let mut threads = Vec::new();

        // The nurse screen: bind first so a bad address is a clear error.
        let listener = std::net::TcpListener::bind(&config.ui.listen).with_context(|| {
            format!(
                "cannot serve the nurse screen on `ui.listen` = {} (in use, or not an address of this machine)",
                config.ui.listen
            )
        })?;
        listener.set_nonblocking(true)?;
        let ui_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wuding-ui")
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let app = crate::ui::router(Arc::clone(&ui), inputs.clone());
        runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    if let Err(e) = axum::serve(l, app).await {
                        tracing::error!(error = %e, "the nurse screen stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "the nurse screen cannot listen"),
            }
        });

        threads.push(spawn_core_with_clock(
            core,
            input_rx,
            move |command| {
                let _ = cmd_tx.send(command);
            },
            Arc::clone(&clock),
        ));

        {
            let devices = config.devices.clone();
            let inputs = inputs.clone();
            let vault = vault.clone();
            let db = db_path.clone();
            let stop = Arc::clone(&stop);
            let prompt = Duration::from_secs(config.session.prompt_timeout_s.clamp(5, 30));
            threads.push(
                std::thread::Builder::new()
                    .name("wuding-devices".into())
                    .spawn(move || {
                        device_thread(&devices, prompt, &db, vault, cmd_rx, inputs, stop)
                    })?,
            );
        }
        {
            let reader = config.devices.card_reader.clone();
            let inputs = inputs.clone();
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name("wuding-card".into())
                    .spawn(move || card_thread(&reader, inputs, stop))?,
            );
        }
        {
            let inputs = inputs.clone();
            let stop = Arc::clone(&stop);
            let config = config.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("wuding-sync".into())
                    .spawn(move || {
                        sync_thread(
                            &config,
                            signer,
                            &db_path,
                            &roster_key_path,
                            vault,
                            inputs,
                            stop,
                            clock,
                        )
                    })?,
            );
        }
        tracing::info!(terminal = %config.terminal.id, screen = %format!("http://{ui_addr}/"), "wuding-terminal running");
        Ok(Service {
            ui_addr,
            ui,
            inputs,
            stop,
            runtime: Some(runtime),
            threads,
        })
    }

    /// Where the nurse screen is served.
    pub fn ui_addr(&self) -> SocketAddr {
        self.ui_addr
    }

    /// The screen state (what `/api/state` answers).
    pub fn ui_state(&self) -> Arc<Mutex<UiState>> {
        Arc::clone(&self.ui)
    }

    /// Sends an input to the core, as a device or the screen would.
    pub fn send(&self, input: Input) {
        let _ = self.inputs.send(input);
    }

    /// Waits for SIGTERM or Ctrl-C.
    pub fn wait_for_signal(&self) {
        if let Some(rt) = &self.runtime {
            rt.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("installing the SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
        }
    }

    /// Stops every thread and waits for them (at most a few seconds: a
    /// device command or a sync round in flight finishes first).
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The core ends when every input sender is gone; ours is replaced
        // by a dead one, the UI's goes with the runtime.
        let (dead, _) = mpsc::channel();
        self.inputs = dead;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.runtime.is_some() {
            self.stop_all();
        }
    }
}

/// `wuding-terminal run`: starts the service and runs until SIGTERM/Ctrl-C.
pub fn run(config: Config) -> anyhow::Result<()> {
    let service = Service::start(config)?;
    service.wait_for_signal();
    tracing::info!("stopping");
    service.shutdown();
    Ok(())
}

// ---- device worker ------------------------------------------------------------

type Sensor = Fingerprint<SerialTransport>;

fn fingerprint_fault(path: &str, why: &str) -> Text {
    Text::new(
        format!(
            "指纹仪无法使用（{path}）：{why}。请检查连接线和电源、配置中的 devices.fingerprint 路径及串口权限（dialout 组）"
        ),
        format!(
            "Fingerprint module unavailable ({path}): {why}. Check its cable and power, the path in devices.fingerprint, and serial-port permissions (group dialout)"
        ),
    )
}

fn open_fingerprint(
    devices: &crate::config::DevicesSection,
) -> Result<(Sensor, u16), (String, String)> {
    let path = devices.fingerprint.clone();
    let transport = SerialTransport::open(&path, devices.fingerprint_baud)
        .map_err(|e| (path.clone(), format!("cannot open the serial port: {e}")))?;
    let config = DriverConfig {
        password: devices.fingerprint_password,
        ..DriverConfig::default()
    };
    let sensor = Fingerprint::connect(transport, config)
        .map_err(|e| (path.clone(), format!("the module does not answer: {e}")))?;
    let capacity = sensor.parameters().map(|p| p.capacity).unwrap_or(300);
    Ok((sensor, capacity))
}

fn open_indicator(devices: &crate::config::DevicesSection) -> Box<dyn Indicator> {
    #[cfg(feature = "rpi")]
    if let Some(pins) = &devices.indicators {
        match wuding_hardware::rpi::open_indicators(pins.green_led, pins.red_led, pins.buzzer) {
            Ok(i) => return Box::new(i),
            Err(e) => {
                tracing::warn!(error = %e, "indicators unavailable (check devices.indicators and the gpio group)")
            }
        }
    }
    #[cfg(not(feature = "rpi"))]
    if devices.indicators.is_some() {
        tracing::warn!(
            "devices.indicators is set but this build has no GPIO support (build with --features rpi)"
        );
    }
    Box::new(NoIndicator)
}

impl Indicator for Box<dyn Indicator> {
    fn indicate(&mut self, signal: crate::flow::Signal) {
        (**self).indicate(signal)
    }
}

/// The answer to a command when the module cannot be used.
fn fault_answer(command: &DeviceCommand) -> Option<Input> {
    match command {
        DeviceCommand::VerifyFinger { .. } => Some(Input::Finger(FingerResult::DeviceFault)),
        DeviceCommand::EnrolCapture { .. } | DeviceCommand::EnrolBuild { .. } => {
            Some(Input::Enrol(EnrolResult::DeviceFault))
        }
        DeviceCommand::Indicate(_) => None,
    }
}

fn is_fault(input: &Option<Input>) -> bool {
    matches!(
        input,
        Some(Input::Finger(FingerResult::DeviceFault))
            | Some(Input::Enrol(EnrolResult::DeviceFault))
    )
}

fn device_thread(
    devices: &crate::config::DevicesSection,
    finger_wait: Duration,
    db: &Path,
    vault: RosterKeyVault,
    commands: Receiver<DeviceCommand>,
    inputs: Sender<Input>,
    stop: Arc<AtomicBool>,
) {
    let status = |fault: Option<Text>| {
        let _ = inputs.send(Input::DeviceStatus {
            device: "fingerprint".into(),
            fault,
        });
    };
    let mut store = match Store::open(db) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the device worker cannot open the database");
            return;
        }
    };
    let mut indicator = Some(open_indicator(devices));
    let mut worker: Option<DeviceWorker<Sensor, Box<dyn Indicator>>> = None;
    let mut last_attempt: Option<Instant> = None;
    let mut reported: Option<String> = None;
    let worker_config = WorkerConfig {
        finger_wait,
        ..WorkerConfig::default()
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if worker.is_none() && last_attempt.is_none_or(|t| t.elapsed() >= REOPEN_EVERY) {
            last_attempt = Some(Instant::now());
            match open_fingerprint(devices) {
                Ok((sensor, capacity)) => {
                    let slots = store.module_slots().unwrap_or_default();
                    let key = vault.template_key().unwrap_or(TemplateKey([0; 32]));
                    let ind = indicator.take().unwrap_or_else(|| Box::new(NoIndicator));
                    worker = Some(DeviceWorker::new(
                        sensor,
                        ind,
                        key,
                        capacity,
                        slots,
                        worker_config,
                    ));
                    tracing::info!(path = %devices.fingerprint, capacity, "fingerprint module ready");
                    reported = None;
                    status(None);
                }
                Err((path, why)) => {
                    if reported.as_deref() != Some(why.as_str()) {
                        tracing::error!(%path, %why, "fingerprint module unavailable; check the cable, the path in devices.fingerprint and the dialout group");
                        status(Some(fingerprint_fault(&path, &why)));
                        reported = Some(why);
                    }
                }
            }
        }
        let command = match commands.recv_timeout(Duration::from_millis(500)) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(w) = worker.as_mut() else {
            if let DeviceCommand::Indicate(signal) = &command
                && let Some(i) = indicator.as_mut()
            {
                i.indicate(*signal);
            }
            if let Some(answer) = fault_answer(&command) {
                let _ = inputs.send(answer);
            }
            continue;
        };
        let answer = match &command {
            DeviceCommand::EnrolBuild { finger, .. } => {
                let finger = *finger;
                match vault.template_key() {
                    None => {
                        // Without the roster key nothing enrolled here could
                        // be sealed, cached or shared: refuse, and say why.
                        let _ = inputs.send(Input::DeviceStatus {
                            device: "enrolment".into(),
                            fault: Some(Text::new(
                            "尚未从服务器取得医院名册密钥，暂不能录入指纹（请检查网络与终端审批状态）",
                            "The hospital roster key has not arrived from the server yet: enrolment is not possible (check the network and this terminal's approval)",
                        )),
                        });
                        Some(Input::Enrol(EnrolResult::DeviceFault))
                    }
                    Some(key) => {
                        w.set_template_key(key);
                        let answer = w.run(command);
                        for t in w.take_enrolled() {
                            keep_enrolled(&mut store, &vault, &t, finger);
                        }
                        answer
                    }
                }
            }
            _ => w.run(command),
        };
        if is_fault(&answer) {
            // Reopen before the next command: a replugged module or a
            // power-cycled one comes back without a restart.
            worker = None;
            last_attempt = None;
            reported = None;
        }
        if let Some(answer) = answer {
            let _ = inputs.send(answer);
        }
    }
}

/// Seals, caches and queues the upload of a template the module just
/// stored; records who owns the slot. Done before the core hears "stored",
/// so the patient can check in at once.
fn keep_enrolled(
    store: &mut Store,
    vault: &RosterKeyVault,
    t: &crate::devices::NewTemplate,
    finger: Finger,
) {
    let result = (|| -> anyhow::Result<()> {
        store.put_module_slot(t.slot, &t.insured_id, finger)?;
        let sealed = vault
            .seal(&t.insured_id, finger, &t.bytes)
            .context("sealing the template")?;
        let key = vault.template_key().context("no template key")?;
        store.put_template(&CachedTemplate {
            insured_id: t.insured_id.clone(),
            finger,
            sealed,
            template_ref: template_ref(&key, &t.bytes),
        })?;
        store.mark_template_upload(&t.insured_id, finger)?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::error!(error = %e, slot = t.slot, "keeping an enrolled template failed");
    }
}

// ---- card reader --------------------------------------------------------------

type PollFn = Box<dyn FnMut(Duration) -> Result<Option<String>, String> + Send>;

fn open_card_reader(config: &CardReaderConfig) -> Result<PollFn, (String, String)> {
    match config {
        CardReaderConfig::Pn532 { path, baud } => {
            let transport = SerialTransport::open(path, *baud)
                .map_err(|e| (path.clone(), format!("cannot open the serial port: {e}")))?;
            let mut reader = wuding_hardware::pn532::driver::Pn532::new(
                transport,
                wuding_hardware::pn532::driver::Pn532Config::default(),
            );
            reader
                .wake_up()
                .map_err(|e| (path.clone(), format!("the PN532 does not answer: {e}")))?;
            Ok(Box::new(move |timeout| {
                reader
                    .poll(timeout)
                    .map(|r| r.map(|c| c.uid.to_hex()))
                    .map_err(|e| e.to_string())
            }))
        }
        #[cfg(feature = "rpi")]
        CardReaderConfig::Mfrc522 {
            spi_bus,
            chip_select,
        } => {
            if *spi_bus != 0 || *chip_select > 1 {
                return Err((
                    format!("SPI{spi_bus} CE{chip_select}"),
                    "the MFRC522 is supported on SPI0 with chip select 0 or 1 (devices.card_reader.spi_bus, chip_select)".to_string(),
                ));
            }
            let mut reader = wuding_hardware::rpi::open_mfrc522(*chip_select == 1, None)
                .map_err(|e| ("SPI0".to_string(), e.to_string()))?;
            Ok(Box::new(move |timeout| {
                reader
                    .poll(timeout)
                    .map(|r| r.map(|c| c.uid.to_hex()))
                    .map_err(|e| e.to_string())
            }))
        }
        #[cfg(not(feature = "rpi"))]
        CardReaderConfig::Mfrc522 { .. } => Err((
            "SPI".to_string(),
            "this build has no SPI support for the MFRC522 (build with --features rpi, on a Raspberry Pi)".to_string(),
        )),
    }
}

fn card_fault(path: &str, why: &str) -> Text {
    Text::new(
        format!(
            "读卡器无法使用（{path}）：{why}。请检查连接线、配置中的 devices.card_reader 及设备权限"
        ),
        format!(
            "Card reader unavailable ({path}): {why}. Check its cable, devices.card_reader in the configuration, and device permissions"
        ),
    )
}

/// Debounce: the same card staying in the field is one tap; it counts
/// again only after two empty polls in a row.
#[derive(Debug, Default)]
pub struct Debounce {
    present: Option<String>,
    empty_polls: u8,
}

impl Debounce {
    /// Feeds one poll result; returns the UID to report as a new tap.
    pub fn feed(&mut self, seen: Option<String>) -> Option<String> {
        match seen {
            Some(uid) => {
                self.empty_polls = 0;
                if self.present.as_deref() == Some(uid.as_str()) {
                    None
                } else {
                    self.present = Some(uid.clone());
                    Some(uid)
                }
            }
            None => {
                self.empty_polls = self.empty_polls.saturating_add(1);
                if self.empty_polls >= 2 {
                    self.present = None;
                }
                None
            }
        }
    }
}

fn card_thread(config: &CardReaderConfig, inputs: Sender<Input>, stop: Arc<AtomicBool>) {
    let status = |fault: Option<Text>| {
        let _ = inputs.send(Input::DeviceStatus {
            device: "card_reader".into(),
            fault,
        });
    };
    let mut reader: Option<PollFn> = None;
    let mut reported: Option<String> = None;
    let mut debounce = Debounce::default();
    while !stop.load(Ordering::SeqCst) {
        let Some(poll) = reader.as_mut() else {
            match open_card_reader(config) {
                Ok(r) => {
                    tracing::info!("card reader ready");
                    reader = Some(r);
                    reported = None;
                    status(None);
                }
                Err((path, why)) => {
                    if reported.as_deref() != Some(why.as_str()) {
                        tracing::error!(%path, %why, "card reader unavailable");
                        status(Some(card_fault(&path, &why)));
                        reported = Some(why);
                    }
                    sleep_unless(&stop, REOPEN_EVERY);
                }
            }
            continue;
        };
        let started = Instant::now();
        match poll(CARD_POLL) {
            Ok(seen) => {
                if let Some(uid) = debounce.feed(seen) {
                    let _ = inputs.send(Input::Card { uid });
                }
                // A card resting on the reader answers at once: pace the
                // polls so it does not keep a core busy.
                if let Some(rest) = CARD_POLL_MIN.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            Err(why) => {
                tracing::warn!(%why, "card reader failed; reopening");
                status(Some(card_fault("", &why)));
                reported = Some(why);
                reader = None;
                debounce = Debounce::default();
                sleep_unless(&stop, Duration::from_millis(500));
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
}

// ---- sync -----------------------------------------------------------------------

fn waiting_for_approval(key_id: &str) -> Text {
    Text::new(
        format!("本终端等待管理员审批（密钥 {key_id}），审批前可操作但记录暂存本机"),
        format!(
            "This terminal is waiting for an administrator's approval (key {key_id}); records stay on this terminal until then"
        ),
    )
}

struct SyncState {
    log_key: Option<TerminalKey>,
    approved: bool,
    roster_key_unavailable: bool,
}

#[allow(clippy::too_many_arguments)]
fn sync_thread(
    config: &Config,
    signer: TerminalSigner,
    db: &Path,
    roster_key_path: &Path,
    vault: RosterKeyVault,
    inputs: Sender<Input>,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "the sync thread cannot start its runtime");
            return;
        }
    };
    let mut store = match Store::open(db) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the sync thread cannot open the database");
            return;
        }
    };
    let key_id = signer.key_id().to_string();
    let client = SyncClient::new(&config.server.url, signer, Duration::from_secs(30));
    let interval = Duration::from_secs(config.server.sync_interval_s.max(1));
    let mut backoff = Backoff::new(interval, Duration::from_secs(600));
    let mut state = SyncState {
        log_key: None,
        approved: false,
        roster_key_unavailable: false,
    };
    while !stop.load(Ordering::SeqCst) {
        let result = runtime.block_on(sync_round(
            config,
            &client,
            &mut store,
            &vault,
            roster_key_path,
            &inputs,
            &key_id,
            &mut state,
            &*clock,
        ));
        let wait = match result {
            Ok(message) => {
                backoff.succeeded();
                let _ = inputs.send(Input::SyncReport {
                    ok: true,
                    at_ms: clock(),
                    message,
                });
                interval
            }
            Err(e) => {
                backoff.failed();
                tracing::warn!(error = %e, "sync failed; will retry");
                let _ = inputs.send(Input::SyncReport {
                    ok: false,
                    at_ms: clock(),
                    message: e.to_string(),
                });
                let mut r = [0u8; 8];
                let _ = getrandom::fill(&mut r);
                backoff.delay(u64::from_le_bytes(r))
            }
        };
        sleep_unless(&stop, wait);
    }
}

#[allow(clippy::too_many_arguments)]
async fn sync_round(
    config: &Config,
    client: &SyncClient,
    store: &mut Store,
    vault: &RosterKeyVault,
    roster_key_path: &Path,
    inputs: &Sender<Input>,
    key_id: &str,
    state: &mut SyncState,
    clock: &(dyn Fn() -> i64 + Send + Sync),
) -> anyhow::Result<String> {
    let t = &config.terminal;
    // Registration is idempotent: asking again returns the status.
    let reg = client
        .register(&t.id, &t.hospital_code, &t.department_code, clock())
        .await?;
    state.log_key = Some(
        TerminalKey::from_hex(&reg.log_public_key)
            .map_err(|e| anyhow::anyhow!("the server's log key is not usable: {e:?}"))?,
    );
    match reg.status {
        TerminalStatus::Approved => {
            if !state.approved {
                tracing::info!("terminal approved by the server");
                let _ = inputs.send(Input::Registration(None));
                state.approved = true;
            }
        }
        TerminalStatus::Pending => {
            let _ = inputs.send(Input::Registration(Some(waiting_for_approval(key_id))));
            state.approved = false;
            return Ok("waiting for approval".into());
        }
        TerminalStatus::Revoked => {
            let _ = inputs.send(Input::Registration(Some(Text::new(
                "本终端已被服务器吊销，请联系管理员",
                "This terminal has been revoked by the server: contact the administrator",
            ))));
            state.approved = false;
        }
    }
    if !may_upload(&reg.status) {
        return Ok("not approved".into());
    }
    let log_key = state.log_key.clone().expect("set above");

    let mut notes = Vec::new();
    if reg.status == TerminalStatus::Approved
        && vault.key().is_none()
        && !state.roster_key_unavailable
    {
        match client.fetch_roster_key(clock()).await {
            Ok(key) => {
                if let Err(e) = save_roster_key(roster_key_path, &key) {
                    tracing::error!(error = %e, path = %roster_key_path.display(), "cannot keep the roster key");
                }
                vault.set(key);
                tracing::info!("hospital roster key received");
                let _ = inputs.send(Input::DeviceStatus {
                    device: "enrolment".into(),
                    fault: None,
                });
            }
            Err(crate::sync::SyncError::Server { status: 503, .. }) => {
                tracing::warn!(
                    "the server keeps no templates (no template key): templates stay as delivered, enrolment is off"
                );
                state.roster_key_unavailable = true;
            }
            // Not fatal: the outbox still goes up; the key is asked for
            // again next round.
            Err(e) => {
                tracing::warn!(error = %e, "fetching the roster key failed");
                notes.push(format!("roster key: {e}"));
            }
        }
    }

    // The outbox, batch after batch.
    let mut sent = 0;
    let mut retired = 0;
    loop {
        let r = client
            .sync_once(store, &log_key, config.server.batch_size, clock())
            .await?;
        sent += r.sent;
        retired += r.retired;
        if r.sent < config.server.batch_size || r.retired + r.rejected == 0 {
            break;
        }
    }
    // Templates enrolled here, after the records: a template the server
    // refuses stays queued (and logged) without holding up the outbox.
    for t in store.templates_to_upload()? {
        use base64::Engine;
        let upload = RosterTemplate {
            insured_id: t.insured_id.clone(),
            finger: t.finger,
            sealed: base64::engine::general_purpose::STANDARD.encode(&t.sealed),
            template_ref: t.template_ref,
        };
        match client.upload_template(&upload, clock()).await {
            Ok(()) => {
                store.template_uploaded(&t.insured_id, t.finger)?;
                notes.push("template uploaded".to_string());
            }
            Err(crate::sync::SyncError::Network(e)) => {
                return Err(crate::sync::SyncError::Network(e).into());
            }
            Err(e) => {
                tracing::error!(error = %e, "the server refused an enrolled template; kept for the next round");
                notes.push(format!("template upload: {e}"));
            }
        }
    }
    if reg.status == TerminalStatus::Approved {
        let n = client.pull_roster(store, clock()).await?;
        if n > 0 {
            let _ = inputs.send(Input::RosterUpdated);
            notes.push(format!("{n} roster changes"));
        }
    }
    notes.insert(0, format!("{sent} sent, {retired} acknowledged"));
    Ok(notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_resting_on_the_reader_is_one_tap_until_it_leaves() {
        let mut d = Debounce::default();
        let card = || Some("04A1B2C3".to_string());
        assert_eq!(d.feed(card()), card());
        assert_eq!(d.feed(card()), None);
        assert_eq!(d.feed(None), None);
        // One missed poll is not leaving the field.
        assert_eq!(d.feed(card()), None);
        assert_eq!(d.feed(None), None);
        assert_eq!(d.feed(None), None);
        assert_eq!(d.feed(card()), card(), "tapped again after it left");
        assert_eq!(
            d.feed(Some("04FF0001".into())),
            Some("04FF0001".into()),
            "another card is a new tap"
        );
    }

    #[test]
    fn the_vault_opens_what_it_sealed_and_nothing_without_a_key() {
        let empty = RosterKeyVault::default();
        assert!(empty.seal("P1", Finger::RightIndex, b"t").is_none());
        assert!(empty.template_key().is_none());
        let vault = RosterKeyVault::new(Some(SealKey([4; 32])));
        let sealed = vault.seal("P1", Finger::RightIndex, b"template").unwrap();
        assert_eq!(
            vault.open("P1", Finger::RightIndex, &sealed).as_deref(),
            Some(&b"template"[..])
        );
        assert!(vault.open("P2", Finger::RightIndex, &sealed).is_none());
        assert!(empty.open("P1", Finger::RightIndex, &sealed).is_none());
        assert_eq!(format!("{vault:?}"), "RosterKeyVault(redacted)");
    }

    #[test]
    fn the_roster_key_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.key");
        assert!(load_roster_key(&path).unwrap().is_none());
        save_roster_key(&path, &SealKey([7; 32])).unwrap();
        assert_eq!(load_roster_key(&path).unwrap(), Some(SealKey([7; 32])));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
