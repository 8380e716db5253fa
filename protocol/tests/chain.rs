//! Chain verification: each defect detected and named.

use wuding_protocol::example::example_chain;
use wuding_protocol::{
    ChainAnchor, ChainDefect, ChainHead, ChainLink, ChainStep, RecordId, verify_chain,
};

fn links(n: u64) -> Vec<ChainLink> {
    example_chain(n)
        .iter()
        .map(|e| e.decode().unwrap())
        .map(|v| v.record.chain_link(v.id))
        .collect()
}

#[test]
fn clean_chain_of_ten_thousand_passes() {
    let chain = links(10_000);
    let report = verify_chain(chain.iter().copied(), None);
    assert!(report.is_clean(), "{:?}", report.defects);
    assert_eq!(report.records, 10_000);
    assert_eq!(report.head, Some(10_000));
    let mut head = ChainHead::EMPTY;
    for link in &chain {
        assert_eq!(head.advance(link), Ok(ChainStep::Extends));
    }
    assert_eq!(head.seq, 10_000);
}

#[test]
fn gap_is_named_with_its_range() {
    let mut chain = links(10);
    chain.drain(3..6); // seq 4, 5, 6 deleted
    let report = verify_chain(chain.iter().copied(), None);
    assert_eq!(report.defects, vec![ChainDefect::Gap { from: 4, to: 6 }]);
    let mut head = ChainHead::EMPTY;
    for link in &chain[..3] {
        head.advance(link).unwrap();
    }
    assert_eq!(
        head.check_next(&chain[3]),
        Err(ChainDefect::Gap { from: 4, to: 6 })
    );
}

#[test]
fn missing_start_is_a_gap() {
    let chain = links(5);
    let report = verify_chain(chain[2..].iter().copied(), None);
    assert_eq!(report.defects, vec![ChainDefect::Gap { from: 1, to: 2 }]);
    // From a trusted anchor at seq 2, the same fragment is clean.
    let anchor = ChainAnchor {
        seq: 2,
        id: chain[1].id,
    };
    assert!(verify_chain(chain[2..].iter().copied(), Some(anchor)).is_clean());
}

#[test]
fn reorder_is_named() {
    let mut chain = links(6);
    chain.swap(2, 4); // arrival: 1 2 5 4 3 6
    let report = verify_chain(chain.iter().copied(), None);
    assert_eq!(
        report.defects,
        vec![
            ChainDefect::Reordered { seq: 4, after: 5 },
            ChainDefect::Reordered { seq: 3, after: 5 },
        ]
    );
}

#[test]
fn fork_is_named_with_both_ids() {
    let chain = links(4);
    let mut rival = chain[2];
    rival.id = RecordId([0xee; 32]);
    let report = verify_chain(chain.iter().copied().chain([rival]), None);
    assert_eq!(
        report.defects,
        vec![ChainDefect::Fork {
            seq: 3,
            first: chain[2].id,
            second: rival.id
        }]
    );
    assert_eq!(
        ChainHead::classify_past(&rival, chain[2].id),
        ChainDefect::Fork {
            seq: 3,
            first: chain[2].id,
            second: rival.id
        }
    );
}

#[test]
fn duplicate_is_named() {
    let chain = links(3);
    let report = verify_chain(chain.iter().copied().chain([chain[1]]), None);
    assert_eq!(
        report.defects,
        vec![ChainDefect::Duplicate {
            seq: 2,
            id: chain[1].id
        }]
    );
    let mut head = ChainHead::EMPTY;
    for link in &chain {
        head.advance(link).unwrap();
    }
    assert_eq!(head.advance(&chain[1]), Ok(ChainStep::AlreadyPast));
}

#[test]
fn broken_link_is_named() {
    let mut chain = links(5);
    let wrong = RecordId([0x11; 32]);
    chain[3].prev = wrong;
    let report = verify_chain(chain.iter().copied(), None);
    assert_eq!(
        report.defects,
        vec![ChainDefect::BrokenLink {
            seq: 4,
            expected_prev: chain[2].id,
            found_prev: wrong
        }]
    );
    let mut head = ChainHead::EMPTY;
    for link in &chain[..3] {
        head.advance(link).unwrap();
    }
    assert!(matches!(
        head.check_next(&chain[3]),
        Err(ChainDefect::BrokenLink { seq: 4, .. })
    ));
}

#[test]
fn bad_genesis_is_named() {
    let mut chain = links(2);
    chain[0].prev = RecordId([3; 32]);
    assert_eq!(
        verify_chain(chain.iter().copied(), None).defects,
        vec![ChainDefect::BadGenesis { seq: 1 }]
    );
    assert_eq!(
        ChainHead::EMPTY.check_next(&chain[0]),
        Err(ChainDefect::BadGenesis { seq: 1 })
    );
}

#[test]
fn defects_have_stable_codes_and_readable_text() {
    let d = ChainDefect::Gap { from: 4, to: 6 };
    assert_eq!(d.code(), "gap");
    assert_eq!(d.to_string(), "records 4 to 6 are missing");
    assert_eq!(
        ChainDefect::Gap { from: 4, to: 4 }.to_string(),
        "record 4 is missing"
    );
}
