//! openraft's network, over the server's [`Transport`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftMetrics};
use tokio::sync::watch;

use super::{PeerMessage, PeerReply, Transport, Types};

pub(super) struct Network {
    pub(super) transport: Arc<dyn Transport>,
    pub(super) voters: BTreeMap<i32, String>,
    pub(super) contacts: Arc<Contacts>,
}

/// When, as the leader, this node last heard each voter answer an append
/// (Kafka's last fetch) and last heard it answer one that left it holding
/// the leader's whole log (last caught up), in wall-clock milliseconds.
#[derive(Default)]
pub(super) struct Contacts {
    heard: Mutex<HashMap<u64, (i64, i64)>>,
    /// Observers: node id -> (log end, when last heard).
    observers: Mutex<BTreeMap<i32, (i64, i64)>>,
    /// The leader's own metrics: its log end, to tell caught up.
    pub(super) metrics: OnceLock<watch::Receiver<RaftMetrics<u64, BasicNode>>>,
}

impl Contacts {
    fn heard(&self, peer: u64, matched: Option<u64>) {
        let now = now_ms();
        let last = self.metrics.get().and_then(|m| m.borrow().last_log_index);
        let caught_up = matched >= last;
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let entry = heard.entry(peer).or_insert((-1, -1));
        entry.0 = now;
        if caught_up {
            entry.1 = now;
        }
    }

    /// An observer asked for what follows `log_end`.
    pub(super) fn observed(&self, node: i32, log_end: i64) {
        let mut observers = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        observers.insert(node, (log_end, now_ms()));
    }

    /// The observers heard from within [`OBSERVER_SESSION_MS`].
    pub(super) fn observers(&self) -> Vec<super::VoterState> {
        let now = now_ms();
        let mut observers = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        observers.retain(|_, (_, heard)| now - *heard <= OBSERVER_SESSION_MS);
        observers
            .iter()
            .map(|(id, (log_end, heard))| super::VoterState {
                node_id: *id,
                log_end_offset: *log_end,
                last_fetch_ms: *heard,
                last_caught_up_ms: -1,
            })
            .collect()
    }

    /// (last fetch, last caught up) of `peer`; -1 where never.
    pub(super) fn of(&self, peer: u64) -> (i64, i64) {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .copied()
            .unwrap_or((-1, -1))
    }
}

/// How long an observer that stopped asking is still listed (Kafka's
/// observer session).
const OBSERVER_SESSION_MS: i64 = 300_000;

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) struct Peer {
    transport: Arc<dyn Transport>,
    target: u64,
    address: String,
    contacts: Arc<Contacts>,
}

impl RaftNetworkFactory<Types> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        let address = self
            .voters
            .get(&(target as i32))
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        Peer {
            transport: self.transport.clone(),
            target,
            address,
            contacts: self.contacts.clone(),
        }
    }
}

type Failure<E> = RPCError<u64, BasicNode, E>;

impl Peer {
    async fn call<E: std::error::Error>(
        &self,
        message: PeerMessage,
    ) -> Result<PeerReply, Failure<E>> {
        let bytes = serde_json::to_vec(&message).expect("messages always serialise");
        let reply = self
            .transport
            .call(&self.address, bytes)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        match serde_json::from_slice::<PeerReply>(&reply) {
            Ok(PeerReply::Refused(why)) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!("peer {} refused: {why}", self.target)),
            ))),
            Ok(reply) => Ok(reply),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> Failure<E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
            "peer {} answered another message",
            self.target
        ))))
    }
}

impl RaftNetwork<Types> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, Failure<RaftError<u64>>> {
        let matched = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index));
        match self.call(PeerMessage::Append(rpc)).await? {
            PeerReply::Append(r) => {
                if matches!(r, Ok(AppendEntriesResponse::Success)) {
                    self.contacts.heard(self.target, matched);
                }
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, Failure<RaftError<u64, InstallSnapshotError>>> {
        match self.call(PeerMessage::Snapshot(rpc)).await? {
            PeerReply::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, Failure<RaftError<u64>>> {
        match self.call(PeerMessage::Vote(rpc)).await? {
            PeerReply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}
