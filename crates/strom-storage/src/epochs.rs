//! The leader-epoch cache of a partition: at which offset each leader
//! epoch began, kept in `leader-epoch-checkpoint` as Kafka keeps it (a
//! version line `0`, a count line, then one `epoch start_offset` line per
//! epoch, oldest first).
//!
//! It answers OffsetForLeaderEpoch: where the log of a given epoch ends,
//! which is where a consumer or follower that last saw that epoch learns
//! whether its log diverged from the leader's.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StorageError;

pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const VERSION: &str = "0";

/// One epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Epochs in increasing order of both epoch and start offset.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
    /// Assigned but not yet written (see [`LeaderEpochCache::flush`]).
    dirty: bool,
}

/// Reads a checkpoint's text: `None` when it is not one (a bad version,
/// count, line, or epochs or offsets that do not increase).
pub fn parse_checkpoint(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let line = lines.next()?;
        let mut parts = line.split_whitespace();
        let epoch: i32 = parts.next()?.parse().ok()?;
        let start_offset: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || epoch < 0 || start_offset < 0 {
            return None;
        }
        if entries
            .last()
            .is_some_and(|l| l.epoch >= epoch || l.start_offset > start_offset)
        {
            return None;
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(entries)
}

/// The checkpoint text of `entries`.
pub fn format_checkpoint(entries: &[EpochEntry]) -> String {
    let mut out = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    out
}

impl LeaderEpochCache {
    /// Loads the cache of the partition in `dir`. A directory without a
    /// checkpoint (written before Strom kept one, when every epoch was 0)
    /// whose log holds records starts with epoch 0 at the log start.
    pub fn open(dir: &Path, log_start: i64, log_end: i64) -> Result<Self, StorageError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse_checkpoint(&text).ok_or_else(|| StorageError::Corrupt {
                path: path.clone(),
                reason: "not a leader-epoch checkpoint".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        let mut cache = LeaderEpochCache {
            path,
            entries,
            dirty: false,
        };
        if cache.entries.is_empty() && log_end > log_start {
            cache.entries.push(EpochEntry {
                epoch: 0,
                start_offset: log_start,
            });
            cache.dirty = true;
        }
        // A crash between a truncation of the log and of the cache leaves
        // epochs that start past the log end: they never began.
        cache.truncate_from_end(log_end)?;
        Ok(cache)
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` begins at `start_offset` (where a new leader's
    /// log ends). An epoch no newer than the latest changes nothing.
    ///
    /// It is written by the next [`LeaderEpochCache::flush`], which the log
    /// calls before it appends: an epoch that wrote nothing before a crash
    /// is assigned again (or superseded) when the partition reopens, and
    /// answers the same, so a leader change costs no sync.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 || self.latest_epoch().is_some_and(|l| l >= epoch) {
            return;
        }
        // Epochs that began at this offset or later wrote nothing the new
        // one does not supersede.
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.dirty = true;
    }

    /// Writes what was assigned since the last write.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.persist()?;
        }
        Ok(())
    }

    /// Where the log of `requested` ends, as Kafka answers it: the newest
    /// epoch no newer than `requested` with the start of the next one (the
    /// log end for the latest), or `(-1, -1)` when `requested` is unknown
    /// or newer than every epoch here.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        if requested < 0 {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return UNDEFINED;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// Forgets epochs that start at or past `end` (the log was truncated
    /// to end there).
    pub fn truncate_from_end(&mut self, end: i64) -> Result<(), StorageError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Follows the log start up to `start`: the epoch that holds it now
    /// starts there, older ones are gone.
    pub fn truncate_from_start(&mut self, start: i64) -> Result<(), StorageError> {
        let covering = self.entries.iter().rposition(|e| e.start_offset <= start);
        match covering {
            Some(i) if i > 0 || self.entries[i].start_offset < start => {
                self.entries.drain(..i);
                self.entries[0].start_offset = start;
                self.persist()
            }
            _ => Ok(()),
        }
    }

    /// Writes the checkpoint whole: a temporary file, synced, renamed over
    /// the old one.
    fn persist(&mut self) -> Result<(), StorageError> {
        let io = |source| StorageError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(format_checkpoint(&self.entries).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(entries: &[(i32, i64)]) -> (tempfile::TempDir, LeaderEpochCache) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::open(dir.path(), 0, 0).unwrap();
        for &(epoch, start) in entries {
            c.assign(epoch, start);
        }
        c.flush().unwrap();
        (dir, c)
    }

    #[test]
    fn end_offsets_as_kafka_answers_them() {
        let (_d, c) = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert_eq!(
            c.end_offset_for(5, 42),
            (5, 42),
            "the latest ends at the log end"
        );
        assert_eq!(c.end_offset_for(2, 42), (2, 30));
        assert_eq!(c.end_offset_for(0, 42), (0, 10));
        assert_eq!(
            c.end_offset_for(1, 42),
            (0, 10),
            "a gap answers the epoch before it"
        );
        assert_eq!(c.end_offset_for(3, 42), (2, 30));
        assert_eq!(c.end_offset_for(6, 42), (-1, -1), "newer than any");
        assert_eq!(c.end_offset_for(-1, 42), (-1, -1));
        let (_d, c) = cache(&[(3, 5)]);
        assert_eq!(c.end_offset_for(1, 9), (1, 5), "older than any");
    }

    #[test]
    fn survives_reopening_and_follows_truncation() {
        let (dir, mut c) = cache(&[(0, 0), (1, 10), (4, 20)]);
        c.assign(4, 25);
        c.assign(2, 30);
        assert_eq!(c.latest_epoch(), Some(4), "older epochs are not assigned");
        c.truncate_from_start(15).unwrap();
        assert_eq!(
            c.entries(),
            [
                EpochEntry {
                    epoch: 1,
                    start_offset: 15
                },
                EpochEntry {
                    epoch: 4,
                    start_offset: 20
                }
            ]
        );
        let reopened = LeaderEpochCache::open(dir.path(), 15, 40).unwrap();
        assert_eq!(reopened.entries(), c.entries());
        // A log that ends before an epoch began drops that epoch.
        let reopened = LeaderEpochCache::open(dir.path(), 15, 18).unwrap();
        assert_eq!(reopened.latest_epoch(), Some(1));
    }

    #[test]
    fn assignments_are_written_by_flush() {
        let (dir, mut c) = cache(&[(0, 0)]);
        c.assign(3, 12);
        assert_eq!(
            LeaderEpochCache::open(dir.path(), 0, 20)
                .unwrap()
                .latest_epoch(),
            Some(0)
        );
        c.flush().unwrap();
        assert_eq!(
            LeaderEpochCache::open(dir.path(), 0, 20)
                .unwrap()
                .latest_epoch(),
            Some(3)
        );
    }

    #[test]
    fn a_directory_without_a_checkpoint_starts_at_epoch_zero() {
        let dir = tempfile::tempdir().unwrap();
        let c = LeaderEpochCache::open(dir.path(), 7, 20).unwrap();
        assert_eq!(
            c.entries(),
            [EpochEntry {
                epoch: 0,
                start_offset: 7
            }]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(LeaderEpochCache::open(empty.path(), 0, 0)
            .unwrap()
            .entries()
            .is_empty());
    }

    #[test]
    fn a_bad_checkpoint_is_refused() {
        for text in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 x\n",
            "0\n2\n1 0\n0 5\n",
            "0\n1\n0 0 0\n",
            "0\n1\n-1 0\n",
        ] {
            assert_eq!(parse_checkpoint(text), None, "{text:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT), "junk").unwrap();
        assert!(matches!(
            LeaderEpochCache::open(dir.path(), 0, 0),
            Err(StorageError::Corrupt { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused(text in "[0-9 \\n-]{0,60}") {
            if let Some(entries) = parse_checkpoint(&text) {
                prop_assert_eq!(parse_checkpoint(&format_checkpoint(&entries)), Some(entries));
            }
        }

        #[test]
        fn formatted_entries_round_trip(steps in proptest::collection::vec((0i32..5, 0i64..50), 0..20)) {
            let mut entries: Vec<EpochEntry> = Vec::new();
            let (mut epoch, mut offset) = (0, 0);
            for (de, doff) in steps {
                epoch += de + 1;
                offset += doff;
                entries.push(EpochEntry { epoch, start_offset: offset });
            }
            prop_assert_eq!(parse_checkpoint(&format_checkpoint(&entries)), Some(entries));
        }
    }
}
