//! Prints the worked example of `docs/protocol.md`:
//! `cargo run -p wuding-protocol --example worked_example`.

use wuding_protocol::example::worked_example_lines;

fn main() {
    for line in worked_example_lines() {
        println!("{line}");
    }
}
