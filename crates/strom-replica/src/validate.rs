//! The checks Kafka makes on a produced batch (its `LogValidator`), with
//! its error codes.
//!
//! In order: exactly one whole magic-2 batch with base offset 0, within
//! `max.message.bytes`, CRC-valid, of a known codec, with a consistent
//! header (count, last offset delta, no control flag, a sequence when it
//! has a producer id); then every record, read in place or through a
//! streaming decompressor with a bounded inflated size: well formed, as
//! many as declared, offset deltas 0, 1, 2, ..., timestamps within
//! `message.timestamp.before.max.ms` / `after.max.ms` of now (CreateTime
//! topics), and a key on compacted topics. Nothing is copied: the bytes
//! are stored as received.

use std::ops::ControlFlow;

use strom_protocol::record_walk::{self, RecordsError};
use strom_protocol::records::{self, Batch};
use strom_protocol::ErrorCode;

/// Kafka's "no timestamp".
const NO_TIMESTAMP: i64 = -1;

/// The inflated size a compressed batch may reach: 16 times
/// `max.message.bytes`, and at least 64 MiB (Kafka has no such bound; a
/// batch that inflates further is not one a client's own limits produce).
pub fn max_inflated_bytes(max_message_bytes: usize) -> u64 {
    (max_message_bytes as u64).saturating_mul(16).max(64 << 20)
}

/// A topic's rules for produced batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRules {
    /// `max.message.bytes`.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`: the client's timestamps are
    /// replaced, so not checked.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `min.insync.replicas`: in-sync replicas an acks=all write needs.
    pub min_insync_replicas: usize,
}

impl Default for ProduceRules {
    fn default() -> Self {
        ProduceRules {
            max_message_bytes: records::DEFAULT_MAX_MESSAGE_BYTES,
            log_append_time: false,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            compacted: false,
            min_insync_replicas: 1,
        }
    }
}

/// One refused record, as Produce v8+ reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

/// Why a produce to one partition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceError {
    pub code: ErrorCode,
    pub message: String,
    /// The records at fault, when the refusal is about records.
    pub record_errors: Vec<RecordError>,
}

impl From<(ErrorCode, String)> for ProduceError {
    fn from((code, message): (ErrorCode, String)) -> Self {
        ProduceError {
            code,
            message,
            record_errors: Vec::new(),
        }
    }
}

/// What validation learnt of a batch it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The largest record timestamp, when the header's `max_timestamp`
    /// disagrees with it (Kafka corrects the header; so does the append).
    pub corrected_max_timestamp: Option<i64>,
}

/// Checks the records of one partition in a Produce request (v3+) against
/// `rules` at wall-clock `now_ms`; `partition` names it in messages.
pub fn validate_produce_batch(
    records: &[u8],
    rules: &ProduceRules,
    now_ms: i64,
    partition: &str,
) -> Result<Checked, ProduceError> {
    let invalid = |m: String| ProduceError::from((ErrorCode::InvalidRecord, m));
    let mut iter = records::batches(records);
    let batch = match iter.next() {
        None => return Err(invalid("Produce requests with version 3 and above must have exactly one record batch per partition; found none".into())),
        // A length below any batch's is corrupt; a batch cut short is no
        // batch at all (Kafka's two answers).
        Some(Err(e @ records::BatchError::BadLength(_))) => {
            return Err((ErrorCode::CorruptMessage, e.to_string()).into())
        }
        Some(Err(e)) => return Err(invalid(format!("Produce requests with version 3 and above must have exactly one whole record batch per partition: {e}"))),
        Some(Ok(b)) => b,
    };
    if iter.next().is_some() {
        return Err(invalid("Produce requests with version 3 and above must have exactly one record batch per partition".into()));
    }
    if batch.magic() != 2 {
        return Err(invalid(format!("Produce requests with version 3 and above are only allowed to contain record batches with magic version 2; found {}", batch.magic())));
    }
    if batch.base_offset() != 0 {
        return Err(invalid(format!(
            "The baseOffset of the record batch in the append to {partition} should be 0, but it is {}",
            batch.base_offset()
        )));
    }
    if batch.size() > rules.max_message_bytes {
        return Err((
            ErrorCode::MessageTooLarge,
            format!(
                "The record batch is {} bytes, larger than max.message.bytes {}",
                batch.size(),
                rules.max_message_bytes
            ),
        )
            .into());
    }
    batch
        .verify()
        .map_err(|e| ProduceError::from((ErrorCode::CorruptMessage, e.to_string())))?;
    if batch.compression() > 4 {
        return Err((
            ErrorCode::UnsupportedCompressionType,
            format!("Unknown compression type id: {}", batch.compression()),
        )
            .into());
    }
    check_header(&batch, partition).map_err(invalid)?;
    check_records(&batch, rules, now_ms, partition)
}

fn check_header(batch: &Batch<'_>, partition: &str) -> Result<(), String> {
    if batch.is_control() {
        return Err(format!(
            "Clients are not allowed to write control records in topic partition {partition}."
        ));
    }
    if batch.records_count() <= 0 {
        return Err(format!(
            "Invalid reported count for record batch: {}",
            batch.records_count()
        ));
    }
    if i64::from(batch.last_offset_delta()) != i64::from(batch.records_count()) - 1 {
        return Err(format!(
            "Inconsistent batch offset range [0, {}] and count of records {}",
            batch.last_offset_delta(),
            batch.records_count()
        ));
    }
    if batch.has_producer_id() && batch.base_sequence() < 0 {
        return Err(format!(
            "Invalid sequence number {} for an idempotent batch",
            batch.base_sequence()
        ));
    }
    if batch.is_transactional() && !batch.has_producer_id() {
        return Err("Transactional batch without a producer id".into());
    }
    Ok(())
}

/// Walks every record once: structure, offsets, timestamps and keys.
fn check_records(
    batch: &Batch<'_>,
    rules: &ProduceRules,
    now_ms: i64,
    partition: &str,
) -> Result<Checked, ProduceError> {
    let check_time = !rules.log_append_time;
    // A batch flagged LogAppendTime by its producer: on a CreateTime topic
    // Kafka keeps it (each record's timestamp is then the batch's max
    // timestamp); on a LogAppendTime topic it refuses it.
    let append_time_flag = batch.is_log_append_time();
    let base_ts = batch.base_timestamp();
    let mut max_ts = NO_TIMESTAMP;
    let mut bad_time = Vec::new();
    let mut bad_other = Vec::new();
    let earliest = now_ms.saturating_sub(rules.timestamp_before_max_ms);
    let latest = now_ms.saturating_add(rules.timestamp_after_max_ms);
    let walked = record_walk::walk(
        batch,
        max_inflated_bytes(rules.max_message_bytes),
        |i, r| {
            if r.offset_delta as usize != i {
                return Err(RecordsError::Malformed(format!(
                    "Record {i} of the batch has offset delta {}; deltas must be 0, 1, 2, ...",
                    r.offset_delta
                )));
            }
            let ts = if append_time_flag {
                batch.max_timestamp()
            } else {
                base_ts.saturating_add(r.timestamp_delta)
            };
            max_ts = max_ts.max(ts);
            if rules.log_append_time && append_time_flag {
                bad_time.push(RecordError {
                    batch_index: i as i32,
                    message: format!("Invalid timestamp type in message with offset {i}. Producer should not set timestamp type to LogAppendTime."),
                });
            } else if check_time && ts != NO_TIMESTAMP && (ts < earliest || ts > latest) {
                bad_time.push(RecordError {
                    batch_index: i as i32,
                    message: format!("Timestamp {ts} of message with offset {i} is out of range. The timestamp should be within [{earliest}, {latest}]"),
                });
            }
            if rules.compacted && r.key_len < 0 {
                bad_other.push(RecordError {
                    batch_index: i as i32,
                    message: format!(
                        "Compacted topic cannot accept message without key in topic partition {partition}."
                    ),
                });
            }
            Ok(ControlFlow::Continue(()))
        },
    );
    match walked {
        Ok(()) => {}
        Err(RecordsError::TooLarge(limit)) => {
            return Err((
                ErrorCode::MessageTooLarge,
                format!("The records of the batch inflate to more than {limit} bytes"),
            )
                .into())
        }
        Err(RecordsError::UnknownCodec(c)) => {
            return Err((
                ErrorCode::UnsupportedCompressionType,
                format!("Unknown compression type id: {c}"),
            )
                .into())
        }
        Err(e @ (RecordsError::Decompress(_) | RecordsError::Malformed(_))) => {
            return Err((ErrorCode::InvalidRecord, e.to_string()).into())
        }
    }
    if !bad_time.is_empty() {
        bad_time.extend(bad_other);
        bad_time.sort_by_key(|e| e.batch_index);
        return Err(ProduceError {
            code: ErrorCode::InvalidTimestamp,
            message: "One or more records have been rejected due to invalid timestamp".into(),
            record_errors: bad_time,
        });
    }
    if !bad_other.is_empty() {
        let shown: Vec<String> = bad_other
            .iter()
            .take(3)
            .map(|e| {
                format!(
                    "RecordError(batchIndex={}, message='{}')",
                    e.batch_index, e.message
                )
            })
            .collect();
        return Err(ProduceError {
            code: ErrorCode::InvalidRecord,
            message: format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                bad_other.len(),
                shown.join(", ")
            ),
            record_errors: bad_other,
        });
    }
    Ok(Checked {
        corrected_max_timestamp: (!rules.log_append_time
            && !append_time_flag
            && max_ts != batch.max_timestamp())
        .then_some(max_ts),
    })
}
