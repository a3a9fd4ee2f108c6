//! Producer ids for InitProducerId, taken from blocks the controller
//! records, so an id is never handed out twice, even across restarts and
//! across brokers.
//!
//! A block is fetched from the controller before the one in use runs out
//! (as Kafka's broker prefetches at 90% use): handing out an id never
//! waits for the quorum, except for the first block, which InitProducerId
//! waits for ([`ProducerIdAllocator::ready`]). With no block at hand the
//! answer is COORDINATOR_LOAD_IN_PROGRESS, which clients retry, as Kafka's.

use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

use strom_controller::{Controller, PRODUCER_ID_BLOCK_SIZE};
use strom_coordinator::ProducerIdSource;
use strom_protocol::ErrorCode;
use tracing::{error, warn};

/// A new block is asked for once fewer than this many ids are left.
const PREFETCH_BELOW: i64 = PRODUCER_ID_BLOCK_SIZE / 10;

#[derive(Default)]
struct Blocks {
    current: Range<i64>,
    next: Option<Range<i64>>,
    fetching: bool,
}

pub(crate) struct ProducerIdAllocator {
    controller: Arc<Controller>,
    node_id: i32,
    blocks: Mutex<Blocks>,
    /// This allocator, for the fetch tasks it spawns.
    me: Weak<ProducerIdAllocator>,
    /// Wakes waiters of [`ProducerIdAllocator::ready`] when a fetch ends.
    fetched: tokio::sync::Notify,
}

impl ProducerIdAllocator {
    pub(crate) fn new(controller: Arc<Controller>, node_id: i32) -> Arc<Self> {
        Arc::new_cyclic(|me| ProducerIdAllocator {
            controller,
            node_id,
            blocks: Mutex::default(),
            me: me.clone(),
            fetched: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (at most one controller round trip) until an id is at hand.
    pub(crate) async fn ready(&self) {
        let notified = self.fetched.notified();
        {
            let blocks = self.lock();
            if !blocks.current.is_empty() || blocks.next.is_some() {
                return;
            }
        }
        self.prefetch();
        notified.await;
    }

    /// Starts fetching the next block unless one is at hand or on its way.
    fn prefetch(&self) {
        {
            let mut blocks = self.lock();
            if blocks.fetching || blocks.next.is_some() {
                return;
            }
            blocks.fetching = true;
        }
        // Outside a runtime (never in the server) there is no prefetch.
        let (Some(this), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            self.lock().fetching = false;
            return;
        };
        runtime.spawn(async move {
            let fetched = this.controller.allocate_producer_ids(this.node_id).await;
            {
                let mut blocks = this.lock();
                blocks.fetching = false;
                match fetched {
                    Ok(block) => blocks.next = Some(block),
                    Err(e) => error!(error = %e, "cannot allocate producer ids"),
                }
            }
            this.fetched.notify_waiters();
        });
    }
}

impl ProducerIdSource for ProducerIdAllocator {
    fn next_producer_id(&self) -> Result<i64, ErrorCode> {
        let id = {
            let mut blocks = self.lock();
            if blocks.current.is_empty() {
                if let Some(next) = blocks.next.take() {
                    blocks.current = next;
                }
            }
            let block = &mut blocks.current;
            if block.is_empty() {
                None
            } else {
                block.start += 1;
                Some((block.start - 1, block.end - block.start))
            }
        };
        match id {
            Some((id, left)) => {
                if left < PREFETCH_BELOW {
                    self.prefetch();
                }
                Ok(id)
            }
            None => {
                warn!("no producer ids at hand; a block is being fetched");
                self.prefetch();
                Err(ErrorCode::CoordinatorLoadInProgress)
            }
        }
    }
}
