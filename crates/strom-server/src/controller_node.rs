//! A node with the controller role alone (`process.roles=controller`): a
//! voter of the controller quorum that serves its peers and, while it is
//! the active controller, brokers' registrations, heartbeats and
//! forwarded requests. It hosts no partitions and has no client listener.

use std::future::Future;
use std::sync::Arc;

use strom_controller::Controller;
use tracing::info;

use crate::broker::{open_controller, BrokerError, BrokerOptions};
use crate::dir_lock::DirLock;

pub struct ControllerNode {
    controller: Arc<Controller>,
    _dir_lock: DirLock,
}

impl ControllerNode {
    /// Opens the quorum's part in `opts.data_dir` and serves the peers on
    /// `opts.controller_listener` (which a controller must have). The
    /// client-facing options (address, rack) are not used.
    pub async fn open(mut opts: BrokerOptions) -> Result<ControllerNode, BrokerError> {
        let dir_lock = DirLock::acquire(&opts.data_dir)?;
        if !opts.voters.contains_key(&opts.node_id) {
            return Err(BrokerError::Refused(format!(
                "node {} has only the controller role but is not one of controller.quorum.voters",
                opts.node_id
            )));
        }
        let listener = opts.controller_listener.take().ok_or_else(|| {
            BrokerError::Refused("a controller needs a controller listener".into())
        })?;
        let controller = open_controller(&opts, Some(listener)).await?;
        Ok(ControllerNode {
            controller,
            _dir_lock: dir_lock,
        })
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// Serves until `shutdown` resolves, then leaves the quorum.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let sessions = tokio::spawn(self.controller.clone().run_sessions());
        let balancing = tokio::spawn(self.controller.clone().run_leader_balancing());
        shutdown.await;
        info!("controller shutting down");
        sessions.abort();
        balancing.abort();
        self.controller.shutdown().await;
    }
}
