//! `wuding-sim devices`: the emulated fingerprint module and PN532 reader
//! on pseudo-terminals, with stable links and a control socket.
//!
//! In `DIR` it creates:
//!
//! | path | what |
//! |---|---|
//! | `fingerprint` | symlink to the fingerprint module's pseudo-terminal (57600 8N1) |
//! | `nfc` | symlink to the PN532's pseudo-terminal (115200 8N1) |
//! | `control.sock` | Unix stream socket taking the control commands below |
//! | `fingerprint-library.bin` | the module's template library (kept across runs) |
//! | `devices.json` | the paths above and the process id |
//!
//! Control commands, one per line; each gets one line back, `ok` (with
//! JSON for `status`) or `error <why>`:
//!
//! ```text
//! finger place NAME [QUALITY]    a finger on the sensor until lifted (quality 0-100, default 80)
//! finger lift
//! fingerprint power-cycle        the module loses power and comes back: volatile state
//!                                is lost, the library kept, and it sends its 0x55 ready byte
//! card present UID [NUMBER]      a MIFARE Classic 1K in the field (UID 8 or 14 hex digits),
//!                                with an optional patient number in the patient block
//! card remove
//! status                         finger, card, library use, LED and command counts as JSON
//! ```
//!
//! `wuding-sim ctl --dir DIR WORDS...` sends one command and prints the
//! answer, for shell scripts.
//!
//! **Architecture Invariant:** the emulators' behaviour lives in the
//! sans-IO [`Module`] and [`EmulatedPn532`]; this file only moves bytes,
//! sleeps for the work they report, and parses control lines.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wuding_hardware::reader::{CardUid, PatientNumber, check_data_block};

use crate::fingerprint::{Library, Module, ModuleConfig, PlacedFinger, Timings};
use crate::pn532::{EmulatedPn532, Pn532Timings, VirtualCard};
use crate::pty::Pty;

/// Arguments of `wuding-sim devices`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevicesArgs {
    /// Directory for the device links, the control socket and the
    /// template library (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Template library capacity, as ReadSysPara reports it.
    #[arg(long, default_value_t = 1000)]
    pub capacity: u16,
    /// No emulated processing time (tests); default is realistic timing.
    #[arg(long)]
    pub instant: bool,
    /// Module password (hex, 8 digits); 0 means none.
    #[arg(long, default_value = "00000000")]
    pub password: String,
    /// Seed for capture noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// MIFARE Classic block that holds the patient number.
    #[arg(long, default_value_t = 4)]
    pub patient_block: u8,
}

impl DevicesArgs {
    pub fn new(dir: &Path) -> DevicesArgs {
        DevicesArgs {
            dir: dir.to_path_buf(),
            capacity: 1000,
            instant: false,
            password: "00000000".into(),
            seed: 1,
            patient_block: 4,
        }
    }
}

/// Arguments of `wuding-sim ctl`.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The directory `wuding-sim devices` runs in.
    #[arg(long)]
    pub dir: PathBuf,
    /// The command, e.g. `finger place P0001-R2 60`.
    #[arg(required = true, num_args = 1..)]
    pub words: Vec<String>,
}

/// One emulator on its pseudo-terminal: the state machine and the writer.
/// Lock order: `core`, then `writer`.
struct Port<C> {
    core: Mutex<C>,
    writer: Mutex<File>,
    pty: Pty,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread must not silence the device.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Work and bytes to perform, from either emulator.
enum Step {
    Work(Duration),
    Send(Vec<u8>),
}

fn perform(writer: &mut File, steps: Vec<Step>) {
    for step in steps {
        match step {
            Step::Work(d) if !d.is_zero() => std::thread::sleep(d),
            Step::Work(_) => {}
            Step::Send(bytes) => {
                // A client gone away is not an error for a device.
                let _ = writer.write_all(&bytes);
            }
        }
    }
}

trait Firmware: Send + 'static {
    fn receive(&mut self, bytes: &[u8]) -> Vec<Step>;
}

impl Module {
    fn power_cycle_steps(&mut self) -> Vec<Step> {
        fingerprint_steps(self.power_cycle())
    }
}

fn fingerprint_steps(outputs: Vec<crate::fingerprint::Output>) -> Vec<Step> {
    outputs
        .into_iter()
        .map(|o| match o {
            crate::fingerprint::Output::Work(d) => Step::Work(d),
            crate::fingerprint::Output::Send(b) => Step::Send(b),
        })
        .collect()
}

impl Firmware for Module {
    fn receive(&mut self, bytes: &[u8]) -> Vec<Step> {
        fingerprint_steps(Module::receive(self, bytes))
    }
}

impl Firmware for EmulatedPn532 {
    fn receive(&mut self, bytes: &[u8]) -> Vec<Step> {
        pn532_steps(EmulatedPn532::receive(self, bytes))
    }
}

fn pn532_steps(outputs: Vec<crate::pn532::Output>) -> Vec<Step> {
    outputs
        .into_iter()
        .map(|o| match o {
            crate::pn532::Output::Work(d) => Step::Work(d),
            crate::pn532::Output::Send(b) => Step::Send(b),
        })
        .collect()
}

impl<C: Firmware> Port<C> {
    fn open(core: C) -> io::Result<Arc<Port<C>>> {
        let pty = Pty::open()?;
        let writer = pty.master_file()?;
        Ok(Arc::new(Port {
            core: Mutex::new(core),
            writer: Mutex::new(writer),
            pty,
        }))
    }

    /// Runs `f` on the state machine and performs what it returns, in
    /// order with everything else this port sends.
    fn act(&self, f: impl FnOnce(&mut C) -> Vec<Step>) {
        let mut core = lock(&self.core);
        let steps = f(&mut core);
        let mut writer = lock(&self.writer);
        drop(core);
        perform(&mut writer, steps);
    }

    fn spawn_reader(self: &Arc<Self>, stop: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
        let port = Arc::clone(self);
        let mut master = self.pty.master_file()?;
        std::thread::Builder::new()
            .name("device-port".into())
            .spawn(move || {
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    let revents = {
                        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
                        match poll(&mut fds, PollTimeout::from(100u16)) {
                            Ok(n) if n > 0 => fds[0].revents().unwrap_or(PollFlags::empty()),
                            _ => PollFlags::empty(),
                        }
                    };
                    if !revents.contains(PollFlags::POLLIN) {
                        if revents.contains(PollFlags::POLLHUP) {
                            // No client has the port open: idle.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    }
                    let n = match io::Read::read(&mut master, &mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    };
                    if n > 0 {
                        port.act(|core| core.receive(&buf[..n]));
                    }
                }
            })
    }
}

/// Running emulated devices.
pub struct Devices {
    dir: PathBuf,
    fingerprint: Arc<Port<Module>>,
    nfc: Arc<Port<EmulatedPn532>>,
    patient_block: u8,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What `status` reports.
#[derive(serde::Serialize, Debug)]
pub struct DeviceStatus {
    pub fingerprint_path: PathBuf,
    pub nfc_path: PathBuf,
    /// The finger on the sensor (name), if any.
    pub finger: Option<String>,
    pub finger_quality: Option<u8>,
    /// Hex UID of the card in the field, if any.
    pub card: Option<String>,
    pub templates_stored: u16,
    pub library_capacity: u16,
    /// Last LED command (mode, colour) of the R503 ring.
    pub led: Option<String>,
    pub fingerprint_commands: u64,
    pub nfc_commands: u64,
    pub sam_configured: bool,
}

impl Devices {
    /// Starts both emulators and the control socket in `args.dir`.
    pub fn start(args: &DevicesArgs) -> anyhow::Result<Devices> {
        check_data_block(args.patient_block)
            .with_context(|| format!("--patient-block {}", args.patient_block))?;
        let password = u32::from_str_radix(&args.password, 16)
            .with_context(|| format!("--password {:?} is not 8 hex digits", args.password))?;
        std::fs::create_dir_all(&args.dir)
            .with_context(|| format!("creating {}", args.dir.display()))?;
        let library = Library::open(&args.dir.join("fingerprint-library.bin"), args.capacity)?;
        let module = Module::new(
            ModuleConfig {
                password,
                timings: if args.instant {
                    Timings::INSTANT
                } else {
                    Timings::REALISTIC
                },
                seed: args.seed,
                ..ModuleConfig::default()
            },
            library,
        );
        let chip = EmulatedPn532::new(if args.instant {
            Pn532Timings::INSTANT
        } else {
            Pn532Timings::REALISTIC
        });
        let fingerprint = Port::open(module).context("opening a pseudo-terminal")?;
        let nfc = Port::open(chip).context("opening a pseudo-terminal")?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut devices = Devices {
            dir: args.dir.clone(),
            fingerprint,
            nfc,
            patient_block: args.patient_block,
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        replace_symlink(
            devices.fingerprint.pty.slave_path(),
            &devices.fingerprint_link(),
        )?;
        replace_symlink(devices.nfc.pty.slave_path(), &devices.nfc_link())?;
        devices
            .threads
            .push(devices.fingerprint.spawn_reader(Arc::clone(&stop))?);
        devices
            .threads
            .push(devices.nfc.spawn_reader(Arc::clone(&stop))?);
        let socket = devices.control_path();
        let _ = std::fs::remove_file(&socket);
        let listener =
            UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
        listener.set_nonblocking(true)?;
        let control = ControlHandle {
            fingerprint: Arc::clone(&devices.fingerprint),
            nfc: Arc::clone(&devices.nfc),
            patient_block: devices.patient_block,
        };
        let stop_accept = Arc::clone(&stop);
        devices.threads.push(
            std::thread::Builder::new()
                .name("device-control".into())
                .spawn(move || accept_loop(listener, control, stop_accept))?,
        );
        let info = serde_json::json!({
            "fingerprint": devices.fingerprint.pty.slave_path(),
            "nfc": devices.nfc.pty.slave_path(),
            "control": socket,
            "pid": std::process::id(),
        });
        std::fs::write(args.dir.join("devices.json"), format!("{info:#}\n"))?;
        Ok(devices)
    }

    /// The stable link to the fingerprint module's port.
    pub fn fingerprint_link(&self) -> PathBuf {
        self.dir.join("fingerprint")
    }

    /// The stable link to the PN532's port.
    pub fn nfc_link(&self) -> PathBuf {
        self.dir.join("nfc")
    }

    pub fn control_path(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn handle(&self) -> ControlHandle {
        ControlHandle {
            fingerprint: Arc::clone(&self.fingerprint),
            nfc: Arc::clone(&self.nfc),
            patient_block: self.patient_block,
        }
    }

    /// Runs one control command, as the socket would.
    pub fn control(&self, line: &str) -> Result<String, String> {
        self.handle().execute(line)
    }

    pub fn place_finger(&self, name: &str, quality: u8) {
        lock(&self.fingerprint.core).place(PlacedFinger {
            name: name.into(),
            quality,
        });
    }

    /// Switches the fingerprint module between instant and realistic
    /// timings (benchmarks enrol quickly, then measure realistically).
    pub fn set_fingerprint_timings(&self, timings: Timings) {
        lock(&self.fingerprint.core).set_timings(timings);
    }

    pub fn lift_finger(&self) {
        lock(&self.fingerprint.core).lift();
    }

    pub fn present_card(&self, card: VirtualCard) {
        self.nfc.act(|chip| pn532_steps(chip.present(card)));
    }

    pub fn remove_card(&self) {
        lock(&self.nfc.core).remove();
    }

    pub fn status(&self) -> DeviceStatus {
        self.handle().status()
    }

    /// Stops the threads and removes the links and the socket.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(self.control_path());
        let _ = std::fs::remove_file(self.fingerprint_link());
        let _ = std::fs::remove_file(self.nfc_link());
    }
}

fn replace_symlink(target: &Path, link: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing old {}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

#[derive(Clone)]
struct ControlHandle {
    fingerprint: Arc<Port<Module>>,
    nfc: Arc<Port<EmulatedPn532>>,
    patient_block: u8,
}

impl ControlHandle {
    fn status(&self) -> DeviceStatus {
        let (finger, led, stored, capacity, fp_commands) = {
            let m = lock(&self.fingerprint.core);
            (
                m.finger().cloned(),
                m.led().map(|l| format!("{:?} {:?}", l.mode, l.colour)),
                m.library().count(),
                m.library().capacity(),
                m.commands,
            )
        };
        let (card, nfc_commands, sam) = {
            let c = lock(&self.nfc.core);
            (
                c.card()
                    .map(|c| CardUid::new(&c.uid).map(|u| u.to_hex()).unwrap_or_default()),
                c.commands,
                c.sam_configured(),
            )
        };
        DeviceStatus {
            fingerprint_path: self.fingerprint.pty.slave_path().to_path_buf(),
            nfc_path: self.nfc.pty.slave_path().to_path_buf(),
            finger_quality: finger.as_ref().map(|f| f.quality),
            finger: finger.map(|f| f.name),
            card,
            templates_stored: stored,
            library_capacity: capacity,
            led,
            fingerprint_commands: fp_commands,
            nfc_commands,
            sam_configured: sam,
        }
    }

    fn execute(&self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["finger", "place", name, rest @ ..] => {
                let quality = match rest {
                    [] => 80,
                    [q] => q
                        .parse::<u8>()
                        .ok()
                        .filter(|q| *q <= 100)
                        .ok_or_else(|| format!("quality {q:?} is not 0-100"))?,
                    _ => return Err("usage: finger place NAME [QUALITY]".into()),
                };
                lock(&self.fingerprint.core).place(PlacedFinger {
                    name: (*name).into(),
                    quality,
                });
                Ok("ok".into())
            }
            ["fingerprint", "power-cycle"] => {
                self.fingerprint.act(Module::power_cycle_steps);
                Ok("ok".into())
            }
            ["finger", "lift"] => {
                lock(&self.fingerprint.core).lift();
                Ok("ok".into())
            }
            ["card", "present", uid, rest @ ..] => {
                let uid = CardUid::from_hex(uid).map_err(|e| format!("UID {uid:?}: {e}"))?;
                let mut card =
                    VirtualCard::mifare_classic_1k(uid.as_bytes()).map_err(|e| e.to_string())?;
                match rest {
                    [] => {}
                    [number] => {
                        let n = PatientNumber::new(number)
                            .map_err(|e| format!("patient number: {e}"))?;
                        card = card.with_patient_number(self.patient_block, &n);
                    }
                    _ => return Err("usage: card present UID [NUMBER]".into()),
                }
                self.nfc.act(|chip| pn532_steps(chip.present(card)));
                Ok("ok".into())
            }
            ["card", "remove"] => {
                lock(&self.nfc.core).remove();
                Ok("ok".into())
            }
            ["status"] => serde_json::to_string(&self.status())
                .map(|s| format!("ok {s}"))
                .map_err(|e| e.to_string()),
            [] => Err("empty command".into()),
            _ => Err(format!(
                "unknown command {line:?}; commands: finger place NAME [QUALITY] | finger lift | \
                 fingerprint power-cycle | card present UID [NUMBER] | card remove | status"
            )),
        }
    }
}

fn accept_loop(listener: UnixListener, control: ControlHandle, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let control = control.clone();
                let _ = std::thread::Builder::new()
                    .name("device-control-conn".into())
                    .spawn(move || serve_connection(stream, &control));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn serve_connection(stream: UnixStream, control: &ControlHandle) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let reply = match control.execute(line.trim()) {
            Ok(s) => s,
            Err(e) => format!("error {e}"),
        };
        if writeln!(writer, "{reply}").is_err() {
            return;
        }
    }
}

/// Sends one control command to the devices running in `dir`.
pub fn send_control(dir: &Path, line: &str) -> anyhow::Result<String> {
    let path = dir.join("control.sock");
    let mut stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "connecting to {} (is `wuding-sim devices --dir {}` running?)",
            path.display(),
            dir.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(stream, "{line}")?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}

/// `wuding-sim devices`: runs until SIGINT or SIGTERM.
pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Block the signals in every thread, then wait for them here.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    let devices = Devices::start(&args)?;
    println!(
        "fingerprint module: {}",
        devices.fingerprint_link().display()
    );
    println!("NFC reader (PN532): {}", devices.nfc_link().display());
    println!("control socket:     {}", devices.control_path().display());
    println!("ready; Ctrl-C stops");
    let _ = io::stdout().flush();
    let signal = signals.wait()?;
    eprintln!("wuding-sim devices: {signal:?}, stopping");
    devices.shutdown();
    Ok(())
}

/// `wuding-sim ctl`.
pub fn run_ctl(args: CtlArgs) -> anyhow::Result<()> {
    let reply = send_control(&args.dir, &args.words.join(" "))?;
    println!("{reply}");
    if let Some(why) = reply.strip_prefix("error ") {
        anyhow::bail!("{why}");
    }
    Ok(())
}
