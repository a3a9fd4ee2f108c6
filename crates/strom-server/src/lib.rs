//! The network face of a node.
//!
//! - [`Broker`] wires the node's state together: the controller (metadata
//!   decisions and the image), the replica manager (partitions), the
//!   producer-id block.
//! - [`run`] accepts connections until shutdown; [`connection`] reads
//!   frames, answers them strictly in order and closes a connection (and
//!   only it) on a malformed frame.
//! - [`handlers`] has one module per API; each turns a typed request into a
//!   typed response with Kafka's error codes.

mod broker;
mod connection;
mod groups;
pub mod handlers;
mod meta;
mod producer_ids;

pub use broker::{Broker, BrokerOptions};
pub use connection::run;
pub use meta::MetaProperties;
