//! AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the
//! transaction, so that the commit marker reaches the offsets committed
//! with TxnOffsetCommit.

use strom_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::fenced_for_version;
use crate::broker::{now_ms, Broker};
use crate::internal::OFFSETS_TOPIC;

pub(super) async fn handle(
    broker: &Broker,
    req: &AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let outcome = broker.ensure_offsets_topic().await.and_then(|()| {
        let write = broker.transaction_write(req.transactional_id.0.as_str())?;
        let partition = broker.txns.offsets_partition_for(req.group_id.0.as_str());
        broker.txns.add_partitions(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &[(OFFSETS_TOPIC.to_owned(), partition)],
            now_ms(),
        )?;
        Ok(write)
    });
    let outcome = match outcome {
        Ok(write) => write.committed().await,
        Err(code) => Err(code),
    };
    let code = outcome
        .err()
        .map_or(0, |c| fenced_for_version(c, version, 2).code());
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
