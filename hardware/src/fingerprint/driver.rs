//! The host-role driver: one instruction at a time over any [`Transport`],
//! with a timeout per answer and retries on transport trouble.
//!
//! What is retried: no answer in time, a corrupt frame, a stray packet of
//! the wrong kind, and confirmation 0x01 ("packet receive error"). The input
//! is discarded before each retry. Every other confirmation code is
//! returned at once as [`FingerprintError::Module`]: the module did what it
//! was asked and the answer is meaningful (no finger, no match, ...).

use std::time::{Duration, Instant};

use super::codec::{
    DEFAULT_ADDRESS, Decoder, Event, Frame, MAX_FRAME, MAX_PAYLOAD, PacketKind, Role,
};
use super::command::{
    CharBuffer, Command, LedConfig, MAX_REPLY_LEN, PacketSize, ReplyData, SystemParameters,
    parse_reply_data,
};
use super::error::{FingerprintError, ModuleError};
use crate::transport::Transport;

/// How the driver talks to the module.
#[derive(Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// The module address (0xFFFFFFFF unless changed with SetAdder).
    pub address: u32,
    /// The module password for VfyPwd (0 unless changed with SetPwd).
    pub password: u32,
    /// How long to wait for each answer or data packet. Image capture and
    /// a 1:N search take up to about a second on a real module.
    pub timeout: Duration,
    /// Further attempts after the first, for retryable failures.
    pub retries: u32,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            address: DEFAULT_ADDRESS,
            password: 0,
            timeout: Duration::from_secs(2),
            retries: 2,
        }
    }
}

/// The password is a secret: never printed.
impl std::fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverConfig")
            .field("address", &format_args!("{:08X}", self.address))
            .field("password", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// An acknowledgement, copied out of the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub confirmation: u8,
    data: [u8; MAX_REPLY_LEN],
    len: usize,
}

impl Ack {
    pub fn data(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// A search hit: library page (slot) and score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SearchHit {
    pub slot: u16,
    pub score: u16,
}

/// Driver for one R30x/ZFM/AS608/R503 module.
pub struct Fingerprint<T: Transport> {
    transport: T,
    config: DriverConfig,
    decoder: Decoder,
    params: Option<SystemParameters>,
    tx: [u8; MAX_FRAME],
    rx: [u8; 512],
}

impl<T: Transport> std::fmt::Debug for Fingerprint<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprint")
            .field("config", &self.config)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Fingerprint<T> {
    /// Wraps a transport; sends nothing yet (see [`Fingerprint::connect`]).
    pub fn new(transport: T, config: DriverConfig) -> Fingerprint<T> {
        Fingerprint {
            transport,
            config,
            decoder: Decoder::new(Role::Host),
            params: None,
            tx: [0; MAX_FRAME],
            rx: [0; 512],
        }
    }

    /// Verifies the password and reads the system parameters (packet size,
    /// capacity), which later transfers and searches use.
    pub fn connect(transport: T, config: DriverConfig) -> Result<Fingerprint<T>, FingerprintError> {
        let mut fp = Fingerprint::new(transport, config);
        fp.verify_password()?;
        fp.read_system_parameters()?;
        Ok(fp)
    }

    /// Gives the transport back.
    pub fn release(self) -> T {
        self.transport
    }

    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// The parameters from the last ReadSysPara, if any.
    pub fn parameters(&self) -> Option<&SystemParameters> {
        self.params.as_ref()
    }

    /// Data packet size in use: as the module reported, 128 bytes before
    /// ReadSysPara (the factory default).
    pub fn packet_size(&self) -> PacketSize {
        self.params.map_or(PacketSize::B128, |p| p.packet_size)
    }

    fn send(&mut self, kind: PacketKind, payload: &[u8]) -> Result<(), FingerprintError> {
        let n = Frame::new(self.config.address, kind, payload).encode(&mut self.tx)?;
        self.transport.write_all(&self.tx[..n])?;
        Ok(())
    }

    /// Waits for the next frame (or ready byte) and hands it to `take`.
    /// `Ok(None)` from `take` means "not this one, keep reading".
    fn receive<R>(
        &mut self,
        timeout: Duration,
        mut take: impl FnMut(Event<'_>) -> Result<Option<R>, FingerprintError>,
    ) -> Result<Option<R>, FingerprintError> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(event) = self.decoder.next_event()? {
                if let Event::Frame(f) = event
                    && f.address != self.config.address
                {
                    return Err(FingerprintError::WrongAddress {
                        expected: self.config.address,
                        found: f.address,
                    });
                }
                if let Some(r) = take(event)? {
                    return Ok(Some(r));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let n = self.transport.read_some(&mut self.rx, deadline - now)?;
            if n > 0 {
                self.decoder.push(&self.rx[..n]);
            }
        }
    }

    fn receive_ack(&mut self) -> Result<Option<Ack>, FingerprintError> {
        let timeout = self.config.timeout;
        self.receive(timeout, |event| match event {
            Event::Ready => Ok(None),
            Event::Frame(f) if f.kind == PacketKind::Ack => {
                let Some((&confirmation, rest)) = f.payload.split_first() else {
                    return Err(FingerprintError::ShortReply {
                        instruction: 0,
                        expected: 1,
                        found: 0,
                    });
                };
                let mut data = [0u8; MAX_REPLY_LEN];
                let len = rest.len().min(MAX_REPLY_LEN);
                data[..len].copy_from_slice(&rest[..len]);
                Ok(Some(Ack {
                    confirmation,
                    data,
                    len,
                }))
            }
            Event::Frame(f) => Err(FingerprintError::UnexpectedPacket {
                expected: PacketKind::Ack,
                found: f.kind,
            }),
        })
    }

    fn reset_link(&mut self) -> Result<(), FingerprintError> {
        self.transport.discard_input()?;
        self.decoder.clear();
        Ok(())
    }

    /// Sends `cmd` and returns its acknowledgement, whatever its
    /// confirmation code, retrying transport-level failures.
    pub fn transact(&mut self, cmd: &Command) -> Result<Ack, FingerprintError> {
        let instruction = cmd.instruction();
        let payload = cmd.encode();
        let attempts = self.config.retries + 1;
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.reset_link()?;
            }
            self.send(PacketKind::Command, payload.as_slice())?;
            let outcome = self.receive_ack();
            let last = attempt == attempts;
            match outcome {
                Ok(Some(ack)) if ack.confirmation == ModuleError::PacketReceive.code() && !last => {
                }
                Ok(Some(ack)) => return Ok(ack),
                Ok(None) if !last => {}
                Ok(None) => {
                    return Err(FingerprintError::Timeout {
                        instruction,
                        attempts,
                    });
                }
                Err(
                    FingerprintError::Frame(_)
                    | FingerprintError::UnexpectedPacket { .. }
                    | FingerprintError::ShortReply { .. },
                ) if !last => {}
                Err(FingerprintError::ShortReply {
                    expected, found, ..
                }) => {
                    return Err(FingerprintError::ShortReply {
                        instruction,
                        expected,
                        found,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt always returns")
    }

    /// Sends `cmd`, fails on a non-zero confirmation, parses the data.
    fn execute(&mut self, cmd: &Command) -> Result<ReplyData, FingerprintError> {
        let instruction = cmd.instruction();
        let ack = self.transact(cmd)?;
        if let Some(error) = ModuleError::from_code(ack.confirmation) {
            return Err(FingerprintError::Module { instruction, error });
        }
        parse_reply_data(instruction, ack.data()).ok_or(FingerprintError::ShortReply {
            instruction,
            expected: cmd.reply_data_len(),
            found: ack.data().len(),
        })
    }

    /// VfyPwd (0x13) with the configured password.
    pub fn verify_password(&mut self) -> Result<(), FingerprintError> {
        let password = self.config.password;
        self.execute(&Command::VfyPwd { password }).map(drop)
    }

    /// HandShake (0x40): the module answers when it is ready.
    pub fn handshake(&mut self) -> Result<(), FingerprintError> {
        self.execute(&Command::HandShake).map(drop)
    }

    /// ReadSysPara (0x0F); remembers packet size and capacity.
    pub fn read_system_parameters(&mut self) -> Result<SystemParameters, FingerprintError> {
        match self.execute(&Command::ReadSysPara)? {
            ReplyData::SysPara(p) => {
                self.params = Some(p);
                Ok(p)
            }
            _ => unreachable!("parse_reply_data returns SysPara for ReadSysPara"),
        }
    }

    /// GenImg (0x01). `Err(Module { NoFinger })` when the sensor is empty.
    pub fn gen_img(&mut self) -> Result<(), FingerprintError> {
        self.execute(&Command::GenImg).map(drop)
    }

    /// Img2Tz (0x02): image to character file in `buffer`.
    pub fn img2tz(&mut self, buffer: CharBuffer) -> Result<(), FingerprintError> {
        self.execute(&Command::Img2Tz { buffer }).map(drop)
    }

    /// RegModel (0x05): combine buffers 1 and 2 into a template.
    pub fn reg_model(&mut self) -> Result<(), FingerprintError> {
        self.execute(&Command::RegModel).map(drop)
    }

    /// Store (0x06).
    pub fn store(&mut self, buffer: CharBuffer, page: u16) -> Result<(), FingerprintError> {
        self.execute(&Command::Store { buffer, page }).map(drop)
    }

    /// LoadChar (0x07).
    pub fn load_char(&mut self, buffer: CharBuffer, page: u16) -> Result<(), FingerprintError> {
        self.execute(&Command::LoadChar { buffer, page }).map(drop)
    }

    /// Match (0x03): buffer 1 against buffer 2; the score on a match,
    /// `Err(Module { NoMatch })` otherwise.
    pub fn match_buffers(&mut self) -> Result<u16, FingerprintError> {
        match self.execute(&Command::Match)? {
            ReplyData::Score(s) => Ok(s),
            _ => unreachable!("parse_reply_data returns Score for Match"),
        }
    }

    /// Search (0x04) over `count` pages from `start`.
    pub fn search(
        &mut self,
        buffer: CharBuffer,
        start: u16,
        count: u16,
    ) -> Result<SearchHit, FingerprintError> {
        self.search_with(Command::Search {
            buffer,
            start,
            count,
        })
    }

    /// HiSpeedSearch (0x1B) over `count` pages from `start`.
    pub fn hi_speed_search(
        &mut self,
        buffer: CharBuffer,
        start: u16,
        count: u16,
    ) -> Result<SearchHit, FingerprintError> {
        self.search_with(Command::HiSpeedSearch {
            buffer,
            start,
            count,
        })
    }

    fn search_with(&mut self, cmd: Command) -> Result<SearchHit, FingerprintError> {
        match self.execute(&cmd)? {
            ReplyData::Hit { page, score } => Ok(SearchHit { slot: page, score }),
            _ => unreachable!("parse_reply_data returns Hit for searches"),
        }
    }

    /// DeleteChar (0x0C).
    pub fn delete_char(&mut self, page: u16, count: u16) -> Result<(), FingerprintError> {
        if count == 0 {
            return Err(FingerprintError::InvalidArgument(
                "delete count must be at least 1",
            ));
        }
        self.execute(&Command::DeleteChar { page, count }).map(drop)
    }

    /// Empty (0x0D): delete every template.
    pub fn empty(&mut self) -> Result<(), FingerprintError> {
        self.execute(&Command::Empty).map(drop)
    }

    /// TemplateNum (0x1D).
    pub fn template_num(&mut self) -> Result<u16, FingerprintError> {
        match self.execute(&Command::TemplateNum)? {
            ReplyData::Count(n) => Ok(n),
            _ => unreachable!("parse_reply_data returns Count for TemplateNum"),
        }
    }

    /// ReadIndexTable (0x1F): occupancy of pages `256*page..256*page+255`.
    pub fn read_index_table(&mut self, page: u8) -> Result<[u8; 32], FingerprintError> {
        match self.execute(&Command::ReadIndexTable { page })? {
            ReplyData::IndexTable(t) => Ok(t),
            _ => unreachable!("parse_reply_data returns IndexTable for ReadIndexTable"),
        }
    }

    /// Every occupied library page, from as many index tables as the
    /// capacity needs.
    pub fn used_pages(&mut self) -> Result<Vec<u16>, FingerprintError> {
        let capacity = match self.params {
            Some(p) => p.capacity,
            None => self.read_system_parameters()?.capacity,
        };
        let mut pages = Vec::new();
        for table in 0..capacity.div_ceil(256) {
            let bits = self.read_index_table(table as u8)?;
            for (i, byte) in bits.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        pages.push(table * 256 + (i as u16) * 8 + bit);
                    }
                }
            }
        }
        Ok(pages)
    }

    /// AuraLedConfig (0x35), R503 and later only.
    pub fn aura_led(&mut self, led: LedConfig) -> Result<(), FingerprintError> {
        self.execute(&Command::AuraLedConfig(led)).map(drop)
    }

    /// SoftRst (0x3D), then waits for the 0x55 ready byte.
    pub fn soft_reset(&mut self) -> Result<(), FingerprintError> {
        self.execute(&Command::SoftRst)?;
        self.wait_ready(self.config.timeout)
    }

    /// Waits for the 0x55 byte a module sends at power-up and after reset.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), FingerprintError> {
        let got = self.receive(timeout, |event| match event {
            Event::Ready => Ok(Some(())),
            Event::Frame(f) => Err(FingerprintError::UnexpectedPacket {
                expected: PacketKind::Ack,
                found: f.kind,
            }),
        })?;
        got.ok_or(FingerprintError::Timeout {
            instruction: super::command::code::SOFT_RST,
            attempts: 1,
        })
    }

    /// UpChar (0x08): the content of `buffer` into `out`; returns its length.
    pub fn up_char(
        &mut self,
        buffer: CharBuffer,
        out: &mut [u8],
    ) -> Result<usize, FingerprintError> {
        let attempts = self.config.retries + 1;
        let mut attempt = 1;
        loop {
            match self.up_char_once(buffer, out) {
                Err(
                    FingerprintError::Frame(_)
                    | FingerprintError::Timeout { .. }
                    | FingerprintError::UnexpectedPacket { .. },
                ) if attempt < attempts => {
                    attempt += 1;
                    self.reset_link()?;
                }
                other => return other,
            }
        }
    }

    fn up_char_once(
        &mut self,
        buffer: CharBuffer,
        out: &mut [u8],
    ) -> Result<usize, FingerprintError> {
        self.execute(&Command::UpChar { buffer })?;
        let mut len = 0usize;
        let timeout = self.config.timeout;
        loop {
            let last = self.receive(timeout, |event| match event {
                Event::Ready => Ok(None),
                Event::Frame(f) if matches!(f.kind, PacketKind::Data | PacketKind::EndData) => {
                    let end = len + f.payload.len();
                    if end > out.len() {
                        return Err(FingerprintError::TemplateTooLarge(end));
                    }
                    out[len..end].copy_from_slice(f.payload);
                    len = end;
                    Ok(Some(f.kind == PacketKind::EndData))
                }
                Event::Frame(f) => Err(FingerprintError::UnexpectedPacket {
                    expected: PacketKind::Data,
                    found: f.kind,
                }),
            })?;
            match last {
                Some(true) => return Ok(len),
                Some(false) => {}
                None => {
                    return Err(FingerprintError::Timeout {
                        instruction: super::command::code::UP_CHAR,
                        attempts: 1,
                    });
                }
            }
        }
    }

    /// DownChar (0x09): sends `bytes` into `buffer` in data packets of the
    /// module's packet size, the last one marked end-of-data. The module
    /// does not acknowledge the data; it checks the template when it is
    /// next used.
    pub fn down_char(&mut self, buffer: CharBuffer, bytes: &[u8]) -> Result<(), FingerprintError> {
        if bytes.is_empty() || bytes.len() > 64 * 1024 {
            return Err(FingerprintError::BadTemplateLength(bytes.len()));
        }
        self.execute(&Command::DownChar { buffer })?;
        let size = self.packet_size().bytes().min(MAX_PAYLOAD);
        for (kind, chunk) in super::codec::data_packets(bytes, size) {
            self.send(kind, chunk)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ScriptedTransport;

    fn cmd(payload: &[u8]) -> Vec<u8> {
        Frame::new(DEFAULT_ADDRESS, PacketKind::Command, payload)
            .to_vec()
            .unwrap()
    }
    fn ack(payload: &[u8]) -> Vec<u8> {
        Frame::new(DEFAULT_ADDRESS, PacketKind::Ack, payload)
            .to_vec()
            .unwrap()
    }

    fn fast() -> DriverConfig {
        DriverConfig {
            timeout: Duration::from_millis(5),
            ..DriverConfig::default()
        }
    }

    #[test]
    fn connect_verifies_password_and_reads_parameters() {
        let params = SystemParameters {
            status: 0,
            system_id: 0,
            capacity: 200,
            security_level: 3,
            address: DEFAULT_ADDRESS,
            packet_size: PacketSize::B64,
            baud_multiplier: 6,
        };
        let mut sys = vec![0u8];
        sys.extend_from_slice(&params.encode());
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x13, 0, 0, 0, 0]))
            .reply(&ack(&[0x00]))
            .expect_write(&cmd(&[0x0F]))
            .reply(&ack(&sys));
        let fp = Fingerprint::connect(t, fast()).unwrap();
        assert_eq!(fp.packet_size(), PacketSize::B64);
        assert_eq!(fp.parameters().unwrap().baud(), 57600);
        fp.release().assert_done();
    }

    #[test]
    fn packet_receive_error_is_retried_then_the_answer_counts() {
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x1D]))
            .reply(&ack(&[0x01, 0, 0]))
            .expect_write(&cmd(&[0x1D]))
            .reply(&ack(&[0x00, 0, 7]));
        let mut fp = Fingerprint::new(t, fast());
        assert_eq!(fp.template_num().unwrap(), 7);
        fp.release().assert_done();
    }

    #[test]
    fn corrupt_answer_is_retried_and_silence_times_out() {
        let mut bad = ack(&[0x00, 0, 7]);
        let n = bad.len();
        bad[n - 1] ^= 0x40;
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x1D]))
            .reply(&bad)
            .expect_write(&cmd(&[0x1D]))
            .expect_write(&cmd(&[0x1D]));
        let mut fp = Fingerprint::new(t, fast());
        match fp.template_num() {
            Err(FingerprintError::Timeout {
                instruction: 0x1D,
                attempts: 3,
            }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        fp.release().assert_done();
    }

    #[test]
    fn confirmation_codes_become_typed_errors_without_retry() {
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x01]))
            .reply(&ack(&[0x02]));
        let mut fp = Fingerprint::new(t, fast());
        let err = fp.gen_img().unwrap_err();
        assert_eq!(err.module_error(), Some(ModuleError::NoFinger));
        assert_eq!(err.hint().en, "Place the finger flat on the sensor");
        fp.release().assert_done();
    }

    #[test]
    fn answer_from_another_address_is_refused() {
        let other = Frame::new(0x1234_5678, PacketKind::Ack, &[0])
            .to_vec()
            .unwrap();
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x40]))
            .reply(&other);
        let mut fp = Fingerprint::new(t, fast());
        assert!(matches!(
            fp.handshake(),
            Err(FingerprintError::WrongAddress {
                found: 0x1234_5678,
                ..
            })
        ));
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = DriverConfig {
            password: 0x0BAD_CAFE,
            ..DriverConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("195939070") && !shown.to_lowercase().contains("badcafe"));
    }
}
