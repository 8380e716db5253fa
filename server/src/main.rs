//! `wuding-server`: thin binary. Parse arguments, set up tracing, open the
//! store named by `--db` (an SQLite path or a postgres:// URL), launch.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use wuding_protocol::TerminalSigner;
use wuding_server::claims::{self, Mapping};
use wuding_server::http::{AdminToken, AppState, Metrics, ServerOptions, router_with};
use wuding_server::ingest::{IngestPolicy, Log};
use wuding_server::reconcile;
use wuding_server::roster::RosterKind;
use wuding_server::store::{self, Store};
use wuding_server::templates::TemplateVault;

/// mimalloc instead of the system allocator: reconciliation allocates and
/// frees millions of short strings a part, and glibc's malloc returned the
/// freed memory to the kernel only to fault it in again (a third of a
/// province run was the kernel zeroing pages; docs/rules.md). Runs keep
/// their freed memory until they end (`wuding_server::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wuding-server", version, about = "wuding central server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Db {
    /// SQLite file path, or a postgres:// URL.
    #[arg(long, default_value = "wuding.db")]
    db: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        #[command(flatten)]
        db: Db,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The log's signing key (hex seed, mode 0600); created if missing.
        /// Keep it outside the database.
        #[arg(long, default_value = "wuding-log.key")]
        log_key_file: PathBuf,
        /// The key that seals fingerprint templates at rest and derives the
        /// hospitals' roster keys (hex, mode 0600); created if missing. Keep
        /// it outside the database.
        #[arg(long)]
        template_key_file: Option<PathBuf>,
        /// A file holding the administrator's bearer token (at least 16
        /// characters). Without it the admin API is off.
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// How far (seconds) a terminal clock may run ahead before a
        /// `clock_skew` flag.
        #[arg(long, default_value_t = 300)]
        max_future_skew_secs: i64,
        /// After how many hours between signing and arrival a record gets a
        /// `late_sync` flag.
        #[arg(long, default_value_t = 168)]
        late_after_hours: i64,
        /// Rules file for `POST /api/v1/admin/reconcile` (default: the
        /// shipped rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Reconcile the previous and current month automatically this
        /// often (seconds) when records or claims have arrived; 0 = only
        /// on demand (`reconcile`, `POST /api/v1/admin/reconcile`).
        #[arg(long, default_value_t = 300)]
        reconcile_every_secs: u64,
    },
    /// Terminal registry.
    Terminal {
        #[command(subcommand)]
        action: TerminalAction,
    },
    /// A consistent copy of an SQLite database while the server runs
    /// (PostgreSQL: use pg_dump). Keep the log and template key files with
    /// it, but apart from it.
    Backup {
        /// The new file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        db: Db,
    },
    /// Shows or sets an application setting. Known: `appeal_days`, the
    /// days a hospital has to appeal after it is notified (default 15).
    Setting {
        key: String,
        /// The new value; without it, the current one is printed.
        value: Option<String>,
        #[command(flatten)]
        db: Db,
    },
    /// Users of the auditor application.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Import signed records (JSON lines of envelopes) from a terminal that
    /// was offline for a long time.
    ImportRecords {
        file: PathBuf,
        #[command(flatten)]
        db: Db,
        #[arg(long, default_value = "wuding-log.key")]
        log_key_file: PathBuf,
        /// receipts.csv (`record_id,...,received_at_ms`): replay each
        /// record's arrival at its receipt time (a generated month), so clock
        /// skew and late sync are measured as they happened.
        #[arg(long)]
        receipts: Option<PathBuf>,
    },
    /// Import a roster file: `import-roster FILE` reads patients
    /// (roster.csv); `import-roster KIND FILE` reads patients, staff, plans
    /// or prices (CSV layouts in docs/data-formats.md).
    ImportRoster {
        /// `FILE`, or `KIND FILE`.
        #[arg(num_args = 1..=2, required = true, value_names = ["KIND", "FILE"])]
        args: Vec<String>,
        #[command(flatten)]
        db: Db,
    },
    /// Import 五定 plans (plans.csv).
    ImportPlans {
        file: PathBuf,
        #[command(flatten)]
        db: Db,
    },
    /// Import staff (staff.csv; PINs are hashed on import).
    ImportStaff {
        file: PathBuf,
        #[command(flatten)]
        db: Db,
    },
    /// Import price lists (prices.csv).
    ImportPrices {
        file: PathBuf,
        #[command(flatten)]
        db: Db,
    },
    /// Import approved (and revoked) terminals (terminals.csv).
    ImportTerminals {
        file: PathBuf,
        #[command(flatten)]
        db: Db,
    },
    /// Import claims (CSV of DESIGN.md, or any layout with --mapping).
    ImportClaims {
        file: PathBuf,
        #[arg(long)]
        mapping: Option<PathBuf>,
        #[command(flatten)]
        db: Db,
    },
    /// Reconcile a period: claims against attested sessions, plans and
    /// integrity alarms; findings are upserted by their stable id.
    Reconcile {
        /// First day, YYYY-MM-DD (local date, inclusive).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (inclusive).
        #[arg(long)]
        to: String,
        /// A rules file (TOML, docs/rules.md); default: the shipped rules.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: Db,
    },
    /// List stored findings, one row per finding.
    Findings {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// red, yellow or green.
        #[arg(long)]
        severity: Option<String>,
        /// A rule id (docs/rules.md).
        #[arg(long)]
        rule: Option<String>,
        /// csv, json or xlsx (xlsx needs --out).
        #[arg(long, value_enum, default_value = "csv")]
        format: FindingsFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        db: Db,
    },
    /// Write the evidence bundle (ZIP) of one finding, or of a case (several
    /// --finding): signed records, terminal keys, inclusion proofs, a
    /// signed checkpoint and a bilingual summary.
    Evidence {
        /// A finding id (32 hex digits); repeat for a case.
        #[arg(long = "finding", required = true)]
        findings: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        /// Who makes the bundle (recorded in it); default: $USER.
        #[arg(long)]
        created_by: Option<String>,
        #[command(flatten)]
        db: Db,
        #[arg(long, default_value = "wuding-log.key")]
        log_key_file: PathBuf,
    },
    /// Check an evidence bundle offline: one line per check, non-zero exit
    /// on any failure.
    VerifyBundle { file: PathBuf },
    /// Threshold what-if: findings and money per candidate value of one
    /// parameter of one rule, over a stored period (nothing is stored).
    Whatif {
        #[arg(long)]
        rule: String,
        #[arg(long)]
        param: String,
        /// Candidate values, comma-separated (TOML values: 0.2,0.25,0.3).
        #[arg(long, value_delimiter = ',', required = true)]
        values: Vec<String>,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        rules: Option<PathBuf>,
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FindingsFormat {
    Csv,
    Json,
    Xlsx,
}

#[derive(Subcommand)]
enum UserAction {
    /// Adds a user. The password comes from the environment variable
    /// WUDING_PASSWORD, or is asked for when stdin is a terminal.
    Add {
        username: String,
        /// auditor, senior_auditor, hospital or admin.
        #[arg(long)]
        role: String,
        /// The institution of a hospital user.
        #[arg(long)]
        hospital: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        db: Db,
    },
    /// Sets a new password (from WUDING_PASSWORD or asked for) and unlocks.
    Password {
        username: String,
        #[command(flatten)]
        db: Db,
    },
    List {
        #[command(flatten)]
        db: Db,
    },
}

/// The password for `user add` / `user password`.
fn password_input() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("WUDING_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("set WUDING_PASSWORD (stdin is not a terminal to ask on)");
    }
    eprint!("password (at least 10 characters, shown as you type): ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[derive(Subcommand)]
enum TerminalAction {
    List {
        #[command(flatten)]
        db: Db,
    },
    Approve {
        terminal_id: String,
        #[command(flatten)]
        db: Db,
    },
    Revoke {
        terminal_id: String,
        #[command(flatten)]
        db: Db,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open(db: &Db) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::from(
        store::open(&db.db).with_context(|| format!("opening {}", db.db))?,
    ))
}

/// Loads the log key, creating it (mode 0600) on first use.
fn log_key(path: &Path) -> anyhow::Result<TerminalSigner> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = wuding_protocol::ids::parse_lower_hex(text.trim())
                .with_context(|| format!("{} is not 64 hex digits", path.display()))?;
            Ok(TerminalSigner::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(seed).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "created a new log key");
            Ok(TerminalSigner::from_seed(&seed))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            db,
            listen,
            log_key_file,
            template_key_file,
            admin_token_file,
            max_future_skew_secs,
            late_after_hours,
            rules,
            reconcile_every_secs,
        } => {
            let store = open(&db)?;
            let log = Arc::new(Log::new(log_key(&log_key_file)?));
            let size = log.sync(&*store)?;
            let mut options = ServerOptions::default();
            if rules.is_some() {
                options.rules = Some(Arc::new(reconcile::load_rules(rules.as_deref())?));
            }
            if let Some(path) = template_key_file {
                options.vault = Some(Arc::new(TemplateVault::load_or_create(&path)?));
            }
            if let Some(path) = admin_token_file {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                options.admin_token = Some(AdminToken::new(&text).with_context(|| {
                    format!(
                        "{}: the token must be at least 16 characters",
                        path.display()
                    )
                })?);
            }
            let state = AppState {
                store,
                log,
                policy: IngestPolicy {
                    max_future_skew_ms: max_future_skew_secs.saturating_mul(1000),
                    late_after_ms: late_after_hours.saturating_mul(3_600_000),
                },
                metrics: Arc::new(Metrics::default()),
                clock: Arc::new(now_ms),
            };
            // Database clients must be dropped outside the async runtime.
            let keep_store = state.store.clone();
            if reconcile_every_secs > 0 {
                let (store, log, options) =
                    (state.store.clone(), state.log.clone(), options.clone());
                std::thread::Builder::new()
                    .name("auto-reconcile".into())
                    .spawn(move || {
                        let mut mark = reconcile::Watermark::default();
                        loop {
                            std::thread::sleep(std::time::Duration::from_secs(
                                reconcile_every_secs,
                            ));
                            let mut step = || -> anyhow::Result<Option<reconcile::Summary>> {
                                let size = log.sync(&*store)?;
                                let rules = wuding_server::web::active_rules(&*store, &options)
                                    .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
                                Ok(reconcile::reconcile_if_changed(
                                    &*store,
                                    &rules,
                                    size,
                                    &mut mark,
                                    now_ms(),
                                )?)
                            };
                            match step() {
                                Ok(Some(s)) => tracing::info!(
                                    from = %s.from, to = %s.to, findings = s.total.findings,
                                    new = s.stored.new, "automatic reconciliation"
                                ),
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::error!(error = %e, "automatic reconciliation failed")
                                }
                            }
                        }
                    })?;
            }
            let runtime = tokio::runtime::Runtime::new()?;
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                tracing::info!(addr = %listener.local_addr()?, log_size = size, "wuding-server listening");
                println!("listening on http://{}", listener.local_addr()?);
                axum::serve(listener, router_with(state, options))
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await?;
                Ok::<(), anyhow::Error>(())
            });
            drop(runtime);
            drop(keep_store);
            served
        }
        Command::Terminal { action } => match action {
            TerminalAction::List { db } => {
                let store = open(&db)?;
                println!(
                    "{:<24} {:<14} {:<10} {:<32} last contact",
                    "terminal", "hospital", "status", "key id"
                );
                for t in store.terminals()? {
                    println!(
                        "{:<24} {:<14} {:<10} {:<32} {}",
                        t.terminal_id,
                        t.hospital_code,
                        t.status,
                        t.key_id,
                        t.last_contact_ms.map_or("never".into(), |m| m.to_string())
                    );
                }
                Ok(())
            }
            TerminalAction::Approve { terminal_id, db } => {
                open(&db)?.approve_terminal(&terminal_id, now_ms())?;
                println!("approved {terminal_id}");
                Ok(())
            }
            TerminalAction::Revoke { terminal_id, db } => {
                open(&db)?.revoke_terminal(&terminal_id, now_ms())?;
                println!("revoked {terminal_id}: records it signed from now on are refused");
                Ok(())
            }
        },
        Command::Backup { out, db } => {
            if db.db.starts_with("postgres://") || db.db.starts_with("postgresql://") {
                bail!(
                    "for PostgreSQL use pg_dump (e.g. pg_dump -Fc -f wuding.dump '{}')",
                    db.db
                );
            }
            let store = wuding_server::store::sqlite::SqliteStore::open(Path::new(&db.db))?;
            store.backup_to(&out)?;
            println!("backed up {} to {}", db.db, out.display());
            Ok(())
        }
        Command::Setting { key, value, db } => {
            if key != "appeal_days" {
                bail!("unknown setting `{key}`; known: appeal_days");
            }
            let store = open(&db)?;
            match value {
                None => println!(
                    "{key} = {}",
                    store.setting(&key)?.unwrap_or_else(|| format!(
                        "{} (default)",
                        wuding_server::web::DEFAULT_APPEAL_DAYS
                    ))
                ),
                Some(v) => {
                    let days: u32 = v
                        .parse()
                        .ok()
                        .filter(|d| (1..=365).contains(d))
                        .with_context(|| {
                            format!("appeal_days `{v}`: a whole number of days, 1 to 365")
                        })?;
                    store.put_setting(&key, &days.to_string())?;
                    println!("{key} = {days}");
                }
            }
            Ok(())
        }
        Command::User { action } => match action {
            UserAction::Add {
                username,
                role,
                hospital,
                name,
                db,
            } => {
                let store = open(&db)?;
                let role = wuding_server::casework::Role::parse(&role).with_context(|| {
                    format!("role `{role}`: use auditor, senior_auditor, hospital or admin")
                })?;
                let password = password_input()?;
                let user = wuding_server::web::add_user(
                    &*store,
                    &username,
                    &name,
                    role,
                    hospital.as_deref(),
                    &password,
                    now_ms(),
                )
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
                println!("added {} ({})", user.username, user.role);
                Ok(())
            }
            UserAction::Password { username, db } => {
                let store = open(&db)?;
                let hash = wuding_server::casework::hash_password(&password_input()?)?;
                store.set_password(&username, &hash)?;
                println!("new password set for {username}; the account is unlocked");
                Ok(())
            }
            UserAction::List { db } => {
                let store = open(&db)?;
                for u in store.users()? {
                    println!(
                        "{:<24} {:<16} {:<14} {}",
                        u.username,
                        u.role,
                        u.hospital_code.as_deref().unwrap_or("-"),
                        u.display_name
                    );
                }
                Ok(())
            }
        },
        Command::ImportRecords {
            file,
            db,
            log_key_file,
            receipts,
        } => {
            let store = open(&db)?;
            let log = Log::new(log_key(&log_key_file)?);
            log.sync(&*store)?;
            let receipts = match receipts {
                Some(path) => Some(wuding_server::ingest::read_receipts(
                    std::fs::File::open(&path)
                        .with_context(|| format!("opening {}", path.display()))?,
                )?),
                None => None,
            };
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?,
            );
            let report = wuding_server::ingest::import_records(
                &*store,
                &log,
                &IngestPolicy::default(),
                reader,
                receipts.as_ref(),
                &now_ms,
            )?;
            for (line, why) in &report.bad_lines {
                eprintln!("line {line}: {why}");
            }
            for (id, reason, detail) in &report.rejected {
                eprintln!("record {}: {reason}: {detail}", id.short());
            }
            for (k, v) in &report.counts {
                println!("{k}: {v}");
            }
            println!("unreadable lines: {}", report.bad_lines.len());
            Ok(())
        }
        Command::Reconcile {
            from,
            to,
            rules,
            json,
            db,
        } => {
            let store = open(&db)?;
            let rules = reconcile::load_rules(rules.as_deref())?;
            let period = reconcile::period(&from, &to)?;
            let summary = reconcile::run_stored(
                &*store,
                &rules,
                period,
                now_ms(),
                std::io::stderr().is_terminal(),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.render());
            }
            Ok(())
        }
        Command::Findings {
            from,
            to,
            severity,
            rule,
            format,
            out,
            db,
        } => {
            let store = open(&db)?;
            let filter = reconcile::filter(
                from.as_deref(),
                to.as_deref(),
                severity.as_deref(),
                rule.as_deref(),
            )?;
            let rows = store.findings(&filter)?;
            let bytes = match format {
                FindingsFormat::Xlsx => wuding_server::export::findings_xlsx(&rows)?,
                FindingsFormat::Csv | FindingsFormat::Json => {
                    let format = match format {
                        FindingsFormat::Json => reconcile::Format::Json,
                        _ => reconcile::Format::Csv,
                    };
                    let mut buf = Vec::new();
                    reconcile::write_findings(&rows, format, &mut buf)?;
                    buf
                }
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("{} findings written to {}", rows.len(), path.display());
                }
                None if matches!(format, FindingsFormat::Xlsx) => {
                    bail!("--format xlsx needs --out FILE")
                }
                // A reader that stops early (`| head`) is not an error.
                None => match std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other?,
                },
            }
            Ok(())
        }
        Command::Evidence {
            findings,
            out,
            created_by,
            db,
            log_key_file,
        } => {
            let store = open(&db)?;
            let log = Log::new(log_key(&log_key_file)?);
            let who = created_by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let bytes = wuding_server::evidence::bundle_for_findings(
                &*store,
                &log,
                &findings,
                &format!("cli:{who}"),
                now_ms(),
            )?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "evidence bundle of {} finding(s) written to {} ({} bytes)",
                findings.len(),
                out.display(),
                bytes.len()
            );
            Ok(())
        }
        Command::VerifyBundle { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = wuding_server::evidence::verify_bundle(&bytes)
                .with_context(|| format!("{}", file.display()))?;
            print!("{}", report.render());
            let failed = report.failures().count();
            if failed > 0 {
                println!("{failed} check(s) FAILED");
                std::process::exit(1);
            }
            println!("all {} checks ok", report.checks.len());
            Ok(())
        }
        Command::Whatif {
            rule,
            param,
            values,
            from,
            to,
            rules,
            db,
        } => {
            let store = open(&db)?;
            let rules = reconcile::load_rules(rules.as_deref())?;
            let period = reconcile::period(&from, &to)?;
            let values: Vec<toml::Value> =
                values.iter().map(|v| reconcile::parse_value(v)).collect();
            let rows = reconcile::whatif(&*store, &rules, period, &rule, &param, &values)?;
            print!("{}", reconcile::render_whatif(&rule, &param, &rows));
            Ok(())
        }
        Command::ImportRoster { args, db } => {
            let (kind, file) = match args.as_slice() {
                [file] => (RosterKind::Patients, PathBuf::from(file)),
                [kind, file] => (
                    <RosterKind as clap::ValueEnum>::from_str(kind, true).map_err(|_| {
                        anyhow::anyhow!("`{kind}` is not patients, staff, plans or prices")
                    })?,
                    PathBuf::from(file),
                ),
                _ => bail!("give FILE or KIND FILE"),
            };
            import_roster(&db, kind, &file)
        }
        Command::ImportPlans { file, db } => import_roster(&db, RosterKind::Plans, &file),
        Command::ImportStaff { file, db } => import_roster(&db, RosterKind::Staff, &file),
        Command::ImportPrices { file, db } => import_roster(&db, RosterKind::Prices, &file),
        Command::ImportTerminals { file, db } => {
            let store = open(&db)?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let report =
                wuding_server::registry::import_terminals(&*store, std::io::BufReader::new(f))?;
            print_report(&file, &report)
        }
        Command::ImportClaims { file, mapping, db } => {
            let store = open(&db)?;
            let mapping = match mapping {
                Some(path) => Mapping::parse(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?,
                None => Mapping::standard(),
            };
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let total = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template"),
                );
                Some(bar)
            } else {
                None
            };
            let started = std::time::Instant::now();
            let report = claims::import(
                &*store,
                std::io::BufReader::with_capacity(1 << 20, f),
                &mapping,
                &file.display().to_string(),
                |bytes| {
                    if let Some(b) = &bar {
                        b.set_position(bytes)
                    }
                },
            )?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            for e in &report.errors {
                eprintln!("{}: {e}", file.display());
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "rows: {}, new: {}, already present: {}, refused: {}, {:.0} rows/s",
                report.rows,
                report.inserted,
                report.already_present,
                report.errors.len() as u64 + report.errors_not_kept,
                report.rows as f64 / secs.max(1e-9)
            );
            if report.inserted + report.already_present == 0 && report.rows > 0 {
                bail!("no row could be imported");
            }
            Ok(())
        }
    }
}

fn print_report(file: &Path, report: &claims::ImportReport) -> anyhow::Result<()> {
    for e in &report.errors {
        eprintln!("{}: {e}", file.display());
    }
    println!(
        "rows: {}, changed: {}, unchanged: {}, refused: {}",
        report.rows,
        report.inserted,
        report.already_present,
        report.errors.len()
    );
    if report.rows > 0 && report.errors.len() as u64 == report.rows {
        bail!("no row could be imported");
    }
    Ok(())
}

fn import_roster(db: &Db, kind: RosterKind, file: &Path) -> anyhow::Result<()> {
    let store = open(db)?;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let report = wuding_server::roster::import(&*store, kind, std::io::BufReader::new(f))?;
    print_report(file, &report)
}
