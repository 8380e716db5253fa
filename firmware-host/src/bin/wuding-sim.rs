//! `wuding-sim`: emulated devices, scenario generator and clinic demo.
//! Subcommands arrive with issues 3 (`devices`), 8 (`generate`) and 7 (`demo`).

fn main() {
    eprintln!("wuding-sim: no subcommands yet; see README.md for what runs today");
    std::process::exit(2);
}
