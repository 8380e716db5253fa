//! Instructions (command packet payloads) and acknowledgement payloads, in
//! both directions: the host encodes commands and parses replies, the device
//! parses commands and encodes replies. One place owns each layout.
//!
//! Instruction codes and layouts follow the R30x/R503 user manuals (as also
//! used by the Adafruit and Zephyr drivers).

/// Instruction codes.
pub mod code {
    pub const GEN_IMG: u8 = 0x01;
    pub const IMG2TZ: u8 = 0x02;
    pub const MATCH: u8 = 0x03;
    pub const SEARCH: u8 = 0x04;
    pub const REG_MODEL: u8 = 0x05;
    pub const STORE: u8 = 0x06;
    pub const LOAD_CHAR: u8 = 0x07;
    pub const UP_CHAR: u8 = 0x08;
    pub const DOWN_CHAR: u8 = 0x09;
    pub const DELETE_CHAR: u8 = 0x0C;
    pub const EMPTY: u8 = 0x0D;
    pub const READ_SYS_PARA: u8 = 0x0F;
    pub const VFY_PWD: u8 = 0x13;
    pub const HI_SPEED_SEARCH: u8 = 0x1B;
    pub const TEMPLATE_NUM: u8 = 0x1D;
    pub const READ_INDEX_TABLE: u8 = 0x1F;
    pub const AURA_LED_CONFIG: u8 = 0x35;
    pub const SOFT_RST: u8 = 0x3D;
    pub const HAND_SHAKE: u8 = 0x40;
}

/// A character-file buffer in the module's RAM (1 and 2 on every module of
/// the family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CharBuffer(pub u8);

impl CharBuffer {
    pub const ONE: CharBuffer = CharBuffer(1);
    pub const TWO: CharBuffer = CharBuffer(2);
}

/// The data packet size, as coded in ReadSysPara (0..=3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketSize {
    B32,
    B64,
    B128,
    B256,
}

impl PacketSize {
    pub const fn bytes(self) -> usize {
        match self {
            PacketSize::B32 => 32,
            PacketSize::B64 => 64,
            PacketSize::B128 => 128,
            PacketSize::B256 => 256,
        }
    }

    pub const fn code(self) -> u16 {
        match self {
            PacketSize::B32 => 0,
            PacketSize::B64 => 1,
            PacketSize::B128 => 2,
            PacketSize::B256 => 3,
        }
    }

    pub const fn from_code(code: u16) -> Option<PacketSize> {
        match code {
            0 => Some(PacketSize::B32),
            1 => Some(PacketSize::B64),
            2 => Some(PacketSize::B128),
            3 => Some(PacketSize::B256),
            _ => None,
        }
    }

    pub const fn from_bytes(bytes: usize) -> Option<PacketSize> {
        match bytes {
            32 => Some(PacketSize::B32),
            64 => Some(PacketSize::B64),
            128 => Some(PacketSize::B128),
            256 => Some(PacketSize::B256),
            _ => None,
        }
    }
}

/// R503 ring LED effect (AuraLedConfig control code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedMode {
    Breathing = 1,
    Flashing = 2,
    On = 3,
    Off = 4,
    FadeIn = 5,
    FadeOut = 6,
}

impl LedMode {
    pub const fn from_byte(b: u8) -> Option<LedMode> {
        Some(match b {
            1 => LedMode::Breathing,
            2 => LedMode::Flashing,
            3 => LedMode::On,
            4 => LedMode::Off,
            5 => LedMode::FadeIn,
            6 => LedMode::FadeOut,
            _ => return None,
        })
    }
}

/// R503 ring LED colour index (1..=3 on the original R503, 4..=7 on later
/// revisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedColour {
    Red = 1,
    Blue = 2,
    Purple = 3,
    Green = 4,
    Yellow = 5,
    Cyan = 6,
    White = 7,
}

impl LedColour {
    pub const fn from_byte(b: u8) -> Option<LedColour> {
        Some(match b {
            1 => LedColour::Red,
            2 => LedColour::Blue,
            3 => LedColour::Purple,
            4 => LedColour::Green,
            5 => LedColour::Yellow,
            6 => LedColour::Cyan,
            7 => LedColour::White,
            _ => return None,
        })
    }
}

/// AuraLedConfig parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LedConfig {
    pub mode: LedMode,
    /// 0..=255, larger is slower (breathing, flashing, fading).
    pub speed: u8,
    pub colour: LedColour,
    /// Repetitions for breathing and flashing; 0 = forever.
    pub cycles: u8,
}

/// One instruction with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Take an image into the image buffer.
    GenImg,
    /// Extract a character file from the image into a buffer.
    Img2Tz {
        buffer: CharBuffer,
    },
    /// Compare CharBuffer1 with CharBuffer2.
    Match,
    /// Search the library for the character file in `buffer`.
    Search {
        buffer: CharBuffer,
        start: u16,
        count: u16,
    },
    /// Combine CharBuffer1 and CharBuffer2 into a template (in both).
    RegModel,
    /// Store the buffer's template at library page `page`.
    Store {
        buffer: CharBuffer,
        page: u16,
    },
    /// Load the template at `page` into the buffer.
    LoadChar {
        buffer: CharBuffer,
        page: u16,
    },
    /// Upload the buffer's content to the host (data packets follow the ack).
    UpChar {
        buffer: CharBuffer,
    },
    /// Download data packets from the host into the buffer (after the ack).
    DownChar {
        buffer: CharBuffer,
    },
    /// Delete `count` templates starting at `page`.
    DeleteChar {
        page: u16,
        count: u16,
    },
    /// Delete every template.
    Empty,
    ReadSysPara,
    VfyPwd {
        password: u32,
    },
    /// Search, faster, for good-quality captures.
    HiSpeedSearch {
        buffer: CharBuffer,
        start: u16,
        count: u16,
    },
    TemplateNum,
    /// Occupancy bitmap of library pages `256*page ..256*page+255`.
    ReadIndexTable {
        page: u8,
    },
    AuraLedConfig(LedConfig),
    SoftRst,
    HandShake,
}

/// Largest command payload (instruction byte included).
pub const MAX_COMMAND_LEN: usize = 6;

/// Encoded command payload, on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandBytes {
    buf: [u8; MAX_COMMAND_LEN],
    len: usize,
}

impl CommandBytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A command payload the device cannot accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("empty command packet")]
    Empty,
    #[error("unknown instruction {0:#04X}")]
    Unknown(u8),
    #[error("instruction {instruction:#04X} takes {expected} parameter bytes, got {found}")]
    BadLength {
        instruction: u8,
        expected: usize,
        found: usize,
    },
    #[error("instruction {instruction:#04X}: parameter out of range")]
    BadParameter { instruction: u8 },
}

impl Command {
    pub const fn instruction(&self) -> u8 {
        match self {
            Command::GenImg => code::GEN_IMG,
            Command::Img2Tz { .. } => code::IMG2TZ,
            Command::Match => code::MATCH,
            Command::Search { .. } => code::SEARCH,
            Command::RegModel => code::REG_MODEL,
            Command::Store { .. } => code::STORE,
            Command::LoadChar { .. } => code::LOAD_CHAR,
            Command::UpChar { .. } => code::UP_CHAR,
            Command::DownChar { .. } => code::DOWN_CHAR,
            Command::DeleteChar { .. } => code::DELETE_CHAR,
            Command::Empty => code::EMPTY,
            Command::ReadSysPara => code::READ_SYS_PARA,
            Command::VfyPwd { .. } => code::VFY_PWD,
            Command::HiSpeedSearch { .. } => code::HI_SPEED_SEARCH,
            Command::TemplateNum => code::TEMPLATE_NUM,
            Command::ReadIndexTable { .. } => code::READ_INDEX_TABLE,
            Command::AuraLedConfig(_) => code::AURA_LED_CONFIG,
            Command::SoftRst => code::SOFT_RST,
            Command::HandShake => code::HAND_SHAKE,
        }
    }

    /// The command packet payload.
    pub fn encode(&self) -> CommandBytes {
        let mut buf = [0u8; MAX_COMMAND_LEN];
        buf[0] = self.instruction();
        let params: &[u8] = match *self {
            Command::Img2Tz { buffer }
            | Command::UpChar { buffer }
            | Command::DownChar { buffer } => &[buffer.0],
            Command::Search {
                buffer,
                start,
                count,
            }
            | Command::HiSpeedSearch {
                buffer,
                start,
                count,
            } => {
                let [s0, s1] = start.to_be_bytes();
                let [c0, c1] = count.to_be_bytes();
                &[buffer.0, s0, s1, c0, c1]
            }
            Command::Store { buffer, page } | Command::LoadChar { buffer, page } => {
                let [p0, p1] = page.to_be_bytes();
                &[buffer.0, p0, p1]
            }
            Command::DeleteChar { page, count } => {
                let [p0, p1] = page.to_be_bytes();
                let [c0, c1] = count.to_be_bytes();
                &[p0, p1, c0, c1]
            }
            Command::VfyPwd { password } => &password.to_be_bytes(),
            Command::ReadIndexTable { page } => &[page],
            Command::AuraLedConfig(led) => {
                &[led.mode as u8, led.speed, led.colour as u8, led.cycles]
            }
            Command::GenImg
            | Command::Match
            | Command::RegModel
            | Command::Empty
            | Command::ReadSysPara
            | Command::TemplateNum
            | Command::SoftRst
            | Command::HandShake => &[],
        };
        buf[1..1 + params.len()].copy_from_slice(params);
        CommandBytes {
            buf,
            len: 1 + params.len(),
        }
    }

    /// Device role: parses a command packet payload.
    pub fn parse(payload: &[u8]) -> Result<Command, CommandError> {
        let (&instruction, p) = payload.split_first().ok_or(CommandError::Empty)?;
        let want = |n: usize| -> Result<(), CommandError> {
            if p.len() == n {
                Ok(())
            } else {
                Err(CommandError::BadLength {
                    instruction,
                    expected: n,
                    found: p.len(),
                })
            }
        };
        let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
        let cmd = match instruction {
            code::GEN_IMG => want(0).map(|_| Command::GenImg)?,
            code::IMG2TZ => want(1).map(|_| Command::Img2Tz {
                buffer: CharBuffer(p[0]),
            })?,
            code::MATCH => want(0).map(|_| Command::Match)?,
            code::SEARCH | code::HI_SPEED_SEARCH => {
                want(5)?;
                let (buffer, start, count) = (CharBuffer(p[0]), u16_at(1), u16_at(3));
                if instruction == code::SEARCH {
                    Command::Search {
                        buffer,
                        start,
                        count,
                    }
                } else {
                    Command::HiSpeedSearch {
                        buffer,
                        start,
                        count,
                    }
                }
            }
            code::REG_MODEL => want(0).map(|_| Command::RegModel)?,
            code::STORE => want(3).map(|_| Command::Store {
                buffer: CharBuffer(p[0]),
                page: u16_at(1),
            })?,
            code::LOAD_CHAR => want(3).map(|_| Command::LoadChar {
                buffer: CharBuffer(p[0]),
                page: u16_at(1),
            })?,
            code::UP_CHAR => want(1).map(|_| Command::UpChar {
                buffer: CharBuffer(p[0]),
            })?,
            code::DOWN_CHAR => want(1).map(|_| Command::DownChar {
                buffer: CharBuffer(p[0]),
            })?,
            code::DELETE_CHAR => want(4).map(|_| Command::DeleteChar {
                page: u16_at(0),
                count: u16_at(2),
            })?,
            code::EMPTY => want(0).map(|_| Command::Empty)?,
            code::READ_SYS_PARA => want(0).map(|_| Command::ReadSysPara)?,
            code::VFY_PWD => want(4).map(|_| Command::VfyPwd {
                password: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            })?,
            code::TEMPLATE_NUM => want(0).map(|_| Command::TemplateNum)?,
            code::READ_INDEX_TABLE => want(1).map(|_| Command::ReadIndexTable { page: p[0] })?,
            code::AURA_LED_CONFIG => {
                want(4)?;
                let bad = CommandError::BadParameter { instruction };
                Command::AuraLedConfig(LedConfig {
                    mode: LedMode::from_byte(p[0]).ok_or(bad)?,
                    speed: p[1],
                    colour: LedColour::from_byte(p[2]).ok_or(bad)?,
                    cycles: p[3],
                })
            }
            code::SOFT_RST => want(0).map(|_| Command::SoftRst)?,
            code::HAND_SHAKE => want(0).map(|_| Command::HandShake)?,
            other => return Err(CommandError::Unknown(other)),
        };
        Ok(cmd)
    }

    /// Bytes after the confirmation code in this command's acknowledgement.
    /// The module sends them (zeroed) even when the command fails, so that
    /// clients reading a fixed length stay in step.
    pub const fn reply_data_len(&self) -> usize {
        reply_data_len(self.instruction())
    }
}

/// Bytes after the confirmation code in the acknowledgement of `instruction`.
pub const fn reply_data_len(instruction: u8) -> usize {
    match instruction {
        code::READ_SYS_PARA => SystemParameters::LEN,
        code::MATCH | code::TEMPLATE_NUM => 2,
        code::SEARCH | code::HI_SPEED_SEARCH => 4,
        code::READ_INDEX_TABLE => 32,
        _ => 0,
    }
}

/// Largest acknowledgement payload (confirmation code included).
pub const MAX_REPLY_LEN: usize = 1 + 32;

/// The 16 bytes of ReadSysPara.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SystemParameters {
    /// Bit 0 busy, bit 1 matched, bit 2 password verified, bit 3 image
    /// buffer holds a valid image.
    pub status: u16,
    pub system_id: u16,
    /// Library capacity in templates.
    pub capacity: u16,
    /// 1..=5: higher means fewer false accepts.
    pub security_level: u16,
    pub address: u32,
    pub packet_size: PacketSize,
    /// Baud rate = 9600 * this.
    pub baud_multiplier: u16,
}

impl SystemParameters {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..2].copy_from_slice(&self.status.to_be_bytes());
        out[2..4].copy_from_slice(&self.system_id.to_be_bytes());
        out[4..6].copy_from_slice(&self.capacity.to_be_bytes());
        out[6..8].copy_from_slice(&self.security_level.to_be_bytes());
        out[8..12].copy_from_slice(&self.address.to_be_bytes());
        out[12..14].copy_from_slice(&self.packet_size.code().to_be_bytes());
        out[14..16].copy_from_slice(&self.baud_multiplier.to_be_bytes());
        out
    }

    /// `None` if the packet-size code is not 0..=3 or `data` is short.
    pub fn parse(data: &[u8]) -> Option<SystemParameters> {
        let d = data.get(..16)?;
        let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
        Some(SystemParameters {
            status: u16_at(0),
            system_id: u16_at(2),
            capacity: u16_at(4),
            security_level: u16_at(6),
            address: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            packet_size: PacketSize::from_code(u16_at(12))?,
            baud_multiplier: u16_at(14),
        })
    }

    pub fn baud(&self) -> u32 {
        9600 * u32::from(self.baud_multiplier)
    }
}

/// The data an acknowledgement carries after its confirmation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyData {
    None,
    SysPara(SystemParameters),
    /// Match score.
    Score(u16),
    /// Search hit: library page and score.
    Hit {
        page: u16,
        score: u16,
    },
    /// TemplateNum.
    Count(u16),
    /// ReadIndexTable bitmap (bit `i % 8` of byte `i / 8` = page `i` used).
    IndexTable([u8; 32]),
}

/// An encoded acknowledgement payload, on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyBytes {
    buf: [u8; MAX_REPLY_LEN],
    len: usize,
}

impl ReplyBytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Device role: the acknowledgement payload for `instruction` with
/// confirmation `confirmation`. Data that does not belong to the
/// instruction is ignored and missing data is zero-filled, so the length is
/// always [`reply_data_len`]` + 1`.
pub fn encode_reply(instruction: u8, confirmation: u8, data: &ReplyData) -> ReplyBytes {
    let mut buf = [0u8; MAX_REPLY_LEN];
    buf[0] = confirmation;
    let len = reply_data_len(instruction);
    let mut scratch = [0u8; 32];
    let bytes: &[u8] = match data {
        ReplyData::None => &[],
        ReplyData::SysPara(p) => {
            scratch[..16].copy_from_slice(&p.encode());
            &scratch[..16]
        }
        ReplyData::Score(s) | ReplyData::Count(s) => {
            scratch[..2].copy_from_slice(&s.to_be_bytes());
            &scratch[..2]
        }
        ReplyData::Hit { page, score } => {
            scratch[..2].copy_from_slice(&page.to_be_bytes());
            scratch[2..4].copy_from_slice(&score.to_be_bytes());
            &scratch[..4]
        }
        ReplyData::IndexTable(t) => t,
    };
    if bytes.len() == len {
        buf[1..1 + len].copy_from_slice(bytes);
    }
    ReplyBytes { buf, len: 1 + len }
}

/// Host role: interprets the data of a successful acknowledgement of
/// `instruction`. `None` when it is too short or malformed.
pub fn parse_reply_data(instruction: u8, data: &[u8]) -> Option<ReplyData> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*data.get(i)?, *data.get(i + 1)?])) };
    Some(match instruction {
        code::READ_SYS_PARA => ReplyData::SysPara(SystemParameters::parse(data)?),
        code::MATCH => ReplyData::Score(u16_at(0)?),
        code::TEMPLATE_NUM => ReplyData::Count(u16_at(0)?),
        code::SEARCH | code::HI_SPEED_SEARCH => ReplyData::Hit {
            page: u16_at(0)?,
            score: u16_at(2)?,
        },
        code::READ_INDEX_TABLE => ReplyData::IndexTable(data.get(..32)?.try_into().ok()?),
        _ => ReplyData::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_back() {
        let led = LedConfig {
            mode: LedMode::Breathing,
            speed: 0x80,
            colour: LedColour::Blue,
            cycles: 3,
        };
        for cmd in [
            Command::GenImg,
            Command::Img2Tz {
                buffer: CharBuffer::TWO,
            },
            Command::Match,
            Command::Search {
                buffer: CharBuffer::ONE,
                start: 3,
                count: 300,
            },
            Command::RegModel,
            Command::Store {
                buffer: CharBuffer::ONE,
                page: 999,
            },
            Command::LoadChar {
                buffer: CharBuffer::TWO,
                page: 7,
            },
            Command::UpChar {
                buffer: CharBuffer::ONE,
            },
            Command::DownChar {
                buffer: CharBuffer::TWO,
            },
            Command::DeleteChar { page: 5, count: 2 },
            Command::Empty,
            Command::ReadSysPara,
            Command::VfyPwd {
                password: 0xDEAD_BEEF,
            },
            Command::HiSpeedSearch {
                buffer: CharBuffer::ONE,
                start: 0,
                count: 200,
            },
            Command::TemplateNum,
            Command::ReadIndexTable { page: 3 },
            Command::AuraLedConfig(led),
            Command::SoftRst,
            Command::HandShake,
        ] {
            assert_eq!(Command::parse(cmd.encode().as_slice()), Ok(cmd));
        }
    }

    #[test]
    fn malformed_commands_are_typed_errors() {
        assert_eq!(Command::parse(&[]), Err(CommandError::Empty));
        assert_eq!(Command::parse(&[0x77]), Err(CommandError::Unknown(0x77)));
        assert_eq!(
            Command::parse(&[code::STORE, 1, 0]),
            Err(CommandError::BadLength {
                instruction: code::STORE,
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            Command::parse(&[code::AURA_LED_CONFIG, 9, 0, 1, 0]),
            Err(CommandError::BadParameter {
                instruction: code::AURA_LED_CONFIG
            })
        );
    }

    #[test]
    fn replies_have_fixed_lengths_even_on_failure() {
        let r = encode_reply(code::SEARCH, 0x09, &ReplyData::None);
        assert_eq!(r.as_slice(), &[0x09, 0, 0, 0, 0]);
        let r = encode_reply(code::MATCH, 0x00, &ReplyData::Score(0x0123));
        assert_eq!(r.as_slice(), &[0x00, 0x01, 0x23]);
        assert_eq!(
            parse_reply_data(code::MATCH, &r.as_slice()[1..]),
            Some(ReplyData::Score(0x0123))
        );
        assert_eq!(parse_reply_data(code::SEARCH, &[0, 1, 0]), None);
    }
}
