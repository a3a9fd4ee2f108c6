//! Wiring of the transaction coordinator: markers are appended to the
//! partitions this node leads (Kafka's WriteTxnMarkers, without the network
//! hop; a partition led by another broker is retried until it leads here or
//! is gone: WriteTxnMarkers to other brokers is not written yet), and a
//! marker on a `__consumer_offsets` partition settles the offsets committed
//! in the transaction.

use std::sync::Arc;

use strom_coordinator::{GroupCoordinator, MarkerWriter};
use strom_protocol::records::ControlMarker;
use strom_protocol::ErrorCode;
use strom_replica::ReplicaManager;
use tracing::error;

use crate::broker::now_ms;
use crate::internal::OFFSETS_TOPIC;

/// The coordinator epoch written into markers: the leader epoch of the
/// `__transaction_state` partition, constant on one node.
const COORDINATOR_EPOCH: i32 = 0;

pub(crate) struct LocalMarkers {
    pub(crate) replicas: Arc<ReplicaManager>,
    pub(crate) groups: Arc<GroupCoordinator>,
}

impl MarkerWriter for LocalMarkers {
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        // UNKNOWN_TOPIC_OR_PARTITION only for a partition the metadata no
        // longer has (it needs no marker); one led elsewhere is retried.
        let p = self.replicas.leading(topic, partition)?;
        let marker = if commit {
            ControlMarker::Commit
        } else {
            ControlMarker::Abort
        };
        match p.append_marker(producer_id, epoch, marker, COORDINATOR_EPOCH, now_ms()) {
            Ok(_) => {}
            Err((ErrorCode::InvalidProducerEpoch, message)) => {
                // The partition saw a newer epoch of this producer than the
                // coordinator's: nothing of this transaction can be open
                // there any more. Kafka treats this as fatal for the marker;
                // retrying would never succeed.
                error!(topic, partition, producer_id, epoch, %message, "marker refused; dropping it");
                if topic == OFFSETS_TOPIC {
                    // Offsets pending under the stale epoch would otherwise
                    // stay unstable for ever.
                    self.groups
                        .complete_transaction(partition, producer_id, false);
                }
                return Ok(());
            }
            Err((code, _)) => return Err(code),
        }
        if topic == OFFSETS_TOPIC {
            self.groups
                .complete_transaction(partition, producer_id, commit);
        }
        Ok(())
    }
}
