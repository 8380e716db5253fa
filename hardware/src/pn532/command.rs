//! The PN532 commands the terminal uses, their data layouts in both
//! directions, and the status byte of the `In*` commands.
//!
//! Every response code is the command code plus one. Layouts follow the
//! PN532 User Manual (UM0701-02), section 7.
//!
//! **Architecture Invariant:** pure functions over byte slices; the driver
//! and the emulator both build and parse frames' data here.

use std::fmt;

/// `Diagnose`, not used by the terminal but answered by the emulator.
pub const DIAGNOSE: u8 = 0x00;
/// `GetFirmwareVersion`: answers IC, Ver, Rev, Support.
pub const GET_FIRMWARE_VERSION: u8 = 0x02;
/// `SAMConfiguration`: Mode, Timeout, [IRQ].
pub const SAM_CONFIGURATION: u8 = 0x14;
/// `PowerDown`: WakeUpEnable, [GenerateIRQ].
pub const POWER_DOWN: u8 = 0x16;
/// `RFConfiguration`: CfgItem, ConfigurationData.
pub const RF_CONFIGURATION: u8 = 0x32;
/// `InDataExchange`: Tg, DataOut.
pub const IN_DATA_EXCHANGE: u8 = 0x40;
/// `InDeselect`: Tg.
pub const IN_DESELECT: u8 = 0x44;
/// `InListPassiveTarget`: MaxTg, BrTy, [InitiatorData].
pub const IN_LIST_PASSIVE_TARGET: u8 = 0x4A;
/// `InRelease`: Tg.
pub const IN_RELEASE: u8 = 0x52;

/// The response code of `command`.
pub const fn response_code(command: u8) -> u8 {
    command.wrapping_add(1)
}

/// BrTy of InListPassiveTarget for ISO/IEC 14443 Type A at 106 kbps.
pub const BRTY_ISO14443A_106: u8 = 0x00;

/// MIFARE Classic commands carried in InDataExchange.
pub const MIFARE_AUTH_A: u8 = 0x60;
pub const MIFARE_AUTH_B: u8 = 0x61;
pub const MIFARE_READ: u8 = 0x30;
pub const MIFARE_WRITE: u8 = 0xA0;

/// Bytes in a MIFARE Classic block.
pub const BLOCK_LEN: usize = 16;

/// SAM mode (first parameter of SAMConfiguration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamMode {
    /// 0x01: no SAM is used (the terminal's case).
    Normal,
    /// 0x02
    VirtualCard,
    /// 0x03
    WiredCard,
    /// 0x04
    DualCard,
}

impl SamMode {
    pub const fn byte(self) -> u8 {
        match self {
            SamMode::Normal => 0x01,
            SamMode::VirtualCard => 0x02,
            SamMode::WiredCard => 0x03,
            SamMode::DualCard => 0x04,
        }
    }

    pub const fn from_byte(b: u8) -> Option<SamMode> {
        match b {
            0x01 => Some(SamMode::Normal),
            0x02 => Some(SamMode::VirtualCard),
            0x03 => Some(SamMode::WiredCard),
            0x04 => Some(SamMode::DualCard),
            _ => None,
        }
    }
}

/// Which MIFARE key a sector is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    A,
    B,
}

impl KeyKind {
    /// The MIFARE authentication command.
    pub const fn auth_command(self) -> u8 {
        match self {
            KeyKind::A => MIFARE_AUTH_A,
            KeyKind::B => MIFARE_AUTH_B,
        }
    }
}

/// A 6-byte MIFARE Classic key. A secret: its `Debug` prints nothing of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MifareKey(pub [u8; 6]);

impl MifareKey {
    /// The transport key of blank cards.
    pub const FACTORY_DEFAULT: MifareKey = MifareKey([0xFF; 6]);
}

impl fmt::Debug for MifareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MifareKey(<redacted>)")
    }
}

/// The firmware version a PN532 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareVersion {
    /// 0x32 for the PN532.
    pub ic: u8,
    pub ver: u8,
    pub rev: u8,
    /// Bit 0: ISO/IEC 14443 Type A, bit 1: Type B, bit 2: ISO 18092.
    pub support: u8,
}

impl FirmwareVersion {
    /// What a PN532 v1.6 answers.
    pub const PN532_V1_6: FirmwareVersion = FirmwareVersion {
        ic: 0x32,
        ver: 0x01,
        rev: 0x06,
        support: 0x07,
    };
}

/// A target found by InListPassiveTarget at 106 kbps Type A.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetA {
    /// The logical number the PN532 gave it (used in InDataExchange).
    pub tg: u8,
    /// SENS_RES (ATQA), as sent: 00 04 for a MIFARE Classic 1K.
    pub sens_res: [u8; 2],
    /// SEL_RES (SAK): 0x08 for a MIFARE Classic 1K.
    pub sel_res: u8,
    /// NFCID1: 4, 7 or 10 bytes.
    pub uid: Vec<u8>,
    /// The ATS, for ISO/IEC 14443-4 cards (SEL_RES bit 5).
    pub ats: Vec<u8>,
}

/// The UID identifies a patient's card: only its length is printed.
impl fmt::Debug for TargetA {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetA")
            .field("tg", &self.tg)
            .field("sens_res", &format_args!("{:02X?}", self.sens_res))
            .field("sel_res", &format_args!("{:#04X}", self.sel_res))
            .field("uid_len", &self.uid.len())
            .field("ats_len", &self.ats.len())
            .finish()
    }
}

impl TargetA {
    /// Whether SEL_RES says the card is a MIFARE Classic (bit 3 set, bit 5
    /// clear: 0x08 for 1K, 0x18 for 4K, 0x09 for Mini).
    pub fn is_mifare_classic(&self) -> bool {
        self.sel_res & 0x08 != 0 && self.sel_res & 0x20 == 0
    }

    /// The four UID bytes used in MIFARE Classic authentication: the whole
    /// UID of a 4-byte card, the last four bytes of a 7- or 10-byte one.
    pub fn auth_uid(&self) -> [u8; 4] {
        let n = self.uid.len();
        let mut out = [0u8; 4];
        if n >= 4 {
            out.copy_from_slice(&self.uid[n - 4..]);
        }
        out
    }
}

/// A response's data that does not follow the command's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("response code {found:#04X}, expected {expected:#04X}")]
    WrongCode { expected: u8, found: u8 },
    #[error("response data of {0} bytes is too short")]
    TooShort(usize),
    #[error("NFCID1 length {0} is not 4, 7 or 10")]
    BadUidLength(u8),
    #[error("{0} bytes left over after the response")]
    TrailingBytes(usize),
    #[error("{0} targets reported; at most 2 are possible")]
    TooManyTargets(u8),
}

fn expect_code(data: &[u8], command: u8) -> Result<&[u8], ParseError> {
    let (&code, rest) = data.split_first().ok_or(ParseError::TooShort(0))?;
    let expected = response_code(command);
    if code != expected {
        return Err(ParseError::WrongCode {
            expected,
            found: code,
        });
    }
    Ok(rest)
}

// ---- host role: requests --------------------------------------------------

/// `D4 02`
pub fn get_firmware_version() -> [u8; 1] {
    [GET_FIRMWARE_VERSION]
}

/// `D4 14 Mode Timeout IRQ`. `timeout` is in units of 50 ms (virtual card
/// mode only); the IRQ pin is used.
pub fn sam_configuration(mode: SamMode, timeout: u8) -> [u8; 4] {
    [SAM_CONFIGURATION, mode.byte(), timeout, 0x01]
}

/// `D4 4A MaxTg 00`: one Type A target at 106 kbps.
pub fn in_list_passive_target_106a(max_targets: u8) -> [u8; 3] {
    [IN_LIST_PASSIVE_TARGET, max_targets, BRTY_ISO14443A_106]
}

/// `D4 40 Tg 60|61 Block Key[6] Uid[4]`
pub fn mifare_authenticate(
    tg: u8,
    kind: KeyKind,
    block: u8,
    key: &MifareKey,
    auth_uid: [u8; 4],
) -> [u8; 14] {
    let mut out = [0u8; 14];
    out[0] = IN_DATA_EXCHANGE;
    out[1] = tg;
    out[2] = kind.auth_command();
    out[3] = block;
    out[4..10].copy_from_slice(&key.0);
    out[10..14].copy_from_slice(&auth_uid);
    out
}

/// `D4 40 Tg 30 Block`
pub fn mifare_read(tg: u8, block: u8) -> [u8; 4] {
    [IN_DATA_EXCHANGE, tg, MIFARE_READ, block]
}

/// `D4 52 Tg` (0 releases all targets).
pub fn in_release(tg: u8) -> [u8; 2] {
    [IN_RELEASE, tg]
}

// ---- host role: responses --------------------------------------------------

/// `D5 03 IC Ver Rev Support`
pub fn parse_firmware_version(data: &[u8]) -> Result<FirmwareVersion, ParseError> {
    let rest = expect_code(data, GET_FIRMWARE_VERSION)?;
    match rest {
        [ic, ver, rev, support] => Ok(FirmwareVersion {
            ic: *ic,
            ver: *ver,
            rev: *rev,
            support: *support,
        }),
        [_, _, _, _, more @ ..] => Err(ParseError::TrailingBytes(more.len())),
        _ => Err(ParseError::TooShort(data.len())),
    }
}

/// `D5 15`
pub fn parse_sam_configuration(data: &[u8]) -> Result<(), ParseError> {
    let rest = expect_code(data, SAM_CONFIGURATION)?;
    if !rest.is_empty() {
        return Err(ParseError::TrailingBytes(rest.len()));
    }
    Ok(())
}

/// `D5 4B NbTg [Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1 [ATS]]...`
pub fn parse_in_list_passive_target_106a(data: &[u8]) -> Result<Vec<TargetA>, ParseError> {
    let rest = expect_code(data, IN_LIST_PASSIVE_TARGET)?;
    let (&count, mut rest) = rest.split_first().ok_or(ParseError::TooShort(data.len()))?;
    if count > 2 {
        return Err(ParseError::TooManyTargets(count));
    }
    let mut targets = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let [tg, s0, s1, sel_res, uid_len, tail @ ..] = rest else {
            return Err(ParseError::TooShort(data.len()));
        };
        if !matches!(uid_len, 4 | 7 | 10) {
            return Err(ParseError::BadUidLength(*uid_len));
        }
        let uid_len = usize::from(*uid_len);
        if tail.len() < uid_len {
            return Err(ParseError::TooShort(data.len()));
        }
        let (uid, tail) = tail.split_at(uid_len);
        let (ats, tail) = if sel_res & 0x20 != 0 {
            // ATS: its first byte (TL) is its own length.
            let tl = usize::from(*tail.first().ok_or(ParseError::TooShort(data.len()))?);
            if tl == 0 || tail.len() < tl {
                return Err(ParseError::TooShort(data.len()));
            }
            tail.split_at(tl)
        } else {
            (&[][..], tail)
        };
        targets.push(TargetA {
            tg: *tg,
            sens_res: [*s0, *s1],
            sel_res: *sel_res,
            uid: uid.to_vec(),
            ats: ats.to_vec(),
        });
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(ParseError::TrailingBytes(rest.len()));
    }
    Ok(targets)
}

/// `D5 41 Status DataIn`: the status byte and the data.
pub fn parse_in_data_exchange(data: &[u8]) -> Result<(u8, &[u8]), ParseError> {
    let rest = expect_code(data, IN_DATA_EXCHANGE)?;
    let (&status, data_in) = rest.split_first().ok_or(ParseError::TooShort(data.len()))?;
    Ok((status, data_in))
}

/// `D5 53 Status`
pub fn parse_in_release(data: &[u8]) -> Result<u8, ParseError> {
    let rest = expect_code(data, IN_RELEASE)?;
    match rest {
        [status] => Ok(*status),
        [] => Err(ParseError::TooShort(data.len())),
        [_, more @ ..] => Err(ParseError::TrailingBytes(more.len())),
    }
}

// ---- device role: responses -------------------------------------------------

/// `D5 03 IC Ver Rev Support`
pub fn firmware_version_response(v: FirmwareVersion) -> [u8; 5] {
    [
        response_code(GET_FIRMWARE_VERSION),
        v.ic,
        v.ver,
        v.rev,
        v.support,
    ]
}

/// `D5 4B 01 01 SENS_RES SEL_RES Len UID` for one target, appended to `out`.
pub fn in_list_passive_target_response(
    sens_res: [u8; 2],
    sel_res: u8,
    uid: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&[
        response_code(IN_LIST_PASSIVE_TARGET),
        0x01,
        0x01,
        sens_res[0],
        sens_res[1],
        sel_res,
        uid.len() as u8,
    ]);
    out.extend_from_slice(uid);
}

// ---- status byte ------------------------------------------------------------

/// An error code from the status byte of an `In*` command (its low six
/// bits; bit 6 is "more information", bit 7 the NAD flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StatusError {
    #[error("the target did not answer in time (status 0x01)")]
    Timeout,
    #[error("CRC error from the target (status 0x02)")]
    Crc,
    #[error("parity error from the target (status 0x03)")]
    Parity,
    #[error("wrong bit count during anticollision (status 0x04)")]
    BitCount,
    #[error("MIFARE framing error (status 0x05)")]
    Framing,
    #[error("abnormal bit collision during anticollision (status 0x06)")]
    Collision,
    #[error("communication buffer too small (status 0x07)")]
    BufferTooSmall,
    #[error("RF buffer overflow (status 0x09)")]
    RfBufferOverflow,
    #[error("RF field not switched on in time (status 0x0A)")]
    RfField,
    #[error("RF protocol error (status 0x0B)")]
    RfProtocol,
    #[error("reader overheated (status 0x0D)")]
    Temperature,
    #[error("internal buffer overflow (status 0x0E)")]
    InternalBufferOverflow,
    #[error("invalid parameter (status 0x10)")]
    InvalidParameter,
    #[error("MIFARE authentication failed: wrong key (status 0x14)")]
    Authentication,
    #[error("UID check byte wrong (status 0x23)")]
    UidCheckByte,
    #[error("command not allowed in this context (status 0x27)")]
    NotAcceptable,
    #[error("target released by the initiator (status 0x29)")]
    Released,
    #[error("a different card is in the field (status 0x2A)")]
    CardSwapped,
    #[error("the card left the field (status 0x2B)")]
    CardDisappeared,
    #[error("RF over-current (status 0x2D)")]
    OverCurrent,
    #[error("unknown status {0:#04X}")]
    Other(u8),
}

impl StatusError {
    /// Maps a status byte; `None` when its error bits are zero.
    pub const fn from_status(status: u8) -> Option<StatusError> {
        Some(match status & 0x3F {
            0x00 => return None,
            0x01 => StatusError::Timeout,
            0x02 => StatusError::Crc,
            0x03 => StatusError::Parity,
            0x04 => StatusError::BitCount,
            0x05 => StatusError::Framing,
            0x06 => StatusError::Collision,
            0x07 => StatusError::BufferTooSmall,
            0x09 => StatusError::RfBufferOverflow,
            0x0A => StatusError::RfField,
            0x0B => StatusError::RfProtocol,
            0x0D => StatusError::Temperature,
            0x0E => StatusError::InternalBufferOverflow,
            0x10 => StatusError::InvalidParameter,
            0x14 => StatusError::Authentication,
            0x23 => StatusError::UidCheckByte,
            0x27 => StatusError::NotAcceptable,
            0x29 => StatusError::Released,
            0x2A => StatusError::CardSwapped,
            0x2B => StatusError::CardDisappeared,
            0x2D => StatusError::OverCurrent,
            other => StatusError::Other(other),
        })
    }

    /// The wire value (low six bits).
    pub const fn code(self) -> u8 {
        match self {
            StatusError::Timeout => 0x01,
            StatusError::Crc => 0x02,
            StatusError::Parity => 0x03,
            StatusError::BitCount => 0x04,
            StatusError::Framing => 0x05,
            StatusError::Collision => 0x06,
            StatusError::BufferTooSmall => 0x07,
            StatusError::RfBufferOverflow => 0x09,
            StatusError::RfField => 0x0A,
            StatusError::RfProtocol => 0x0B,
            StatusError::Temperature => 0x0D,
            StatusError::InternalBufferOverflow => 0x0E,
            StatusError::InvalidParameter => 0x10,
            StatusError::Authentication => 0x14,
            StatusError::UidCheckByte => 0x23,
            StatusError::NotAcceptable => 0x27,
            StatusError::Released => 0x29,
            StatusError::CardSwapped => 0x2A,
            StatusError::CardDisappeared => 0x2B,
            StatusError::OverCurrent => 0x2D,
            StatusError::Other(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pn532::codec::Frame;

    fn wire(data: &[u8]) -> Vec<u8> {
        Frame::command(data).to_vec().unwrap()
    }

    /// Golden bytes of every command the driver sends, checked by hand
    /// against the frame rules (LEN + LCS = 0, TFI + data + DCS = 0).
    #[test]
    fn golden_command_frames() {
        assert_eq!(
            wire(&get_firmware_version()),
            [0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00]
        );
        assert_eq!(
            wire(&sam_configuration(SamMode::Normal, 0x14)),
            [
                0x00, 0x00, 0xFF, 0x05, 0xFB, 0xD4, 0x14, 0x01, 0x14, 0x01, 0x02, 0x00
            ]
        );
        assert_eq!(
            wire(&in_list_passive_target_106a(1)),
            [
                0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00, 0xE1, 0x00
            ]
        );
        assert_eq!(
            wire(&mifare_read(1, 4)),
            [
                0x00, 0x00, 0xFF, 0x05, 0xFB, 0xD4, 0x40, 0x01, 0x30, 0x04, 0xB7, 0x00
            ]
        );
        assert_eq!(
            wire(&mifare_authenticate(
                1,
                KeyKind::A,
                4,
                &MifareKey::FACTORY_DEFAULT,
                [0xDE, 0xAD, 0xBE, 0xEF]
            )),
            [
                0x00, 0x00, 0xFF, 0x0F, 0xF1, 0xD4, 0x40, 0x01, 0x60, 0x04, 0xFF, 0xFF, 0xFF, 0xFF,
                0xFF, 0xFF, 0xDE, 0xAD, 0xBE, 0xEF, 0x55, 0x00
            ]
        );
        assert_eq!(
            wire(&in_release(0)),
            [0x00, 0x00, 0xFF, 0x03, 0xFD, 0xD4, 0x52, 0x00, 0xDA, 0x00]
        );
    }

    #[test]
    fn golden_firmware_version_response() {
        let data = firmware_version_response(FirmwareVersion::PN532_V1_6);
        assert_eq!(
            Frame::response(&data).to_vec().unwrap(),
            [
                0x00, 0x00, 0xFF, 0x06, 0xFA, 0xD5, 0x03, 0x32, 0x01, 0x06, 0x07, 0xE8, 0x00
            ]
        );
        assert_eq!(
            parse_firmware_version(&data),
            Ok(FirmwareVersion::PN532_V1_6)
        );
    }

    #[test]
    fn passive_target_4_and_7_byte_uids() {
        let mut data = Vec::new();
        in_list_passive_target_response([0x00, 0x04], 0x08, &[0xDE, 0xAD, 0xBE, 0xEF], &mut data);
        assert_eq!(
            Frame::response(&data).to_vec().unwrap(),
            [
                0x00, 0x00, 0xFF, 0x0C, 0xF4, 0xD5, 0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x04, 0xDE,
                0xAD, 0xBE, 0xEF, 0x96, 0x00
            ]
        );
        let t = parse_in_list_passive_target_106a(&data).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].uid, [0xDE, 0xAD, 0xBE, 0xEF]);
        assert!(t[0].is_mifare_classic());
        assert_eq!(t[0].auth_uid(), [0xDE, 0xAD, 0xBE, 0xEF]);

        let uid7 = [0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
        let mut data = Vec::new();
        in_list_passive_target_response([0x00, 0x44], 0x08, &uid7, &mut data);
        let t = parse_in_list_passive_target_106a(&data).unwrap();
        assert_eq!(t[0].uid, uid7);
        assert_eq!(t[0].sens_res, [0x00, 0x44]);
        assert_eq!(t[0].auth_uid(), [0x33, 0x44, 0x55, 0x66]);
    }

    #[test]
    fn passive_target_with_ats_and_no_target() {
        let data = [
            0x4B, 0x01, 0x01, 0x03, 0x44, 0x20, 0x07, 1, 2, 3, 4, 5, 6, 7, 0x05, 0x75, 0x77, 0x81,
            0x02,
        ];
        let t = parse_in_list_passive_target_106a(&data).unwrap();
        assert_eq!(t[0].ats, [0x05, 0x75, 0x77, 0x81, 0x02]);
        assert!(!t[0].is_mifare_classic());
        assert_eq!(parse_in_list_passive_target_106a(&[0x4B, 0x00]), Ok(vec![]));
    }

    #[test]
    fn malformed_responses_are_typed_errors() {
        assert_eq!(
            parse_firmware_version(&[0x15]),
            Err(ParseError::WrongCode {
                expected: 0x03,
                found: 0x15
            })
        );
        assert_eq!(
            parse_firmware_version(&[0x03, 0x32]),
            Err(ParseError::TooShort(2))
        );
        assert_eq!(
            parse_firmware_version(&[0x03, 0x32, 1, 6, 7, 9]),
            Err(ParseError::TrailingBytes(1))
        );
        assert_eq!(
            parse_in_list_passive_target_106a(&[
                0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x05, 1, 2, 3, 4, 5
            ]),
            Err(ParseError::BadUidLength(5))
        );
        assert_eq!(
            parse_in_list_passive_target_106a(&[0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x04, 1, 2]),
            Err(ParseError::TooShort(9))
        );
        assert_eq!(
            parse_in_list_passive_target_106a(&[0x4B, 0x03]),
            Err(ParseError::TooManyTargets(3))
        );
        assert_eq!(
            parse_in_data_exchange(&[0x41]),
            Err(ParseError::TooShort(1))
        );
        assert_eq!(
            parse_in_release(&[0x53, 0, 0]),
            Err(ParseError::TrailingBytes(1))
        );
        assert_eq!(parse_sam_configuration(&[]), Err(ParseError::TooShort(0)));
    }

    #[test]
    fn status_codes_round_trip() {
        for code in 0u8..0x40 {
            match StatusError::from_status(code) {
                None => assert_eq!(code, 0),
                Some(e) => assert_eq!(e.code(), code),
            }
        }
        assert_eq!(
            StatusError::from_status(0x14),
            Some(StatusError::Authentication)
        );
        // The MI and NAD flags are not errors.
        assert_eq!(StatusError::from_status(0x40), None);
        assert_eq!(StatusError::from_status(0x81), Some(StatusError::Timeout));
    }

    #[test]
    fn keys_never_print() {
        let key = MifareKey([0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5]);
        let s = format!("{key:?}");
        assert!(!s.contains("A0") && !s.contains("160"), "{s}");
    }
}
