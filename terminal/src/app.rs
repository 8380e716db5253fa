//! The terminal's core: the session flow wired to the local store, the
//! roster cache and the screen state. Devices and the web UI talk to it
//! through [`Input`]s and [`DeviceCommand`]s, so it runs the same with real
//! modules, emulated ones, or none (in tests).
//!
//! Threading: one core owns the flow and the store and handles one input at
//! a time; a device thread runs the blocking module commands and polls the
//! card reader; the web UI and the sync task only send inputs and read the
//! shared [`UiState`].

use std::sync::{Arc, Mutex};

use serde::Serialize;
use wuding_protocol::{FallbackReason, Finger, TemplateRef, TerminalSigner, TreatmentKind};

use crate::flow::{
    Action, BedsidePolicy, CardOwner, EnrolResult, Event, FingerResult, Flow, FlowConfig,
    NurseAction, PatientContext, Screen, Signal, StaffRef, local_date, mask_uid,
};
use crate::messages::{Lang, Text};
use crate::store::{OutboxStatus, Store, StoreError};

/// Something that happened, for the core to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Tick,
    /// A card was read (UID as upper-case hex).
    Card {
        uid: String,
    },
    Finger(FingerResult),
    Enrol(EnrolResult),
    /// The PIN typed after a staff card.
    Pin {
        pin: String,
    },
    Nurse(NurseAction),
    /// Supervised fallback with the witness's own credentials.
    Fallback {
        reason: FallbackReason,
        witness_id: String,
        witness_pin: String,
    },
    Language(Lang),
    /// The sync task's latest outcome.
    SyncReport {
        ok: bool,
        at_ms: i64,
        message: String,
    },
    /// The terminal's standing with the server: `Some(text)` while it
    /// cannot work normally (e.g. waiting for approval), `None` once approved.
    Registration(Option<Text>),
    /// The roster cache changed (prices are re-read).
    RosterUpdated,
    /// A device failed (`fault` says what to check) or works again (`None`).
    DeviceStatus {
        device: String,
        fault: Option<Text>,
    },
}

/// Work for the device thread.
#[derive(Clone, PartialEq, Eq)]
pub enum DeviceCommand {
    /// Download `template` into the module, capture, match 1:1.
    VerifyFinger {
        template: Vec<u8>,
        template_ref: TemplateRef,
        finger: Finger,
    },
    EnrolCapture {
        capture: u8,
    },
    /// Combine captures, search the module library 1:N, store, upload.
    EnrolBuild {
        insured_id: String,
        finger: Finger,
    },
    Indicate(Signal),
}

impl std::fmt::Debug for DeviceCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceCommand::VerifyFinger { finger, .. } => {
                write!(f, "VerifyFinger({finger:?}, template redacted)")
            }
            DeviceCommand::EnrolCapture { capture } => write!(f, "EnrolCapture({capture})"),
            DeviceCommand::EnrolBuild { finger, .. } => write!(f, "EnrolBuild({finger:?})"),
            DeviceCommand::Indicate(s) => write!(f, "Indicate({s:?})"),
        }
    }
}

/// A bed on the nurse screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BedView {
    pub bed: String,
    pub patient: Option<String>,
    pub kind: Option<TreatmentKind>,
    pub since_ms: Option<i64>,
}

/// Everything the nurse screen shows, refreshed after every input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UiState {
    pub terminal_id: String,
    pub lang: Lang,
    pub screen: Screen,
    /// A staff card was tapped: the PIN pad is shown for this person.
    pub pin_for: Option<String>,
    pub nurse: Option<String>,
    pub beds: Vec<BedView>,
    pub outbox: OutboxStatus,
    pub last_sync_ok_ms: Option<i64>,
    pub last_sync_message: Option<String>,
    /// Not yet approved by the server (or revoked): what the screen says.
    pub registration: Option<Text>,
    /// Devices that do not work, and what to check.
    pub device_faults: Vec<DeviceFaultView>,
    /// Bumped on every change so the page knows when to redraw.
    pub version: u64,
}

/// A device fault on the nurse screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceFaultView {
    pub device: String,
    pub message: Text,
}

/// Opens sealed templates from the roster cache for the module.
pub trait TemplateVault: Send {
    fn open(&self, insured_id: &str, finger: Finger, sealed: &[u8]) -> Option<Vec<u8>>;
}

/// Verifies a staff PIN against its stored hash.
pub fn pin_matches(pin: &str, pin_hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(pin.as_bytes(), pin_hash)
        .is_ok()
}

/// Hashes a PIN (argon2id, random salt) for the roster.
pub fn hash_pin(pin: &str) -> String {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(pin.as_bytes())
        .expect("argon2 hashing with default parameters succeeds")
        .to_string()
}

pub struct Core<P, V> {
    flow: Flow<P>,
    store: Store,
    signer: TerminalSigner,
    vault: V,
    config: FlowConfig,
    pending_pin: Option<crate::store::CachedStaff>,
    ui: Arc<Mutex<UiState>>,
    screen: Screen,
}

impl<P: BedsidePolicy, V: TemplateVault> Core<P, V> {
    /// Builds the core from the store's state (open sessions, prices).
    pub fn new(
        config: FlowConfig,
        policy: P,
        store: Store,
        signer: TerminalSigner,
        vault: V,
    ) -> Result<Self, StoreError> {
        let open = store.open_sessions()?;
        let prices = store.price_list()?;
        let flow = Flow::new(config.clone(), policy, prices, open);
        let screen = flow.screen();
        let ui = Arc::new(Mutex::new(UiState {
            terminal_id: config.terminal_id.clone(),
            lang: Lang::Zh,
            screen: screen.clone(),
            pin_for: None,
            nurse: None,
            beds: Vec::new(),
            outbox: store.outbox_status()?,
            last_sync_ok_ms: None,
            last_sync_message: None,
            registration: None,
            device_faults: Vec::new(),
            version: 0,
        }));
        let mut core = Core {
            flow,
            store,
            signer,
            vault,
            config,
            pending_pin: None,
            ui,
            screen,
        };
        core.publish()?;
        Ok(core)
    }

    /// The shared screen state for the web UI.
    pub fn ui(&self) -> Arc<Mutex<UiState>> {
        Arc::clone(&self.ui)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Handles one input; returns work for the device thread.
    pub fn handle(&mut self, now_ms: i64, input: Input) -> Result<Vec<DeviceCommand>, StoreError> {
        let mut commands = Vec::new();
        let events = self.events_for(now_ms, input)?;
        let mut queue: std::collections::VecDeque<Event> = events.into();
        while let Some(event) = queue.pop_front() {
            let actions = self.flow.handle(now_ms, event);
            for action in actions {
                if let Some(next) = self.execute(now_ms, action, &mut commands)? {
                    queue.push_back(next);
                }
            }
        }
        self.publish()?;
        Ok(commands)
    }

    fn events_for(&mut self, now_ms: i64, input: Input) -> Result<Vec<Event>, StoreError> {
        Ok(match input {
            Input::Tick => vec![Event::Tick],
            Input::Card { uid } => vec![self.card_event(now_ms, uid)?],
            Input::Finger(result) => vec![Event::Finger(result)],
            Input::Enrol(result) => vec![Event::Enrol(result)],
            Input::Pin { pin } => match self.pending_pin.take() {
                Some(staff) if pin_matches(&pin, &staff.pin_hash) => {
                    vec![Event::NurseLoggedIn(StaffRef {
                        staff_id: staff.staff_id,
                        display_name: staff.display_name,
                    })]
                }
                Some(staff) => {
                    self.store
                        .audit(now_ms, &format!("wrong PIN for staff {}", staff.staff_id))?;
                    vec![Event::NurseLoginFailed]
                }
                None => vec![],
            },
            Input::Nurse(action) => vec![Event::Nurse(action)],
            Input::Fallback {
                reason,
                witness_id,
                witness_pin,
            } => {
                let ok = self
                    .store
                    .staff_by_id(&witness_id)?
                    .is_some_and(|w| pin_matches(&witness_pin, &w.pin_hash));
                if ok {
                    vec![Event::Nurse(NurseAction::Fallback { reason, witness_id })]
                } else {
                    self.store.audit(
                        now_ms,
                        &format!("fallback refused: witness {witness_id} not confirmed"),
                    )?;
                    self.screen = Screen::Notice {
                        message: Text::new(
                            "第二名医护人员身份未能确认（工号或密码错误）",
                            "The second staff member could not be confirmed (id or PIN wrong)",
                        ),
                    };
                    vec![]
                }
            }
            Input::Language(lang) => {
                self.ui.lock().expect("ui lock").lang = lang;
                vec![]
            }
            Input::SyncReport { ok, at_ms, message } => {
                let mut ui = self.ui.lock().expect("ui lock");
                if ok {
                    ui.last_sync_ok_ms = Some(at_ms);
                }
                ui.last_sync_message = Some(message);
                vec![]
            }
            Input::RosterUpdated => {
                self.flow.set_prices(self.store.price_list()?);
                vec![]
            }
            Input::Registration(text) => {
                self.ui.lock().expect("ui lock").registration = text;
                vec![]
            }
            Input::DeviceStatus { device, fault } => {
                let mut ui = self.ui.lock().expect("ui lock");
                ui.device_faults.retain(|f| f.device != device);
                if let Some(message) = fault {
                    ui.device_faults.push(DeviceFaultView { device, message });
                }
                vec![]
            }
        })
    }

    /// Resolves a card against the roster cache.
    fn card_event(&mut self, now_ms: i64, uid: String) -> Result<Event, StoreError> {
        if let Some(patient) = self.store.patient_by_card(&uid)? {
            let date = local_date(now_ms, self.config.utc_offset_min);
            let fingers = self
                .store
                .templates_of(&patient.insured_id)?
                .into_iter()
                .map(|t| t.finger)
                .collect();
            let context = PatientContext {
                plan: self.store.plan_for(&patient.insured_id, date)?,
                sessions_today: self.store.sessions_on(
                    &patient.insured_id,
                    date,
                    self.config.utc_offset_min,
                )?,
                insured_id: patient.insured_id,
                card_uid: patient.card_uid,
                display_name: patient.display_name,
                fingers,
            };
            return Ok(Event::CardTapped {
                card_uid: uid,
                owner: CardOwner::Patient(Box::new(context)),
            });
        }
        if let Some(staff) = self.store.staff_by_card(&uid)? {
            let owner = CardOwner::Staff(StaffRef {
                staff_id: staff.staff_id.clone(),
                display_name: staff.display_name.clone(),
            });
            if self.flow.nurse().is_none() {
                self.pending_pin = Some(staff);
            }
            return Ok(Event::CardTapped {
                card_uid: uid,
                owner,
            });
        }
        self.store
            .audit(now_ms, &format!("unknown card {}", mask_uid(&uid)))?;
        Ok(Event::CardTapped {
            card_uid: uid,
            owner: CardOwner::Unknown,
        })
    }

    /// Carries out one action; may produce a follow-up event (the store's
    /// confirmation).
    fn execute(
        &mut self,
        now_ms: i64,
        action: Action,
        commands: &mut Vec<DeviceCommand>,
    ) -> Result<Option<Event>, StoreError> {
        match action {
            Action::Show(screen) => self.screen = screen,
            Action::Indicate(signal) => commands.push(DeviceCommand::Indicate(signal)),
            Action::VerifyFinger { insured_id, finger } => {
                let template = self
                    .store
                    .templates_of(&insured_id)?
                    .into_iter()
                    .find(|t| t.finger == finger);
                match template.and_then(|t| {
                    self.vault
                        .open(&insured_id, finger, &t.sealed)
                        .map(|bytes| (bytes, t.template_ref))
                }) {
                    Some((template, template_ref)) => commands.push(DeviceCommand::VerifyFinger {
                        template,
                        template_ref,
                        finger,
                    }),
                    // A template that cannot be opened is a fault, not a
                    // mismatch: the flow offers the supervised fallback.
                    None => return Ok(Some(Event::Finger(FingerResult::DeviceFault))),
                }
            }
            Action::EnrolCapture { capture } => {
                commands.push(DeviceCommand::EnrolCapture { capture })
            }
            Action::EnrolBuild { insured_id, finger } => {
                commands.push(DeviceCommand::EnrolBuild { insured_id, finger })
            }
            Action::PersistOpen(session) => {
                return Ok(Some(match self.store.put_open_session(&session) {
                    Ok(()) => Event::Persisted { bed: session.bed },
                    Err(e) => {
                        tracing::error!(error = %e, "storing an open session failed");
                        Event::StoreFailed
                    }
                }));
            }
            Action::Sign { record, closes } => {
                return Ok(Some(
                    match self
                        .store
                        .sign_and_store(&self.signer, *record, closes.as_deref())
                    {
                        Ok(envelope) => {
                            let seq = envelope
                                .decode()
                                .map(|v| v.record.seq())
                                .unwrap_or_default();
                            Event::Signed {
                                record_id: envelope.record_id(),
                                seq,
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "signing and storing a record failed");
                            Event::StoreFailed
                        }
                    },
                ));
            }
            Action::Audit(line) => self.store.audit(now_ms, &line)?,
        }
        Ok(None)
    }

    fn publish(&mut self) -> Result<(), StoreError> {
        let outbox = self.store.outbox_status()?;
        let beds = self
            .config
            .beds
            .iter()
            .map(|bed| {
                let open = self.flow.open_sessions().find(|s| &s.bed == bed);
                BedView {
                    bed: bed.clone(),
                    patient: open.map(|s| s.display_name.clone()),
                    kind: open.map(|s| s.kind),
                    since_ms: open.map(|s| s.check_in.at_ms),
                }
            })
            .collect();
        let mut ui = self.ui.lock().expect("ui lock");
        ui.screen = self.screen.clone();
        ui.pin_for = self.pending_pin.as_ref().map(|s| s.display_name.clone());
        ui.nurse = self.flow.nurse().map(|n| n.display_name.clone());
        ui.beds = beds;
        ui.outbox = outbox;
        ui.version += 1;
        Ok(())
    }
}
