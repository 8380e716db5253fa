//! The thin IO shell around the core: a thread that feeds it inputs (and a
//! tick every second) with the wall clock, and hands device commands to
//! whoever drives the devices.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::{Core, DeviceCommand, Input, TemplateVault};
use crate::flow::BedsidePolicy;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where the service takes the time from (Unix milliseconds). The wall
/// clock in production; a simulation (`wuding-sim demo`) plays a compressed
/// week through its own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// Runs the core on its own thread until every input sender is dropped.
pub fn spawn_core<P, V, D>(core: Core<P, V>, inputs: Receiver<Input>, devices: D) -> JoinHandle<()>
where
    P: BedsidePolicy + Send + 'static,
    V: TemplateVault + 'static,
    D: FnMut(DeviceCommand) + Send + 'static,
{
    spawn_core_with_clock(core, inputs, devices, system_clock())
}

/// Like [`spawn_core`], with the time taken from `clock`.
pub fn spawn_core_with_clock<P, V, D>(
    mut core: Core<P, V>,
    inputs: Receiver<Input>,
    mut devices: D,
    clock: Clock,
) -> JoinHandle<()>
where
    P: BedsidePolicy + Send + 'static,
    V: TemplateVault + 'static,
    D: FnMut(DeviceCommand) + Send + 'static,
{
    std::thread::Builder::new()
        .name("wuding-core".into())
        .spawn(move || {
            loop {
                let input = match inputs.recv_timeout(Duration::from_secs(1)) {
                    Ok(input) => input,
                    Err(RecvTimeoutError::Timeout) => Input::Tick,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                match core.handle(clock(), input) {
                    Ok(commands) => commands.into_iter().for_each(&mut devices),
                    // The store refused: logged; the flow already told the
                    // nurse. Nothing signed is lost (the transaction rolled back).
                    Err(e) => tracing::error!(error = %e, "local database error"),
                }
            }
        })
        .expect("spawning the core thread")
}
