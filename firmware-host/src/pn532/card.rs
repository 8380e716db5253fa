//! A virtual MIFARE Classic 1K card: UID, 64 blocks of 16 bytes, and the
//! keys in each sector trailer.
//!
//! Sector trailers (blocks 3, 7, ..., 63) hold key A (bytes 0..6), the
//! access bits (6..10) and key B (10..16). Reading a trailer returns key A
//! as zeros, as a real card does. Access bits are not enforced beyond
//! that: either key opens its sector for reading and writing (the
//! transport configuration `FF 07 80 69`).

use wuding_hardware::pn532::command::{BLOCK_LEN, MifareKey};
use wuding_hardware::reader::{CardUid, PatientNumber, UidError};

/// Blocks on a MIFARE Classic 1K.
pub const BLOCKS: usize = 64;
/// Access bits of the transport configuration.
const TRANSPORT_ACCESS: [u8; 4] = [0xFF, 0x07, 0x80, 0x69];

/// One card.
#[derive(Clone, PartialEq, Eq)]
pub struct VirtualCard {
    pub uid: Vec<u8>,
    /// ATQA as sent on the wire.
    pub sens_res: [u8; 2],
    /// SAK.
    pub sel_res: u8,
    pub blocks: [[u8; BLOCK_LEN]; BLOCKS],
}

impl std::fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualCard")
            .field("uid_len", &self.uid.len())
            .finish_non_exhaustive()
    }
}

impl VirtualCard {
    /// A blank MIFARE Classic 1K with a 4- or 7-byte UID and factory keys.
    pub fn mifare_classic_1k(uid: &[u8]) -> Result<VirtualCard, UidError> {
        let checked = CardUid::new(uid)?;
        let uid = checked.as_bytes().to_vec();
        let sens_res = if uid.len() == 4 {
            [0x00, 0x04]
        } else {
            [0x00, 0x44]
        };
        let mut blocks = [[0u8; BLOCK_LEN]; BLOCKS];
        // Block 0: manufacturer data (UID, BCC for 4-byte UIDs, SAK, ATQA).
        let n = uid.len().min(BLOCK_LEN);
        blocks[0][..n].copy_from_slice(&uid[..n]);
        if uid.len() == 4 {
            blocks[0][4] = uid.iter().fold(0, |a, b| a ^ b);
            blocks[0][5] = 0x08;
            blocks[0][6] = 0x04;
        }
        for sector in 0..16 {
            let t = &mut blocks[sector * 4 + 3];
            t[..6].copy_from_slice(&MifareKey::FACTORY_DEFAULT.0);
            t[6..10].copy_from_slice(&TRANSPORT_ACCESS);
            t[10..].copy_from_slice(&MifareKey::FACTORY_DEFAULT.0);
        }
        Ok(VirtualCard {
            uid,
            sens_res,
            sel_res: 0x08,
            blocks,
        })
    }

    /// Writes a patient number into `block` (ASCII, zero-padded), as the
    /// enrolment desk does.
    pub fn with_patient_number(mut self, block: u8, number: &PatientNumber) -> VirtualCard {
        self.blocks[usize::from(block)] = number.to_block();
        self
    }

    /// Sets key A and key B of a sector.
    pub fn with_keys(mut self, sector: u8, key_a: MifareKey, key_b: MifareKey) -> VirtualCard {
        let t = &mut self.blocks[usize::from(sector) * 4 + 3];
        t[..6].copy_from_slice(&key_a.0);
        t[10..].copy_from_slice(&key_b.0);
        self
    }

    /// The four UID bytes MIFARE Classic authentication uses.
    pub fn auth_uid(&self) -> [u8; 4] {
        let n = self.uid.len();
        self.uid[n - 4..]
            .try_into()
            .expect("UIDs are at least 4 bytes")
    }

    pub fn key_matches(&self, sector: u8, key_b: bool, key: &[u8]) -> bool {
        let Some(t) = self.blocks.get(usize::from(sector) * 4 + 3) else {
            return false;
        };
        let stored = if key_b { &t[10..16] } else { &t[..6] };
        stored == key
    }

    pub fn read(&self, block: u8) -> [u8; BLOCK_LEN] {
        let mut b = self.blocks[usize::from(block) % BLOCKS];
        if block % 4 == 3 {
            b[..6].fill(0);
        }
        b
    }

    pub fn write(&mut self, block: u8, data: &[u8; BLOCK_LEN]) {
        if let Some(b) = self.blocks.get_mut(usize::from(block)) {
            *b = *data;
        }
    }
}
