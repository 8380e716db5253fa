//! Virtual fingers and the characteristic files the emulated module makes
//! of them.
//!
//! A finger is a name (`P0001-R2`, `nurse-7`, ...). Its ridge pattern is a
//! fixed set of [`MINUTIAE`] minutiae derived from the name by a
//! deterministic generator, so the same name is the same finger in every
//! process and on every run. Each capture is a noisy sample of that
//! pattern: some minutiae are missed, positions and angles jitter, and a few
//! spurious points appear; the lower the finger's quality (dry, worn,
//! elderly skin), the more of each. Two captures of one finger therefore
//! match with a spread of scores; captures of different fingers share no
//! minutiae and score near zero.
//!
//! Characteristic-file layout ([`CHAR_FILE_LEN`] bytes, the size real
//! R30x/AS608 modules upload):
//!
//! ```text
//! 0      0x57 'W'   format marker
//! 1      n          number of minutiae (<= MAX_POINTS)
//! 2..4   reserved (zero)
//! 4..    n x 6 bytes: slot, kind, x (u16 BE), y (u8 * 2), angle (u8, 2-degree units)
//! ..510  zero
//! 510    u16 BE sum of bytes 0..510 (integrity check)
//! ```
//!
//! **Architecture Invariant:** pure: no IO, no clock; randomness comes in
//! as an `Rng` argument.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Bytes in a characteristic file or template.
pub const CHAR_FILE_LEN: usize = 512;
/// Minutiae in one finger's pattern.
pub const MINUTIAE: usize = 40;
/// Most points a characteristic file holds (pattern plus spurious points).
pub const MAX_POINTS: usize = 80;
/// Fewer true minutiae than this in a capture: "too few features" (0x07).
pub const MIN_FEATURES: usize = 12;
/// Slot number of a spurious point (matches nothing).
const SPURIOUS: u8 = 0xFF;
const MARKER: u8 = 0x57;
/// Sensor image size in pixels (R30x: 256 x 288).
const WIDTH: u16 = 256;
const HEIGHT: u16 = 288;

/// A finger on the sensor: its name and how well it reads (0..=100; 80 is a
/// healthy adult finger, 30 a worn or very dry one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedFinger {
    pub name: String,
    pub quality: u8,
}

/// One minutia: which point of the pattern it is, its kind (ridge ending or
/// bifurcation) and where it lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Minutia {
    pub slot: u8,
    pub kind: u8,
    pub x: u16,
    pub y: u16,
    /// Degrees, 0..360.
    pub angle: u16,
}

/// The ridge pattern of a named finger.
pub fn pattern(name: &str) -> Vec<Minutia> {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(b"wuding/virtual-finger/v1\0")
        .chain_update(name.as_bytes())
        .finalize()
        .into();
    let mut rng = ChaCha8Rng::from_seed(seed);
    (0..MINUTIAE as u8)
        .map(|slot| Minutia {
            slot,
            kind: rng.random_range(0..2u8),
            x: rng.random_range(16..WIDTH - 16),
            y: rng.random_range(16..HEIGHT - 16),
            angle: rng.random_range(0..180u16) * 2,
        })
        .collect()
}

/// What an image capture of a finger yields, before feature extraction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capture {
    /// An image whose features can be extracted.
    Image(Vec<Minutia>),
    /// An image too smeared to use (0x06 at Img2Tz).
    Messy,
    /// Too few minutiae visible (0x07 at Img2Tz).
    TooFewFeatures,
}

/// Takes one noisy capture of `finger`.
pub fn capture(finger: &PlacedFinger, rng: &mut impl rand::Rng) -> Capture {
    let q = f64::from(finger.quality.min(100)) / 100.0;
    // Very poor skin sometimes smears outright.
    if q < 0.25 && rng.random_bool(0.3) {
        return Capture::Messy;
    }
    let keep = 0.25 + 0.7 * q;
    let jitter = 2.0 + 8.0 * (1.0 - q);
    let mut points = Vec::with_capacity(MAX_POINTS);
    for m in pattern(&finger.name) {
        if !rng.random_bool(keep) {
            continue;
        }
        points.push(Minutia {
            x: jiggle(m.x, jitter, WIDTH, rng),
            y: jiggle(m.y, jitter, HEIGHT, rng),
            angle: ((i32::from(m.angle) + rng.random_range(-8..=8) + 360) % 360) as u16,
            ..m
        });
    }
    if points.len() < MIN_FEATURES {
        return Capture::TooFewFeatures;
    }
    let spurious = rng.random_range(0..=(2 + (10.0 * (1.0 - q)) as usize));
    for _ in 0..spurious {
        points.push(Minutia {
            slot: SPURIOUS,
            kind: rng.random_range(0..2u8),
            x: rng.random_range(0..WIDTH),
            y: rng.random_range(0..HEIGHT),
            angle: rng.random_range(0..180u16) * 2,
        });
    }
    Capture::Image(points)
}

fn jiggle(v: u16, spread: f64, max: u16, rng: &mut impl rand::Rng) -> u16 {
    // Sum of two uniforms: a cheap bell shape.
    let d = (rng.random::<f64>() + rng.random::<f64>() - 1.0) * spread;
    (f64::from(v) + d).round().clamp(0.0, f64::from(max - 1)) as u16
}

/// Encodes points as a characteristic file.
pub fn encode(points: &[Minutia]) -> [u8; CHAR_FILE_LEN] {
    let mut out = [0u8; CHAR_FILE_LEN];
    let n = points.len().min(MAX_POINTS);
    out[0] = MARKER;
    out[1] = n as u8;
    for (i, m) in points.iter().take(n).enumerate() {
        let at = 4 + 6 * i;
        out[at] = m.slot;
        out[at + 1] = m.kind;
        out[at + 2..at + 4].copy_from_slice(&m.x.to_be_bytes());
        out[at + 4] = (m.y / 2) as u8;
        out[at + 5] = (m.angle / 2) as u8;
    }
    let sum = checksum(&out[..510]);
    out[510..].copy_from_slice(&sum.to_be_bytes());
    out
}

fn checksum(bytes: &[u8]) -> u16 {
    bytes
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)))
}

/// Decodes a characteristic file; `None` if it is not one (wrong length,
/// marker or checksum): the module's "invalid template".
pub fn decode(file: &[u8]) -> Option<Vec<Minutia>> {
    if file.len() != CHAR_FILE_LEN || file[0] != MARKER {
        return None;
    }
    let n = usize::from(file[1]);
    if n > MAX_POINTS || checksum(&file[..510]) != u16::from_be_bytes([file[510], file[511]]) {
        return None;
    }
    Some(
        (0..n)
            .map(|i| {
                let at = 4 + 6 * i;
                Minutia {
                    slot: file[at],
                    kind: file[at + 1],
                    x: u16::from_be_bytes([file[at + 2], file[at + 3]]),
                    y: u16::from(file[at + 4]) * 2,
                    angle: u16::from(file[at + 5]) * 2,
                }
            })
            .collect(),
    )
}

/// Match score of two characteristic files, as the module reports it
/// (0 = nothing in common; a good same-finger pair scores 150-300).
pub fn score(a: &[Minutia], b: &[Minutia]) -> u16 {
    let mut by_slot = [None::<Minutia>; MINUTIAE];
    for m in a {
        if let Some(s) = by_slot.get_mut(usize::from(m.slot)) {
            *s = Some(*m);
        }
    }
    let mut paired = 0u32;
    for m in b {
        let Some(Some(o)) = by_slot.get(usize::from(m.slot)) else {
            continue;
        };
        let da = (i32::from(m.angle) - i32::from(o.angle)).rem_euclid(360);
        if m.kind == o.kind
            && m.x.abs_diff(o.x) <= 12
            && m.y.abs_diff(o.y) <= 12
            && da.min(360 - da) <= 24
        {
            paired += 1;
        }
    }
    let total = (a.len() + b.len()).max(1) as u32;
    (paired * 640 / total) as u16
}

/// The smallest score the module accepts as a match at a security level
/// (1 = most permissive, 5 = strictest), as ReadSysPara reports it.
pub fn threshold(security_level: u16) -> u16 {
    match security_level {
        0 | 1 => 30,
        2 => 40,
        3 => 50,
        4 => 65,
        _ => 80,
    }
}

/// RegModel: combines two captures into one template, or `None` if they
/// are not of one finger.
pub fn combine(a: &[Minutia], b: &[Minutia], security_level: u16) -> Option<Vec<Minutia>> {
    if score(a, b) < threshold(security_level) {
        return None;
    }
    let mut merged: Vec<Minutia> = Vec::with_capacity(MINUTIAE);
    for slot in 0..MINUTIAE as u8 {
        let pa = a.iter().find(|m| m.slot == slot);
        let pb = b.iter().find(|m| m.slot == slot);
        match (pa, pb) {
            (Some(x), Some(y)) => merged.push(Minutia {
                x: (x.x + y.x) / 2,
                y: (x.y + y.y) / 2,
                ..*x
            }),
            (Some(m), None) | (None, Some(m)) => merged.push(*m),
            (None, None) => {}
        }
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finger(name: &str, quality: u8) -> PlacedFinger {
        PlacedFinger {
            name: name.into(),
            quality,
        }
    }

    fn image(c: Capture) -> Vec<Minutia> {
        match c {
            Capture::Image(p) => p,
            other => panic!("expected an image, got {other:?}"),
        }
    }

    #[test]
    fn same_finger_matches_with_a_spread_and_others_do_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let a = finger("P0001-R2", 80);
        let mut same = Vec::new();
        let mut other = Vec::new();
        for i in 0..200 {
            let x = image(capture(&a, &mut rng));
            let y = image(capture(&a, &mut rng));
            same.push(score(&x, &y));
            let z = image(capture(&finger(&format!("P{i:04}-L1"), 80), &mut rng));
            other.push(score(&x, &z));
        }
        let (min, max) = (*same.iter().min().unwrap(), *same.iter().max().unwrap());
        assert!(
            min >= threshold(3),
            "healthy same-finger pair below threshold: {min}"
        );
        assert!(
            max - min >= 30,
            "no spread in same-finger scores: {min}..{max}"
        );
        assert!(
            other.iter().all(|&s| s < threshold(1)),
            "impostor accepted: {other:?}"
        );
    }

    #[test]
    fn worn_fingers_fail_often_but_not_always() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let worn = finger("elderly-1", 20);
        let results: Vec<Capture> = (0..200).map(|_| capture(&worn, &mut rng)).collect();
        let failed = results
            .iter()
            .filter(|c| !matches!(c, Capture::Image(_)))
            .count();
        assert!(
            failed > 20 && failed < 180,
            "worn finger failed {failed}/200"
        );
    }

    #[test]
    fn char_files_round_trip_and_corruption_is_detected() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let points = image(capture(&finger("x", 90), &mut rng));
        let file = encode(&points);
        let back = decode(&file).unwrap();
        assert_eq!(score(&points, &back), score(&back, &back));
        let mut bad = file;
        bad[20] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&file[..511]), None);
    }

    #[test]
    fn combining_different_fingers_fails() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let a = image(capture(&finger("a", 90), &mut rng));
        let b = image(capture(&finger("b", 90), &mut rng));
        let a2 = image(capture(&finger("a", 90), &mut rng));
        assert!(combine(&a, &b, 3).is_none());
        let t = combine(&a, &a2, 3).unwrap();
        let a3 = image(capture(&finger("a", 90), &mut rng));
        assert!(score(&t, &a3) >= threshold(3));
    }
}
