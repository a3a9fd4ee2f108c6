//! A node that is not a voter (`process.roles=broker`) follows the
//! metadata as an observer, as Kafka's brokers do: it asks a voter,
//! preferably the leader, for what was committed after its image's offset
//! (a long poll), and applies it. It holds no Raft log: a restarted
//! observer is sent the whole image first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::MetadataImage;
use tokio::sync::{watch, Notify};
use tracing::{debug, info};

use super::machine::CatchUp;
use super::{PeerMessage, PeerReply, Transport};

/// How long a voter holds an observer's request while nothing new is
/// committed.
pub(super) const POLL_WAIT: Duration = Duration::from_millis(500);

/// How long an observer waits after a voter did not answer.
const RETRY: Duration = Duration::from_millis(100);

pub(super) struct Observer {
    pub(super) images: watch::Sender<Arc<MetadataImage>>,
    /// The active controller, as the last voter that answered knew it.
    pub(super) leader: watch::Sender<Option<i32>>,
    pub(super) term: AtomicU64,
    stopped: AtomicBool,
    stop: Notify,
}

impl Observer {
    pub(super) fn new() -> Observer {
        Observer {
            images: watch::channel(Arc::new(MetadataImage::empty())).0,
            leader: watch::channel(None).0,
            term: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }

    /// Applies what a voter sent; never moves the image back.
    fn apply(&self, catch_up: CatchUp) {
        let current = self.images.borrow().clone();
        let mut image = None::<MetadataImage>;
        if let Some((offset, records)) = catch_up.image {
            if offset > current.offset {
                let mut whole = MetadataImage::empty();
                whole.apply_mut(offset, &records);
                image = Some(whole);
            }
        }
        for (offset, records) in catch_up.proposals {
            let next = image.get_or_insert_with(|| (*current).clone());
            if offset > next.offset {
                next.apply_mut(offset, &records);
            }
        }
        if let Some(image) = image.filter(|i| i.offset > current.offset) {
            self.images.send_replace(Arc::new(image));
        }
    }

    /// Follows the voters until stopped.
    pub(super) async fn run(
        self: Arc<Self>,
        node_id: i32,
        voters: BTreeMap<i32, String>,
        transport: Arc<dyn Transport>,
        request_timeout: Duration,
    ) {
        let ids: Vec<i32> = voters.keys().copied().collect();
        let mut next = 0;
        while !self.stopped.load(Ordering::Acquire) {
            let known = *self.leader.borrow();
            let target = known
                .filter(|l| voters.contains_key(l))
                .unwrap_or_else(|| ids[next % ids.len()]);
            let message = PeerMessage::Observe {
                node_id,
                offset: self.images.borrow().offset,
                wait_ms: POLL_WAIT.as_millis() as u64,
            };
            let bytes = serde_json::to_vec(&message).expect("messages always serialise");
            let call = transport.call(&voters[&target], bytes);
            let answer = tokio::select! {
                answer = tokio::time::timeout(POLL_WAIT + request_timeout, call) => answer,
                () = self.stop.notified() => break,
            };
            let failure = match answer {
                Ok(Ok(reply)) => match serde_json::from_slice::<PeerReply>(&reply) {
                    Ok(PeerReply::Observed {
                        leader,
                        term,
                        catch_up,
                    }) => {
                        self.apply(catch_up);
                        self.term.store(term, Ordering::Release);
                        if leader != known {
                            info!(?leader, "active controller (as an observer sees it)");
                        }
                        self.leader.send_replace(leader);
                        if leader.is_none() {
                            // This voter knows no leader (an election):
                            // ask another, after a pause.
                            next += 1;
                            tokio::time::sleep(RETRY).await;
                        }
                        continue;
                    }
                    Ok(other) => format!("unexpected answer {other:?}"),
                    Err(e) => format!("unreadable answer: {e}"),
                },
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer in time".to_owned(),
            };
            debug!(voter = target, %failure, "observer cannot follow this voter; trying another");
            if known == Some(target) {
                self.leader.send_replace(None);
            }
            next += 1;
            tokio::time::sleep(RETRY).await;
        }
    }
}
