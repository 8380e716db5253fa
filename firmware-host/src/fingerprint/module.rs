//! The emulated module's firmware: bytes from the host in, [`Output`]s
//! (bytes to send, time to spend working) out.
//!
//! It uses the same frame codec and command layouts as the driver
//! (`wuding_hardware::fingerprint`), in the device role. What the sensor
//! sees (a finger, or none) is set from outside with [`Module::place`] and
//! [`Module::lift`]; the IO adapter in `devices` does the waiting and the
//! writing.
//!
//! Behaviour follows the R30x/ZFM/AS608 user manuals: frames for another
//! address are ignored; a frame with a bad checksum or an unparsable
//! command is answered with confirmation 0x01; unknown instructions with
//! 0xFC; a set password must be verified before anything else (0x21);
//! every acknowledgement carries its full data length, zero-filled on
//! failure, so clients reading fixed lengths stay in step.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wuding_hardware::fingerprint::codec::{
    DEFAULT_ADDRESS, Decoder, Event, Frame, MAX_PAYLOAD, PacketKind, READY_BYTE, Role, data_packets,
};
use wuding_hardware::fingerprint::command::{
    CharBuffer, Command, CommandError, LedConfig, PacketSize, ReplyData, SystemParameters, code,
    encode_reply,
};
use wuding_hardware::fingerprint::error::{CONFIRM_OK, ModuleError};

use super::finger::{self, CHAR_FILE_LEN, Capture, Minutia, PlacedFinger};
use super::library::Library;

/// WriteReg (0x0E): register number, value. Not used by our driver, but
/// third-party clients set the baud rate, security level and packet size
/// with it.
const WRITE_REG: u8 = 0x0E;
/// GetEcho (0x53): answered with confirmation 0x55, "module is working".
const GET_ECHO: u8 = 0x53;

/// How long the module takes for each kind of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// GenImg with a finger on the sensor.
    pub capture: Duration,
    /// GenImg with nothing on the sensor.
    pub no_finger: Duration,
    /// Img2Tz.
    pub extract: Duration,
    /// RegModel and Match.
    pub compare: Duration,
    /// Search, per 100 occupied pages searched.
    pub search_per_100: Duration,
    /// Store, DeleteChar, Empty (a flash write).
    pub flash_write: Duration,
    /// From SoftRst's acknowledgement to the 0x55 ready byte.
    pub reset: Duration,
}

impl Timings {
    /// Figures in the range the R307/AS608 manuals and bench measurements
    /// give.
    pub const REALISTIC: Timings = Timings {
        capture: Duration::from_millis(250),
        no_finger: Duration::from_millis(60),
        extract: Duration::from_millis(280),
        compare: Duration::from_millis(40),
        search_per_100: Duration::from_millis(15),
        flash_write: Duration::from_millis(30),
        reset: Duration::from_millis(150),
    };
    /// No waiting at all (tests).
    pub const INSTANT: Timings = Timings {
        capture: Duration::ZERO,
        no_finger: Duration::ZERO,
        extract: Duration::ZERO,
        compare: Duration::ZERO,
        search_per_100: Duration::ZERO,
        flash_write: Duration::ZERO,
        reset: Duration::ZERO,
    };
}

/// The module's configuration.
#[derive(Clone, Debug)]
pub struct ModuleConfig {
    pub address: u32,
    /// 0 means none is set.
    pub password: u32,
    pub security_level: u16,
    pub packet_size: PacketSize,
    pub baud_multiplier: u16,
    pub timings: Timings,
    /// Seed of the capture noise (runs are reproducible for a seed).
    pub seed: u64,
}

impl Default for ModuleConfig {
    fn default() -> ModuleConfig {
        ModuleConfig {
            address: DEFAULT_ADDRESS,
            password: 0,
            security_level: 3,
            packet_size: PacketSize::B128,
            baud_multiplier: 6,
            timings: Timings::REALISTIC,
            seed: 1,
        }
    }
}

/// What the adapter must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The module is busy for this long before the next output.
    Work(Duration),
    Send(Vec<u8>),
}

/// The emulated module.
pub struct Module {
    config: ModuleConfig,
    decoder: Decoder,
    library: Library,
    finger: Option<PlacedFinger>,
    image: Option<Capture>,
    buffers: [Option<Box<[u8; CHAR_FILE_LEN]>>; 2],
    password_verified: bool,
    /// DownChar in progress: target buffer and bytes so far.
    download: Option<(usize, Vec<u8>)>,
    led: Option<LedConfig>,
    last_matched: bool,
    rng: ChaCha8Rng,
    /// Commands answered since start (status display).
    pub commands: u64,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("library", &self.library)
            .field("finger_present", &self.finger.is_some())
            .finish_non_exhaustive()
    }
}

impl Module {
    pub fn new(config: ModuleConfig, library: Library) -> Module {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Module {
            config,
            decoder: Decoder::new(Role::Device),
            library,
            finger: None,
            image: None,
            buffers: [None, None],
            password_verified: false,
            download: None,
            led: None,
            last_matched: false,
            rng,
            commands: 0,
        }
    }

    /// A power cycle (brown-out, cable re-seated): volatile state is lost,
    /// the library is kept, and the module sends its 0x55 ready byte.
    pub fn power_cycle(&mut self) -> Vec<Output> {
        self.decoder.clear();
        self.image = None;
        self.buffers = [None, None];
        self.password_verified = false;
        self.download = None;
        self.last_matched = false;
        self.led = None;
        vec![
            Output::Work(self.config.timings.reset),
            Output::Send(vec![READY_BYTE]),
        ]
    }

    /// A finger is placed on the sensor (and stays until lifted).
    pub fn place(&mut self, finger: PlacedFinger) {
        self.finger = Some(finger);
    }

    pub fn lift(&mut self) {
        self.finger = None;
    }

    pub fn finger(&self) -> Option<&PlacedFinger> {
        self.finger.as_ref()
    }

    pub fn library(&self) -> &Library {
        &self.library
    }

    pub fn led(&self) -> Option<LedConfig> {
        self.led
    }

    pub fn config(&self) -> &ModuleConfig {
        &self.config
    }

    /// Changes how long the module takes from now on.
    pub fn set_timings(&mut self, timings: Timings) {
        self.config.timings = timings;
    }

    fn parameters(&self) -> SystemParameters {
        let mut status = 0u16;
        if self.last_matched {
            status |= 0b10;
        }
        if self.password_verified {
            status |= 0b100;
        }
        if matches!(self.image, Some(Capture::Image(_))) {
            status |= 0b1000;
        }
        SystemParameters {
            status,
            system_id: 0x0009,
            capacity: self.library.capacity(),
            security_level: self.config.security_level,
            address: self.config.address,
            packet_size: self.config.packet_size,
            baud_multiplier: self.config.baud_multiplier,
        }
    }

    /// Feeds bytes received from the host.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Output> {
        self.decoder.push(bytes);
        let mut out = Vec::new();
        loop {
            let (address, kind, payload) = match self.decoder.next_event() {
                Ok(None) => break,
                Ok(Some(Event::Ready)) => continue,
                Ok(Some(Event::Frame(f))) => (f.address, f.kind, f.payload.to_vec()),
                Err(_) => {
                    // Damaged frame: "packet receive error".
                    self.download = None;
                    self.ack(
                        &mut out,
                        0,
                        ModuleError::PacketReceive.code(),
                        &ReplyData::None,
                    );
                    continue;
                }
            };
            if address != self.config.address {
                continue;
            }
            match kind {
                PacketKind::Data | PacketKind::EndData => {
                    self.data_packet(kind, &payload);
                }
                PacketKind::Command => {
                    self.download = None;
                    self.commands += 1;
                    self.command(&payload, &mut out);
                }
                PacketKind::Ack => {}
            }
        }
        out
    }

    fn data_packet(&mut self, kind: PacketKind, payload: &[u8]) {
        let Some((buffer, bytes)) = self.download.as_mut() else {
            return;
        };
        bytes.extend_from_slice(payload);
        if bytes.len() > 64 * 1024 {
            self.download = None;
            return;
        }
        if kind == PacketKind::EndData {
            let (buffer, bytes) = (*buffer, std::mem::take(bytes));
            self.download = None;
            // The module keeps whatever arrived; a file of the wrong shape
            // is reported as "invalid template" when next used.
            let mut file = Box::new([0u8; CHAR_FILE_LEN]);
            let n = bytes.len().min(CHAR_FILE_LEN);
            file[..n].copy_from_slice(&bytes[..n]);
            if bytes.len() != CHAR_FILE_LEN {
                file[0] = 0; // fails `finger::decode`
            }
            self.buffers[buffer] = Some(file);
        }
    }

    fn ack(&self, out: &mut Vec<Output>, instruction: u8, confirmation: u8, data: &ReplyData) {
        let reply = encode_reply(instruction, confirmation, data);
        let frame = Frame::new(self.config.address, PacketKind::Ack, reply.as_slice());
        out.push(Output::Send(frame.to_vec().expect("reply fits a frame")));
    }

    fn fail(&self, out: &mut Vec<Output>, instruction: u8, error: ModuleError) {
        self.ack(out, instruction, error.code(), &ReplyData::None);
    }

    fn buffer_index(buffer: CharBuffer) -> Option<usize> {
        match buffer.0 {
            1 => Some(0),
            2 => Some(1),
            _ => None,
        }
    }

    fn points(&self, index: usize) -> Option<Vec<Minutia>> {
        finger::decode(self.buffers[index].as_deref()?)
    }

    fn command(&mut self, payload: &[u8], out: &mut Vec<Output>) {
        let instruction = payload.first().copied().unwrap_or(0);
        if self.config.password != 0
            && !self.password_verified
            && instruction != code::VFY_PWD
            && instruction != code::HAND_SHAKE
        {
            return self.fail(out, instruction, ModuleError::PasswordRequired);
        }
        if instruction == WRITE_REG {
            return self.write_reg(payload, out);
        }
        if instruction == GET_ECHO {
            return self.ack(out, GET_ECHO, READY_BYTE, &ReplyData::None);
        }
        let cmd = match Command::parse(payload) {
            Ok(cmd) => cmd,
            Err(CommandError::Unknown(i)) => return self.fail(out, i, ModuleError::Unsupported),
            Err(_) => return self.fail(out, instruction, ModuleError::PacketReceive),
        };
        let t = self.config.timings;
        let ok = |m: &Module, out: &mut Vec<Output>, data: ReplyData| {
            m.ack(out, instruction, CONFIRM_OK, &data);
        };
        match cmd {
            Command::HandShake => ok(self, out, ReplyData::None),
            Command::VfyPwd { password } => {
                if password == self.config.password {
                    self.password_verified = true;
                    ok(self, out, ReplyData::None);
                } else {
                    self.password_verified = false;
                    self.fail(out, instruction, ModuleError::WrongPassword);
                }
            }
            Command::ReadSysPara => ok(self, out, ReplyData::SysPara(self.parameters())),
            Command::GenImg => match &self.finger {
                None => {
                    out.push(Output::Work(t.no_finger));
                    self.image = None;
                    self.fail(out, instruction, ModuleError::NoFinger);
                }
                Some(f) => {
                    out.push(Output::Work(t.capture));
                    let f = f.clone();
                    self.image = Some(finger::capture(&f, &mut self.rng));
                    ok(self, out, ReplyData::None);
                }
            },
            Command::Img2Tz { buffer } => {
                let Some(index) = Self::buffer_index(buffer) else {
                    return self.fail(out, instruction, ModuleError::ExecutionFailed);
                };
                out.push(Output::Work(t.extract));
                match &self.image {
                    None => self.fail(out, instruction, ModuleError::NoValidImage),
                    Some(Capture::Messy) => self.fail(out, instruction, ModuleError::ImageMessy),
                    Some(Capture::TooFewFeatures) => {
                        self.fail(out, instruction, ModuleError::TooFewFeatures)
                    }
                    Some(Capture::Image(points)) => {
                        self.buffers[index] = Some(Box::new(finger::encode(points)));
                        ok(self, out, ReplyData::None);
                    }
                }
            }
            Command::Match => {
                out.push(Output::Work(t.compare));
                let score = match (self.points(0), self.points(1)) {
                    (Some(a), Some(b)) => finger::score(&a, &b),
                    _ => 0,
                };
                self.last_matched = score >= finger::threshold(self.config.security_level);
                if self.last_matched {
                    ok(self, out, ReplyData::Score(score));
                } else {
                    self.fail(out, instruction, ModuleError::NoMatch);
                }
            }
            Command::RegModel => {
                out.push(Output::Work(t.compare));
                let combined = match (self.points(0), self.points(1)) {
                    (Some(a), Some(b)) => finger::combine(&a, &b, self.config.security_level),
                    _ => None,
                };
                match combined {
                    Some(points) => {
                        let file = Box::new(finger::encode(&points));
                        self.buffers = [Some(file.clone()), Some(file)];
                        ok(self, out, ReplyData::None);
                    }
                    None => self.fail(out, instruction, ModuleError::CombineFailed),
                }
            }
            Command::Store { buffer, page } => {
                let Some(index) = Self::buffer_index(buffer) else {
                    return self.fail(out, instruction, ModuleError::ExecutionFailed);
                };
                if page >= self.library.capacity() {
                    return self.fail(out, instruction, ModuleError::BadPageId);
                }
                let Some(file) = self.buffers[index].as_deref().copied() else {
                    return self.fail(out, instruction, ModuleError::TemplateInvalid);
                };
                out.push(Output::Work(t.flash_write));
                match self.library.store(page, &file) {
                    Ok(()) => ok(self, out, ReplyData::None),
                    Err(_) => self.fail(out, instruction, ModuleError::FlashError),
                }
            }
            Command::LoadChar { buffer, page } => {
                let Some(index) = Self::buffer_index(buffer) else {
                    return self.fail(out, instruction, ModuleError::ExecutionFailed);
                };
                if page >= self.library.capacity() {
                    return self.fail(out, instruction, ModuleError::BadPageId);
                }
                match self.library.get(page) {
                    Some(file) => {
                        self.buffers[index] = Some(Box::new(*file));
                        ok(self, out, ReplyData::None);
                    }
                    None => self.fail(out, instruction, ModuleError::TemplateInvalid),
                }
            }
            Command::UpChar { buffer } => {
                let Some(index) = Self::buffer_index(buffer) else {
                    return self.fail(out, instruction, ModuleError::ExecutionFailed);
                };
                let Some(file) = self.buffers[index].as_deref().copied() else {
                    return self.fail(out, instruction, ModuleError::UploadFailed);
                };
                ok(self, out, ReplyData::None);
                let size = self.config.packet_size.bytes().min(MAX_PAYLOAD);
                for (kind, chunk) in data_packets(&file, size) {
                    let frame = Frame::new(self.config.address, kind, chunk);
                    out.push(Output::Send(frame.to_vec().expect("chunk fits")));
                }
            }
            Command::DownChar { buffer } => {
                let Some(index) = Self::buffer_index(buffer) else {
                    return self.fail(out, instruction, ModuleError::DownloadFailed);
                };
                self.download = Some((index, Vec::with_capacity(CHAR_FILE_LEN)));
                ok(self, out, ReplyData::None);
            }
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
                let Some(index) = Self::buffer_index(buffer) else {
                    return self.fail(out, instruction, ModuleError::ExecutionFailed);
                };
                let Some(probe) = self.points(index) else {
                    return self.fail(out, instruction, ModuleError::NotFound);
                };
                let end = u32::from(start) + u32::from(count);
                let mut searched = 0u32;
                let mut best: Option<(u16, u16)> = None;
                for (page, file) in self.library.iter() {
                    if u32::from(page) < u32::from(start) || u32::from(page) >= end {
                        continue;
                    }
                    searched += 1;
                    let Some(t) = finger::decode(file) else {
                        continue;
                    };
                    let s = finger::score(&t, &probe);
                    if best.is_none_or(|(_, b)| s > b) {
                        best = Some((page, s));
                    }
                }
                out.push(Output::Work(t.search_per_100 * searched.div_ceil(100)));
                match best {
                    Some((page, score))
                        if score >= finger::threshold(self.config.security_level) =>
                    {
                        ok(self, out, ReplyData::Hit { page, score });
                    }
                    _ => self.fail(out, instruction, ModuleError::NotFound),
                }
            }
            Command::DeleteChar { page, count } => {
                let end = u32::from(page) + u32::from(count);
                if count == 0 || end > u32::from(self.library.capacity()) {
                    return self.fail(out, instruction, ModuleError::DeleteFailed);
                }
                out.push(Output::Work(t.flash_write));
                for p in page..end as u16 {
                    if self.library.delete(p).is_err() {
                        return self.fail(out, instruction, ModuleError::DeleteFailed);
                    }
                }
                ok(self, out, ReplyData::None);
            }
            Command::Empty => {
                out.push(Output::Work(t.flash_write));
                let used: Vec<u16> = self.library.iter().map(|(p, _)| p).collect();
                for p in used {
                    if self.library.delete(p).is_err() {
                        return self.fail(out, instruction, ModuleError::EmptyFailed);
                    }
                }
                ok(self, out, ReplyData::None);
            }
            Command::TemplateNum => ok(self, out, ReplyData::Count(self.library.count())),
            Command::ReadIndexTable { page } => {
                if u32::from(page) * 256 >= u32::from(self.library.capacity()).max(1) {
                    return self.fail(out, instruction, ModuleError::BadPageId);
                }
                ok(
                    self,
                    out,
                    ReplyData::IndexTable(self.library.index_table(page)),
                );
            }
            Command::AuraLedConfig(led) => {
                self.led = Some(led);
                ok(self, out, ReplyData::None);
            }
            Command::SoftRst => {
                ok(self, out, ReplyData::None);
                self.image = None;
                self.buffers = [None, None];
                self.password_verified = false;
                self.last_matched = false;
                self.led = None;
                out.push(Output::Work(t.reset));
                out.push(Output::Send(vec![READY_BYTE]));
            }
        }
    }

    fn write_reg(&mut self, payload: &[u8], out: &mut Vec<Output>) {
        let [_, register, value] = payload else {
            return self.fail(out, WRITE_REG, ModuleError::PacketReceive);
        };
        let ok = match register {
            4 if (1..=12).contains(value) => {
                self.config.baud_multiplier = u16::from(*value);
                true
            }
            5 if (1..=5).contains(value) => {
                self.config.security_level = u16::from(*value);
                true
            }
            6 => match PacketSize::from_code(u16::from(*value)) {
                Some(size) => {
                    self.config.packet_size = size;
                    true
                }
                None => false,
            },
            4..=6 => false,
            _ => return self.fail(out, WRITE_REG, ModuleError::InvalidRegister),
        };
        if ok {
            self.ack(out, WRITE_REG, CONFIRM_OK, &ReplyData::None);
        } else {
            self.fail(out, WRITE_REG, ModuleError::BadRegisterValue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Module {
        Module::new(
            ModuleConfig {
                timings: Timings::INSTANT,
                ..ModuleConfig::default()
            },
            Library::in_memory(200),
        )
    }

    fn command(cmd: Command) -> Vec<u8> {
        Frame::new(
            DEFAULT_ADDRESS,
            PacketKind::Command,
            cmd.encode().as_slice(),
        )
        .to_vec()
        .unwrap()
    }

    fn sent(outputs: &[Output]) -> Vec<u8> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send(b) => Some(b.clone()),
                Output::Work(_) => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_answer() {
        let bytes = command(Command::ReadSysPara);
        let mut whole = module();
        let expected = sent(&whole.receive(&bytes));
        let mut trickle = module();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(sent(&trickle.receive(std::slice::from_ref(b))));
        }
        assert_eq!(got, expected);
        assert_eq!(expected.len(), 12 + 16);
    }

    #[test]
    fn other_addresses_are_ignored_and_damaged_frames_get_0x01() {
        let mut m = module();
        let other = Frame::new(0x1234_5678, PacketKind::Command, &[code::HAND_SHAKE])
            .to_vec()
            .unwrap();
        assert!(m.receive(&other).is_empty());
        let mut bad = command(Command::HandShake);
        let n = bad.len();
        bad[n - 1] ^= 0xFF;
        let reply = sent(&m.receive(&bad));
        assert_eq!(reply[9], ModuleError::PacketReceive.code());
    }

    #[test]
    fn a_set_password_must_be_verified_first() {
        let mut m = Module::new(
            ModuleConfig {
                password: 0x0102_0304,
                timings: Timings::INSTANT,
                ..ModuleConfig::default()
            },
            Library::in_memory(10),
        );
        let r = sent(&m.receive(&command(Command::TemplateNum)));
        assert_eq!(r[9], ModuleError::PasswordRequired.code());
        let r = sent(&m.receive(&command(Command::VfyPwd { password: 1 })));
        assert_eq!(r[9], ModuleError::WrongPassword.code());
        let r = sent(&m.receive(&command(Command::VfyPwd {
            password: 0x0102_0304,
        })));
        assert_eq!(r[9], CONFIRM_OK);
        let r = sent(&m.receive(&command(Command::TemplateNum)));
        assert_eq!(r[9], CONFIRM_OK);
    }
}
