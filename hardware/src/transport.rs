//! The byte transport every UART driver runs over.
//!
//! Drivers are generic over [`Transport`]; on Linux the [`SerialTransport`]
//! adapter opens a real UART (`/dev/ttyAMA0`, `/dev/serial0`, a USB serial
//! adapter) or an emulator's pseudo-terminal: the same code, only the path
//! differs.

use std::io;
use std::time::Duration;

/// A bidirectional byte stream with read timeouts.
pub trait Transport {
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Reads at least one byte into `buf`, waiting at most `timeout`.
    /// Returns `Ok(0)` when the timeout expired with nothing to read.
    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// Discards any bytes received but not yet read (before a retry).
    fn discard_input(&mut self) -> io::Result<()>;
}

/// A serial port opened through the `serialport` crate: 8N1, no flow
/// control, raw.
pub struct SerialTransport {
    port: serialport::TTYPort,
}

impl SerialTransport {
    /// Opens `path` at `baud` (57600 is the fingerprint module's default,
    /// 115200 the PN532's).
    pub fn open(path: &str, baud: u32) -> io::Result<SerialTransport> {
        let port = serialport::new(path, baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(Duration::from_millis(100))
            .open_native()
            .map_err(io::Error::from)?;
        Ok(SerialTransport { port })
    }
}

impl Transport for SerialTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.port, bytes)?;
        io::Write::flush(&mut self.port)
    }

    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        serialport::SerialPort::set_timeout(&mut self.port, timeout.max(Duration::from_millis(1)))
            .map_err(io::Error::from)?;
        match io::Read::read(&mut self.port, buf) {
            Ok(n) => Ok(n),
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    fn discard_input(&mut self) -> io::Result<()> {
        serialport::SerialPort::clear(&self.port, serialport::ClearBuffer::Input)
            .map_err(io::Error::from)
    }
}

/// A scripted transport for unit tests of a single driver layer: it checks
/// that the driver writes exactly the expected bytes and answers with the
/// scripted replies.
#[derive(Debug, Default)]
pub struct ScriptedTransport {
    steps: std::collections::VecDeque<Step>,
    pending_reply: std::collections::VecDeque<u8>,
}

#[derive(Debug)]
enum Step {
    Expect(Vec<u8>),
    Reply(Vec<u8>),
}

impl ScriptedTransport {
    pub fn new() -> ScriptedTransport {
        ScriptedTransport::default()
    }

    /// The driver must write exactly these bytes next.
    pub fn expect_write(mut self, bytes: &[u8]) -> ScriptedTransport {
        self.steps.push_back(Step::Expect(bytes.to_vec()));
        self
    }

    /// Then the device answers with these bytes.
    pub fn reply(mut self, bytes: &[u8]) -> ScriptedTransport {
        self.steps.push_back(Step::Reply(bytes.to_vec()));
        self
    }

    /// Panics unless every scripted step was consumed.
    pub fn assert_done(&self) {
        assert!(
            self.steps.is_empty() && self.pending_reply.is_empty(),
            "script not finished: {:?}",
            self.steps
        );
    }

    fn release_replies(&mut self) {
        while let Some(Step::Reply(_)) = self.steps.front() {
            if let Some(Step::Reply(bytes)) = self.steps.pop_front() {
                self.pending_reply.extend(bytes);
            }
        }
    }
}

impl Transport for ScriptedTransport {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.steps.pop_front() {
            Some(Step::Expect(expected)) => {
                assert_eq!(bytes, expected.as_slice(), "driver wrote unexpected bytes");
                self.release_replies();
                Ok(())
            }
            other => panic!("driver wrote {bytes:02X?} but the script expected {other:?}"),
        }
    }

    fn read_some(&mut self, buf: &mut [u8], _timeout: Duration) -> io::Result<usize> {
        self.release_replies();
        let n = buf.len().min(self.pending_reply.len());
        for slot in buf.iter_mut().take(n) {
            *slot = self.pending_reply.pop_front().expect("length checked");
        }
        Ok(n)
    }

    fn discard_input(&mut self) -> io::Result<()> {
        self.pending_reply.clear();
        Ok(())
    }
}
