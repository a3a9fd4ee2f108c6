//! The controller quorum: the metadata log replicated by Raft (openraft)
//! among the controller nodes, and the `MetadataImage` that every node
//! applies from what it commits.
//!
//! This module is the only place that sees openraft's types. The rest of
//! Strom sees [`Quorum`]: propose records (on the leader), follow the image,
//! read the quorum's state, and hand it the bytes peers send
//! ([`Quorum::handle_peer`]) while it sends its own through a
//! [`Transport`] the server provides (nothing below the server knows
//! about sockets).

mod machine;
mod network;
mod observer;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Cursor;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use strom_metadata::{MetadataImage, MetadataRecord};
use tokio::sync::watch;
use tracing::info;

use machine::Machine;
use store::LogStore;

/// What one log entry proposes: records applied together (atomically).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub records: Vec<MetadataRecord>,
}

openraft::declare_raft_types!(
    /// Strom's Raft types: node ids are `node.id`, a node is its controller
    /// listener's address, an entry proposes metadata records and answers
    /// with its offset.
    pub(crate) Types:
        D = Proposal,
        R = i64,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A boxed future, for [`Transport`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the quorum reaches a peer: send one message to the controller
/// listening at `address` and return its answer ([`Quorum::handle_peer`]
/// there). The server implements it over its controller listener.
pub trait Transport: Send + Sync + 'static {
    fn call(&self, address: &str, message: Vec<u8>)
        -> BoxFuture<'static, std::io::Result<Vec<u8>>>;
}

/// A transport for a quorum of one, which never sends.
pub struct NoTransport;

impl Transport for NoTransport {
    fn call(&self, address: &str, _: Vec<u8>) -> BoxFuture<'static, std::io::Result<Vec<u8>>> {
        let address = address.to_owned();
        Box::pin(async move {
            Err(std::io::Error::other(format!(
                "no transport to reach the controller at {address}"
            )))
        })
    }
}

/// How a quorum is formed and tuned.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    /// `controller.quorum.voters`: node id -> controller listener address.
    pub voters: BTreeMap<i32, String>,
    /// Where the Raft log, vote and snapshots live.
    pub dir: PathBuf,
    /// `controller.quorum.election.timeout.ms`: a follower that hears
    /// nothing from a leader for between this and twice this starts an
    /// election.
    pub election_timeout_ms: u64,
    /// `controller.quorum.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `controller.quorum.snapshot.entries`: a snapshot is taken after this
    /// many entries, and the log before it purged.
    pub snapshot_entries: u64,
    /// How long a proposal may wait for its commit.
    pub write_timeout: Duration,
}

impl QuorumConfig {
    /// A quorum of one voter (this node) in `dir`: the single node's default.
    pub fn single(node_id: i32, dir: PathBuf) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters: BTreeMap::from([(node_id, String::new())]),
            dir,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 200,
            snapshot_entries: 10_000,
            write_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the leader; `leader` is who is, if known.
    #[error("this node is not the active controller (the active one is {leader:?})")]
    NotLeader { leader: Option<i32> },
    /// The proposal was not committed in time (it may still be, later).
    #[error("the quorum did not commit in time")]
    Timeout,
    #[error("the quorum cannot serve: {0}")]
    Unavailable(String),
}

/// A voter's progress, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoterState {
    pub node_id: i32,
    /// The offset after the last entry the voter holds (-1: unknown).
    pub log_end_offset: i64,
    /// When the leader last heard it answer (ms since the epoch; -1: never
    /// or not known here).
    pub last_fetch_ms: i64,
    /// When it last held the leader's whole log (-1 likewise).
    pub last_caught_up_ms: i64,
}

/// The quorum's state, for DescribeQuorum and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumStatus {
    pub node_id: i32,
    pub leader: Option<i32>,
    pub term: u64,
    /// The offset after the last committed entry this node applied.
    pub applied_end: i64,
    /// The offset after this node's last log entry.
    pub log_end: i64,
    pub is_leader: bool,
    /// The voters; their progress is known only on the leader.
    pub voters: Vec<VoterState>,
    /// Nodes that follow the metadata without voting (brokers that are not
    /// controllers), as this voter heard from them lately; their last
    /// caught-up time is not known (-1).
    #[serde(default)]
    pub observers: Vec<VoterState>,
}

/// The controller quorum as the rest of Strom sees it: on a voter its
/// part of the Raft quorum, on any other node an observer of what the
/// voters commit.
pub struct Quorum {
    node_id: i32,
    role: Role,
    voters: BTreeMap<i32, String>,
    write_timeout: Duration,
    shut_down: std::sync::atomic::AtomicBool,
}

enum Role {
    Voter {
        raft: Raft<Types>,
        machine: Machine,
        contacts: Arc<network::Contacts>,
    },
    Observer(Arc<observer::Observer>),
}

#[derive(Debug, Serialize, Deserialize)]
enum PeerMessage {
    Append(openraft::raft::AppendEntriesRequest<Types>),
    Vote(openraft::raft::VoteRequest<u64>),
    Snapshot(openraft::raft::InstallSnapshotRequest<Types>),
    /// An observer at `offset` asks for what was committed after it,
    /// waiting up to `wait_ms` for something new.
    Observe {
        node_id: i32,
        offset: i64,
        wait_ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum PeerReply {
    Append(Result<openraft::raft::AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<openraft::raft::VoteResponse<u64>, RaftError<u64>>),
    Snapshot(
        Result<
            openraft::raft::InstallSnapshotResponse<u64>,
            RaftError<u64, openraft::error::InstallSnapshotError>,
        >,
    ),
    Observed {
        leader: Option<i32>,
        term: u64,
        catch_up: machine::CatchUp,
    },
    /// The message could not be read.
    Refused(String),
}

impl Quorum {
    /// Opens this node's part of the quorum: its log, vote and snapshot
    /// from `config.dir`, the voters from `config.voters`. A node whose log
    /// is empty records the voter set as the first entry (every voter
    /// writes the same one), so no separate format step is needed.
    ///
    /// A node that is not one of the voters observes them instead.
    pub async fn open(
        config: QuorumConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Quorum, QuorumError> {
        if !config.voters.contains_key(&config.node_id) {
            return Quorum::observe(config, transport);
        }
        let unavailable = |e: &dyn std::fmt::Display| QuorumError::Unavailable(e.to_string());
        let store = LogStore::open(&config.dir).map_err(|e| unavailable(&e))?;
        let machine = Machine::open(&config.dir).map_err(|e| unavailable(&e))?;
        let fresh = store.is_empty().await;
        let raft_config = openraft::Config {
            cluster_name: "strom".into(),
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            heartbeat_interval: config.heartbeat_interval_ms,
            install_snapshot_timeout: config.election_timeout_ms.max(1000) * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            max_in_snapshot_log_to_keep: 100.min(config.snapshot_entries),
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| unavailable(&e))?;
        let contacts = Arc::new(network::Contacts::default());
        let network = network::Network {
            transport,
            voters: config.voters.clone(),
            contacts: contacts.clone(),
        };
        let raft = Raft::new(
            config.node_id as u64,
            Arc::new(raft_config),
            network,
            store,
            machine.clone(),
        )
        .await
        .map_err(|e| unavailable(&e))?;
        let _ = contacts.metrics.set(raft.metrics());
        let members: BTreeMap<u64, BasicNode> = config
            .voters
            .iter()
            .map(|(id, addr)| (*id as u64, BasicNode::new(addr)))
            .collect();
        if fresh {
            match raft.initialize(members.clone()).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(unavailable(&e)),
            }
            info!(voters = ?config.voters.keys().collect::<Vec<_>>(), "controller quorum formed (first start)");
        } else {
            // The metrics show the recorded membership once Raft's core has
            // loaded it, shortly after it starts.
            let recorded: BTreeSet<u64> = match raft
                .wait(Some(Duration::from_secs(10)))
                .metrics(
                    |m| m.membership_config.voter_ids().next().is_some(),
                    "the recorded voters",
                )
                .await
            {
                Ok(m) => m.membership_config.voter_ids().collect(),
                Err(_) => BTreeSet::new(),
            };
            let configured: BTreeSet<u64> = members.keys().copied().collect();
            if recorded != configured {
                return Err(QuorumError::Unavailable(format!(
                    "controller.quorum.voters names the voters {configured:?}, but this node's metadata log records {recorded:?}; the voter set cannot change (dynamic voters are not supported yet)"
                )));
            }
        }
        Ok(Quorum {
            node_id: config.node_id,
            role: Role::Voter {
                raft,
                machine,
                contacts,
            },
            voters: config.voters,
            write_timeout: config.write_timeout,
            shut_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// An observer of `config.voters`, following them from now on.
    fn observe(config: QuorumConfig, transport: Arc<dyn Transport>) -> Result<Quorum, QuorumError> {
        if config.voters.is_empty() {
            return Err(QuorumError::Unavailable(
                "a node that is not a controller needs controller.quorum.voters".into(),
            ));
        }
        let observer = Arc::new(observer::Observer::new());
        tokio::spawn(observer.clone().run(
            config.node_id,
            config.voters.clone(),
            transport,
            config.write_timeout,
        ));
        info!(voters = ?config.voters.keys().collect::<Vec<_>>(), "observing the controller quorum");
        Ok(Quorum {
            node_id: config.node_id,
            role: Role::Observer(observer),
            voters: config.voters,
            write_timeout: config.write_timeout,
            shut_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    #[cfg(test)]
    fn raft(&self) -> &Raft<Types> {
        match &self.role {
            Role::Voter { raft, .. } => raft,
            Role::Observer(_) => panic!("an observer has no Raft"),
        }
    }

    /// Whether this node is one of the voters.
    pub fn is_voter(&self) -> bool {
        matches!(self.role, Role::Voter { .. })
    }

    fn not_leader(&self) -> QuorumError {
        QuorumError::NotLeader {
            leader: self.leader(),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// How long a proposal may wait for its commit.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The image after every record this node has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        match &self.role {
            Role::Voter { machine, .. } => machine.image(),
            Role::Observer(o) => o.images.borrow().clone(),
        }
    }

    /// Follows the image as committed records are applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match &self.role {
            Role::Voter { machine, .. } => machine.images(),
            Role::Observer(o) => o.images.subscribe(),
        }
    }

    /// The Raft term this node is in (an observer: the last it heard of).
    pub fn term(&self) -> u64 {
        match &self.role {
            Role::Voter { raft, .. } => raft.metrics().borrow().current_term,
            Role::Observer(o) => o.term.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Whether [`Quorum::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The active controller, if this node knows one.
    pub fn leader(&self) -> Option<i32> {
        match &self.role {
            Role::Voter { raft, .. } => raft.metrics().borrow().current_leader.map(|l| l as i32),
            Role::Observer(o) => *o.leader.borrow(),
        }
    }

    /// The voters' controller addresses.
    pub fn voters(&self) -> &BTreeMap<i32, String> {
        &self.voters
    }

    /// Waits until some node leads, at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<i32, QuorumError> {
        match &self.role {
            Role::Voter { raft, .. } => raft
                .wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "a leader")
                .await
                .map_err(|_| QuorumError::Timeout)
                .map(|m| m.current_leader.expect("waited for") as i32),
            Role::Observer(o) => {
                let mut leader = o.leader.subscribe();
                let found = tokio::time::timeout(timeout, leader.wait_for(Option::is_some))
                    .await
                    .ok()
                    .and_then(|l| l.ok().and_then(|l| *l));
                found.ok_or(QuorumError::Timeout)
            }
        }
    }

    /// On the leader: waits until everything committed before now is
    /// applied here, so that a decision sees every earlier one.
    pub async fn ensure_current(&self) -> Result<(), QuorumError> {
        let Role::Voter { raft, .. } = &self.role else {
            return Err(self.not_leader());
        };
        match tokio::time::timeout(self.write_timeout, raft.ensure_linearizable()).await {
            Err(_) => Err(QuorumError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(QuorumError::NotLeader {
                    leader: f.leader_id.map(|l| l as i32),
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(QuorumError::Timeout)
            }
            Ok(Err(e)) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    /// On the leader: proposes `records` as one entry and returns its
    /// offset once it is committed and applied here.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<i64, QuorumError> {
        let Role::Voter { raft, .. } = &self.role else {
            return Err(self.not_leader());
        };
        let write = raft.client_write(Proposal { records });
        match tokio::time::timeout(self.write_timeout, write).await {
            Err(_) => Err(QuorumError::Timeout),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(QuorumError::NotLeader {
                    leader: f.leader_id.map(|l| l as i32),
                })
            }
            Ok(Err(e)) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    /// The quorum's state as this node knows it.
    pub fn status(&self) -> QuorumStatus {
        let (raft, contacts) = match &self.role {
            Role::Voter { raft, contacts, .. } => (raft, contacts),
            Role::Observer(_) => {
                let image = self.image();
                let unknown = |node_id| VoterState {
                    node_id,
                    log_end_offset: -1,
                    last_fetch_ms: -1,
                    last_caught_up_ms: -1,
                };
                return QuorumStatus {
                    node_id: self.node_id,
                    leader: self.leader(),
                    term: self.term(),
                    applied_end: image.offset + 1,
                    log_end: image.offset + 1,
                    is_leader: false,
                    voters: self.voters.keys().map(|id| unknown(*id)).collect(),
                    observers: Vec::new(),
                };
            }
        };
        let m = raft.metrics().borrow().clone();
        let is_leader = m.state == ServerState::Leader;
        let end = |l: Option<u64>| l.map_or(0, |i| i as i64 + 1);
        let voters = self
            .voters
            .keys()
            .map(|id| {
                let progress = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&(*id as u64)))
                    .map(|l| end(l.map(|l| l.index)));
                let me = *id == self.node_id;
                let (last_fetch_ms, last_caught_up_ms) = match (me, is_leader) {
                    (true, _) => (network::now_ms(), network::now_ms()),
                    (false, true) => contacts.of(*id as u64),
                    (false, false) => (-1, -1),
                };
                VoterState {
                    node_id: *id,
                    log_end_offset: match (progress, me) {
                        (_, true) => end(m.last_log_index),
                        (Some(p), false) => p,
                        (None, false) => -1,
                    },
                    last_fetch_ms,
                    last_caught_up_ms,
                }
            })
            .collect();
        QuorumStatus {
            node_id: self.node_id,
            leader: m.current_leader.map(|l| l as i32),
            term: m.current_term,
            applied_end: end(m.last_applied.map(|l| l.index)),
            log_end: end(m.last_log_index),
            is_leader,
            voters,
            observers: contacts.observers(),
        }
    }

    /// Answers a message a peer's [`Transport`] sent.
    pub async fn handle_peer(&self, message: &[u8]) -> Vec<u8> {
        let Role::Voter {
            raft,
            machine,
            contacts,
        } = &self.role
        else {
            let refused = PeerReply::Refused(format!(
                "node {} is not a controller (process.roles=broker)",
                self.node_id
            ));
            return serde_json::to_vec(&refused).expect("replies always serialise");
        };
        let reply = match serde_json::from_slice::<PeerMessage>(message) {
            Err(e) => PeerReply::Refused(e.to_string()),
            Ok(PeerMessage::Append(rpc)) => PeerReply::Append(raft.append_entries(rpc).await),
            Ok(PeerMessage::Vote(rpc)) => PeerReply::Vote(raft.vote(rpc).await),
            Ok(PeerMessage::Snapshot(rpc)) => PeerReply::Snapshot(raft.install_snapshot(rpc).await),
            Ok(PeerMessage::Observe {
                node_id,
                offset,
                wait_ms,
            }) => {
                contacts.observed(node_id, offset + 1);
                let wait = Duration::from_millis(wait_ms).min(observer::POLL_WAIT * 2);
                let mut images = machine.images();
                let _ = tokio::time::timeout(wait, images.wait_for(|i| i.offset > offset)).await;
                PeerReply::Observed {
                    leader: self.leader(),
                    term: self.term(),
                    catch_up: machine.catch_up(offset),
                }
            }
        };
        serde_json::to_vec(&reply).expect("replies always serialise")
    }

    /// Stops taking part in the quorum.
    pub async fn shutdown(&self) {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        match &self.role {
            Role::Voter { raft, .. } => {
                let _ = raft.shutdown().await;
            }
            Role::Observer(o) => o.stop(),
        }
    }
}
