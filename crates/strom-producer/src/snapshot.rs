//! Snapshot files of producer state (format in the crate README).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{BatchMetadata, ProducerEntry, ProducerStateManager, MAX_CACHED_BATCHES};

/// Current format; SPS2 (without the coordinator epoch) and SPS1 (without
/// the ongoing transaction either) are still read.
const MAGIC: &[u8; 4] = b"SPS3";
const MAGIC_V2: &[u8; 4] = b"SPS2";
const MAGIC_V1: &[u8; 4] = b"SPS1";
const SUFFIX: &str = ".snapshot";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot is malformed: {0}")]
    Malformed(&'static str),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ProducerStateManager {
    /// Serialises the state.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.producers.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, e) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses what [`encode`](Self::encode) wrote, checking the CRC.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < 12 {
            return Err(SnapshotError::Malformed("too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err(SnapshotError::Malformed("CRC mismatch"));
        }
        let mut r = Reader(body);
        let version = match r.take(4)? {
            m if m == MAGIC => 3,
            m if m == MAGIC_V2 => 2,
            m if m == MAGIC_V1 => 1,
            _ => return Err(SnapshotError::Malformed("bad magic")),
        };
        let count = u32::from_be_bytes(r.array()?);
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(r.array()?);
            let epoch = i16::from_be_bytes(r.array()?);
            let last_timestamp = i64::from_be_bytes(r.array()?);
            let txn_first_offset = if version >= 2 {
                Some(i64::from_be_bytes(r.array()?)).filter(|o| *o >= 0)
            } else {
                None
            };
            let coordinator_epoch = if version >= 3 {
                Some(i32::from_be_bytes(r.array()?)).filter(|e| *e >= 0)
            } else {
                None
            };
            let n = r.take(1)?[0] as usize;
            if n > MAX_CACHED_BATCHES {
                return Err(SnapshotError::Malformed("too many batches"));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(r.array()?),
                    last_seq: i32::from_be_bytes(r.array()?),
                    first_offset: i64::from_be_bytes(r.array()?),
                    last_offset: i64::from_be_bytes(r.array()?),
                    max_timestamp: i64::from_be_bytes(r.array()?),
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    last_timestamp,
                    batches,
                    txn_first_offset,
                    coordinator_epoch,
                },
            );
        }
        if !r.0.is_empty() {
            return Err(SnapshotError::Malformed("trailing bytes"));
        }
        Ok(ProducerStateManager { producers })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SUFFIX}"))
}

/// Offsets of the snapshots in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> Result<Vec<i64>, SnapshotError> {
    let mut offsets: Vec<i64> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let stem = name.to_str()?.strip_suffix(SUFFIX)?.to_owned();
            (stem.len() == 20).then(|| stem.parse().ok()).flatten()
        })
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

/// Writes the state as of `offset` (all batches below it), fsynced and
/// renamed into place so a crash leaves either the old or the new file.
pub fn write_snapshot(
    dir: &Path,
    offset: i64,
    state: &ProducerStateManager,
) -> Result<(), SnapshotError> {
    let path = snapshot_path(dir, offset);
    let tmp = path.with_extension("snapshot.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&state.encode()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// The newest readable snapshot at or below `max_offset`. Unreadable ones
/// are skipped (and reported), falling back to older snapshots or none.
pub fn latest_snapshot(
    dir: &Path,
    max_offset: i64,
) -> Result<Option<(i64, ProducerStateManager)>, SnapshotError> {
    for offset in list_snapshots(dir)?
        .into_iter()
        .rev()
        .filter(|o| *o <= max_offset)
    {
        let path = snapshot_path(dir, offset);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        match ProducerStateManager::decode(&bytes) {
            Ok(state) => return Ok(Some((offset, state))),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable producer snapshot")
            }
        }
    }
    Ok(None)
}

/// Removes snapshots above `offset` (after the log was truncated below them).
pub fn delete_snapshots_above(dir: &Path, offset: i64) -> Result<(), SnapshotError> {
    for o in list_snapshots(dir)?.into_iter().filter(|o| *o > offset) {
        let path = snapshot_path(dir, o);
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(())
}

/// Keeps only the newest `keep` snapshots.
pub fn retain_latest_snapshots(dir: &Path, keep: usize) -> Result<(), SnapshotError> {
    let all = list_snapshots(dir)?;
    for o in &all[..all.len().saturating_sub(keep)] {
        let path = snapshot_path(dir, *o);
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(())
}
