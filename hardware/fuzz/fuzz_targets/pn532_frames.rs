#![no_main]
//! The PN532 frame decoder, in both roles, on arbitrary bytes arriving in
//! arbitrary pieces: never panics, never loops, and every information frame
//! it yields re-encodes to bytes that decode to the same frame.

use libfuzzer_sys::fuzz_target;
use wuding_hardware::pn532::codec::{Decoder, Frame, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    for role in [Role::Host, Role::Device] {
        let mut decoder = Decoder::new(role);
        let step = usize::from(split % 23) + 1;
        for piece in bytes.chunks(step) {
            decoder.push(piece);
            let mut guard = 0;
            loop {
                guard += 1;
                assert!(guard < 100_000, "decoder does not make progress");
                match decoder.next_frame() {
                    Ok(None) => break,
                    Err(_) => {}
                    Ok(Some(f)) => {
                        let again = f.to_vec().expect("a decoded frame encodes");
                        let mut d2 = Decoder::new(role);
                        d2.push(&again);
                        let g = d2.next_frame().expect("re-encoded frame is valid");
                        assert_eq!(g, Some(f));
                    }
                }
            }
        }
    }
});
