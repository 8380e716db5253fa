//! One bedside terminal of the demo and the people around it: the
//! terminal service (the code of `wuding-terminal run`) on its emulated
//! devices, a nurse who logs in with her card and PIN and works through the
//! nurse screen's HTTP API, and patients who tap their cards and place
//! their fingers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wuding_protocol::{FallbackReason, TreatmentKind};
use wuding_terminal::app::UiState;
use wuding_terminal::config::Config;
use wuding_terminal::flow::Screen;
use wuding_terminal::service::Service;
use wuding_terminal::store::OutboxStatus;

use super::clock::SimClock;
use super::link::Link;
use super::world::{DemoWorld, TerminalSpec};
use crate::devices::Devices;

/// How long one step at the bedside may take before the demo gives up.
const STEP: Duration = Duration::from_secs(20);

/// A session that was checked in and out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attended {
    pub patient: usize,
    pub day: i64,
    pub kind: TreatmentKind,
    /// The charge bound into the signed record (from the check-out screen).
    pub total_fen: u64,
    /// Checked in by supervised fallback.
    pub fallback: bool,
    pub checked_out: bool,
}

pub struct Bedside {
    pub spec: TerminalSpec,
    pub link: Link,
    pub attended: Vec<Attended>,
    service: Option<Service>,
    devices: Option<Devices>,
    screen: String,
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
    last_card: Option<String>,
    /// Check-ins of the week so far, per patient (worn fingers fail on the
    /// first).
    check_ins: std::collections::BTreeMap<usize, u32>,
}

fn config(
    spec: &TerminalSpec,
    world: &DemoWorld,
    data_dir: &Path,
    server: &str,
    devices: &Devices,
) -> anyhow::Result<Config> {
    let h = &world.hospitals[spec.hospital];
    let beds = spec
        .beds
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
[terminal]
id = "{id}"
hospital_code = "{hospital}"
department_code = "{dept}"
beds = [{beds}]
duty_doctor_id = "{doctor}"
data_dir = "{data}"

[server]
url = "{server}"
sync_interval_s = 1

[devices]
fingerprint = "{fp}"

[devices.card_reader]
kind = "pn532"
path = "{nfc}"

[ui]
listen = "127.0.0.1:0"
"#,
        id = spec.id,
        hospital = h.code,
        dept = spec.department_code,
        doctor = spec.duty_doctor,
        data = data_dir.display(),
        fp = devices.fingerprint_link().display(),
        nfc = devices.nfc_link().display(),
    );
    Ok(Config::parse(
        &text,
        &data_dir.join("wuding-terminal.toml"),
    )?)
}

impl Bedside {
    pub fn start(
        spec: TerminalSpec,
        world: &DemoWorld,
        data_dir: &Path,
        devices: Devices,
        link: Link,
        clock: SimClock,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<Bedside> {
        let config = config(&spec, world, data_dir, &link.url(), &devices)?;
        let service = Service::start_with_clock(config, clock.as_fn())
            .with_context(|| format!("starting terminal {}", spec.id))?;
        let screen = format!("http://{}", service.ui_addr());
        Ok(Bedside {
            spec,
            link,
            attended: Vec::new(),
            service: Some(service),
            devices: Some(devices),
            screen,
            http: reqwest::Client::new(),
            rt,
            last_card: None,
            check_ins: Default::default(),
        })
    }

    pub fn screen_url(&self) -> String {
        format!("{}/", self.screen)
    }

    pub fn ui(&self) -> Arc<Mutex<UiState>> {
        self.service().ui_state()
    }

    fn service(&self) -> &Service {
        self.service.as_ref().expect("running")
    }

    fn devices(&self) -> &Devices {
        self.devices.as_ref().expect("running")
    }

    pub fn outbox(&self) -> OutboxStatus {
        self.ui().lock().map(|u| u.outbox).unwrap_or_default()
    }

    pub fn shutdown(mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown();
        }
        if let Some(d) = self.devices.take() {
            d.shutdown();
        }
    }

    /// Waits for `what` on the terminal's screen state.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&UiState) -> Option<T>) -> anyhow::Result<T> {
        let ui = self.ui();
        let deadline = Instant::now() + STEP;
        loop {
            {
                let state = ui
                    .lock()
                    .map_err(|_| anyhow::anyhow!("screen state poisoned"))?;
                if let Some(v) = f(&state) {
                    return Ok(v);
                }
                if Instant::now() > deadline {
                    bail!(
                        "waited {STEP:?} for {what}; the screen shows {:?}",
                        state.screen
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Approved, roster and roster key received.
    pub fn wait_until_ready(&self, deadline: Instant) -> anyhow::Result<()> {
        let ui = self.ui();
        loop {
            {
                let u = ui
                    .lock()
                    .map_err(|_| anyhow::anyhow!("screen state poisoned"))?;
                if u.registration.is_none()
                    && u.last_sync_message
                        .as_deref()
                        .is_some_and(|m| m.contains("roster changes"))
                {
                    if !u.device_faults.is_empty() {
                        bail!(
                            "terminal {}: device faults {:?}",
                            self.spec.id,
                            u.device_faults
                        );
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!(
                        "terminal {} did not receive its roster: {:?}",
                        self.spec.id,
                        u.last_sync_message
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every signed record acknowledged by the server.
    pub fn wait_until_synced(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let o = self.outbox();
            if o.waiting == 0 && o.retired == o.head_seq {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("terminal {}: outbox not drained: {o:?}", self.spec.id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.screen);
        let response = self
            .rt
            .block_on(self.http.post(&url).json(&body).send())
            .with_context(|| format!("POST {url}"))?;
        if !response.status().is_success() {
            bail!("POST {url} {body}: {}", response.status());
        }
        Ok(())
    }

    fn action(&self, body: serde_json::Value) -> anyhow::Result<()> {
        self.post("/api/action", body)
    }

    /// A card in the reader's field. The same card twice in a row is taken
    /// away first, so the reader sees a new tap.
    fn tap(&mut self, uid: &str) -> anyhow::Result<()> {
        let devices = self.devices.as_ref().expect("running");
        if self.last_card.as_deref() == Some(uid) {
            devices
                .control("card remove")
                .map_err(|e| anyhow::anyhow!(e))?;
            let before = devices.status().nfc_commands;
            let deadline = Instant::now() + STEP;
            while devices.status().nfc_commands < before + 4 {
                if Instant::now() > deadline {
                    bail!("the card reader stopped polling");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        devices
            .control(&format!("card present {uid}"))
            .map_err(|e| anyhow::anyhow!(e))?;
        self.last_card = Some(uid.to_string());
        Ok(())
    }

    fn login(&mut self, world: &DemoWorld) -> anyhow::Result<()> {
        let (_, card, _, pin) = world.hospitals[self.spec.hospital].nurses[0].clone();
        self.tap(&card)?;
        self.wait("the PIN pad", |u| u.pin_for.is_some().then_some(()))?;
        self.post("/api/pin", serde_json::json!({ "pin": pin }))?;
        self.wait("the nurse to be logged in", |u| {
            u.nurse.is_some().then_some(())
        })
    }

    fn logout(&mut self) -> anyhow::Result<()> {
        self.action(serde_json::json!({ "action": "logout" }))?;
        self.wait("the nurse to be logged out", |u| {
            u.nurse.is_none().then_some(())
        })
    }

    fn mine<'w>(
        &self,
        world: &'w DemoWorld,
    ) -> impl Iterator<Item = (usize, &'w super::world::DemoPatient)> + use<'w> {
        let me = world
            .terminals
            .iter()
            .position(|t| t.id == self.spec.id)
            .unwrap_or(usize::MAX);
        world
            .patients
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.terminal == me)
    }

    /// The nurse enrols every patient of this terminal: card tap, finger
    /// chosen on the screen, three captures, 1:N search, stored.
    pub fn enrol_all(&mut self, world: &DemoWorld) -> anyhow::Result<()> {
        self.login(world)?;
        let patients: Vec<_> = self.mine(world).map(|(_, p)| p.clone()).collect();
        for p in patients {
            self.action(serde_json::json!({ "action": "start_enrolment" }))?;
            self.wait("the enrolment screen", |u| {
                matches!(u.screen, Screen::EnrolTapCard { .. }).then_some(())
            })?;
            self.devices().place_finger(&p.finger_name, 90);
            self.tap(&p.card_uid)?;
            self.wait("the finger choice", |u| {
                matches!(u.screen, Screen::EnrolChooseFinger { .. }).then_some(())
            })?;
            self.action(serde_json::json!({ "action": "choose_finger", "finger": p.finger }))?;
            self.wait("the enrolment to finish", |u| match &u.screen {
                Screen::EnrolDone { .. } => Some(Ok(())),
                Screen::Notice { message } => Some(Err(anyhow::anyhow!("{}", message.en))),
                _ => None,
            })??;
            self.devices().lift_finger();
        }
        self.logout()
    }

    fn occupied(u: &UiState) -> usize {
        u.beds.iter().filter(|b| b.patient.is_some()).count()
    }

    /// The morning: every patient due today taps in.
    pub fn check_in_all(&mut self, world: &DemoWorld, day: i64) -> anyhow::Result<()> {
        let due: Vec<_> = self
            .mine(world)
            .filter(|(_, p)| p.attends(day))
            .map(|(i, p)| (i, p.clone()))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let witness = world.hospitals[self.spec.hospital].nurses[1].clone();
        self.login(world)?;
        for (i, p) in due {
            let n = self.check_ins.entry(i).or_default();
            *n += 1;
            let fails = p.worn && *n == 1;
            let before = self.ui().lock().map(|u| Self::occupied(&u)).unwrap_or(0);
            if fails {
                // Dry, worn fingertips: the module cannot match them.
                self.devices()
                    .place_finger(&format!("{}-worn", p.finger_name), 20);
            } else {
                self.devices().place_finger(&p.finger_name, 85);
            }
            self.tap(&p.card_uid)?;
            let mut fallback = false;
            self.wait_step("the session to open", |b, u| {
                match &u.screen {
                    Screen::SessionOpen { .. } if Self::occupied(u) == before + 1 => {
                        return Ok(Some(()));
                    }
                    Screen::ChooseFallback { .. } if !fallback => {
                        fallback = true;
                        b.post(
                            "/api/fallback",
                            serde_json::json!({
                                "reason": FallbackReason::FingerprintUnreadable,
                                "witness_id": witness.0,
                                "witness_pin": witness.3,
                            }),
                        )?;
                    }
                    Screen::Warnings { .. } => {
                        b.action(serde_json::json!({ "action": "confirm_warnings" }))?;
                    }
                    Screen::Refused { verdicts, .. } => {
                        bail!("check-in refused: {verdicts:?}");
                    }
                    _ => {}
                }
                Ok(None)
            })?;
            self.devices().lift_finger();
            self.attended.push(Attended {
                patient: i,
                day,
                kind: p.kind(),
                total_fen: 0,
                fallback,
                checked_out: false,
            });
        }
        self.logout()
    }

    /// Polls the screen state and lets `f` act on it (post to the nurse
    /// screen) until it says done.
    fn wait_step(
        &self,
        what: &str,
        mut f: impl FnMut(&Bedside, &UiState) -> anyhow::Result<Option<()>>,
    ) -> anyhow::Result<()> {
        let ui = self.ui();
        let deadline = Instant::now() + STEP;
        let mut seen = u64::MAX;
        loop {
            let state = ui
                .lock()
                .map_err(|_| anyhow::anyhow!("screen state poisoned"))?
                .clone();
            if state.version != seen {
                seen = state.version;
                if f(self, &state)?.is_some() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "waited {STEP:?} for {what}; the screen shows {:?}",
                    state.screen
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Around noon: the same patients tap out with their fingers; the
    /// charge is bound into the signed session record. Returns how many.
    pub fn check_out_all(&mut self, world: &DemoWorld, day: i64) -> anyhow::Result<usize> {
        let open: Vec<usize> = self
            .attended
            .iter()
            .enumerate()
            .filter(|(_, a)| a.day == day && !a.checked_out)
            .map(|(k, _)| k)
            .collect();
        if open.is_empty() {
            return Ok(0);
        }
        self.login(world)?;
        for &k in &open {
            let p = world.patients[self.attended[k].patient].clone();
            let before = self.ui().lock().map(|u| Self::occupied(&u)).unwrap_or(0);
            self.devices().place_finger(&p.finger_name, 85);
            self.tap(&p.card_uid)?;
            let witness = world.hospitals[self.spec.hospital].nurses[1].clone();
            let mut fallback = false;
            let mut total = 0u64;
            self.wait_step("the check-out", |b, u| {
                match &u.screen {
                    Screen::CheckedOut { total_fen, .. } if Self::occupied(u) + 1 == before => {
                        total = *total_fen;
                        return Ok(Some(()));
                    }
                    Screen::ChooseFallback { .. } if !fallback => {
                        fallback = true;
                        b.post(
                            "/api/fallback",
                            serde_json::json!({
                                "reason": FallbackReason::FingerprintUnreadable,
                                "witness_id": witness.0,
                                "witness_pin": witness.3,
                            }),
                        )?;
                    }
                    _ => {}
                }
                Ok(None)
            })?;
            self.devices().lift_finger();
            self.attended[k].total_fen = total;
            self.attended[k].checked_out = true;
        }
        self.logout()?;
        Ok(open.len())
    }
}
