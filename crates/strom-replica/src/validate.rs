//! The checks Kafka makes on a produced batch, with its error codes.

use strom_protocol::records::{self, Batch};
use strom_protocol::ErrorCode;

/// Checks the records of one partition in a Produce request (v3+): exactly
/// one magic-2 batch, whole, CRC-valid, within `max.message.bytes`, with a
/// consistent record count, not a control batch.
pub fn validate_produce_batch(
    records: &[u8],
    max_message_bytes: usize,
) -> Result<(), (ErrorCode, String)> {
    let invalid = |m: String| (ErrorCode::InvalidRecord, m);
    let mut iter = records::batches(records);
    let batch = match iter.next() {
        None => return Err(invalid("Produce requests with version 3 and above must have exactly one record batch per partition; found none".into())),
        Some(Err(e)) => return Err((ErrorCode::CorruptMessage, e.to_string())),
        Some(Ok(b)) => b,
    };
    if iter.next().is_some() {
        return Err(invalid("Produce requests with version 3 and above must have exactly one record batch per partition".into()));
    }
    if batch.magic() != 2 {
        return Err(invalid(format!("Produce requests with version 3 and above are only allowed to contain record batches with magic version 2; found {}", batch.magic())));
    }
    if batch.size() > max_message_bytes {
        return Err((
            ErrorCode::MessageTooLarge,
            format!(
                "The record batch is {} bytes, larger than max.message.bytes {max_message_bytes}",
                batch.size()
            ),
        ));
    }
    batch
        .verify()
        .map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
    check_header(&batch).map_err(invalid)
}

fn check_header(batch: &Batch<'_>) -> Result<(), String> {
    if batch.is_control() {
        return Err("Clients are not allowed to write control records".into());
    }
    if batch.records_count() <= 0 {
        return Err(format!(
            "Record batch has an invalid record count {}",
            batch.records_count()
        ));
    }
    if i64::from(batch.last_offset_delta()) != i64::from(batch.records_count()) - 1 {
        return Err(format!(
            "Record batch has last offset delta {} for {} records",
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
