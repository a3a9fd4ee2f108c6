//! Rebuilding a batch with only some of its records: what the log cleaner
//! writes in place of a batch it removed records from.
//!
//! As Kafka's cleaner does, the rebuilt batch keeps the base offset, the
//! last offset delta (so the producer's sequence range and the offsets
//! after it stay what they were), the leader epoch, the producer fields and
//! the attributes; each kept record keeps its offset delta, timestamp,
//! key, value and headers byte for byte. The count, the max timestamp and
//! the CRC are recomputed, and a compressed batch is recompressed with its
//! own codec. A batch left with no records (kept for its producer's sake)
//! is written uncompressed with an empty records section.
//!
//! With a delete horizon (KIP-534) the base timestamp becomes the horizon
//! and the attribute bit says so; each record's timestamp delta is then
//! re-encoded against it, so record timestamps do not change.

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use crate::record_walk::Inflated;
use crate::records::{Batch, ATTR_DELETE_HORIZON, HEADER_LEN, LOG_OVERHEAD};

/// Why a batch could not be rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("cannot recompress records: {0}")]
pub struct RecompressError(String);

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// The batch `batch` with only the records `keep` marks (one flag per
/// record of `inflated`, which is `batch`'s records), stamped with
/// `delete_horizon` if given (it replaces any the batch had).
pub fn rebuild(
    batch: &Batch<'_>,
    inflated: &Inflated<'_>,
    keep: &[bool],
    delete_horizon: Option<i64>,
) -> Result<Vec<u8>, RecompressError> {
    debug_assert_eq!(keep.len(), inflated.records.len());
    let base_timestamp = delete_horizon.unwrap_or(batch.base_timestamp());
    let shifted = base_timestamp != batch.base_timestamp() && !batch.is_log_append_time();
    let mut records = Vec::with_capacity(inflated.bytes.len());
    let mut count = 0i32;
    let mut max_timestamp = None::<i64>;
    let mut record = Vec::new();
    for (i, span) in inflated.records.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        count += 1;
        let timestamp = batch.record_timestamp(span.meta.timestamp_delta);
        max_timestamp = Some(max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
        if !shifted {
            records.extend_from_slice(inflated.raw(i));
            continue;
        }
        // attributes, the new timestamp delta, then the rest as it was.
        record.clear();
        record.push(inflated.bytes[span.body_start]);
        put_varlong(&mut record, timestamp.wrapping_sub(base_timestamp));
        record.extend_from_slice(&inflated.bytes[span.timestamp_end..span.end]);
        put_varlong(&mut records, record.len() as i64);
        records.extend_from_slice(&record);
    }
    let mut attributes = batch.attributes();
    if delete_horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let max_timestamp = match max_timestamp {
        Some(t) if !batch.is_log_append_time() => t,
        _ => batch.max_timestamp(),
    };
    let body = if count == 0 {
        attributes &= !0x07;
        Vec::new()
    } else {
        compress(batch.compression(), &records)?
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&batch.base_offset().to_be_bytes());
    let length = (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&batch.partition_leader_epoch().to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]); // CRC, below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&batch.last_offset_delta().to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&batch.producer_id().to_be_bytes());
    out.extend_from_slice(&batch.producer_epoch().to_be_bytes());
    out.extend_from_slice(&batch.base_sequence().to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// `records` compressed with `codec` (0-4), framed as Kafka's clients
/// write it (xerial snappy, LZ4 frames).
fn compress(codec: u8, records: &[u8]) -> Result<Vec<u8>, RecompressError> {
    fn with<C: Compressor<BytesMut>>(records: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut out = BytesMut::new();
        C::compress(&mut out, |buf| {
            buf.put_slice(records);
            Ok(())
        })?;
        Ok(out.to_vec())
    }
    let result = match codec {
        0 => return Ok(records.to_vec()),
        1 => with::<Gzip>(records),
        2 => with::<Snappy>(records),
        3 => with::<Lz4>(records),
        4 => with::<Zstd>(records),
        other => return Err(RecompressError(format!("unknown codec {other}"))),
    };
    result.map_err(|e| RecompressError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_walk::inflate;
    use crate::records::{build_batch, BatchProducer, Compression, NewRecord, CODECS};
    use bytes::Bytes;
    use proptest::prelude::*;

    type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);
    /// (offset, timestamp, key, value) of a record, as a reader sees it.
    type Seen = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

    /// Each record of a batch, as a reader sees it.
    fn contents(b: &[u8]) -> Vec<Seen> {
        let batch = Batch::parse(b).unwrap();
        batch.verify().unwrap();
        let inflated = inflate(&batch, 1 << 30).unwrap();
        (0..inflated.records.len())
            .map(|i| {
                let m = inflated.records[i].meta;
                (
                    batch.base_offset() + i64::from(m.offset_delta),
                    batch.record_timestamp(m.timestamp_delta),
                    inflated.key(i).map(<[u8]>::to_vec),
                    inflated.value(i).map(<[u8]>::to_vec),
                )
            })
            .collect()
    }

    /// A batch of (key, value) records at base offset 500.
    fn batch_of(values: &[KeyValue], codec: Compression) -> Vec<u8> {
        let records: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(i, (k, v))| NewRecord {
                key: k.clone().map(Bytes::from),
                value: v.clone().map(Bytes::from),
                timestamp: 1_000 + (i as i64 * 7) % 5,
            })
            .collect();
        let producer = BatchProducer {
            id: 9,
            epoch: 2,
            base_sequence: 40,
            transactional: false,
        };
        let mut b = build_batch(producer, codec, &records).to_vec();
        crate::records::set_base_offset(&mut b, 500);
        b
    }

    proptest! {
        /// Whatever is kept reads back exactly (offsets, timestamps, keys,
        /// values), the header fields a producer and a follower rely on are
        /// unchanged, and a horizon is stamped without moving timestamps.
        #[test]
        fn kept_records_read_back(
            values in prop::collection::vec(
                (prop::option::of(prop::collection::vec(any::<u8>(), 0..6)),
                 prop::option::of(prop::collection::vec(any::<u8>(), 0..40))),
                1..20),
            mask in prop::collection::vec(any::<bool>(), 20),
            codec in 0usize..5,
            horizon in prop::option::of(0i64..5_000),
        ) {
            let original = batch_of(&values, CODECS[codec]);
            let before = contents(&original);
            let batch = Batch::parse(&original).unwrap();
            let inflated = inflate(&batch, 1 << 30).unwrap();
            let keep = &mask[..values.len()];
            let rebuilt = rebuild(&batch, &inflated, keep, horizon).unwrap();
            let after = Batch::parse(&rebuilt).unwrap();
            prop_assert_eq!(after.size(), rebuilt.len());
            let expected: Vec<_> = before.iter().zip(keep).filter(|(_, k)| **k).map(|(r, _)| r.clone()).collect();
            prop_assert_eq!(contents(&rebuilt), expected.clone());
            prop_assert_eq!(after.base_offset(), batch.base_offset());
            prop_assert_eq!(after.last_offset(), batch.last_offset());
            prop_assert_eq!(after.producer_id(), 9);
            prop_assert_eq!(after.producer_epoch(), 2);
            prop_assert_eq!(after.base_sequence(), 40);
            prop_assert_eq!(after.records_count() as usize, expected.len());
            prop_assert_eq!(after.delete_horizon(), horizon);
            let max = expected.iter().map(|r| r.1).max().unwrap_or(batch.max_timestamp());
            prop_assert_eq!(after.max_timestamp(), max);
            if expected.is_empty() {
                prop_assert_eq!(after.compression(), 0);
            } else {
                prop_assert_eq!(after.compression(), batch.compression());
            }
        }
    }

    #[test]
    fn keeping_everything_without_a_horizon_changes_no_record_byte() {
        let values = vec![
            (Some(b"k".to_vec()), Some(b"v".to_vec())),
            (Some(b"j".to_vec()), None),
        ];
        let original = batch_of(&values, Compression::None);
        let batch = Batch::parse(&original).unwrap();
        let inflated = inflate(&batch, 1 << 20).unwrap();
        let rebuilt = rebuild(&batch, &inflated, &[true, true], None).unwrap();
        assert_eq!(rebuilt, original);
    }
}
