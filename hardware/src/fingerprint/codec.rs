//! The frame codec of the R30x/ZFM/AS608/R503 family, shared by the host
//! role (our driver) and the device role (the emulated module).
//!
//! ```text
//! EF 01 | AA AA AA AA | PID | LL LL      | payload ...   | SS SS
//! header  address       id    len = n+2   n bytes         sum of PID, LL LL, payload (mod 65536)
//! ```
//!
//! All multi-byte fields are big-endian. The module also sends a lone
//! [`READY_BYTE`] (0x55) when it powers up or finishes a soft reset.
//!
//! **Architecture Invariant:** no IO and no clock here. Incomplete input is
//! [`Status::Partial`], never an error; the [`Decoder`] owns one reusable
//! buffer and hands out frames that borrow from it (no allocation per frame).

use std::fmt;

use crate::rx::RxBuffer;

/// The two header bytes that start every frame.
pub const HEADER: [u8; 2] = [0xEF, 0x01];
/// The address a module answers to out of the box.
pub const DEFAULT_ADDRESS: u32 = 0xFFFF_FFFF;
/// The byte a module sends after power-up and after `SoftRst`.
pub const READY_BYTE: u8 = 0x55;
/// Largest payload this codec accepts (a data packet at the largest packet
/// size the family supports).
pub const MAX_PAYLOAD: usize = 256;
/// Header, address, packet id, length field.
pub const PREFIX_LEN: usize = 9;
/// Bytes of a frame that are not payload.
pub const OVERHEAD: usize = PREFIX_LEN + 2;
/// Largest encoded frame.
pub const MAX_FRAME: usize = OVERHEAD + MAX_PAYLOAD;

/// The packet identifier (byte 6 of a frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// 0x01: a command from the host.
    Command,
    /// 0x02: a data packet, more follow.
    Data,
    /// 0x07: the module's acknowledgement of a command.
    Ack,
    /// 0x08: the last data packet of a transfer.
    EndData,
}

impl PacketKind {
    pub const fn byte(self) -> u8 {
        match self {
            PacketKind::Command => 0x01,
            PacketKind::Data => 0x02,
            PacketKind::Ack => 0x07,
            PacketKind::EndData => 0x08,
        }
    }

    pub const fn from_byte(byte: u8) -> Option<PacketKind> {
        match byte {
            0x01 => Some(PacketKind::Command),
            0x02 => Some(PacketKind::Data),
            0x07 => Some(PacketKind::Ack),
            0x08 => Some(PacketKind::EndData),
            _ => None,
        }
    }

    /// Whether this side of the link may legitimately receive this packet.
    pub const fn accepted_by(self, role: Role) -> bool {
        !matches!(
            (role, self),
            (Role::Host, PacketKind::Command) | (Role::Device, PacketKind::Ack)
        )
    }
}

/// Which end of the link a [`Decoder`] sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The terminal: receives acknowledgements and data.
    Host,
    /// The module: receives commands and data.
    Device,
}

/// One decoded (or to-be-encoded) frame. The payload borrows from the
/// caller's buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub address: u32,
    pub kind: PacketKind,
    pub payload: &'a [u8],
}

/// Data packets carry fingerprint templates: never print their contents.
impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Frame");
        d.field("address", &format_args!("{:08X}", self.address))
            .field("kind", &self.kind)
            .field("len", &self.payload.len());
        match (self.kind, self.payload.first()) {
            (PacketKind::Command, Some(code)) => {
                d.field("instruction", &format_args!("{code:#04X}"));
            }
            (PacketKind::Ack, Some(code)) => {
                d.field("confirmation", &format_args!("{code:#04X}"));
            }
            _ => {}
        }
        d.finish_non_exhaustive()
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
    #[error("frame does not start with the EF 01 header")]
    NoHeader,
    #[error("unknown packet id {0:#04X}")]
    UnknownPacketId(u8),
    #[error("length field {0} is outside 2..={max}", max = MAX_PAYLOAD + 2)]
    BadLength(u16),
    #[error("checksum {found:#06X} does not match the computed {computed:#06X}")]
    BadChecksum { computed: u16, found: u16 },
    #[error("{kind:?} packet is not valid in the {role:?} role")]
    UnexpectedPacket { kind: PacketKind, role: Role },
}

/// An encode request that cannot produce a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte maximum")]
    PayloadTooLong(usize),
    #[error("output buffer of {available} bytes cannot hold a {needed}-byte frame")]
    BufferTooSmall { needed: usize, available: usize },
}

/// The checksum over the packet id, the length field and the payload.
pub fn checksum(kind: PacketKind, length_field: u16, payload: &[u8]) -> u16 {
    let [hi, lo] = length_field.to_be_bytes();
    let mut sum = u16::from(kind.byte())
        .wrapping_add(u16::from(hi))
        .wrapping_add(u16::from(lo));
    for &b in payload {
        sum = sum.wrapping_add(u16::from(b));
    }
    sum
}

impl<'a> Frame<'a> {
    pub const fn new(address: u32, kind: PacketKind, payload: &'a [u8]) -> Frame<'a> {
        Frame {
            address,
            kind,
            payload,
        }
    }

    /// The number of bytes [`Frame::encode`] writes.
    pub const fn encoded_len(&self) -> usize {
        OVERHEAD + self.payload.len()
    }

    /// Writes the frame into `out` and returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(EncodeError::PayloadTooLong(self.payload.len()));
        }
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let length_field = (self.payload.len() + 2) as u16;
        out[..2].copy_from_slice(&HEADER);
        out[2..6].copy_from_slice(&self.address.to_be_bytes());
        out[6] = self.kind.byte();
        out[7..9].copy_from_slice(&length_field.to_be_bytes());
        out[PREFIX_LEN..PREFIX_LEN + self.payload.len()].copy_from_slice(self.payload);
        let sum = checksum(self.kind, length_field, self.payload);
        out[needed - 2..needed].copy_from_slice(&sum.to_be_bytes());
        Ok(needed)
    }

    /// Encodes into a fresh vector (tests and cold paths).
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0; self.encoded_len()];
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Parses one frame at the start of `buf`. On success returns the frame and
/// the number of bytes it occupies. Checks every field as soon as its bytes
/// are present, so a bad length is reported before the payload arrives.
pub fn parse_frame(buf: &[u8]) -> Result<Status<(Frame<'_>, usize)>, FrameError> {
    for (i, &want) in HEADER.iter().enumerate() {
        match buf.get(i) {
            None => return Ok(Status::Partial),
            Some(&b) if b != want => return Err(FrameError::NoHeader),
            Some(_) => {}
        }
    }
    let Some(&pid) = buf.get(6) else {
        return Ok(Status::Partial);
    };
    let kind = PacketKind::from_byte(pid).ok_or(FrameError::UnknownPacketId(pid))?;
    if buf.len() < PREFIX_LEN {
        return Ok(Status::Partial);
    }
    let length_field = u16::from_be_bytes([buf[7], buf[8]]);
    if !(2..=(MAX_PAYLOAD as u16 + 2)).contains(&length_field) {
        return Err(FrameError::BadLength(length_field));
    }
    let total = PREFIX_LEN + usize::from(length_field);
    if buf.len() < total {
        return Ok(Status::Partial);
    }
    let payload = &buf[PREFIX_LEN..total - 2];
    let found = u16::from_be_bytes([buf[total - 2], buf[total - 1]]);
    let computed = checksum(kind, length_field, payload);
    if found != computed {
        return Err(FrameError::BadChecksum { computed, found });
    }
    let address = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
    Ok(Status::Complete((
        Frame {
            address,
            kind,
            payload,
        },
        total,
    )))
}

/// Splits a template transfer (UpChar, DownChar) into packets of `size`
/// bytes, all [`PacketKind::Data`] but the last, [`PacketKind::EndData`].
pub fn data_packets(bytes: &[u8], size: usize) -> impl Iterator<Item = (PacketKind, &[u8])> {
    let count = bytes.len().div_ceil(size.max(1));
    bytes
        .chunks(size.max(1))
        .enumerate()
        .map(move |(i, chunk)| {
            let kind = if i + 1 == count {
                PacketKind::EndData
            } else {
                PacketKind::Data
            };
            (kind, chunk)
        })
}

/// What a [`Decoder`] yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Frame(Frame<'a>),
    /// A lone 0x55 outside a frame (host role only): the module is ready.
    Ready,
}

/// A streaming decoder: push bytes as they arrive, pull events. Garbage
/// between frames is skipped (resynchronising on the next EF 01); a frame
/// with a bad length or checksum is reported once and then skipped past its
/// header, so a corrupt length field never swallows the frames after it.
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

    /// Forgets everything buffered (before a retry).
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

    /// The next event, `Ok(None)` when more bytes are needed. After an
    /// error, call again: decoding resumes after the bad frame's header.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, FrameError> {
        loop {
            let window = self.rx.window();
            let Some(&first) = window.first() else {
                return Ok(None);
            };
            if first != HEADER[0] {
                if first == READY_BYTE && self.role == Role::Host {
                    self.rx.consume(1);
                    return Ok(Some(Event::Ready));
                }
                let skip = window
                    .iter()
                    .position(|&b| b == HEADER[0] || (b == READY_BYTE && self.role == Role::Host))
                    .unwrap_or(window.len());
                self.rx.skip(skip);
                continue;
            }
            match window.get(1) {
                None => return Ok(None),
                Some(&b) if b != HEADER[1] => {
                    self.rx.skip(1);
                    continue;
                }
                Some(_) => {}
            }
            match parse_frame(window) {
                Ok(Status::Partial) => return Ok(None),
                Ok(Status::Complete((frame, len))) => {
                    let start = self.rx.position();
                    if !frame.kind.accepted_by(self.role) {
                        let kind = frame.kind;
                        self.rx.skip(len);
                        return Err(FrameError::UnexpectedPacket {
                            kind,
                            role: self.role,
                        });
                    }
                    let payload_len = frame.payload.len();
                    let address = frame.address;
                    let kind = frame.kind;
                    self.rx.consume(len);
                    let payload = self
                        .rx
                        .slice(start + PREFIX_LEN..start + PREFIX_LEN + payload_len);
                    return Ok(Some(Event::Frame(Frame {
                        address,
                        kind,
                        payload,
                    })));
                }
                Err(e) => {
                    // Skip the header only: the next frame may start inside
                    // what the corrupt length claimed.
                    self.rx.skip(HEADER.len());
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: PacketKind, payload: &[u8]) -> Vec<u8> {
        Frame::new(DEFAULT_ADDRESS, kind, payload).to_vec().unwrap()
    }

    #[test]
    fn verify_password_frame_matches_the_datasheet_bytes() {
        // VfyPwd with password 0: the example every datasheet prints.
        assert_eq!(
            frame(PacketKind::Command, &[0x13, 0, 0, 0, 0]),
            [
                0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x07, 0x13, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x1B
            ]
        );
    }

    #[test]
    fn partial_input_is_partial_at_every_prefix() {
        let bytes = frame(PacketKind::Ack, &[0x00, 0x01, 0x02]);
        for cut in 0..bytes.len() {
            assert_eq!(parse_frame(&bytes[..cut]), Ok(Status::Partial), "cut {cut}");
        }
        let Ok(Status::Complete((f, n))) = parse_frame(&bytes) else {
            panic!("complete frame did not parse");
        };
        assert_eq!(n, bytes.len());
        assert_eq!(f.payload, &[0x00, 0x01, 0x02]);
    }

    #[test]
    fn bad_fields_are_typed_errors() {
        let mut bytes = frame(PacketKind::Ack, &[0x00]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::BadChecksum { .. })
        ));

        let mut bytes = frame(PacketKind::Ack, &[0x00]);
        bytes[6] = 0x05;
        assert_eq!(parse_frame(&bytes), Err(FrameError::UnknownPacketId(0x05)));

        let mut bytes = frame(PacketKind::Ack, &[0x00]);
        bytes[7] = 0x01; // length 0x0103, beyond any packet
        assert_eq!(parse_frame(&bytes[..9]), Err(FrameError::BadLength(0x0103)));

        let mut bytes = frame(PacketKind::Ack, &[0x00]);
        bytes[8] = 0x01;
        assert_eq!(parse_frame(&bytes), Err(FrameError::BadLength(1)));

        assert_eq!(parse_frame(&[0xEF, 0x02]), Err(FrameError::NoHeader));
    }

    #[test]
    fn oversized_payload_is_refused_by_the_encoder() {
        let big = [0u8; MAX_PAYLOAD + 1];
        assert_eq!(
            Frame::new(0, PacketKind::Data, &big).to_vec(),
            Err(EncodeError::PayloadTooLong(MAX_PAYLOAD + 1))
        );
        let mut small = [0u8; 5];
        assert!(matches!(
            Frame::new(0, PacketKind::Data, &[1]).encode(&mut small),
            Err(EncodeError::BufferTooSmall { needed: 12, .. })
        ));
    }

    #[test]
    fn decoder_resynchronises_after_garbage_and_a_corrupt_frame() {
        let good = frame(PacketKind::Ack, &[0x00, 0x00, 0x2A]);
        let mut corrupt = frame(PacketKind::Ack, &[0x09]);
        let n = corrupt.len();
        corrupt[n - 1] ^= 1;
        let mut stream = vec![0x00, 0x13, 0xEF, 0x00, 0xEF];
        stream.extend_from_slice(&corrupt);
        stream.extend_from_slice(&good);
        let mut d = Decoder::new(Role::Host);
        d.push(&stream);
        assert!(matches!(
            d.next_event(),
            Err(FrameError::BadChecksum { .. })
        ));
        match d.next_event() {
            Ok(Some(Event::Frame(f))) => assert_eq!(f.payload, &[0x00, 0x00, 0x2A]),
            other => panic!("expected the good frame, got {other:?}"),
        }
        assert_eq!(d.next_event(), Ok(None));
        assert_eq!(d.buffered(), 0);
        assert!(d.skipped_bytes() >= 5);
    }

    #[test]
    fn host_sees_the_ready_byte_device_does_not() {
        let ack = frame(PacketKind::Ack, &[0x00]);
        let mut d = Decoder::new(Role::Host);
        d.push(&ack);
        d.push(&[READY_BYTE]);
        assert!(matches!(d.next_event(), Ok(Some(Event::Frame(_)))));
        assert_eq!(d.next_event(), Ok(Some(Event::Ready)));

        let mut d = Decoder::new(Role::Device);
        d.push(&[READY_BYTE]);
        assert_eq!(d.next_event(), Ok(None));
        assert_eq!(d.skipped_bytes(), 1);
    }

    #[test]
    fn each_role_refuses_the_other_roles_packets() {
        let mut d = Decoder::new(Role::Device);
        d.push(&frame(PacketKind::Ack, &[0]));
        assert_eq!(
            d.next_event(),
            Err(FrameError::UnexpectedPacket {
                kind: PacketKind::Ack,
                role: Role::Device
            })
        );
        let mut d = Decoder::new(Role::Host);
        d.push(&frame(PacketKind::Command, &[0x01]));
        assert!(matches!(
            d.next_event(),
            Err(FrameError::UnexpectedPacket { .. })
        ));
    }

    #[test]
    fn debug_never_shows_template_bytes() {
        let f = Frame::new(DEFAULT_ADDRESS, PacketKind::Data, &[0xAB; 32]);
        let shown = format!("{f:?}");
        assert!(!shown.contains("171") && !shown.contains("AB, "), "{shown}");
        assert!(shown.contains("len: 32"));
    }
}
