//! `wuding-sim demo`: a simulated clinic, end to end, in one process.
//!
//! * the server: the same library code `wuding-server serve` runs (store,
//!   transparency log, router with the template vault), SQLite in a data
//!   directory, on `--listen`;
//! * N bedside terminals: the same `Service` `wuding-terminal run` starts,
//!   each on its own emulated fingerprint module and PN532 (real
//!   pseudo-terminals) and its own nurse-screen port, each talking to the
//!   server through a loopback [`link::Link`] the demo can cut;
//! * two hospitals, one honest and one not: rosters, staff, prices and
//!   五定 plans imported through the server's roster import;
//! * a compressed week played through the devices and the nurse screens
//!   on a shared simulated clock ([`clock::SimClock`]);
//! * the claims of both hospitals imported through the claims import, and
//!   reconciled.
//!
//! `docs/demo.md` describes what happens, the flags and the decisions.

pub mod bedside;
pub mod clock;
pub mod link;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wuding_server::reconcile::Summary;
use wuding_server::store::{FindingFilter, FindingRow, Store};

use crate::devices::{Devices, DevicesArgs};
use crate::scenario::calendar;
use bedside::{Attended, Bedside};
use clock::SimClock;
use link::Link;
use world::{DemoWorld, Injected};

/// How fast the emulated devices answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Speed {
    /// Instant module answers: the week plays in seconds.
    Fast,
    /// The fingerprint module's and the reader's real timings (image 250
    /// ms, extraction 280 ms, ...): what a patient would wait.
    Realistic,
}

/// Arguments of `wuding-sim demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Data directory (server database, keys, claims, terminals); must be
    /// empty or absent. Default: a new directory under the system's
    /// temporary directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Bedside terminals (at least 2): the first two are dialysis
    /// terminals of the honest and the dishonest hospital, the next two
    /// their oncology day wards (chemotherapy), then more dialysis.
    #[arg(long, default_value_t = 4)]
    pub terminals: usize,
    /// Virtual patients, split between the two hospitals.
    #[arg(long, default_value_t = 16)]
    pub patients: usize,
    /// Days played (ending yesterday).
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    #[arg(long, value_enum, default_value_t = Speed::Fast)]
    pub speed: Speed,
    /// Where the server (and the auditor application) listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Stop after the summary instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_when_done: bool,
}

impl DemoArgs {
    /// Defaults, as the command line has them.
    pub fn new() -> DemoArgs {
        DemoArgs {
            data: None,
            terminals: 4,
            patients: 16,
            days: 7,
            speed: Speed::Fast,
            listen: "127.0.0.1:8080".into(),
            exit_when_done: false,
        }
    }
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs::new()
    }
}

/// What the demo did, for the summary and for tests.
#[derive(Debug, Clone)]
pub struct Report {
    pub data_dir: PathBuf,
    pub server_url: String,
    /// (terminal id, hospital name, nurse screen URL).
    pub nurse_screens: Vec<(String, String, String)>,
    /// First and last day played (`YYYY-MM-DD`).
    pub from: String,
    pub to: String,
    pub sessions: usize,
    pub fallbacks: usize,
    /// Records the terminal that lost its network signed while cut off.
    pub queued_while_offline: u64,
    /// Claim ids of the honest hospital.
    pub honest_claims: Vec<String>,
    /// Claim ids of the dishonest hospital, injected ones included.
    pub dishonest_claims: Vec<String>,
    pub injected: Vec<Injected>,
    pub summary: Summary,
    /// Wall time from start to the "open" line.
    pub elapsed: Duration,
    /// Logins of the auditor application (user, password, role).
    pub logins: Vec<(String, String, String)>,
    /// Staff cards and PINs for the nurse screens (staff id, card, PIN).
    pub staff: Vec<(String, String, String)>,
}

/// A finished demo whose server and terminals still run.
pub struct Demo {
    pub report: Report,
    store: Arc<dyn Store>,
    bedsides: Vec<Bedside>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Demo {
    /// The server's store (for assertions).
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Findings of the played period.
    pub fn findings(&self) -> anyhow::Result<Vec<FindingRow>> {
        Ok(self.store.findings(&FindingFilter {
            from: Some(self.report.from.clone()),
            to: Some(self.report.to.clone()),
            severity: None,
            rule_id: None,
        })?)
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub fn wait_for_signal(&self) {
        if let Some(rt) = &self.runtime {
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
        }
    }

    /// Stops the terminals, the devices and the server.
    pub fn shutdown(mut self) {
        for b in self.bedsides.drain(..) {
            b.shutdown();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// `wuding-sim demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let exit = args.exit_when_done;
    let demo = start(&args, &mut |line| println!("{line}"))?;
    if !exit {
        demo.wait_for_signal();
        println!("stopping");
    }
    demo.shutdown();
    Ok(())
}

fn fresh_data_dir(data: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match data {
        Some(d) => d.to_path_buf(),
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("wuding-demo-{stamp}-{}", std::process::id()))
        }
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "--data {}: the directory is not empty; the demo starts from nothing (choose a new or empty directory)",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs the demo up to the summary and returns it still running. `say`
/// gets every line of the narration.
pub fn start(args: &DemoArgs, say: &mut dyn FnMut(String)) -> anyhow::Result<Demo> {
    let started = Instant::now();
    if args.terminals < 2 {
        bail!("--terminals {}: the demo needs at least 2", args.terminals);
    }
    if args.patients < 2 {
        bail!("--patients {}: the demo needs at least 2", args.patients);
    }
    if !(1..=28).contains(&args.days) {
        bail!("--days {}: between 1 and 28", args.days);
    }
    let dir = fresh_data_dir(args.data.as_deref())?;
    let wall = clock::wall_ms();
    let today = calendar::local_day(wall);
    let first_day = today - i64::from(args.days);
    let clock = SimClock::new(calendar::local_ms(first_day - 1, 7 * 60));
    let world = DemoWorld::build(args.terminals, args.patients, first_day, args.days);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wuding-demo")
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    // ---- the server ---------------------------------------------------------
    let db_path = dir.join("server.db");
    let server = server::start(&runtime, &dir, &db_path, &args.listen, clock.clone())?;
    let store = server.store.clone();
    say(format!(
        "wuding demo: a simulated clinic ({} terminals, {} patients, {} days)",
        args.terminals, args.patients, args.days
    ));
    say(format!("data directory: {}", dir.display()));
    say(format!(
        "server: {} (SQLite {})",
        server.url,
        db_path.display()
    ));
    world.import_roster(&*store)?;
    say(format!(
        "roster: {} patients, {} staff, 五定 plans and prices for {} and {}",
        world.patients.len(),
        world.staff_count(),
        world.hospitals[0].name,
        world.hospitals[1].name
    ));

    // ---- terminals ------------------------------------------------------------
    let mut bedsides = Vec::new();
    for spec in &world.terminals {
        let link = runtime.block_on(Link::start(server.addr))?;
        let mut devices_args = DevicesArgs::new(&dir.join("devices").join(&spec.id));
        devices_args.instant = args.speed == Speed::Fast;
        devices_args.capacity = 200;
        let devices = Devices::start(&devices_args)
            .with_context(|| format!("starting the emulated devices of {}", spec.id))?;
        let b = Bedside::start(
            spec.clone(),
            &world,
            &dir.join("terminals").join(&spec.id),
            devices,
            link,
            clock.clone(),
            runtime.handle().clone(),
        )?;
        bedsides.push(b);
    }
    // Registration, approval by the administrator, roster and roster key.
    let deadline = Instant::now() + Duration::from_secs(30);
    for b in &bedsides {
        loop {
            if let Some(row) = store.terminal(&b.spec.id)? {
                if row.status == "pending" {
                    store.approve_terminal(&b.spec.id, clock.now())?;
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("terminal {} never registered with the server", b.spec.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for b in &bedsides {
        b.wait_until_ready(deadline)?;
        say(format!(
            "terminal {} ({} {}): registered, approved, roster received; nurse screen {}",
            b.spec.id,
            world.hospitals[b.spec.hospital].name,
            b.spec.department_name,
            b.screen_url()
        ));
    }

    // ---- the week -----------------------------------------------------------
    let played = play(&world, &mut bedsides, &clock, say)?;
    clock.follow_wall_clock();
    // Everything signed reaches the server (the cut terminal catches up).
    let deadline = Instant::now() + Duration::from_secs(60);
    for b in &bedsides {
        b.wait_until_synced(deadline)?;
    }
    say(format!(
        "all terminals synced: {} records on the server, every one acknowledged with a receipt",
        bedsides.iter().map(|b| b.outbox().retired).sum::<u64>()
    ));

    // ---- claims and reconciliation ------------------------------------------
    let attended: Vec<Attended> = bedsides.iter().flat_map(|b| b.attended.clone()).collect();
    let claims = world.claims(&attended);
    let mut honest_claims = Vec::new();
    let mut dishonest_claims = Vec::new();
    for (h, hospital) in world.hospitals.iter().enumerate() {
        let rows: Vec<_> = claims
            .rows
            .iter()
            .filter(|r| r.hospital_code == hospital.code)
            .collect();
        let mut csv = csv::Writer::from_writer(Vec::new());
        for r in &rows {
            csv.serialize(r)?;
        }
        let bytes = csv
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing claims: {e}"))?;
        let path = dir.join(format!("claims-{}.csv", hospital.code));
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        let report = wuding_server::claims::import(
            &*store,
            bytes.as_slice(),
            &wuding_server::claims::Mapping::standard(),
            &format!("demo {}", path.display()),
            |_| {},
        )?;
        if !report.errors.is_empty() {
            bail!("claims of {}: {:?}", hospital.code, report.errors);
        }
        let ids: Vec<String> = rows.iter().map(|r| r.claim_id.clone()).collect();
        say(format!(
            "claims of {} ({}): {} lines imported from {}",
            hospital.name,
            if hospital.honest {
                "claims exactly what happened"
            } else {
                "claims more than happened"
            },
            report.inserted,
            path.display()
        ));
        if h == 0 {
            honest_claims = ids;
        } else {
            dishonest_claims = ids;
        }
    }
    let rules = wuding_server::reconcile::load_rules(None)?;
    let from = calendar::format_date(first_day);
    let to = calendar::format_date(first_day + i64::from(args.days) - 1);
    let period = wuding_server::reconcile::period(&from, &to)?;
    let (summary, _) = wuding_server::reconcile::run(&*store, &rules, period, clock.now(), false)?;

    let mut report = Report {
        data_dir: dir.clone(),
        server_url: server.url.clone(),
        nurse_screens: bedsides
            .iter()
            .map(|b| {
                (
                    b.spec.id.clone(),
                    world.hospitals[b.spec.hospital].name.clone(),
                    b.screen_url(),
                )
            })
            .collect(),
        from,
        to,
        sessions: attended.len(),
        fallbacks: attended.iter().filter(|a| a.fallback).count(),
        queued_while_offline: played.queued_while_offline,
        honest_claims,
        dishonest_claims,
        injected: claims.injected,
        summary,
        elapsed: Duration::ZERO,
        logins: Vec::new(),
        staff: world.staff_logins(),
    };
    summarise(&report, &store, say)?;
    report.logins = create_logins(&*store, &world, clock.now())?;
    report.elapsed = started.elapsed();
    say(format!(
        "open {}/ in a browser: the auditor application (findings, cases, evidence); log in as {}",
        report.server_url,
        report
            .logins
            .iter()
            .map(|(user, password, what)| format!("{user} / {password} ({what})"))
            .collect::<Vec<_>>()
            .join(", or ")
    ));
    for (id, hospital, url) in &report.nurse_screens {
        say(format!("  nurse screen of {id} ({hospital}): {url}"));
    }
    say(format!(
        "  staff cards for the nurse screens (wuding-sim ctl --dir {}/devices/<terminal> card present CARD): {}",
        dir.display(),
        report
            .staff
            .iter()
            .map(|(id, card, pin)| format!("{id} card {card} PIN {pin}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    say(format!(
        "ready in {:.1} s{}",
        report.elapsed.as_secs_f64(),
        if args.exit_when_done {
            ""
        } else {
            "; Ctrl-C stops the server and the terminals"
        }
    ));
    Ok(Demo {
        report,
        store,
        bedsides,
        runtime: Some(runtime),
    })
}

/// A password of 14 letters and digits (no look-alikes).
fn new_password() -> String {
    const CHARS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 14];
    rand::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| CHARS[usize::from(*b) % CHARS.len()] as char)
        .collect()
}

/// Logins of the auditor application: an auditor of the fund, an
/// administrator, and a user of the dishonest hospital (who sees its own
/// notified findings and answers them). Fresh passwords every run.
fn create_logins(
    store: &dyn Store,
    world: &DemoWorld,
    now_ms: i64,
) -> anyhow::Result<Vec<(String, String, String)>> {
    use wuding_server::casework::Role;
    let dishonest = &world.hospitals[1];
    let users = [
        (
            "auditor",
            "医保审核员",
            Role::Auditor,
            None,
            "auditor of the fund".to_string(),
        ),
        (
            "admin",
            "系统管理员",
            Role::Admin,
            None,
            "administrator".to_string(),
        ),
        (
            "jiangnan",
            "江南康复医院医保办",
            Role::Hospital,
            Some(dishonest.code.as_str()),
            format!("user of {}", dishonest.name),
        ),
    ];
    let mut logins = Vec::new();
    for (user, name, role, hospital, what) in users {
        let password = new_password();
        wuding_server::web::add_user(store, user, name, role, hospital, &password, now_ms)
            .map_err(|e| anyhow::anyhow!("creating the login {user}: {e:?}"))?;
        logins.push((user.to_string(), password, what));
    }
    Ok(logins)
}

fn summarise(
    report: &Report,
    store: &Arc<dyn Store>,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let s = &report.summary;
    let yuan = |fen: u64| format!("{}.{:02}", fen / 100, fen % 100);
    say(format!(
        "sessions attested {} to {}: {} ({} by supervised fallback); the terminal cut off from the network queued {} records and caught up",
        report.from, report.to, report.sessions, report.fallbacks, report.queued_while_offline
    ));
    say(format!(
        "claims: {} lines from the honest hospital, {} from the dishonest one ({} injected)",
        report.honest_claims.len(),
        report.dishonest_claims.len(),
        report.injected.len()
    ));
    say(format!(
        "findings: {}, money at stake {} yuan",
        s.total.findings,
        yuan(s.total.amount_fen)
    ));
    for sev in ["red", "yellow", "green"] {
        let t = s.by_severity.get(sev).copied().unwrap_or_default();
        say(format!(
            "  {sev:<7} {:>5}  {:>12} yuan",
            t.findings,
            yuan(t.amount_fen)
        ));
    }
    say("  by rule:".to_string());
    for (rule, t) in &s.by_rule {
        say(format!(
            "    {rule:<26} {:>5}  {:>12} yuan",
            t.findings,
            yuan(t.amount_fen)
        ));
    }
    let red = store.findings(&FindingFilter {
        from: Some(report.from.clone()),
        to: Some(report.to.clone()),
        severity: Some("red".into()),
        rule_id: None,
    })?;
    let caught = report
        .injected
        .iter()
        .filter(|i| red.iter().any(|f| f.claim_ids.contains(&i.claim_id)))
        .count();
    let honest_red = red
        .iter()
        .filter(|f| f.claim_ids.iter().any(|c| report.honest_claims.contains(c)))
        .count();
    say(format!(
        "injected frauds found red: {caught} of {}; red findings on the honest hospital's claims: {honest_red}",
        report.injected.len()
    ));
    for i in &report.injected {
        say(format!(
            "  {:<16} claim {} ({})",
            i.kind, i.claim_id, i.note
        ));
    }
    Ok(())
}

/// What playing the week produced beyond each terminal's log.
struct Played {
    queued_while_offline: u64,
}

/// One step all terminals take together on the shared clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Enrol,
    CheckIn(i64),
    CheckOut(i64),
}

/// Plays enrolment and the week, all terminals in parallel, phase by
/// phase: the coordinator sets the clock, every terminal plays its part of
/// the phase, and the next phase starts when all are done.
fn play(
    world: &DemoWorld,
    bedsides: &mut [Bedside],
    clock: &SimClock,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<Played> {
    let mut phases = vec![Phase::Enrol];
    for d in 0..world.days {
        let day = world.first_day + i64::from(d);
        phases.push(Phase::CheckIn(day));
        phases.push(Phase::CheckOut(day));
    }
    // The first dialysis terminal of the honest hospital loses its network
    // for two days of the week (or until the end of a shorter one).
    let cut_terminal = 0usize;
    let cut_at = world.days / 3;
    let restore_at = (cut_at + 2).min(world.days);
    let link = bedsides[cut_terminal].link.clone();
    let barrier = Barrier::new(bedsides.len() + 1);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let closed: Vec<std::sync::atomic::AtomicUsize> = (0..world.days)
        .map(|_| std::sync::atomic::AtomicUsize::new(0))
        .collect();
    let mut outbox_at_cut = 0u64;
    let mut queued = 0u64;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut ui = Vec::new();
        for b in bedsides.iter_mut() {
            ui.push(b.ui());
            let barrier = &barrier;
            let phases = &phases;
            let failure = &failure;
            let closed = &closed;
            scope.spawn(move || {
                for phase in phases {
                    barrier.wait();
                    let failed = failure.lock().map(|f| f.is_some()).unwrap_or(true);
                    if !failed {
                        let mut result = match phase {
                            Phase::Enrol => b.enrol_all(world),
                            Phase::CheckIn(day) => b.check_in_all(world, *day),
                            Phase::CheckOut(day) => b.check_out_all(world, *day).map(|n| {
                                closed[(day - world.first_day) as usize]
                                    .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                            }),
                        };
                        // A connected terminal uploads the day's records
                        // the same day (the clock jumps hours per phase,
                        // its sync runs every real second).
                        if result.is_ok() && !matches!(phase, Phase::CheckIn(_)) && b.link.is_up() {
                            result = b.wait_until_synced(Instant::now() + Duration::from_secs(30));
                        }
                        if let Err(e) = result {
                            let e = e.context(format!("terminal {} in {phase:?}", b.spec.id));
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                    barrier.wait();
                }
            });
        }
        let signed = |i: usize| ui[i].lock().map(|u| u.outbox.head_seq).unwrap_or_default();
        let mut error = None;
        for phase in &phases {
            match phase {
                Phase::Enrol => clock.set(calendar::local_ms(world.first_day - 1, 14 * 60)),
                Phase::CheckIn(day) => {
                    let d = (day - world.first_day) as u32;
                    if d == cut_at && restore_at > cut_at {
                        link.cut();
                        outbox_at_cut = signed(cut_terminal);
                        say(format!(
                            "{}: terminal {} loses its network; it keeps working and queues its records",
                            calendar::format_date(*day),
                            world.terminals[cut_terminal].id
                        ));
                    }
                    if d == restore_at {
                        link.restore();
                        queued = signed(cut_terminal) - outbox_at_cut;
                        say(format!(
                            "{}: terminal {} is back online and uploads the {queued} records it signed offline",
                            calendar::format_date(*day),
                            world.terminals[cut_terminal].id,
                        ));
                    }
                    clock.set(calendar::local_ms(*day, 7 * 60 + 30));
                }
                Phase::CheckOut(day) => clock.set(calendar::local_ms(*day, 11 * 60 + 45)),
            }
            barrier.wait();
            barrier.wait();
            if error.is_none()
                && let Some(e) = failure
                    .lock()
                    .ok()
                    .and_then(|f| f.as_ref().map(|e| anyhow::anyhow!("{e:#}")))
            {
                error = Some(e);
            }
            if error.is_some() {
                continue;
            }
            match phase {
                Phase::Enrol => say(format!(
                    "{}: {} patients enrolled (card tap, finger chosen by the nurse, three captures, 1:N check)",
                    calendar::format_date(world.first_day - 1),
                    world.patients.len()
                )),
                Phase::CheckIn(_) => {}
                Phase::CheckOut(day) => {
                    let n = closed[(day - world.first_day) as usize]
                        .load(std::sync::atomic::Ordering::SeqCst);
                    say(format!(
                        "{} {}: {n} sessions checked in and out at the bedside",
                        calendar::format_date(*day),
                        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                            [calendar::weekday(*day) as usize]
                    ));
                }
            }
        }
        if restore_at == world.days && restore_at > cut_at {
            queued = signed(cut_terminal) - outbox_at_cut;
            say(format!(
                "terminal {} is back online and uploads the {queued} records it signed offline",
                world.terminals[cut_terminal].id
            ));
        }
        link.restore();
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    Ok(Played {
        queued_while_offline: queued,
    })
}

mod server {
    use super::*;
    use std::net::SocketAddr;
    use wuding_protocol::TerminalSigner;
    use wuding_server::http::{AppState, Metrics, ServerOptions, router_with};
    use wuding_server::ingest::{IngestPolicy, Log};
    use wuding_server::templates::TemplateVault;

    pub struct Running {
        pub store: Arc<dyn Store>,
        pub url: String,
        pub addr: SocketAddr,
    }

    /// Writes a new random 32-byte key as hex with mode 0600, the format
    /// `wuding-server serve --log-key-file` reads.
    fn new_key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(hex::encode(seed).as_bytes())?;
        f.sync_all()?;
        Ok(seed)
    }

    /// The server as `wuding-server serve --db DIR/server.db --log-key-file
    /// DIR/log.key --template-key-file DIR/template.key` runs it, on the
    /// demo's clock.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        dir: &Path,
        db: &Path,
        listen: &str,
        clock: SimClock,
    ) -> anyhow::Result<Running> {
        let store: Arc<dyn Store> = Arc::from(
            wuding_server::store::open(&db.to_string_lossy())
                .with_context(|| format!("opening {}", db.display()))?,
        );
        let seed = new_key_file(&dir.join("log.key"))?;
        let log = Arc::new(Log::new(TerminalSigner::from_seed(&seed)));
        log.sync(&*store)?;
        let options = ServerOptions {
            vault: Some(Arc::new(
                TemplateVault::load_or_create(&dir.join("template.key"))
                    .map_err(|e| anyhow::anyhow!("template key: {e}"))?,
            )),
            ..Default::default()
        };
        let state = AppState {
            store: Arc::clone(&store),
            log,
            policy: IngestPolicy::default(),
            metrics: Arc::new(Metrics::default()),
            clock: clock.as_fn(),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| format!("--listen {listen}: cannot listen there (in use?)"))?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, router_with(state, options)).await {
                tracing::error!(error = %e, "the server stopped");
            }
        });
        Ok(Running {
            store,
            url: format!("http://{addr}"),
            addr,
        })
    }
}
