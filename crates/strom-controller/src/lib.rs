//! The controller: decisions about cluster metadata, written as records.

mod controller;
mod log;
mod quorum;
mod validate;

pub use controller::{
    AlterConfigsRequest, ApiError, ConfigOp, Controller, ControllerError, CreatePartitionsRequest,
    CreateTopicRequest, CreatedTopic, MAX_PARTITIONS_PER_REQUEST, PRODUCER_ID_BLOCK_SIZE,
};
pub use log::{LocalMetadataLog, MetadataLog, MetadataLogError};
pub use quorum::{
    BoxFuture, NoTransport, Proposal, Quorum, QuorumConfig, QuorumError, QuorumStatus, Transport,
    VoterState,
};
pub use validate::{validate_topic_name, CLUSTER_METADATA_TOPIC};

/// The metadata log's entry parser (what [`LocalMetadataLog::open`] reads
/// the file with), for the fuzz targets: the entries up to the first torn or
/// corrupt one, and the length of that valid prefix.
#[doc(hidden)]
pub fn parse_metadata_log(
    bytes: &[u8],
) -> (Vec<(i64, Vec<strom_metadata::MetadataRecord>)>, usize) {
    log::parse_entries(bytes)
}
