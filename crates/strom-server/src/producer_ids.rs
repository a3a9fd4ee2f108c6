//! Producer ids for InitProducerId, taken from blocks the controller
//! records, so an id is never handed out twice, even across restarts.

use std::ops::Range;
use std::sync::Mutex;

use strom_controller::{Controller, ControllerError};

#[derive(Default)]
pub(crate) struct ProducerIdAllocator {
    block: Mutex<Range<i64>>,
}

impl ProducerIdAllocator {
    pub(crate) fn next(
        &self,
        controller: &Controller,
        node_id: i32,
    ) -> Result<i64, ControllerError> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        if block.is_empty() {
            *block = controller.allocate_producer_ids(node_id)?;
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}
