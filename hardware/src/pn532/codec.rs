//! The PN532 host-link frame codec (HSU/UART), shared by the host role (our
//! driver) and the device role (the emulated reader in `firmware-host`).
//!
//! ```text
//! normal:    00 00 FF | LEN | LCS | TFI | PD0 .. PDn | DCS | 00
//! extended:  00 00 FF | FF FF | LENM LENL | LCS | TFI | PD0 .. PDn | DCS | 00
//! ACK:       00 00 FF 00 FF 00
//! NACK:      00 00 FF FF 00 00
//! error:     00 00 FF 01 FF 7F 81 00      (application-level syntax error)
//! ```
//!
//! `LEN` counts TFI and data; `LEN + LCS == 0` (mod 256), and for extended
//! frames `LENM + LENL + LCS == 0`. `TFI + PD0 + .. + PDn + DCS == 0`.
//! TFI is 0xD4 from host to PN532 and 0xD5 from PN532 to host.
//!
//! The decoder looks for the start code `00 FF` and treats everything before
//! it (the preamble, the HSU wake-up bytes 0x55, line noise) as skippable.
//!
//! **Architecture Invariant:** no IO and no clock here. Incomplete input is
//! [`Status::Partial`], never an error; the [`Decoder`] owns one reusable
//! buffer and hands out frames that borrow from it.

use std::fmt;

use crate::rx::RxBuffer;

/// Start code that begins every frame (after the optional 0x00 preamble).
pub const START_CODE: [u8; 2] = [0x00, 0xFF];
/// TFI of a frame from the host controller to the PN532.
pub const TFI_HOST_TO_PN532: u8 = 0xD4;
/// TFI of a frame from the PN532 to the host controller.
pub const TFI_PN532_TO_HOST: u8 = 0xD5;
/// TFI of the application-level error frame.
pub const TFI_ERROR: u8 = 0x7F;
/// The ACK frame.
pub const ACK: [u8; 6] = [0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00];
/// The NACK frame (ask the other side to send its last frame again).
pub const NACK: [u8; 6] = [0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00];
/// The application-level error frame (the PN532 found a syntax error).
pub const ERROR_FRAME: [u8; 8] = [0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00];
/// Largest number of data bytes after the TFI (the PN532's 264-byte buffer
/// plus the command code).
pub const MAX_DATA: usize = 264;
/// Largest encoded frame (extended, with preamble and postamble).
pub const MAX_FRAME: usize = 3 + 5 + 1 + MAX_DATA + 2;
/// Longest data a normal (non-extended) frame carries; longer data goes in
/// an extended frame.
pub const MAX_NORMAL_DATA: usize = 254;

/// Direction of an information frame, from its TFI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// TFI 0xD4: a command from the host.
    HostToPn532,
    /// TFI 0xD5: a response from the PN532.
    Pn532ToHost,
}

impl Direction {
    pub const fn tfi(self) -> u8 {
        match self {
            Direction::HostToPn532 => TFI_HOST_TO_PN532,
            Direction::Pn532ToHost => TFI_PN532_TO_HOST,
        }
    }
}

/// Which end of the link a [`Decoder`] sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The host controller (the terminal): receives responses.
    Host,
    /// The PN532: receives commands.
    Device,
}

impl Role {
    /// The direction of the information frames this role sends.
    pub const fn sends(self) -> Direction {
        match self {
            Role::Host => Direction::HostToPn532,
            Role::Device => Direction::Pn532ToHost,
        }
    }

    /// The direction of the information frames this role receives.
    pub const fn receives(self) -> Direction {
        match self {
            Role::Host => Direction::Pn532ToHost,
            Role::Device => Direction::HostToPn532,
        }
    }
}

/// One decoded (or to-be-encoded) frame. Information data borrows from the
/// caller's buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Ack,
    Nack,
    /// The application-level error frame.
    Error,
    /// An information frame; `data` starts with the command (or response)
    /// code and excludes the TFI.
    Info {
        direction: Direction,
        data: &'a [u8],
    },
}

/// Card data (patient numbers, keys) travel in information frames: only the
/// command code and the length are printed.
impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Ack => f.write_str("Ack"),
            Frame::Nack => f.write_str("Nack"),
            Frame::Error => f.write_str("Error"),
            Frame::Info { direction, data } => {
                let mut d = f.debug_struct("Info");
                d.field("direction", direction).field("len", &data.len());
                if let Some(code) = data.first() {
                    d.field("code", &format_args!("{code:#04X}"));
                }
                d.finish_non_exhaustive()
            }
        }
    }
}

/// Result of parsing possibly incomplete input, in the manner of httparse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    /// More bytes are needed; nothing is wrong yet.
    Partial,
}

/// A frame that cannot be right, whatever bytes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame does not start with the 00 FF start code")]
    NoStartCode,
    #[error("length checksum: LEN {len:#06X} with LCS {lcs:#04X} does not sum to zero")]
    BadLengthChecksum { len: u16, lcs: u8 },
    #[error("length {0} is outside 1..={max}", max = MAX_DATA + 1)]
    BadLength(u16),
    #[error("data checksum {found:#04X} does not match the computed {computed:#04X}")]
    BadDataChecksum { computed: u8, found: u8 },
    #[error("unknown frame identifier (TFI) {0:#04X}")]
    UnknownTfi(u8),
    #[error("information frame without a command code (LEN 1)")]
    NoCommandCode,
    #[error("error frame with {0} bytes (must be exactly the TFI 0x7F)")]
    BadErrorFrame(u16),
    #[error("{direction:?} frame is not valid in the {role:?} role")]
    WrongDirection { direction: Direction, role: Role },
}

/// An encode request that cannot produce a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("empty information frame (the command code is missing)")]
    Empty,
    #[error("{0} data bytes exceed the {MAX_DATA}-byte maximum")]
    DataTooLong(usize),
    #[error("output buffer of {available} bytes cannot hold a {needed}-byte frame")]
    BufferTooSmall { needed: usize, available: usize },
}

/// The data checksum byte: makes `tfi + data + dcs == 0` (mod 256).
pub fn data_checksum(tfi: u8, data: &[u8]) -> u8 {
    let sum = data.iter().fold(tfi, |acc, &b| acc.wrapping_add(b));
    sum.wrapping_neg()
}

impl<'a> Frame<'a> {
    /// A command from the host.
    pub const fn command(data: &'a [u8]) -> Frame<'a> {
        Frame::Info {
            direction: Direction::HostToPn532,
            data,
        }
    }

    /// A response from the PN532.
    pub const fn response(data: &'a [u8]) -> Frame<'a> {
        Frame::Info {
            direction: Direction::Pn532ToHost,
            data,
        }
    }

    /// The number of bytes [`Frame::encode`] writes.
    pub const fn encoded_len(&self) -> usize {
        match self {
            Frame::Ack | Frame::Nack => 6,
            Frame::Error => 8,
            Frame::Info { data, .. } => {
                if data.len() <= MAX_NORMAL_DATA {
                    // preamble, start code, LEN, LCS, TFI, data, DCS, postamble
                    3 + 2 + 1 + data.len() + 2
                } else {
                    3 + 5 + 1 + data.len() + 2
                }
            }
        }
    }

    /// Writes the frame, with preamble and postamble, into `out` and
    /// returns its length. Data longer than [`MAX_NORMAL_DATA`] goes in an
    /// extended frame.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        if let Frame::Info { data, .. } = self {
            if data.is_empty() {
                return Err(EncodeError::Empty);
            }
            if data.len() > MAX_DATA {
                return Err(EncodeError::DataTooLong(data.len()));
            }
        }
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        match self {
            Frame::Ack => out[..6].copy_from_slice(&ACK),
            Frame::Nack => out[..6].copy_from_slice(&NACK),
            Frame::Error => out[..8].copy_from_slice(&ERROR_FRAME),
            Frame::Info { direction, data } => {
                let tfi = direction.tfi();
                out[..3].copy_from_slice(&[0x00, 0x00, 0xFF]);
                let len = data.len() + 1;
                let mut at = 3;
                if data.len() <= MAX_NORMAL_DATA {
                    let len = len as u8;
                    out[at] = len;
                    out[at + 1] = len.wrapping_neg();
                    at += 2;
                } else {
                    let [hi, lo] = (len as u16).to_be_bytes();
                    out[at..at + 5].copy_from_slice(&[
                        0xFF,
                        0xFF,
                        hi,
                        lo,
                        hi.wrapping_add(lo).wrapping_neg(),
                    ]);
                    at += 5;
                }
                out[at] = tfi;
                at += 1;
                out[at..at + data.len()].copy_from_slice(data);
                at += data.len();
                out[at] = data_checksum(tfi, data);
                out[at + 1] = 0x00;
            }
        }
        Ok(needed)
    }

    /// Encodes into a fresh vector (tests and cold paths).
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0; self.encoded_len()];
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Parses one frame that begins with the start code `00 FF` at `buf[0]`
/// (the preamble already skipped). On success returns the frame and the
/// number of bytes it occupies, including the postamble when it is 0x00.
/// Every field is checked as soon as its bytes are present, so a bad length
/// is reported before the data arrives.
pub fn parse_frame(buf: &[u8]) -> Result<Status<(Frame<'_>, usize)>, FrameError> {
    Ok(match parse_raw(buf)? {
        Status::Partial => Status::Partial,
        Status::Complete((raw, used)) => Status::Complete((raw.frame(buf), used)),
    })
}

/// A parsed frame as positions in the input (so the decoder can move its
/// read position before borrowing the data).
#[derive(Clone, Copy)]
enum RawFrame {
    Ack,
    Nack,
    Error,
    Info {
        direction: Direction,
        start: usize,
        end: usize,
    },
}

impl RawFrame {
    fn frame(self, buf: &[u8]) -> Frame<'_> {
        match self {
            RawFrame::Ack => Frame::Ack,
            RawFrame::Nack => Frame::Nack,
            RawFrame::Error => Frame::Error,
            RawFrame::Info {
                direction,
                start,
                end,
            } => Frame::Info {
                direction,
                data: &buf[start..end],
            },
        }
    }
}

fn parse_raw(buf: &[u8]) -> Result<Status<(RawFrame, usize)>, FrameError> {
    for (i, &want) in START_CODE.iter().enumerate() {
        match buf.get(i) {
            None => return Ok(Status::Partial),
            Some(&b) if b != want => return Err(FrameError::NoStartCode),
            Some(_) => {}
        }
    }
    let (Some(&len), Some(&lcs)) = (buf.get(2), buf.get(3)) else {
        return Ok(Status::Partial);
    };
    let (frame_len, header_end): (u16, usize) = match (len, lcs) {
        (0x00, 0xFF) => return Ok(with_postamble(buf, 4, RawFrame::Ack)),
        (0xFF, 0x00) => return Ok(with_postamble(buf, 4, RawFrame::Nack)),
        (0xFF, 0xFF) => {
            let (Some(&hi), Some(&lo), Some(&lcs)) = (buf.get(4), buf.get(5), buf.get(6)) else {
                return Ok(Status::Partial);
            };
            let len = u16::from_be_bytes([hi, lo]);
            if hi.wrapping_add(lo).wrapping_add(lcs) != 0 {
                return Err(FrameError::BadLengthChecksum { len, lcs });
            }
            (len, 7)
        }
        (len, lcs) => {
            if len.wrapping_add(lcs) != 0 {
                return Err(FrameError::BadLengthChecksum {
                    len: u16::from(len),
                    lcs,
                });
            }
            (u16::from(len), 4)
        }
    };
    if frame_len == 0 || usize::from(frame_len) > MAX_DATA + 1 {
        return Err(FrameError::BadLength(frame_len));
    }
    let Some(&tfi) = buf.get(header_end) else {
        return Ok(Status::Partial);
    };
    let direction = match tfi {
        TFI_HOST_TO_PN532 | TFI_PN532_TO_HOST if frame_len == 1 => {
            return Err(FrameError::NoCommandCode);
        }
        TFI_HOST_TO_PN532 => Some(Direction::HostToPn532),
        TFI_PN532_TO_HOST => Some(Direction::Pn532ToHost),
        TFI_ERROR if frame_len == 1 => None,
        TFI_ERROR => return Err(FrameError::BadErrorFrame(frame_len)),
        other => return Err(FrameError::UnknownTfi(other)),
    };
    let data_start = header_end + 1;
    let dcs_at = header_end + usize::from(frame_len);
    let Some(&found) = buf.get(dcs_at) else {
        return Ok(Status::Partial);
    };
    let computed = data_checksum(tfi, &buf[data_start..dcs_at]);
    if found != computed {
        return Err(FrameError::BadDataChecksum { computed, found });
    }
    let raw = match direction {
        Some(direction) => RawFrame::Info {
            direction,
            start: data_start,
            end: dcs_at,
        },
        None => RawFrame::Error,
    };
    Ok(with_postamble(buf, dcs_at + 1, raw))
}

/// Completes a frame once the byte after it is known: a 0x00 postamble is
/// consumed, anything else is left for resynchronisation.
fn with_postamble(buf: &[u8], end: usize, raw: RawFrame) -> Status<(RawFrame, usize)> {
    match buf.get(end) {
        None => Status::Partial,
        Some(0x00) => Status::Complete((raw, end + 1)),
        Some(_) => Status::Complete((raw, end)),
    }
}

/// A streaming decoder: push bytes as they arrive, pull frames. Bytes
/// before a start code (preamble, wake-up 0x55s, noise) are skipped; a
/// frame with a bad length or checksum is reported once and decoding
/// resumes just after its start code, so a corrupt length never swallows
/// the frames after it.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    rx: RxBuffer,
}

impl Decoder {
    pub fn new(role: Role) -> Decoder {
        Decoder {
            role,
            rx: RxBuffer::with_capacity(2 * MAX_FRAME),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.rx.push(bytes);
    }

    /// Forgets everything buffered.
    pub fn clear(&mut self) {
        self.rx.clear();
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.rx.buffered()
    }

    /// Bytes dropped while resynchronising, since creation.
    pub fn skipped_bytes(&self) -> u64 {
        self.rx.skipped()
    }

    /// The next frame, `Ok(None)` when more bytes are needed. After an
    /// error, call again: decoding resumes after the bad frame's start code.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        let window = self.rx.window();
        let start = window.windows(2).position(|w| w == START_CODE);
        let Some(start) = start else {
            // Keep a trailing 0x00: it may be the first half of a start code.
            let keep = usize::from(window.last() == Some(&0x00));
            let skip = window.len() - keep;
            self.rx.skip(skip);
            return Ok(None);
        };
        self.rx.skip(start);
        let at = self.rx.position();
        match parse_raw(self.rx.window()) {
            Ok(Status::Partial) => Ok(None),
            Ok(Status::Complete((raw, used))) => {
                self.rx.consume(used);
                if let RawFrame::Info { direction, .. } = raw
                    && direction != self.role.receives()
                {
                    return Err(FrameError::WrongDirection {
                        direction,
                        role: self.role,
                    });
                }
                Ok(Some(raw.frame(self.rx.slice(at..at + used))))
            }
            Err(e) => {
                self.rx.skip(START_CODE.len());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(role: Role, bytes: &[u8]) -> Vec<Result<String, FrameError>> {
        let mut d = Decoder::new(role);
        d.push(bytes);
        let mut out = Vec::new();
        loop {
            match d.next_frame() {
                Ok(None) => break,
                Ok(Some(f)) => out.push(Ok(describe(&f))),
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }

    fn describe(f: &Frame<'_>) -> String {
        match f {
            Frame::Info { direction, data } => format!("{direction:?} {data:02X?}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn golden_fixed_frames() {
        assert_eq!(Frame::Ack.to_vec().unwrap(), ACK);
        assert_eq!(Frame::Nack.to_vec().unwrap(), NACK);
        assert_eq!(Frame::Error.to_vec().unwrap(), ERROR_FRAME);
        assert_eq!(
            Frame::command(&[0x02]).to_vec().unwrap(),
            [0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00]
        );
    }

    #[test]
    fn extended_frame_layout() {
        let data = vec![0x41u8; 300 - 1];
        // 299 data bytes would exceed MAX_DATA; use the maximum instead.
        assert_eq!(
            Frame::command(&data).to_vec(),
            Err(EncodeError::DataTooLong(299))
        );
        let data = vec![0x41u8; MAX_DATA];
        let bytes = Frame::response(&data).to_vec().unwrap();
        // LEN = 265 = 0x0109, LCS = -(0x01 + 0x09) = 0xF6
        assert_eq!(
            &bytes[..8],
            &[0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x01, 0x09, 0xF6]
        );
        assert_eq!(bytes[8], TFI_PN532_TO_HOST);
        assert_eq!(bytes.len(), MAX_FRAME);
        let got = decode_all(Role::Host, &bytes);
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap().starts_with("Pn532ToHost [41, 41"));
    }

    #[test]
    fn longest_normal_frame_and_shortest_extended() {
        for n in [MAX_NORMAL_DATA, MAX_NORMAL_DATA + 1] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let bytes = Frame::command(&data).to_vec().unwrap();
            assert_eq!(bytes[3] == 0xFF && bytes[4] == 0xFF, n > MAX_NORMAL_DATA);
            let mut d = Decoder::new(Role::Device);
            d.push(&bytes);
            assert_eq!(d.next_frame().unwrap(), Some(Frame::command(&data)));
        }
    }

    #[test]
    fn an_information_frame_without_a_command_code_is_refused() {
        // 00 00 FF 01 FF D5 2B 00: LEN 1, only the TFI (found by fuzzing:
        // it decoded but could not be encoded again).
        let bytes = [0x00, 0x00, 0xFF, 0x01, 0xFF, 0xD5, 0x2B, 0x00];
        assert_eq!(parse_frame(&bytes[1..]), Err(FrameError::NoCommandCode));
        let mut d = Decoder::new(Role::Host);
        d.push(&bytes);
        assert_eq!(d.next_frame(), Err(FrameError::NoCommandCode));
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn partial_input_is_not_an_error() {
        let bytes = Frame::command(&[0x4A, 0x01, 0x00]).to_vec().unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_frame(&bytes[1..cut.max(1)]),
                Ok(Status::Partial),
                "cut {cut}"
            );
            let mut d = Decoder::new(Role::Device);
            d.push(&bytes[..cut]);
            assert_eq!(d.next_frame(), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn checksums_are_typed_errors_and_decoding_resumes() {
        let good = Frame::response(&[0x03, 0x32, 0x01, 0x06, 0x07])
            .to_vec()
            .unwrap();
        let mut bad_lcs = good.clone();
        bad_lcs[4] ^= 0x01;
        let mut bad_dcs = good.clone();
        let n = bad_dcs.len();
        bad_dcs[n - 2] ^= 0x10;
        let mut stream = Vec::new();
        stream.extend_from_slice(&bad_lcs);
        stream.extend_from_slice(&bad_dcs);
        stream.extend_from_slice(&good);
        let got = decode_all(Role::Host, &stream);
        assert_eq!(
            got,
            vec![
                Err(FrameError::BadLengthChecksum { len: 6, lcs: 0xFB }),
                Err(FrameError::BadDataChecksum {
                    computed: good[n - 2],
                    found: good[n - 2] ^ 0x10
                }),
                Ok("Pn532ToHost [03, 32, 01, 06, 07]".into()),
            ]
        );
    }

    #[test]
    fn garbage_and_wakeup_bytes_are_skipped() {
        let mut stream = vec![0x55, 0x55, 0x00, 0x00, 0x00, 0x13, 0x37, 0xFF];
        stream.extend_from_slice(&Frame::command(&[0x14, 0x01]).to_vec().unwrap());
        let mut d = Decoder::new(Role::Device);
        d.push(&stream);
        assert_eq!(d.next_frame().unwrap(), Some(Frame::command(&[0x14, 0x01])));
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.skipped_bytes(), 9);
    }

    #[test]
    fn ack_nack_and_error_frames() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&ACK);
        stream.extend_from_slice(&NACK);
        stream.extend_from_slice(&ERROR_FRAME);
        assert_eq!(
            decode_all(Role::Host, &stream),
            vec![Ok("Ack".into()), Ok("Nack".into()), Ok("Error".into())]
        );
    }

    #[test]
    fn ack_without_preamble_or_postamble_still_decodes() {
        let mut d = Decoder::new(Role::Host);
        d.push(&[0x00, 0xFF, 0x00, 0xFF, 0x01]);
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Ack));
        assert_eq!(
            d.buffered(),
            1,
            "a non-zero byte after the ACK is not consumed"
        );
    }

    #[test]
    fn direction_is_checked_per_role() {
        let cmd = Frame::command(&[0x02]).to_vec().unwrap();
        assert_eq!(
            decode_all(Role::Host, &cmd),
            vec![Err(FrameError::WrongDirection {
                direction: Direction::HostToPn532,
                role: Role::Host
            })]
        );
    }

    #[test]
    fn unknown_tfi_zero_length_and_long_error_frames() {
        assert_eq!(
            parse_frame(&[0x00, 0xFF, 0x02, 0xFE, 0xD6, 0x02, 0x28]),
            Err(FrameError::UnknownTfi(0xD6))
        );
        assert_eq!(
            parse_frame(&[0x00, 0xFF, 0x00, 0x00]),
            Err(FrameError::BadLength(0))
        );
        assert_eq!(
            parse_frame(&[0x00, 0xFF, 0xFF, 0xFF, 0x01, 0x0A, 0xF5]),
            Err(FrameError::BadLength(266))
        );
        assert_eq!(
            parse_frame(&[0x00, 0xFF, 0x02, 0xFE, 0x7F, 0x00, 0x81]),
            Err(FrameError::BadErrorFrame(2))
        );
    }

    #[test]
    fn encode_rejects_empty_and_small_buffers() {
        assert_eq!(Frame::command(&[]).to_vec(), Err(EncodeError::Empty));
        let mut small = [0u8; 5];
        assert_eq!(
            Frame::Ack.encode(&mut small),
            Err(EncodeError::BufferTooSmall {
                needed: 6,
                available: 5
            })
        );
    }

    #[test]
    fn debug_does_not_print_data() {
        let f = Frame::response(&[0x41, 0x00, 0x31, 0x32, 0x33]);
        let s = format!("{f:?}");
        assert!(s.contains("len: 5") && s.contains("0x41"), "{s}");
        assert!(!s.contains("0x31") && !s.contains("49"), "{s}");
    }
}
