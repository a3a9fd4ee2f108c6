//! Magic-2 record batches, viewed in place.
//!
//! Layout of a batch (all integers big-endian); the CRC32C covers everything
//! from `attributes` to the end of the batch:
//!
//! ```text
//!  0 base_offset i64          12 partition_leader_epoch i32   16 magic i8
//! 17 crc u32                  21 attributes i16               23 last_offset_delta i32
//! 27 base_timestamp i64       35 max_timestamp i64            43 producer_id i64
//! 51 producer_epoch i16       53 base_sequence i32            57 records_count i32
//! 61 records...
//! ```
//! `batch_length` at 8 counts the bytes after itself, so a batch occupies
//! `12 + batch_length` bytes. The log rewrites only fields outside the CRC
//! (base offset, leader epoch) except for LogAppendTime topics, where the
//! timestamp fields change and the CRC is recomputed.

use bytes::Bytes;
pub use kafka_protocol::records::Compression;

/// Bytes before `batch_length` ends: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// Size of a magic-2 batch header.
pub const HEADER_LEN: usize = 61;
/// Kafka's default `max.message.bytes` (1 MiB plus the log overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024 + LOG_OVERHEAD;

const CRC_START: usize = 21;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// KIP-534: the base timestamp holds the time after which the cleaner may
/// remove the batch's tombstones (or its marker).
pub(crate) const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Every codec a batch may use, by its attribute id (0-4).
pub const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_SEQUENCE: i32 = -1;

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0} bytes left, too few for a batch header")]
    Truncated(usize),
    #[error("batch length {0} is impossible")]
    BadLength(i32),
    #[error("batch of {need} bytes but only {have} present")]
    Incomplete { need: usize, have: usize },
    #[error("magic {0} is not supported (only 2)")]
    Magic(i8),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
}

/// A view of the header of one batch. The slice covers the whole batch.
#[derive(Clone, Copy)]
pub struct Batch<'a>(&'a [u8]);

impl<'a> Batch<'a> {
    /// Views the batch at the front of `buf`, checking only that its length
    /// is sane and that all of it is present; see [`Batch::verify`].
    pub fn parse(buf: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        let size = batch_size(buf)?;
        if buf.len() < size {
            return Err(BatchError::Incomplete {
                need: size,
                have: buf.len(),
            });
        }
        Ok(Batch(&buf[..size]))
    }

    /// Checks magic and CRC.
    pub fn verify(&self) -> Result<(), BatchError> {
        if self.magic() != 2 {
            return Err(BatchError::Magic(self.magic()));
        }
        let computed = crc32c::crc32c(&self.0[CRC_START..]);
        if computed != self.crc() {
            return Err(BatchError::Crc {
                stored: self.crc(),
                computed,
            });
        }
        Ok(())
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
    /// Total size in bytes, log overhead included.
    pub fn size(&self) -> usize {
        self.0.len()
    }
    pub fn base_offset(&self) -> i64 {
        i64_at(self.0, 0)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(self.0, 12)
    }
    pub fn magic(&self) -> i8 {
        self.0[16] as i8
    }
    pub fn crc(&self) -> u32 {
        i32_at(self.0, 17) as u32
    }
    pub fn attributes(&self) -> i16 {
        i16_at(self.0, 21)
    }
    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes() & 0x07) as u8
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTR_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(self.0, 23)
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.0, 27)
    }
    pub fn max_timestamp(&self) -> i64 {
        i64_at(self.0, 35)
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.0, 43)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16_at(self.0, 51)
    }
    pub fn base_sequence(&self) -> i32 {
        i32_at(self.0, 53)
    }
    /// The sequence of the last record, wrapping like Kafka's.
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = i64::from(base) + i64::from(self.last_offset_delta());
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
    /// When the log cleaner may remove this batch's tombstones or marker
    /// (KIP-534), if it set that time.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes() & ATTR_DELETE_HORIZON != 0).then(|| self.base_timestamp())
    }
    /// A record's timestamp from its delta: the batch's max timestamp for
    /// LogAppendTime batches.
    pub fn record_timestamp(&self, timestamp_delta: i64) -> i64 {
        if self.is_log_append_time() {
            self.max_timestamp()
        } else {
            self.base_timestamp().saturating_add(timestamp_delta)
        }
    }
    pub fn records_count(&self) -> i32 {
        i32_at(self.0, 57)
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id() > NO_PRODUCER_ID
    }
}

/// The size of the batch at the front of `buf`, from its length field.
pub fn batch_size(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated(buf.len()));
    }
    let len = i32_at(buf, 8);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(len));
    }
    Ok(LOG_OVERHEAD + len as usize)
}

/// Iterates the batches of a buffer, stopping at the first invalid one
/// (which it yields as an error) or at the end.
pub fn batches(buf: &[u8]) -> impl Iterator<Item = Result<Batch<'_>, BatchError>> {
    let mut rest = buf;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        match Batch::parse(rest) {
            Ok(b) => {
                rest = &rest[b.size()..];
                Some(Ok(b))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// Rewrites the base offset (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], offset: i64) {
    batch[0..8].copy_from_slice(&offset.to_be_bytes());
}

/// Rewrites the partition leader epoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `now` as its max timestamp and
/// recomputes the CRC, as Kafka does for topics with
/// `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], now: i64) {
    let attrs = i16_at(batch, 21) | ATTR_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the max timestamp and recomputes the CRC: how Kafka corrects a
/// CreateTime batch whose header disagrees with its records.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// The producer fields of a batch to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    /// Part of a transaction (the batch attribute bit).
    pub transactional: bool,
}

impl BatchProducer {
    /// A batch from no idempotent producer.
    pub const NONE: BatchProducer = BatchProducer {
        id: NO_PRODUCER_ID,
        epoch: -1,
        base_sequence: NO_SEQUENCE,
        transactional: false,
    };
}

/// One record of a batch to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
}

/// Encodes records as one magic-2 batch with base offset 0: how the broker
/// writes its internal topics, and how tests make batches.
pub fn build_batch(
    producer: BatchProducer,
    compression: Compression,
    records: &[NewRecord],
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: producer.transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset minus sequence
            // changes, so the sequence advances with the offset even without
            // a producer (whose base sequence is then -1).
            sequence: producer.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encoding records into memory cannot fail");
    buf.freeze()
}

/// What a control batch marks: the end of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMarker {
    Abort,
    Commit,
}

/// The marker of a control batch, read from its record's key (`i16`
/// version, `i16` type: 0 abort, 1 commit); `None` if it is not one.
pub fn control_marker(batch: &[u8]) -> Option<ControlMarker> {
    let view = Batch::parse(batch).ok()?;
    if !view.is_control() {
        return None;
    }
    let key = crate::record_walk::first_key(&view)?;
    match key.get(2..4)? {
        [0, 0] => Some(ControlMarker::Abort),
        [0, 1] => Some(ControlMarker::Commit),
        _ => None,
    }
}

/// The coordinator epoch a marker's control batch carries (its value:
/// version 0, then the epoch), if it is one and reads.
pub fn control_marker_coordinator_epoch(batch: &[u8]) -> Option<i32> {
    let view = Batch::parse(batch).ok()?;
    if !view.is_control() {
        return None;
    }
    let value = crate::record_walk::first_value(&view)?;
    Some(i32::from_be_bytes(value.get(2..6)?.try_into().ok()?))
}

/// A control batch carrying a commit or abort marker for `producer`'s
/// transaction (key: version 0 and the type; value: version 0 and the
/// coordinator epoch), as the transaction coordinator writes them.
pub fn build_control_batch(
    producer: BatchProducer,
    marker: ControlMarker,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let kind: i16 = match marker {
        ControlMarker::Abort => 0,
        ControlMarker::Commit => 1,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        partition_leader_epoch: 0,
        producer_id: producer.id,
        producer_epoch: producer.epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a marker into memory cannot fail");
    buf.freeze()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn encode_batch(values: &[&[u8]], compression: Compression, ts: i64) -> Vec<u8> {
        let records: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| NewRecord {
                key: None,
                value: Some(Bytes::copy_from_slice(v)),
                timestamp: ts + i as i64,
            })
            .collect();
        let producer = BatchProducer {
            id: 7,
            epoch: 1,
            base_sequence: 3,
            transactional: false,
        };
        build_batch(producer, compression, &records).to_vec()
    }

    #[test]
    fn header_fields() {
        let b = encode_batch(&[b"a", b"bb", b"ccc"], Compression::None, 1000);
        let batch = Batch::parse(&b).unwrap();
        batch.verify().unwrap();
        assert_eq!(batch.size(), b.len());
        assert_eq!(batch.records_count(), 3);
        assert_eq!(batch.last_offset_delta(), 2);
        assert_eq!(batch.producer_id(), 7);
        assert_eq!(batch.producer_epoch(), 1);
        assert_eq!(batch.base_sequence(), 3);
        assert_eq!(batch.last_sequence(), 5);
        assert_eq!(batch.base_timestamp(), 1000);
        assert_eq!(batch.max_timestamp(), 1002);
    }

    #[test]
    fn offset_rewrite_keeps_crc_and_log_append_time_fixes_it() {
        let mut b = encode_batch(&[b"x"], Compression::Gzip, 5);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 3);
        Batch::parse(&b).unwrap().verify().unwrap();
        set_log_append_time(&mut b, 99);
        let batch = Batch::parse(&b).unwrap();
        batch.verify().unwrap();
        assert!(batch.is_log_append_time());
        assert_eq!(batch.base_offset(), 42);
        let mut deltas = Vec::new();
        crate::record_walk::walk(&batch, 1 << 20, |_, r| {
            deltas.push((r.offset_delta, r.timestamp_delta));
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(deltas, [(0, 0)]);
    }

    #[test]
    fn corruption_detected() {
        let mut b = encode_batch(&[b"hello"], Compression::None, 5);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(
            Batch::parse(&b).unwrap().verify(),
            Err(BatchError::Crc { .. })
        ));
        b[16] = 1;
        assert_eq!(
            Batch::parse(&b).unwrap().verify(),
            Err(BatchError::Magic(1))
        );
        assert!(matches!(
            Batch::parse(&b[..b.len() - 1]),
            Err(BatchError::Incomplete { .. })
        ));
    }

    #[test]
    fn control_markers_round_trip() {
        let p = BatchProducer {
            id: 9,
            epoch: 2,
            base_sequence: -1,
            transactional: true,
        };
        for marker in [ControlMarker::Abort, ControlMarker::Commit] {
            let b = build_control_batch(p, marker, 5, 100);
            let view = Batch::parse(&b).unwrap();
            view.verify().unwrap();
            assert!(view.is_control() && view.is_transactional());
            assert_eq!((view.producer_id(), view.producer_epoch()), (9, 2));
            assert_eq!(control_marker(&b), Some(marker));
            assert_eq!(control_marker_coordinator_epoch(&b), Some(5));
        }
        assert_eq!(
            control_marker(&encode_batch(&[b"x"], Compression::None, 0)),
            None
        );
    }

    #[test]
    fn sequence_wraps() {
        let mut b = encode_batch(&[b"a", b"b"], Compression::None, 0);
        b[53..57].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(Batch::parse(&b).unwrap().last_sequence(), 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            for b in batches(&bytes).flatten() {
                let _ = b.verify();
                let _ = b.last_sequence();
                let _ = crate::record_walk::walk(&b, 1 << 16, |_, _| Ok(std::ops::ControlFlow::Continue(())));
            }
        }

        #[test]
        fn single_bit_flips_are_caught(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5), flip in any::<usize>()) {
            let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            let mut b = encode_batch(&refs, Compression::None, 0);
            let at = CRC_START + flip % (b.len() - CRC_START);
            b[at] ^= 0x40;
            let ok = Batch::parse(&b).map(|x| x.verify().is_ok()).unwrap_or(false);
            prop_assert!(!ok);
        }
    }
}
