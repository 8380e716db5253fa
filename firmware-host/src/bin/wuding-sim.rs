//! `wuding-sim`: emulated devices (`devices`), the scenario generator
//! (`generate`) and the clinic demo (`demo`).
//!
//! Each subcommand's arguments and body live in the library module that owns
//! the concept; this file only dispatches.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wuding-sim",
    version,
    about = "wuding simulator: emulated devices, generated months, the clinic demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start an emulated fingerprint module and PN532 reader on
    /// pseudo-terminals, with stable links and a control socket in DIR.
    Devices(wuding_firmware_host::devices::DevicesArgs),
    /// Send one control command to running `devices` (e.g. `finger place
    /// P0001-R2 60`, `card present 04A1B2C3`, `status`).
    Ctl(wuding_firmware_host::devices::CtlArgs),
    /// Write a generated month of a region (records, claims, rosters,
    /// ground truth) into a directory.
    Generate(wuding_firmware_host::scenario::GenerateArgs),
    /// The whole system on this PC: a server, bedside terminals on
    /// emulated devices, a week of patients, honest and dishonest claims,
    /// reconciliation; then the auditor application until Ctrl-C.
    Demo(wuding_firmware_host::demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => wuding_firmware_host::devices::run(args),
        Command::Ctl(args) => wuding_firmware_host::devices::run_ctl(args),
        Command::Generate(args) => wuding_firmware_host::scenario::run(args),
        Command::Demo(args) => wuding_firmware_host::demo::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wuding-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
