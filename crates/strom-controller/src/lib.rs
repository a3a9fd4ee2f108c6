//! The controller: decisions about cluster metadata, written as records.

mod controller;
mod log;
mod quorum;
mod validate;

pub use controller::{
    reassigning, AlterConfigsRequest, ApiError, BrokerHeartbeat, BrokerRegistration, ConfigOp,
    Controller, ControllerError, ControllerReply, ControllerRequest, CreatePartitionsRequest,
    CreateTopicRequest, CreatedTopic, HeartbeatReply, IsrOutcomes, IsrUpdate, IsrUpdated,
    ReassignRequest, Reassigning, Registered, MAX_PARTITIONS_PER_REQUEST, PRODUCER_ID_BLOCK_SIZE,
};
pub use quorum::{
    BoxFuture, NoTransport, Proposal, Quorum, QuorumConfig, QuorumError, QuorumStatus, Transport,
    VoterState,
};
pub use validate::{validate_topic_name, CLUSTER_METADATA_TOPIC};

/// The entry parser of the single-node releases' metadata log (what
/// carrying it into the quorum reads it with), for the fuzz targets: the entries up to the first torn or
/// corrupt one, and the length of that valid prefix.
#[doc(hidden)]
pub fn parse_metadata_log(
    bytes: &[u8],
) -> (Vec<(i64, Vec<strom_metadata::MetadataRecord>)>, usize) {
    log::parse_entries(bytes)
}
