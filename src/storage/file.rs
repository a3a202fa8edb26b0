//! One file of the state on disk: a header (what it is, its format version,
//! its length and a checksum) and the payload, replaced atomically.
//!
//! A write goes to a temporary file in the same folder, is flushed to disk,
//! renamed over the old file, and the folder is flushed too: a crash at any
//! moment leaves the old file or the new one, whole. A read checks every part
//! of the header, so a truncated, damaged, empty or foreign file is told
//! apart from a good one and never half-read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Kind (8 bytes), format version (u32), payload length (u64), CRC-32 (u32).
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// Files this large are not ours (the largest fleet's state is far smaller):
/// not read into memory.
const MAX_FILE_LEN: u64 = 1 << 30;

/// What a file holds, written as its first 8 bytes.
pub(crate) type Kind = [u8; 8];

/// What was found at a path.
#[derive(Debug)]
pub(crate) enum Opened {
    Missing,
    Found {
        version: u32,
        payload: Vec<u8>,
    },
    /// Not a file of this kind, or not whole: why, for the warning.
    Damaged(String),
}

/// Reads the file at `path`, which should hold a `kind`.
pub(crate) fn open(path: &Path, kind: &Kind) -> io::Result<Opened> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > MAX_FILE_LEN {
        return Ok(Opened::Damaged(format!(
            "{len} bytes, larger than any state"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes)?;
    Ok(unseal(bytes, kind))
}

/// The payload of `bytes`, checked against its header.
pub(crate) fn unseal(mut bytes: Vec<u8>, kind: &Kind) -> Opened {
    if bytes.is_empty() {
        return Opened::Damaged("empty".into());
    }
    if bytes.len() < HEADER_LEN {
        return Opened::Damaged(format!("{} bytes, shorter than its header", bytes.len()));
    }
    if bytes[..8] != kind[..] {
        return Opened::Damaged("not a file of this kind (foreign or damaged header)".into());
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[12..20]);
    let declared = u64::from_le_bytes(len_bytes);
    let checksum = word(20);
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if declared != actual {
        return Opened::Damaged(format!(
            "truncated or extended: {actual} bytes of payload where its header says {declared}"
        ));
    }
    if crc32fast::hash(&bytes[HEADER_LEN..]) != checksum {
        return Opened::Damaged("checksum mismatch".into());
    }
    bytes.drain(..HEADER_LEN);
    Opened::Found {
        version,
        payload: bytes,
    }
}

/// The header of a `kind` file holding `payload` in format `version`.
pub(crate) fn header(kind: &Kind, version: u32, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(kind);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[12..20].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[20..24].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

/// The file operations a write needs; tests put a failing disk in its place.
pub(crate) trait Disk: Send + Sync {
    /// Creates (or truncates) `path`, writes `parts` in order and flushes
    /// the file to disk.
    fn write_synced(&self, path: &Path, parts: &[&[u8]]) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Flushes a folder's entries (a rename in it) to disk.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
pub(crate) struct RealDisk;

impl Disk for RealDisk {
    fn write_synced(&self, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The temporary file a write of `path` goes through: hidden, same folder.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` by `kind`, `version` and `payload`, atomically; returns
/// the bytes written.
pub(crate) fn write_atomically(
    disk: &dyn Disk,
    path: &Path,
    kind: &Kind,
    version: u32,
    payload: &[u8],
) -> io::Result<u64> {
    let header = header(kind, version, payload);
    let temporary = temporary(path);
    let written = disk
        .write_synced(&temporary, &[&header, payload])
        .and_then(|()| disk.rename(&temporary, path));
    if let Err(e) = written {
        // Best effort: a full disk should not keep a half-written copy.
        let _ = fs::remove_file(&temporary);
        return Err(e);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.sync_dir(dir)?;
    Ok((header.len() + payload.len()) as u64)
}

/// Moves a damaged file aside to `<name>.corrupt` (replacing the one moved
/// aside before), so that it can be looked at and is not read again.
pub(crate) fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: &Kind = b"TESTKIND";

    fn sealed(payload: &[u8]) -> Vec<u8> {
        let mut bytes = header(KIND, 3, payload).to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn a_sealed_payload_reads_back() {
        match unseal(sealed(b"hello"), KIND) {
            Opened::Found { version, payload } => {
                assert_eq!(version, 3);
                assert_eq!(payload, b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn anything_not_whole_is_damaged() {
        let good = sealed(b"some state worth keeping");
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut foreign = good.clone();
        foreign[..8].copy_from_slice(b"OTHERONE");
        let mut extended = good.clone();
        extended.push(0);
        for (what, bytes) in [
            ("empty", Vec::new()),
            ("header cut", good[..10].to_vec()),
            ("payload cut", good[..good.len() - 3].to_vec()),
            ("extended", extended),
            ("flipped bit", flipped),
            ("foreign", foreign),
            ("text", b"{\"json\": \"of someone else\"}".to_vec()),
        ] {
            assert!(
                matches!(unseal(bytes, KIND), Opened::Damaged(_)),
                "{what} was taken for a good file"
            );
        }
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        write_atomically(&RealDisk, &path, KIND, 1, b"first").expect("write");
        let written = write_atomically(&RealDisk, &path, KIND, 1, b"second").expect("write");
        assert_eq!(written, (HEADER_LEN + 6) as u64);
        match open(&path, KIND).expect("read") {
            Opened::Found { payload, .. } => assert_eq!(payload, b"second"),
            other => panic!("{other:?}"),
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["state"]);
        assert!(matches!(
            open(&dir.path().join("none"), KIND).expect("read"),
            Opened::Missing
        ));
    }

    #[test]
    fn a_damaged_file_is_moved_aside_replacing_the_last_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        fs::write(&path, b"one").expect("write");
        move_aside(&path).expect("moved");
        fs::write(&path, b"two").expect("write");
        let aside = move_aside(&path).expect("moved");
        assert_eq!(aside, dir.path().join("state.corrupt"));
        assert_eq!(fs::read(&aside).expect("read"), b"two");
        assert!(!path.exists());
    }
}
