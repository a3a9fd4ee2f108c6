//! Metadata records, the image they build, and configuration definitions.

pub mod config;
mod image;
mod record;

pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicChange, TopicImage, NO_LEADER};
pub use record::{ConfigResource, MetadataRecord};
pub use uuid::Uuid;
