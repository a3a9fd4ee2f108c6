//! The metadata log: an ordered sequence of entries, each a batch of records.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strom_metadata::MetadataRecord;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where metadata records are made durable. An entry is atomic: after a
/// crash it is there whole or not at all.
pub trait MetadataLog: Send {
    /// Appends one entry durably and returns its offset.
    fn append(&mut self, records: &[MetadataRecord]) -> Result<i64, MetadataLogError>;
    /// Every entry with its offset, in order.
    fn entries(&self) -> &[(i64, Vec<MetadataRecord>)];
}

/// A metadata log in one local file (see the crate README for the format).
pub struct LocalMetadataLog {
    path: PathBuf,
    file: File,
    entries: Vec<(i64, Vec<MetadataRecord>)>,
}

impl LocalMetadataLog {
    /// Opens or creates `dir/metadata.log`, dropping a torn or corrupt tail.
    pub fn open(dir: &Path) -> Result<Self, MetadataLogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataLogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("metadata.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let (entries, valid) = parse_entries(&bytes);
        if valid < bytes.len() {
            warn!(path = %path.display(), valid, len = bytes.len(), "truncating torn metadata log tail");
            file.set_len(valid as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        Ok(LocalMetadataLog {
            path,
            file,
            entries,
        })
    }
}

/// The CRC-checked frames at the start of `bytes` (a 4-byte big-endian
/// length, the CRC32C of the payload, the payload), each with its position,
/// up to the first incomplete or corrupt one. The metadata log and the Raft
/// log share this framing.
pub(crate) fn frames(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(pos..pos + 8)?;
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        let payload = bytes.get(pos + 8..(pos + 8).checked_add(len)?)?;
        if crc32c::crc32c(payload) != crc {
            return None;
        }
        let at = pos;
        pos += 8 + len;
        Some((at, payload))
    })
}

/// One frame of [`frames`] around `payload`.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses entries up to the first incomplete or corrupt one; returns them
/// and the length of the valid prefix.
pub(crate) fn parse_entries(bytes: &[u8]) -> (Vec<(i64, Vec<MetadataRecord>)>, usize) {
    let mut entries = Vec::new();
    let mut valid = 0usize;
    for (pos, payload) in frames(bytes) {
        let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(payload) else {
            break;
        };
        let Ok(records) = values
            .into_iter()
            .map(serde_json::from_value::<MetadataRecord>)
            .collect::<Result<Vec<_>, _>>()
        else {
            break;
        };
        entries.push((entries.len() as i64, records));
        valid = pos + 8 + payload.len();
    }
    (entries, valid)
}

pub(crate) fn encode_entry(records: &[MetadataRecord]) -> Vec<u8> {
    frame(&serde_json::to_vec(records).expect("records always serialise"))
}

impl MetadataLog for LocalMetadataLog {
    fn append(&mut self, records: &[MetadataRecord]) -> Result<i64, MetadataLogError> {
        let io = |source| MetadataLogError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&encode_entry(records)).map_err(io)?;
        self.file
            .sync_data()
            .map_err(|source| MetadataLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        let offset = self.entries.len() as i64;
        self.entries.push((offset, records.to_vec()));
        Ok(offset)
    }

    fn entries(&self) -> &[(i64, Vec<MetadataRecord>)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(n: i64) -> MetadataRecord {
        MetadataRecord::ProducerIds {
            node_id: 1,
            next_producer_id: n,
        }
    }

    #[test]
    fn survives_reopen_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LocalMetadataLog::open(dir.path()).unwrap();
        log.append(&[rec(1)]).unwrap();
        log.append(&[rec(2), rec(3)]).unwrap();
        drop(log);
        let path = dir.path().join("metadata.log");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let mut log = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.entries().len(), 1);
        assert_eq!(log.append(&[rec(4)]).unwrap(), 1);
        drop(log);
        let log = LocalMetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.entries()[1].1, vec![rec(4)]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (_, valid) = parse_entries(&bytes);
            prop_assert!(valid <= bytes.len());
        }

        #[test]
        fn any_prefix_parses_to_a_prefix(n in 1usize..6, cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            for i in 0..n { bytes.extend(encode_entry(&[rec(i as i64)])); }
            let cut = cut.index(bytes.len() + 1);
            let (entries, _) = parse_entries(&bytes[..cut]);
            for (i, (_, r)) in entries.iter().enumerate() {
                prop_assert_eq!(r, &vec![rec(i as i64)]);
            }
        }
    }
}
