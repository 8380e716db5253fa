//! `docs/protocol.md` must say what the code does.

use wuding_protocol::example::worked_example_lines;
use wuding_protocol::{MAX_ENVELOPE_JSON_BYTES, MAX_PAYLOAD_BYTES, RecordType};

fn document() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md exists")
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn worked_example_in_the_document_is_what_the_code_produces() {
    let doc = document();
    let doc_lines: Vec<&str> = doc.lines().collect();
    for line in worked_example_lines() {
        assert!(
            doc_lines.contains(&line.as_str()),
            "docs/protocol.md is out of date; its worked example must contain the line\n{line}\n\
             (regenerate with `cargo run -p wuding-protocol --example worked_example`)"
        );
    }
}

#[test]
fn contexts_in_the_document_are_the_signing_contexts() {
    let doc = document();
    for t in RecordType::ALL {
        let row = format!("| `{}` | {} |", t.code(), t.version());
        let line = doc
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("no context row for {t}"));
        assert!(line.contains(&hex::encode(t.context())), "{line}");
    }
}

#[test]
fn limits_in_the_document_are_the_enforced_limits() {
    let doc = document();
    assert!(doc.contains(&format!(
        "at most {} bytes, no byte-order mark",
        thousands(MAX_PAYLOAD_BYTES)
    )));
    assert!(doc.contains(&format!(
        "is at most {} bytes",
        thousands(MAX_ENVELOPE_JSON_BYTES)
    )));
}
