//! The quorum's durable state, in the node's `__cluster_metadata-0`
//! directory: the Raft log, the vote, the latest snapshot.
//!
//! - `raft.log`: entries appended in order, each framed as a 4-byte
//!   big-endian length, the CRC32C of the payload, then the payload (the
//!   entry as JSON). An append is acknowledged to Raft only after
//!   `fdatasync`; a torn or corrupt tail is cut at open.
//! - `quorum-state.json`: the vote and the last purged log id, replaced
//!   whole (written to a temporary file, synced, renamed, directory synced).
//! - `committed.json`: the last committed log id, a hint for replay at
//!   start (written without a sync: losing it only means re-applying later).
//!
//! Entries above the last snapshot are kept in memory too: snapshots bound
//! them (`controller.quorum.snapshot.entries`), and the metadata log is small.
//!
//! The files are written on the calling task. Metadata writes are few and
//! small; the data path never waits on them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::warn;

use super::Types;

type NodeId = u64;

/// Writes `bytes` to `dir/name` atomically and durably.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct HardState {
    vote: Option<Vote<NodeId>>,
    purged: Option<LogId<NodeId>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// index -> (position in `raft.log`, entry)
    entries: BTreeMap<u64, (u64, Entry<Types>)>,
    /// Length of `raft.log`.
    len: u64,
    hard: HardState,
    committed: Option<LogId<NodeId>>,
}

/// The Raft log and vote (openraft's `RaftLogStorage`); clones share it.
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn frame(entry: &Entry<Types>) -> Vec<u8> {
    crate::log::frame(&serde_json::to_vec(entry).expect("entries always serialise"))
}

/// The entries of a log file up to the first torn or corrupt one, each with
/// its position, and the length of that valid prefix.
pub(crate) fn parse_log(bytes: &[u8]) -> (Vec<(u64, Entry<Types>)>, usize) {
    let mut out: Vec<(u64, Entry<Types>)> = Vec::new();
    let mut valid = 0usize;
    for (pos, payload) in crate::log::frames(bytes) {
        let Ok(entry) = serde_json::from_slice::<Entry<Types>>(payload) else {
            break;
        };
        // Indexes only grow within a file; anything else is not ours.
        if out
            .last()
            .is_some_and(|(_, e)| e.log_id.index + 1 != entry.log_id.index)
        {
            break;
        }
        out.push((pos as u64, entry));
        valid = pos + 8 + payload.len();
    }
    (out, valid)
}

fn io_err<E: std::error::Error + 'static>(e: &E) -> StorageError<NodeId> {
    StorageIOError::write_logs(e).into()
}

impl LogStore {
    /// Opens (or creates) the store in `dir`, cutting a torn tail.
    pub(crate) fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let hard = match std::fs::read(dir.join("quorum-state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join("quorum-state.json").display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HardState::default(),
            Err(e) => return Err(e),
        };
        let committed = std::fs::read(dir.join("committed.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let path = dir.join("raft.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (parsed, valid) = parse_log(&bytes);
        if valid < bytes.len() {
            warn!(path = %path.display(), valid, len = bytes.len(), "cutting a torn Raft log tail");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let purged_index = hard.purged.map(|l| l.index);
        let entries = parsed
            .into_iter()
            .filter(|(_, e)| purged_index.is_none_or(|p| e.log_id.index > p))
            .map(|(pos, e)| (e.log_id.index, (pos, e)))
            .collect();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                len: valid as u64,
                hard,
                committed,
            })),
        })
    }

    /// Whether nothing was ever written: no vote, no entry, nothing purged.
    pub(crate) async fn is_empty(&self) -> bool {
        let inner = self.inner.lock().await;
        inner.hard.vote.is_none() && inner.hard.purged.is_none() && inner.entries.is_empty()
    }
}

impl Inner {
    fn save_hard(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&self.hard).expect("state always serialises");
        write_atomically(&self.dir, "quorum-state.json", &bytes)
    }

    /// Rewrites `raft.log` with the entries kept, after a purge.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for (pos, entry) in self.entries.values_mut() {
            *pos = bytes.len() as u64;
            bytes.extend(frame(entry));
        }
        write_atomically(&self.dir, "raft.log", &bytes)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join("raft.log"))?;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

impl RaftLogReader<Types> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Types>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(inner
            .entries
            .range((start, end))
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<Types> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Types>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| *e.get_log_id())
            .or(inner.hard.purged);
        Ok(LogState {
            last_purged_log_id: inner.hard.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.hard.vote = Some(*vote);
        inner
            .save_hard()
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.hard.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.committed = committed;
        let bytes = serde_json::to_vec(&committed).expect("log ids serialise");
        // A hint only: no sync (see the module's note).
        let tmp = inner.dir.join("committed.json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, inner.dir.join("committed.json")))
            .map_err(|e| io_err(&e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<Types>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut bytes = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let pos = inner.len + bytes.len() as u64;
            bytes.extend(frame(&entry));
            added.push((pos, entry));
        }
        let result = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = result {
            // What was written may be torn: cut it so the file stays whole.
            let len = inner.len;
            let _ = inner.file.set_len(len);
            let err = io_err(&e);
            callback.log_io_completed(Err(e));
            return Err(err);
        }
        inner.len += bytes.len() as u64;
        for (pos, entry) in added {
            inner.entries.insert(entry.log_id.index, (pos, entry));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        let Some(&(pos, _)) = inner.entries.get(&log_id.index) else {
            return Ok(());
        };
        inner.file.set_len(pos).map_err(|e| io_err(&e))?;
        inner.file.sync_all().map_err(|e| io_err(&e))?;
        inner.len = pos;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        if inner.hard.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        // The purge point is durable first: entries at or below it that a
        // crash leaves in the file are skipped at open.
        inner.hard.purged = Some(log_id);
        inner.save_hard().map_err(|e| io_err(&e))?;
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.rewrite().map_err(|e| io_err(&e))
    }
}
