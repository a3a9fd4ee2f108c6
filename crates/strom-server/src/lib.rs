//! The network face of a node.
//!
//! - [`Broker`] wires the node's state together: the controller (metadata
//!   decisions and the image), the replica manager (partitions), the
//!   group and transaction coordinators over their internal topics
//!   ([`internal`], [`txns`]), the producer-id block.
//! - [`run`] accepts connections until shutdown; [`connection`] reads
//!   frames, answers them strictly in order and closes a connection (and
//!   only it) on a malformed frame.
//! - [`handlers`] has one module per API; each turns a typed request into a
//!   typed response with Kafka's error codes.

mod broker;
mod connection;
mod controller_node;
mod coordination;
mod dir_lock;
mod error_counts;
mod fetch_sessions;
pub mod handlers;
mod http;
mod internal;
mod lifecycle;
mod memory;
mod meta;
mod metrics;
mod peer;
mod producer_ids;
mod replica_link;
mod txns;

pub use broker::{Broker, BrokerOptions};
pub use connection::run;
pub use controller_node::ControllerNode;
pub use dir_lock::{DirLock, LockError};
pub use http::{serve_http, HttpState};
pub use meta::MetaProperties;
pub use peer::TcpTransport;
pub use strom_controller::{NoTransport, Transport};
