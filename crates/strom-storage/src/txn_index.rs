//! The aborted-transaction index of a segment (`.txnindex`).
//!
//! One entry per transaction that an abort marker in the segment ended:
//! 32 bytes, big-endian `i64` producer id, first offset of the transaction,
//! offset of the marker (its last offset) and the partition's last stable
//! offset once the marker was written. Entries are appended as markers are
//! written; a crash can leave a torn tail (ignored) or lose the newest
//! entries, which the partition restores when it replays the log after its
//! last producer snapshot (adding is idempotent).
//!
//! A read_committed fetch collects the entries whose range overlaps what it
//! returns, so that the client can drop the aborted records.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, StorageError};
use crate::segment::file_stem;

/// Bytes per entry.
pub const ENTRY_LEN: usize = 32;

/// A transaction that was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        for (i, v) in [
            self.producer_id,
            self.first_offset,
            self.last_offset,
            self.last_stable_offset,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }
}

/// Decodes the whole entries of an index file; a torn tail is ignored.
pub fn decode(bytes: &[u8]) -> Vec<AbortedTxn> {
    bytes
        .chunks_exact(ENTRY_LEN)
        .map(|c| {
            let at =
                |i: usize| i64::from_be_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            AbortedTxn {
                producer_id: at(0),
                first_offset: at(1),
                last_offset: at(2),
                last_stable_offset: at(3),
            }
        })
        .collect()
}

pub(crate) fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.txnindex", file_stem(base_offset)))
}

/// Loads the index of the segment `[base_offset, next_offset)`: entries
/// whose marker is no longer in the segment (it was truncated away) are
/// dropped, and the file is rewritten without them.
pub(crate) fn load(
    dir: &Path,
    base_offset: i64,
    next_offset: i64,
) -> Result<Vec<AbortedTxn>, StorageError> {
    let p = path(dir, base_offset);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(&p),
    };
    let all = decode(&bytes);
    let kept: Vec<AbortedTxn> = all
        .iter()
        .copied()
        .filter(|t| {
            (base_offset..next_offset).contains(&t.last_offset) && t.first_offset <= t.last_offset
        })
        .collect();
    if kept.len() != all.len() || bytes.len() % ENTRY_LEN != 0 {
        let encoded: Vec<u8> = kept.iter().flat_map(|t| t.encode()).collect();
        std::fs::write(&p, encoded).at(&p)?;
    }
    Ok(kept)
}

/// Appends one entry to the segment's index file.
pub(crate) fn append(dir: &Path, base_offset: i64, txn: &AbortedTxn) -> Result<(), StorageError> {
    let p = path(dir, base_offset);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .at(&p)?;
    f.write_all(&txn.encode()).at(&p)
}

/// Replaces the segment's index file with `entries` (fsynced).
pub(crate) fn rewrite(
    dir: &Path,
    base_offset: i64,
    entries: &[AbortedTxn],
) -> Result<(), StorageError> {
    let p = path(dir, base_offset);
    let tmp = p.with_extension("txnindex.tmp");
    let encoded: Vec<u8> = entries.iter().flat_map(|t| t.encode()).collect();
    std::fs::write(&tmp, encoded).at(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .at(&tmp)?;
    std::fs::rename(&tmp, &p).at(&p)
}

/// A handle on the index file for an fsync, if the segment has one.
pub(crate) fn handle(dir: &Path, base_offset: i64) -> Option<(PathBuf, std::fs::File)> {
    let p = path(dir, base_offset);
    std::fs::File::open(&p).ok().map(|f| (p, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_round_trip(v in proptest::collection::vec(any::<(i64, i64, i64, i64)>(), 0..20), tail in 0usize..ENTRY_LEN) {
            let txns: Vec<AbortedTxn> = v.iter().map(|&(a, b, c, d)| AbortedTxn {
                producer_id: a, first_offset: b, last_offset: c, last_stable_offset: d,
            }).collect();
            let mut bytes: Vec<u8> = txns.iter().flat_map(|t| t.encode()).collect();
            bytes.extend(std::iter::repeat_n(0xAB, tail));
            prop_assert_eq!(decode(&bytes), txns);
        }

        #[test]
        fn arbitrary_files_load_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200), base in 0i64..100, len in 0i64..100) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(path(dir.path(), base), &bytes).unwrap();
            let loaded = load(dir.path(), base, base + len).unwrap();
            for t in &loaded {
                prop_assert!((base..base + len).contains(&t.last_offset));
            }
            // The rewritten file holds exactly what was kept.
            prop_assert_eq!(load(dir.path(), base, base + len).unwrap(), loaded);
        }
    }
}
