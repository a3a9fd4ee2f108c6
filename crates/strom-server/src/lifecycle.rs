//! This broker's lifecycle with the controller: registration, heartbeats
//! every `broker.heartbeat.interval.ms` (which unfence it once it has
//! caught up with the metadata log, and keep it unfenced), and the
//! controlled shutdown that moves its leaderships away before it exits.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strom_controller::{BrokerHeartbeat, BrokerRegistration, Controller, HeartbeatReply};
use strom_protocol::ErrorCode;
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a refused or unanswered registration or heartbeat waits
/// before it is sent again.
const RETRY: Duration = Duration::from_millis(100);

pub(crate) struct Lifecycle {
    controller: Arc<Controller>,
    registration: BrokerRegistration,
    /// The epoch of this process's registration (-1 before it).
    epoch: AtomicI64,
    interval: Duration,
}

/// Why registration failed for good.
#[derive(Debug)]
pub(crate) struct Refused(pub String);

impl Lifecycle {
    pub(crate) fn new(
        controller: Arc<Controller>,
        registration: BrokerRegistration,
        interval: Duration,
    ) -> Lifecycle {
        Lifecycle {
            controller,
            registration,
            epoch: AtomicI64::new(-1),
            interval,
        }
    }

    /// The epoch of this process's registration (-1 before it).
    pub(crate) fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Registers with the active controller, waiting until a quorum of
    /// voters is up (as Kafka's brokers do): the cluster's id.
    pub(crate) async fn register(&self) -> Result<String, Refused> {
        loop {
            match self
                .controller
                .register_broker(self.registration.clone())
                .await
            {
                Ok(Ok(r)) => {
                    self.epoch.store(r.broker_epoch, Ordering::Release);
                    info!(
                        broker_epoch = r.broker_epoch,
                        "registered with the controller"
                    );
                    return Ok(r.cluster_id);
                }
                // Another live process holds this id: its session may end.
                Ok(Err(e)) if e.code == ErrorCode::DuplicateBrokerRegistration => {
                    warn!(error = %e.message, "registration refused; trying again");
                    tokio::time::sleep(self.interval).await;
                }
                Ok(Err(refused)) => return Err(Refused(refused.message)),
                Err(e) => {
                    info!(error = %e, "waiting for the controller quorum to register this broker");
                    tokio::time::sleep(RETRY * 2).await;
                }
            }
        }
    }

    /// One heartbeat; a registration the controller no longer knows is
    /// made again. `None` when it went unanswered.
    async fn beat(&self, want_shutdown: bool) -> Option<HeartbeatReply> {
        let heartbeat = BrokerHeartbeat {
            node_id: self.registration.node_id,
            broker_epoch: self.epoch.load(Ordering::Acquire),
            metadata_offset: self.controller.image().offset,
            want_shutdown,
        };
        match self.controller.heartbeat(heartbeat).await {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(e))
                if matches!(
                    e.code,
                    ErrorCode::StaleBrokerEpoch | ErrorCode::BrokerIdNotRegistered
                ) =>
            {
                warn!(error = %e.message, "the controller does not know this registration; registering again");
                if let Err(Refused(why)) = self.register().await {
                    warn!(%why, "registering again was refused");
                }
                None
            }
            Ok(Err(e)) => {
                warn!(error = %e.message, "heartbeat refused");
                None
            }
            Err(e) => {
                info!(error = %e, "heartbeat unanswered");
                None
            }
        }
    }

    /// Heartbeats until the controller unfences this broker.
    pub(crate) async fn wait_unfenced(&self) {
        loop {
            if let Some(reply) = self.beat(false).await {
                if !reply.is_fenced {
                    info!("unfenced: serving as a broker of the cluster");
                    return;
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Heartbeats on the interval, for as long as the task runs.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fenced = false;
        loop {
            tick.tick().await;
            if let Some(reply) = self.beat(false).await {
                if reply.is_fenced != fenced {
                    fenced = reply.is_fenced;
                    info!(fenced, "the controller changed this broker's fencing");
                }
            }
        }
    }

    /// Asks the controller to move this broker's leaderships away, and
    /// waits (until `timeout`) for it to say the broker may exit: whether
    /// it did.
    pub(crate) async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        info!("controlled shutdown: moving this broker's leaderships away");
        while Instant::now() < deadline {
            let beat = tokio::time::timeout_at(deadline, self.beat(true));
            if let Ok(Some(reply)) = beat.await {
                if reply.should_shutdown {
                    info!("controlled shutdown complete");
                    return true;
                }
            }
            tokio::time::sleep(RETRY).await;
        }
        warn!("controlled shutdown did not complete in time; stopping anyway");
        false
    }
}
