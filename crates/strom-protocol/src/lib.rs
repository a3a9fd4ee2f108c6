//! The Kafka wire codec, free of I/O.
//!
//! A tour:
//! - [`frame`] splits a byte stream into length-prefixed frames, bounded by
//!   `socket.request.max.bytes`;
//! - [`registry`] lists every API and version range Strom serves; the
//!   ApiVersions response is derived from it, so it cannot drift from what
//!   the handlers implement;
//! - [`request`] decodes a frame into a header and a typed body and encodes
//!   responses with the header version the API requires;
//! - [`records`] is a zero-copy view of magic-2 record batches: header
//!   fields, CRC32C, and the in-place rewrites the log is allowed to make;
//! - [`record_walk`] walks (or inflates and locates) the records of a
//!   batch, and [`retain`] rebuilds a batch with some of them (the cleaner);
//! - [`legacy_produce`] answers Produce v0–v2, which we advertise but refuse
//!   like Kafka 4 does.
//!
//! Message types themselves come from the `kafka-protocol` crate and are
//! re-exported as [`messages`].

pub mod frame;
pub mod legacy_produce;
pub mod record_walk;
pub mod records;
pub mod registry;
pub mod request;
pub mod retain;

pub use kafka_protocol::error::ResponseError as ErrorCode;
pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::Request;
pub use kafka_protocol::protocol::StrBytes;
pub use kafka_protocol::records as record_codec;

/// Kafka's "no error" code.
pub const NONE: i16 = 0;

/// The guarded allocator, so the tests that feed arbitrary bytes to the
/// decoder run as the broker does (see `strom-alloc`).
#[cfg(test)]
#[global_allocator]
static ALLOC: strom_alloc::Guarded = strom_alloc::Guarded;
