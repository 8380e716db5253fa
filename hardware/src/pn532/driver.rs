//! The host-role driver: one command at a time over any [`Transport`].
//!
//! Each command is one exchange: the host sends the command frame, the
//! PN532 answers with an ACK frame at once and with the response frame when
//! the work is done. What the driver does when things go wrong:
//!
//! - no ACK in time: [`Pn532Error::NoAck`] (the reader is absent, asleep
//!   or wired wrong);
//! - a response frame with a bad checksum: the driver sends a NACK and the
//!   PN532 sends the response again, up to [`Pn532Config::nack_retries`]
//!   times;
//! - no response in time: the driver sends an ACK, which aborts the command
//!   in the PN532 (User Manual, section 6.2.1.4), and reports
//!   [`Pn532Error::Timeout`]. For InListPassiveTarget that is the normal
//!   "no card" outcome and [`Pn532::list_passive_target`] returns `None`.
//! - a response that arrives after the abort (a card came just as the
//!   driver gave up) is recognised as stale while waiting for the next
//!   command's ACK and dropped.
//! - the error frame: [`Pn532Error::SyntaxError`]; a non-zero status byte:
//!   [`Pn532Error::Status`] with the typed [`StatusError`].

use std::io;
use std::time::{Duration, Instant};

use super::codec::{Decoder, EncodeError, Frame, FrameError, MAX_FRAME, Role};
use super::command::{
    self, BLOCK_LEN, FirmwareVersion, KeyKind, MifareKey, ParseError, SamMode, StatusError, TargetA,
};
use crate::reader::{
    BlockError, CardRead, CardReader, CardUid, PatientBlock, PatientNumber, PatientNumberError,
    UidError, check_data_block,
};
use crate::transport::Transport;

/// The HSU wake-up sequence: 0x55 0x55 then a long preamble of zeros, sent
/// before the first command when the PN532 may be in power-down.
pub const WAKE_UP: [u8; 16] = [
    0x55, 0x55, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// How the driver talks to the PN532.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pn532Config {
    /// How long to wait for the ACK of a command. A PN532 acknowledges
    /// within a few milliseconds; the margin covers loaded hosts.
    pub ack_timeout: Duration,
    /// How long to wait for the response of a command other than
    /// InListPassiveTarget (whose wait is the caller's poll timeout).
    pub response_timeout: Duration,
    /// NACKs sent for corrupt responses before giving up.
    pub nack_retries: u32,
    /// Where the patient number is kept on our cards, if anywhere.
    pub patient_block: Option<PatientBlock>,
}

impl Default for Pn532Config {
    fn default() -> Pn532Config {
        Pn532Config {
            ack_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            nack_retries: 2,
            patient_block: None,
        }
    }
}

/// Everything that can go wrong talking to a PN532.
#[derive(Debug, thiserror::Error)]
pub enum Pn532Error {
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    #[error("command {command:#04X}: the PN532 did not acknowledge in time")]
    NoAck { command: u8 },
    #[error("command {command:#04X}: no response in time (aborted with an ACK)")]
    Timeout { command: u8 },
    #[error("command {command:#04X}: the PN532 answered with the error frame (syntax error)")]
    SyntaxError { command: u8 },
    #[error("command {command:#04X}: {error}")]
    Status { command: u8, error: StatusError },
    #[error("command {command:#04X}: corrupt response after {attempts} attempts: {error}")]
    Frame {
        command: u8,
        attempts: u32,
        error: FrameError,
    },
    #[error("encoding a command: {0}")]
    Encode(#[from] EncodeError),
    #[error("malformed response: {0}")]
    Parse(#[from] ParseError),
    #[error("no card selected (list a passive target first)")]
    NoTarget,
    #[error("the card is not a MIFARE Classic (SEL_RES {0:#04X})")]
    NotMifareClassic(u8),
    #[error("MIFARE read returned {0} bytes, expected 16")]
    ShortBlock(usize),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("patient number on the card: {0}")]
    PatientNumber(#[from] PatientNumberError),
    #[error(transparent)]
    Uid(#[from] UidError),
}

impl Pn532Error {
    /// The status byte error, for `In*` commands the card refused.
    pub fn status_error(&self) -> Option<StatusError> {
        match self {
            Pn532Error::Status { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// A PN532 on the other end of `T`.
pub struct Pn532<T> {
    transport: T,
    config: Pn532Config,
    decoder: Decoder,
    out: Vec<u8>,
    response: Vec<u8>,
    target: Option<TargetA>,
    awake: bool,
    stale_frames: u64,
    nacks_sent: u64,
}

impl<T> std::fmt::Debug for Pn532<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pn532")
            .field("config", &self.config)
            .field("target", &self.target)
            .field("awake", &self.awake)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Pn532<T> {
    /// Takes the transport; does no IO (call [`Pn532::wake_up`], or let
    /// the first [`CardReader::poll`] do it).
    pub fn new(transport: T, config: Pn532Config) -> Pn532<T> {
        Pn532 {
            transport,
            config,
            decoder: Decoder::new(Role::Host),
            out: Vec::with_capacity(MAX_FRAME),
            response: Vec::with_capacity(MAX_FRAME),
            target: None,
            awake: false,
            stale_frames: 0,
            nacks_sent: 0,
        }
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }

    pub fn config(&self) -> &Pn532Config {
        &self.config
    }

    /// Responses dropped because they belonged to an aborted command.
    pub fn stale_frames(&self) -> u64 {
        self.stale_frames
    }

    /// NACKs sent to ask for a corrupt response again.
    pub fn nacks_sent(&self) -> u64 {
        self.nacks_sent
    }

    /// The card selected by the last successful
    /// [`Pn532::list_passive_target`].
    pub fn target(&self) -> Option<&TargetA> {
        self.target.as_ref()
    }

    /// Wakes the PN532 from power-down (HSU: 0x55 0x55 and a long
    /// preamble) and configures the SAM for normal mode, which the PN532
    /// requires before its first RF command.
    pub fn wake_up(&mut self) -> Result<(), Pn532Error> {
        self.transport.discard_input()?;
        self.decoder.clear();
        self.transport.write_all(&WAKE_UP)?;
        self.sam_configuration(SamMode::Normal, 0x14)?;
        self.awake = true;
        Ok(())
    }

    /// GetFirmwareVersion (0x02).
    pub fn firmware_version(&mut self) -> Result<FirmwareVersion, Pn532Error> {
        let timeout = self.config.response_timeout;
        let data = self.exchange(&command::get_firmware_version(), timeout)?;
        Ok(command::parse_firmware_version(data)?)
    }

    /// SAMConfiguration (0x14).
    pub fn sam_configuration(&mut self, mode: SamMode, timeout: u8) -> Result<(), Pn532Error> {
        let t = self.config.response_timeout;
        let data = self.exchange(&command::sam_configuration(mode, timeout), t)?;
        Ok(command::parse_sam_configuration(data)?)
    }

    /// InListPassiveTarget (0x4A) for one ISO/IEC 14443 Type A card at 106
    /// kbps. Waits up to `wait` for a card; `Ok(None)` when none came (the
    /// command is then aborted and the PN532 is ready for the next one).
    pub fn list_passive_target(&mut self, wait: Duration) -> Result<Option<TargetA>, Pn532Error> {
        self.target = None;
        let data = match self.exchange(&command::in_list_passive_target_106a(1), wait) {
            Ok(data) => data,
            Err(Pn532Error::Timeout { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let target = command::parse_in_list_passive_target_106a(data)?
            .into_iter()
            .next();
        self.target.clone_from(&target);
        Ok(target)
    }

    /// Authenticates `block`'s sector of the selected MIFARE Classic card
    /// with `key` (InDataExchange, MIFARE 0x60/0x61). A wrong key is
    /// [`Pn532Error::Status`] with [`StatusError::Authentication`]; the card
    /// must then be selected again before another attempt.
    pub fn mifare_authenticate(
        &mut self,
        kind: KeyKind,
        block: u8,
        key: &MifareKey,
    ) -> Result<(), Pn532Error> {
        let target = self.target.as_ref().ok_or(Pn532Error::NoTarget)?;
        if !target.is_mifare_classic() {
            return Err(Pn532Error::NotMifareClassic(target.sel_res));
        }
        let request = command::mifare_authenticate(target.tg, kind, block, key, target.auth_uid());
        let result = self.data_exchange(&request).map(|_| ());
        if result.is_err() {
            // A failed authentication halts the card.
            self.target = None;
        }
        result
    }

    /// Reads one 16-byte block (MIFARE 0x30) of the authenticated sector.
    pub fn mifare_read(&mut self, block: u8) -> Result<[u8; BLOCK_LEN], Pn532Error> {
        let tg = self.target.as_ref().ok_or(Pn532Error::NoTarget)?.tg;
        let data = self.data_exchange(&command::mifare_read(tg, block))?;
        let block: [u8; BLOCK_LEN] = data
            .try_into()
            .map_err(|_| Pn532Error::ShortBlock(data.len()))?;
        Ok(block)
    }

    /// InRelease (0x52) of every target.
    pub fn release(&mut self) -> Result<(), Pn532Error> {
        self.target = None;
        let t = self.config.response_timeout;
        let data = self.exchange(&command::in_release(0), t)?;
        let status = command::parse_in_release(data)?;
        match StatusError::from_status(status) {
            None => Ok(()),
            Some(error) => Err(Pn532Error::Status {
                command: command::IN_RELEASE,
                error,
            }),
        }
    }

    /// InDataExchange: returns DataIn after checking the status byte.
    fn data_exchange(&mut self, request: &[u8]) -> Result<&[u8], Pn532Error> {
        let t = self.config.response_timeout;
        let data = self.exchange(request, t)?;
        let (status, data_in) = command::parse_in_data_exchange(data)?;
        if let Some(error) = StatusError::from_status(status) {
            return Err(Pn532Error::Status {
                command: command::IN_DATA_EXCHANGE,
                error,
            });
        }
        Ok(data_in)
    }

    /// Sends one command and returns its response data (starting with the
    /// response code).
    fn exchange(&mut self, request: &[u8], wait: Duration) -> Result<&[u8], Pn532Error> {
        let code = request[0];
        self.out.clear();
        self.out.resize(Frame::command(request).encoded_len(), 0);
        Frame::command(request).encode(&mut self.out)?;
        self.transport.write_all(&self.out)?;
        self.wait_ack(code)?;
        self.wait_response(code, wait)?;
        Ok(&self.response)
    }

    fn fill(&mut self, deadline: Instant) -> Result<bool, Pn532Error> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let mut buf = [0u8; 64];
        let n = self.transport.read_some(&mut buf, deadline - now)?;
        self.decoder.push(&buf[..n]);
        Ok(n > 0 || Instant::now() < deadline)
    }

    fn wait_ack(&mut self, command: u8) -> Result<(), Pn532Error> {
        let deadline = Instant::now() + self.config.ack_timeout;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(Frame::Ack)) => return Ok(()),
                Ok(Some(Frame::Error)) => return Err(Pn532Error::SyntaxError { command }),
                // A response to an aborted command, or noise: not ours.
                Ok(Some(Frame::Info { .. } | Frame::Nack)) | Err(_) => {
                    self.stale_frames += 1;
                }
                Ok(None) => {
                    if !self.fill(deadline)? {
                        return Err(Pn532Error::NoAck { command });
                    }
                }
            }
        }
    }

    fn wait_response(&mut self, command: u8, wait: Duration) -> Result<(), Pn532Error> {
        let expected = command::response_code(command);
        let mut deadline = Instant::now() + wait;
        let mut attempts = 1;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(Frame::Info { data, .. })) if data.first() == Some(&expected) => {
                    self.response.clear();
                    self.response.extend_from_slice(data);
                    return Ok(());
                }
                Ok(Some(Frame::Info { .. } | Frame::Ack | Frame::Nack)) => {
                    self.stale_frames += 1;
                }
                Ok(Some(Frame::Error)) => return Err(Pn532Error::SyntaxError { command }),
                Err(error) => {
                    if attempts > self.config.nack_retries {
                        return Err(Pn532Error::Frame {
                            command,
                            attempts,
                            error,
                        });
                    }
                    attempts += 1;
                    self.decoder.clear();
                    self.transport.write_all(&Frame::Nack.to_vec()?)?;
                    self.nacks_sent += 1;
                    deadline = deadline.max(Instant::now() + self.config.response_timeout);
                }
                Ok(None) => {
                    if !self.fill(deadline)? {
                        // Abort the command so the PN532 takes the next one.
                        self.transport.write_all(&Frame::Ack.to_vec()?)?;
                        return Err(Pn532Error::Timeout { command });
                    }
                }
            }
        }
    }
}

impl<T: Transport> CardReader for Pn532<T> {
    type Error = Pn532Error;

    fn poll(&mut self, timeout: Duration) -> Result<Option<CardRead>, Pn532Error> {
        if !self.awake {
            self.wake_up()?;
        }
        let Some(target) = self.list_passive_target(timeout)? else {
            return Ok(None);
        };
        let uid = CardUid::new(&target.uid)?;
        let patient_number = match self.config.patient_block {
            Some(pb) if target.is_mifare_classic() => {
                check_data_block(pb.block())?;
                self.mifare_authenticate(pb.key_kind, pb.block(), &pb.key)?;
                let block = self.mifare_read(pb.block())?;
                PatientNumber::from_block(&block)?
            }
            _ => None,
        };
        Ok(Some(CardRead {
            uid,
            patient_number,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ScriptedTransport;

    fn cmd(data: &[u8]) -> Vec<u8> {
        Frame::command(data).to_vec().unwrap()
    }

    fn resp(data: &[u8]) -> Vec<u8> {
        Frame::response(data).to_vec().unwrap()
    }

    fn quick() -> Pn532Config {
        Pn532Config {
            ack_timeout: Duration::from_millis(20),
            response_timeout: Duration::from_millis(20),
            ..Pn532Config::default()
        }
    }

    #[test]
    fn firmware_version_exchange() {
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x02]))
            .reply(&super::super::codec::ACK)
            .reply(&resp(&[0x03, 0x32, 0x01, 0x06, 0x07]));
        let mut pn = Pn532::new(t, quick());
        assert_eq!(pn.firmware_version().unwrap(), FirmwareVersion::PN532_V1_6);
        pn.into_inner().assert_done();
    }

    #[test]
    fn wake_up_sends_preamble_then_sam_configuration() {
        let t = ScriptedTransport::new()
            .expect_write(&WAKE_UP)
            .expect_write(&cmd(&[0x14, 0x01, 0x14, 0x01]))
            .reply(&super::super::codec::ACK)
            .reply(&resp(&[0x15]));
        let mut pn = Pn532::new(t, quick());
        pn.wake_up().unwrap();
        pn.into_inner().assert_done();
    }

    #[test]
    fn corrupt_response_is_nacked_and_resent() {
        let good = resp(&[0x03, 0x32, 0x01, 0x06, 0x07]);
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 2] ^= 0xFF;
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x02]))
            .reply(&super::super::codec::ACK)
            .reply(&bad)
            .expect_write(&super::super::codec::NACK)
            .reply(&good);
        let mut pn = Pn532::new(t, quick());
        assert_eq!(pn.firmware_version().unwrap(), FirmwareVersion::PN532_V1_6);
        assert_eq!(pn.nacks_sent(), 1);
        pn.into_inner().assert_done();
    }

    #[test]
    fn no_card_aborts_with_ack() {
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x4A, 0x01, 0x00]))
            .reply(&super::super::codec::ACK)
            .expect_write(&super::super::codec::ACK);
        let mut pn = Pn532::new(t, quick());
        assert_eq!(
            pn.list_passive_target(Duration::from_millis(10)).unwrap(),
            None
        );
        pn.into_inner().assert_done();
    }

    #[test]
    fn missing_ack_and_error_frame_are_typed() {
        let t = ScriptedTransport::new().expect_write(&cmd(&[0x02]));
        let mut pn = Pn532::new(t, quick());
        assert!(matches!(
            pn.firmware_version(),
            Err(Pn532Error::NoAck { command: 0x02 })
        ));
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x02]))
            .reply(&super::super::codec::ERROR_FRAME);
        let mut pn = Pn532::new(t, quick());
        assert!(matches!(
            pn.firmware_version(),
            Err(Pn532Error::SyntaxError { command: 0x02 })
        ));
    }

    #[test]
    fn wrong_key_is_status_0x14() {
        let uid = [0xDE, 0xAD, 0xBE, 0xEF];
        let mut list = vec![];
        command::in_list_passive_target_response([0, 4], 0x08, &uid, &mut list);
        let key = MifareKey([1, 2, 3, 4, 5, 6]);
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x4A, 0x01, 0x00]))
            .reply(&super::super::codec::ACK)
            .reply(&resp(&list))
            .expect_write(&cmd(&command::mifare_authenticate(
                1,
                KeyKind::A,
                4,
                &key,
                uid,
            )))
            .reply(&super::super::codec::ACK)
            .reply(&resp(&[0x41, 0x14]));
        let mut pn = Pn532::new(t, quick());
        assert!(
            pn.list_passive_target(Duration::from_millis(50))
                .unwrap()
                .is_some()
        );
        let err = pn.mifare_authenticate(KeyKind::A, 4, &key).unwrap_err();
        assert_eq!(err.status_error(), Some(StatusError::Authentication));
        assert!(pn.target().is_none());
        assert!(matches!(pn.mifare_read(4), Err(Pn532Error::NoTarget)));
    }

    #[test]
    fn stale_response_before_ack_is_dropped() {
        let mut list = vec![];
        command::in_list_passive_target_response([0, 4], 0x08, &[1, 2, 3, 4], &mut list);
        let t = ScriptedTransport::new()
            .expect_write(&cmd(&[0x02]))
            .reply(&resp(&list))
            .reply(&super::super::codec::ACK)
            .reply(&resp(&[0x03, 0x32, 0x01, 0x06, 0x07]));
        let mut pn = Pn532::new(t, quick());
        assert_eq!(pn.firmware_version().unwrap(), FirmwareVersion::PN532_V1_6);
        assert_eq!(pn.stale_frames(), 1);
    }
}
