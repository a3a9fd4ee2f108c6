//! The broker's memory pool (`queued.max.request.bytes`): room for the
//! bytes of requests being read and of fetch data being read. A connection
//! takes room for a frame as soon as its length prefix arrives, before the
//! body is buffered, and gives it back once the response is written; a
//! fetch takes room for what it may read while it reads, and keeps room for
//! what it read until its response is written. When the pool is
//! full they wait (back-pressure: the socket is not read), so memory does
//! not grow with the number of clients sending large requests at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct MemoryPool {
    /// `None`: unbounded (-1).
    room: Option<Arc<Semaphore>>,
    /// The pool's size: no reservation asks for more than all of it.
    size: usize,
}

impl MemoryPool {
    /// A pool of `bytes` (negative: unbounded).
    pub(crate) fn new(bytes: i64) -> MemoryPool {
        let size = usize::try_from(bytes)
            .unwrap_or(0)
            .min(u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        MemoryPool {
            room: (bytes >= 0).then(|| Arc::new(Semaphore::new(size.max(1)))),
            size: size.max(1),
        }
    }

    /// Waits for room for `bytes` (at most the whole pool); `None` when the
    /// pool is unbounded. The room is given back when the permit drops.
    pub(crate) async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let room = self.room.as_ref()?;
        let n = bytes.clamp(1, self.size) as u32;
        room.clone().acquire_many_owned(n).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_room() {
        let pool = MemoryPool::new(100);
        let a = pool.reserve(60).await.unwrap();
        // More than is left waits...
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), pool.reserve(60));
        assert!(waiting.await.is_err());
        drop(a);
        // ...and goes once room is given back; a request larger than the
        // pool asks for all of it, not for the impossible.
        let _all = pool.reserve(1_000).await.unwrap();
        assert!(MemoryPool::new(-1).reserve(1 << 40).await.is_none());
    }
}
