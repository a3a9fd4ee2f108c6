//! Producer ids for InitProducerId, taken from blocks the controller
//! records, so an id is never handed out twice, even across restarts.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use strom_controller::Controller;
use strom_coordinator::ProducerIdSource;
use strom_protocol::ErrorCode;
use tracing::error;

pub(crate) struct ProducerIdAllocator {
    controller: Arc<Controller>,
    node_id: i32,
    block: Mutex<Range<i64>>,
}

impl ProducerIdAllocator {
    pub(crate) fn new(controller: Arc<Controller>, node_id: i32) -> Self {
        ProducerIdAllocator {
            controller,
            node_id,
            block: Mutex::new(0..0),
        }
    }
}

impl ProducerIdSource for ProducerIdAllocator {
    fn next_producer_id(&self) -> Result<i64, ErrorCode> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        if block.is_empty() {
            *block = self
                .controller
                .allocate_producer_ids(self.node_id)
                .map_err(|e| {
                    error!(error = %e, "cannot allocate producer ids");
                    ErrorCode::CoordinatorNotAvailable
                })?;
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}
