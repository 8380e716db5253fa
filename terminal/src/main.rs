//! `wuding-terminal`: the bedside application. Thin: parse arguments, set up
//! logging, load the configuration and key, then hand over to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wuding-terminal", version, about = "wuding bedside terminal")]
struct Cli {
    /// The configuration file (see wuding-terminal.example.toml).
    #[arg(long, short, default_value = "/etc/wuding/terminal.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bedside service: devices, nurse screen, sync (the default).
    Run,
    /// Check the configuration file and print what it says.
    CheckConfig,
    /// Print this terminal's public key and key id (creating the key on
    /// first use) for the administrator to approve.
    ShowKey,
    /// Print the outbox state: records waiting for the server, chain head.
    Status,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = wuding_terminal::config::Config::load(&cli.config)?;
    match cli.command {
        Some(Command::CheckConfig) => {
            println!("{}: valid", cli.config.display());
            println!(
                "terminal {} at {} / {}",
                config.terminal.id, config.terminal.hospital_code, config.terminal.department_code
            );
            println!("beds: {}", config.terminal.beds.join(", "));
            println!("server: {}", config.server.url);
            println!("nurse screen: http://{}/", config.ui.listen);
            Ok(())
        }
        Some(Command::ShowKey) => {
            let key_path = config.terminal.data_dir.join("terminal.key");
            let (signer, created) = wuding_terminal::identity::load_or_create(&key_path)?;
            if created {
                println!("created a new key in {}", key_path.display());
            }
            println!("terminal_id = {}", config.terminal.id);
            println!("public_key  = {}", signer.public_key().to_hex());
            println!("key_id      = {}", signer.key_id());
            Ok(())
        }
        Some(Command::Status) => {
            let db = config.terminal.data_dir.join("terminal.db");
            let store = wuding_terminal::store::Store::open(&db)
                .with_context(|| format!("opening {}", db.display()))?;
            let s = store.outbox_status()?;
            println!("records waiting for the server: {}", s.waiting);
            println!("records acknowledged:           {}", s.retired);
            println!("chain head:                     {}", s.head_seq);
            Ok(())
        }
        Some(Command::Run) | None => wuding_terminal::service::run(config),
    }
}
