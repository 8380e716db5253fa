//! The nurse screen: a local web page for the Pi's touchscreen (a kiosk
//! browser opens `http://<ui.listen>/`), served by the terminal itself.
//!
//! The page polls `GET /api/state` and posts what the nurse touches. The
//! JSON here is between this binary and its own page; it is not an API for
//! other programs.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use wuding_protocol::{Dose, FallbackReason, Finger, TreatmentKind};

use crate::app::{Input, UiState};
use crate::flow::NurseAction;
use crate::messages::Lang;

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<UiState>>,
    inputs: Arc<Mutex<Sender<Input>>>,
}

/// The router for the nurse screen.
pub fn router(state: Arc<Mutex<UiState>>, inputs: Sender<Input>) -> Router {
    let shared = Shared {
        state,
        inputs: Arc::new(Mutex::new(inputs)),
    };
    Router::new()
        .route("/", get(index))
        .route("/api/state", get(current_state))
        .route("/api/pin", post(pin))
        .route("/api/action", post(action))
        .route("/api/fallback", post(fallback))
        .route("/api/lang", post(lang))
        .with_state(shared)
}

const INDEX_HTML: &str = include_str!("../ui/index.html");

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn current_state(State(s): State<Shared>) -> Response {
    let state = s.state.lock().expect("ui lock").clone();
    ([(header::CACHE_CONTROL, "no-store")], Json(state)).into_response()
}

fn send(s: &Shared, input: Input) -> StatusCode {
    match s.inputs.lock().expect("input lock").send(input) {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    pin: String,
}

async fn pin(State(s): State<Shared>, Json(body): Json<PinBody>) -> StatusCode {
    if body.pin.is_empty() || body.pin.len() > 12 || !body.pin.bytes().all(|b| b.is_ascii_digit()) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    send(&s, Input::Pin { pin: body.pin })
}

/// What the page can ask for.
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum ActionBody {
    Logout,
    StartEnrolment,
    Cancel,
    ConfirmWarnings,
    ChooseFinger {
        finger: Finger,
    },
    ChooseBed {
        bed: String,
    },
    ChooseTreatment {
        kind: TreatmentKind,
        service_code: String,
        drug_code: Option<String>,
        dose: Option<String>,
    },
    Dispense {
        bed: String,
        code: String,
        quantity: u32,
    },
}

async fn action(State(s): State<Shared>, Json(body): Json<ActionBody>) -> StatusCode {
    let action = match body {
        ActionBody::Logout => NurseAction::Logout,
        ActionBody::StartEnrolment => NurseAction::StartEnrolment,
        ActionBody::Cancel => NurseAction::Cancel,
        ActionBody::ConfirmWarnings => NurseAction::ConfirmWarnings,
        ActionBody::ChooseFinger { finger } => NurseAction::ChooseFinger(finger),
        ActionBody::ChooseBed { bed } => NurseAction::ChooseBed(bed),
        ActionBody::ChooseTreatment {
            kind,
            service_code,
            drug_code,
            dose,
        } => {
            let dose = match dose.as_deref().map(Dose::parse_text) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(_)) => return StatusCode::UNPROCESSABLE_ENTITY,
            };
            NurseAction::ChooseTreatment {
                kind,
                service_code,
                drug_code,
                dose,
            }
        }
        ActionBody::Dispense {
            bed,
            code,
            quantity,
        } => NurseAction::Dispense {
            bed,
            code,
            quantity,
        },
    };
    send(&s, Input::Nurse(action))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FallbackBody {
    reason: FallbackReason,
    witness_id: String,
    witness_pin: String,
}

async fn fallback(State(s): State<Shared>, Json(body): Json<FallbackBody>) -> StatusCode {
    send(
        &s,
        Input::Fallback {
            reason: body.reason,
            witness_id: body.witness_id,
            witness_pin: body.witness_pin,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LangBody {
    lang: String,
}

async fn lang(State(s): State<Shared>, Json(body): Json<LangBody>) -> StatusCode {
    let lang = match body.lang.as_str() {
        "zh" => Lang::Zh,
        "en" => Lang::En,
        _ => return StatusCode::UNPROCESSABLE_ENTITY,
    };
    send(&s, Input::Language(lang))
}
