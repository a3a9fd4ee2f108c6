//! The controller: decisions about cluster metadata, written as records.

mod controller;
mod log;
mod validate;

pub use controller::{
    ApiError, Controller, ControllerError, CreatePartitionsRequest, CreateTopicRequest,
    CreatedTopic, MAX_PARTITIONS_PER_REQUEST, PRODUCER_ID_BLOCK_SIZE,
};
pub use log::{LocalMetadataLog, MetadataLog, MetadataLogError};
pub use validate::{validate_topic_name, CLUSTER_METADATA_TOPIC};
