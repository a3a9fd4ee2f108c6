//! openraft's network, over the server's [`Transport`].

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::{PeerMessage, PeerReply, Transport, Types};

pub(super) struct Network {
    pub(super) transport: Arc<dyn Transport>,
    pub(super) voters: BTreeMap<i32, String>,
}

pub(super) struct Peer {
    transport: Arc<dyn Transport>,
    target: u64,
    address: String,
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
        match self.call(PeerMessage::Append(rpc)).await? {
            PeerReply::Append(r) => {
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
