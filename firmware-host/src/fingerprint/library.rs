//! The module's template library: `capacity` pages of one template each,
//! kept in a file so it survives restarts as a module's flash does.
//!
//! File layout: `WDFL` magic, capacity (u16 BE), then `capacity` records of
//! one "used" byte and [`CHAR_FILE_LEN`] template bytes. A store or delete
//! writes its record in place and syncs, so a crash never loses or tears
//! an acknowledged template. A file of another capacity or a damaged header
//! is refused with a clear error rather than silently reset.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::finger::CHAR_FILE_LEN;

const MAGIC: &[u8; 4] = b"WDFL";
const HEADER: usize = 6;
const RECORD: usize = 1 + CHAR_FILE_LEN;

/// The library, in memory and (optionally) on disk.
pub struct Library {
    pages: Vec<Option<Box<[u8; CHAR_FILE_LEN]>>>,
    file: Option<(File, PathBuf)>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("capacity", &self.capacity())
            .field("used", &self.count())
            .finish_non_exhaustive()
    }
}

impl Library {
    /// A library that lives only in memory (tests).
    pub fn in_memory(capacity: u16) -> Library {
        Library {
            pages: vec![None; usize::from(capacity)],
            file: None,
        }
    }

    /// Opens the library file at `path`, creating it empty if missing.
    pub fn open(path: &Path, capacity: u16) -> io::Result<Library> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut pages = vec![None; usize::from(capacity)];
        if len == 0 {
            let mut header = [0u8; HEADER];
            header[..4].copy_from_slice(MAGIC);
            header[4..].copy_from_slice(&capacity.to_be_bytes());
            file.write_all_at(&header, 0)?;
            file.set_len((HEADER + RECORD * usize::from(capacity)) as u64)?;
            file.sync_all()?;
        } else {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes)?;
            let bad = |why: String| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("template library {}: {why}", path.display()),
                )
            };
            if bytes.len() < HEADER || &bytes[..4] != MAGIC {
                return Err(bad("not a template library file".into()));
            }
            let stored = u16::from_be_bytes([bytes[4], bytes[5]]);
            if stored != capacity {
                return Err(bad(format!(
                    "made for capacity {stored}, configured {capacity}"
                )));
            }
            if bytes.len() != HEADER + RECORD * usize::from(capacity) {
                return Err(bad(format!("length {} is wrong", bytes.len())));
            }
            for (i, page) in pages.iter_mut().enumerate() {
                let rec = &bytes[HEADER + RECORD * i..HEADER + RECORD * (i + 1)];
                if rec[0] == 1 {
                    let mut t = Box::new([0u8; CHAR_FILE_LEN]);
                    t.copy_from_slice(&rec[1..]);
                    *page = Some(t);
                }
            }
        }
        Ok(Library {
            pages,
            file: Some((file, path.to_path_buf())),
        })
    }

    pub fn capacity(&self) -> u16 {
        self.pages.len() as u16
    }

    pub fn count(&self) -> u16 {
        self.pages.iter().filter(|p| p.is_some()).count() as u16
    }

    pub fn get(&self, page: u16) -> Option<&[u8; CHAR_FILE_LEN]> {
        self.pages.get(usize::from(page))?.as_deref()
    }

    /// Occupied pages with their templates, in page order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &[u8; CHAR_FILE_LEN])> {
        self.pages
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_deref().map(|t| (i as u16, t)))
    }

    /// Stores a template; the caller has checked the page is in range.
    pub fn store(&mut self, page: u16, template: &[u8; CHAR_FILE_LEN]) -> io::Result<()> {
        self.write(page, Some(template))?;
        self.pages[usize::from(page)] = Some(Box::new(*template));
        Ok(())
    }

    pub fn delete(&mut self, page: u16) -> io::Result<()> {
        self.write(page, None)?;
        self.pages[usize::from(page)] = None;
        Ok(())
    }

    fn write(&mut self, page: u16, template: Option<&[u8; CHAR_FILE_LEN]>) -> io::Result<()> {
        if let Some((file, _)) = &self.file {
            let mut rec = [0u8; RECORD];
            if let Some(t) = template {
                rec[0] = 1;
                rec[1..].copy_from_slice(t);
            }
            file.write_all_at(&rec, (HEADER + RECORD * usize::from(page)) as u64)?;
            file.sync_data()?;
        }
        Ok(())
    }

    /// Occupancy bitmap of pages `256 * index_page ..`, as ReadIndexTable
    /// returns it.
    pub fn index_table(&self, index_page: u8) -> [u8; 32] {
        let mut out = [0u8; 32];
        let base = 256 * usize::from(index_page);
        for i in 0..256 {
            if self.pages.get(base + i).is_some_and(Option::is_some) {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_refuses_other_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.bin");
        let mut t = [0u8; CHAR_FILE_LEN];
        t[0] = 0x57;
        t[100] = 9;
        {
            let mut lib = Library::open(&path, 300).unwrap();
            lib.store(7, &t).unwrap();
            lib.store(299, &t).unwrap();
            lib.delete(299).unwrap();
        }
        let lib = Library::open(&path, 300).unwrap();
        assert_eq!(lib.count(), 1);
        assert_eq!(lib.get(7), Some(&t));
        assert_eq!(lib.index_table(0)[0], 0b1000_0000);
        let err = Library::open(&path, 1000).unwrap_err();
        assert!(err.to_string().contains("capacity 300"), "{err}");
    }
}
