//! Pseudo-terminals for emulated devices.
//!
//! An emulator owns the master side and speaks the device's wire protocol
//! on it; a driver (ours, or a third-party library) opens the slave path
//! exactly as it would open `/dev/ttyAMA0`. The slave is set to raw mode so
//! no byte is translated by the line discipline (clients set it again when
//! they open the port, as they do for a real UART).
//!
//! The emulator does not hold the slave open itself: a real UART device
//! node is free again as soon as its last user closes it, and the kernel
//! clears a client's exclusive-use flag (`TIOCEXCL`, which the `serialport`
//! crate sets) only on that last close. With no client, the master reports
//! hang-up; the device loop then idles until a client opens the port.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios::{self, SetArg};

/// An open pseudo-terminal pair.
pub struct Pty {
    master: PtyMaster,
    slave_path: PathBuf,
}

impl Pty {
    /// Opens a new pair with the slave in raw mode.
    pub fn open() -> io::Result<Pty> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).map_err(io::Error::from)?;
        grantpt(&master).map_err(io::Error::from)?;
        unlockpt(&master).map_err(io::Error::from)?;
        let slave_path = PathBuf::from(ptsname_r(&master).map_err(io::Error::from)?);
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags_noctty()
            .open(&slave_path)?
            .into();
        let mut attrs = termios::tcgetattr(slave.as_fd()).map_err(io::Error::from)?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(slave.as_fd(), SetArg::TCSANOW, &attrs).map_err(io::Error::from)?;
        drop(slave);
        Ok(Pty { master, slave_path })
    }

    /// The path a client opens (`/dev/pts/N`).
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// A blocking `File` on the master side (read what the client wrote,
    /// write what the device answers). Each call duplicates the descriptor,
    /// so a reader thread and a writer can each hold one.
    pub fn master_file(&self) -> io::Result<File> {
        let fd = self.master.as_fd().try_clone_to_owned()?;
        Ok(File::from(fd))
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn bytes_pass_unchanged_both_ways() {
        let pty = Pty::open().unwrap();
        let mut master = pty.master_file().unwrap();
        let mut client = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pty.slave_path())
            .unwrap();
        // Bytes a cooked terminal would translate: CR, LF, ^C, ^D, 0xFF.
        let frame = [0xEF, 0x01, 0x0D, 0x0A, 0x03, 0x04, 0xFF, 0x00];
        client.write_all(&frame).unwrap();
        let mut got = [0u8; 8];
        master.read_exact(&mut got).unwrap();
        assert_eq!(got, frame);
        master.write_all(&frame).unwrap();
        let mut back = [0u8; 8];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, frame);
    }
}
