//! Scenario generator: a realistic month of records and claims
//! (`docs/data-formats.md`). Being built: issue 8.

/// Arguments of `wuding-sim generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Number of patients in the region.
    #[arg(long)]
    pub patients: u32,
    /// The month to generate, `YYYY-MM`.
    #[arg(long)]
    pub month: String,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of sessions that receive an injected fraud.
    #[arg(long, default_value_t = 0.02)]
    pub fraud_rate: f64,
}

/// `wuding-sim generate`.
pub fn run(_args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("the scenario generator is not built yet (issue 8)")
}
