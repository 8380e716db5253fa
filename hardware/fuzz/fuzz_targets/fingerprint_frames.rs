#![no_main]
//! The fingerprint-module frame decoder, in both roles, on arbitrary bytes
//! arriving in arbitrary pieces: never panics, never loops, and every frame
//! it yields re-encodes to bytes that decode to the same frame.

use libfuzzer_sys::fuzz_target;
use wuding_hardware::fingerprint::codec::{Decoder, Event, Frame, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    for role in [Role::Host, Role::Device] {
        let mut decoder = Decoder::new(role);
        let step = usize::from(split % 17) + 1;
        for piece in bytes.chunks(step) {
            decoder.push(piece);
            let mut guard = 0;
            loop {
                guard += 1;
                assert!(guard < 100_000, "decoder does not make progress");
                match decoder.next_event() {
                    Ok(None) => break,
                    Err(_) | Ok(Some(Event::Ready)) => {}
                    Ok(Some(Event::Frame(f))) => {
                        let again = f.to_vec().expect("a decoded frame encodes");
                        let mut d2 = Decoder::new(role);
                        d2.push(&again);
                        match d2.next_event() {
                            Ok(Some(Event::Frame(g))) => assert_eq!(g, f),
                            other => panic!("re-encoded frame decodes as {other:?}"),
                        }
                    }
                }
            }
        }
    }
});
