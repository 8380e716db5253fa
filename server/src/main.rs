//! `wuding-server`: thin binary; everything lives in the library. (Being built: issue 5.)

fn main() {
    eprintln!("wuding-server: not built yet; see README.md for what runs today");
    std::process::exit(2);
}
