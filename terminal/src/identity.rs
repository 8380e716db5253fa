//! The terminal's signing key: generated on first start from the operating
//! system's random source, kept in `data_dir/terminal.key` (mode 0600, the
//! 32-byte seed as hex), never leaving the terminal. Only the public key is
//! sent to the server for an administrator to approve.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use thiserror::Error;
use wuding_protocol::TerminalSigner;

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("cannot read or write the key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("the key file {0} is not 64 hex digits")]
    Malformed(String),
    #[error("the key file {path} is readable by others (mode {mode:o}); run chmod 600 on it")]
    TooOpen { path: String, mode: u32 },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// Loads the key at `path`, or creates one there if none exists.
pub fn load_or_create(path: &Path) -> Result<(TerminalSigner, bool), IdentityError> {
    let shown = path.display().to_string();
    let io = |error| IdentityError::Io {
        path: shown.clone(),
        error,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::TooOpen { path: shown, mode });
            }
            let seed: [u8; 32] = wuding_protocol::ids::parse_lower_hex(text.trim())
                .ok_or_else(|| IdentityError::Malformed(shown.clone()))?;
            Ok((TerminalSigner::from_seed(&seed), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io)?;
            }
            // create_new: never overwrite a key another process just wrote.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(hex::encode(seed).as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((TerminalSigner::from_seed(&seed), true))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/terminal.key");
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn an_open_or_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("terminal.key");
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(IdentityError::TooOpen { mode: 0o644, .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "nothex").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(IdentityError::Malformed(_))
        ));
    }
}
