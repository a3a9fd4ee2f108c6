//! EndTxn: commit or abort, answered once the decision (the Prepare
//! record) is committed. The markers follow, as in Kafka: at once where
//! they commit at once (a partition this node leads alone), else once
//! delivered and committed (see `txns`); until then the producer's next
//! transaction gets CONCURRENT_TRANSACTIONS. Transaction version 1: the
//! producer id and epoch stay; v5 answers them as -1, as Kafka does
//! without TV2.

use strom_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::fenced_for_version;
use crate::broker::{now_ms, Broker};

pub(super) async fn handle(broker: &Broker, req: &EndTxnRequest, version: i16) -> EndTxnResponse {
    let ended = broker
        .transaction_write(req.transactional_id.0.as_str())
        .and_then(|write| {
            broker
                .txns
                .end_txn(
                    req.transactional_id.0.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    req.committed,
                    now_ms(),
                )
                .map(|()| write)
        });
    let ended = match ended {
        Ok(write) => write.committed().await,
        Err(code) => Err(code),
    };
    let code = match ended {
        Ok(()) => 0,
        Err(code) => fenced_for_version(code, version, 2).code(),
    };
    EndTxnResponse::default().with_error_code(code)
}
