//! `wuding-sim devices`: both emulators on pseudo-terminals with a control
//! socket. Being built: issue 3.

/// Arguments of `wuding-sim devices`.
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Directory for the device links and the control socket.
    #[arg(long)]
    pub dir: std::path::PathBuf,
}

/// `wuding-sim devices`.
pub fn run(_args: DevicesArgs) -> anyhow::Result<()> {
    anyhow::bail!("emulated devices are not built yet (issue 3)")
}
