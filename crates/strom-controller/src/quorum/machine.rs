//! The state machine: committed metadata records applied to the
//! `MetadataImage`, published to whoever follows it, and snapshots of that
//! image (`snapshot.json`, replaced whole) that bound the Raft log.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use strom_metadata::{MetadataImage, MetadataRecord};
use tokio::sync::watch;

use super::store::write_atomically;
use super::Types;

type NodeId = u64;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What `snapshot.json` holds: the image as the records that rebuild it.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: Meta,
    /// The image's offset (the index of the last record applied).
    pub(crate) offset: i64,
    pub(crate) records: Vec<MetadataRecord>,
}

impl SnapshotFile {
    fn image(&self) -> MetadataImage {
        let mut image = MetadataImage::empty();
        image.apply_mut(self.offset, &self.records);
        image
    }
}

/// How many recent proposals are kept for observers, which are sent the
/// whole image when they are further behind.
/// (A few in tests, so that they reach the whole-image path.)
const RECENT_PROPOSALS: usize = if cfg!(test) { 8 } else { 4096 };

/// What an observer (a broker that is not a voter) is sent to catch up
/// from its image's offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatchUp {
    /// The whole image (its offset and the records that rebuild it), when
    /// the recent proposals do not reach back far enough.
    pub(crate) image: Option<(i64, Vec<MetadataRecord>)>,
    /// Committed proposals after the observer's offset, in order.
    pub(crate) proposals: Vec<(i64, Vec<MetadataRecord>)>,
}

struct State {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    snapshots_built: u64,
    /// The last applied proposals (offset, records): every proposal at
    /// or after `recent_from` is here.
    recent: VecDeque<(i64, Vec<MetadataRecord>)>,
    recent_from: i64,
}

fn after(last: Option<LogId<NodeId>>) -> i64 {
    last.map_or(0, |l| l.index as i64 + 1)
}

/// The metadata state machine; clones share it.
#[derive(Clone)]
pub(crate) struct Machine {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    publisher: Arc<watch::Sender<Arc<MetadataImage>>>,
}

fn read_snapshot(dir: &Path) -> std::io::Result<Option<(SnapshotFile, Vec<u8>)>> {
    match std::fs::read(dir.join("snapshot.json")) {
        Ok(bytes) => {
            let file = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join("snapshot.json").display()),
                )
            })?;
            Ok(Some((file, bytes)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Machine {
    /// Opens the state machine at its latest snapshot (or empty).
    pub(crate) fn open(dir: &Path) -> std::io::Result<Machine> {
        let (image, last_applied, membership) = match read_snapshot(dir)? {
            Some((file, _)) => (
                file.image(),
                file.meta.last_log_id,
                file.meta.last_membership.clone(),
            ),
            None => (MetadataImage::empty(), None, StoredMembership::default()),
        };
        let image = Arc::new(image);
        let (publisher, _) = watch::channel(image.clone());
        Ok(Machine {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                image,
                last_applied,
                membership,
                snapshots_built: 0,
                recent: VecDeque::new(),
                recent_from: after(last_applied),
            })),
            publisher: Arc::new(publisher),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.publisher.subscribe()
    }

    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.publisher.borrow().clone()
    }

    /// What an observer whose image is at `offset` needs to be current.
    pub(crate) fn catch_up(&self, offset: i64) -> CatchUp {
        let state = self.lock();
        if offset + 1 < state.recent_from {
            return CatchUp {
                image: Some((state.image.offset, state.image.to_records())),
                proposals: Vec::new(),
            };
        }
        let start = state.recent.partition_point(|(o, _)| *o <= offset);
        CatchUp {
            image: None,
            proposals: state.recent.range(start..).cloned().collect(),
        }
    }
}

fn snapshot_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl RaftSnapshotBuilder<Types> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError<NodeId>> {
        let file = {
            let mut state = self.lock();
            state.snapshots_built += 1;
            let id = match state.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, state.snapshots_built),
                None => format!("none-{}", state.snapshots_built),
            };
            SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: state.last_applied,
                    last_membership: state.membership.clone(),
                    snapshot_id: id,
                },
                offset: state.image.offset,
                records: state.image.to_records(),
            }
        };
        let bytes = serde_json::to_vec(&file).map_err(snapshot_error)?;
        write_atomically(&self.dir, "snapshot.json", &bytes).map_err(snapshot_error)?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<Types> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError<NodeId>,
    > {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<i64>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<Types>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.lock();
        let mut image = (*state.image).clone();
        let mut responses = Vec::new();
        for entry in entries {
            let index = entry.log_id.index as i64;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(proposal) => {
                    image.apply_mut(index, &proposal.records);
                    if state.recent.len() == RECENT_PROPOSALS {
                        if let Some((oldest, _)) = state.recent.pop_front() {
                            state.recent_from = oldest + 1;
                        }
                    }
                    state.recent.push_back((index, proposal.records));
                }
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m)
                }
            }
            state.last_applied = Some(entry.log_id);
            responses.push(index);
        }
        state.image = Arc::new(image);
        self.publisher.send_replace(state.image.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        write_atomically(&self.dir, "snapshot.json", &bytes).map_err(snapshot_error)?;
        let image = Arc::new(file.image());
        let mut state = self.lock();
        state.image = image.clone();
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.recent.clear();
        state.recent_from = after(meta.last_log_id);
        self.publisher.send_replace(image);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Types>>, StorageError<NodeId>> {
        let read = read_snapshot(&self.dir).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(read.map(|(file, bytes)| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
