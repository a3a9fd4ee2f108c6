//! The controller's decisions.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strom_metadata::config::{validate_topic_configs, StaticConfig};
use strom_metadata::{ConfigResource, MetadataImage, MetadataRecord, TopicImage, Uuid};
use strom_protocol::ErrorCode;
use tokio::sync::watch;
use tracing::info;

use crate::log;
use crate::quorum::{Quorum, QuorumConfig, QuorumError, QuorumStatus, Transport};
use crate::validate::{validate_topic_name, CLUSTER_METADATA_TOPIC};
use alter_partition::decide_alter_partition;
pub use alter_partition::{IsrOutcomes, IsrUpdate, IsrUpdated};

/// Producer ids are handed to a broker this many at a time, like Kafka.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// At most this many partitions are created by one CreateTopics or
/// CreatePartitions request (Kafka's `MAX_PARTITIONS_PER_BATCH`), checked
/// before anything is decided or allocated, `validate_only` included.
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

fn too_many_partitions() -> ApiError {
    ApiError::new(
        ErrorCode::PolicyViolation,
        "Excessively large number of partitions per request.",
    )
}

/// A refusal with the Kafka error code to send and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct ApiError {
    #[serde(with = "error_code")]
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Error codes travel as Kafka's numbers.
mod error_code {
    use serde::{Deserialize, Deserializer, Serializer};
    use strom_protocol::ErrorCode;

    pub(super) fn serialize<S: Serializer>(code: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i16(code.code())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let code = i16::deserialize(d)?;
        Ok(ErrorCode::try_from_code(code).unwrap_or(ErrorCode::UnknownServerError))
    }
}

/// Why the controller could not decide a request at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    /// No active controller is known (an election is under way).
    #[error("there is no active controller (known: {leader:?})")]
    NotController { leader: Option<i32> },
    /// The decision was not committed in time; it may still be.
    #[error("the controller quorum did not commit in time")]
    Timeout,
    #[error("the controller cannot serve: {0}")]
    Unavailable(String),
    /// The active controller did not answer a forwarded request.
    #[error("{0}")]
    Unreachable(String),
}

impl From<QuorumError> for ControllerError {
    fn from(e: QuorumError) -> Self {
        match e {
            QuorumError::NotLeader { leader } => ControllerError::NotController { leader },
            QuorumError::Timeout => ControllerError::Timeout,
            QuorumError::Unavailable(m) => ControllerError::Unavailable(m),
        }
    }
}

impl ControllerError {
    /// The Kafka error code a client is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControllerError::NotController { .. } => ErrorCode::NotController,
            ControllerError::Timeout | ControllerError::Unreachable(_) => {
                ErrorCode::RequestTimedOut
            }
            ControllerError::Unavailable(_) => ErrorCode::UnknownServerError,
        }
    }
}

/// One topic of a CreateTopics request, as the controller needs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    /// Manual placement: partition -> replicas.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: Vec<(String, String)>,
}

/// What CreateTopics reports for a created (or validated) topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatePartitionsRequest {
    pub name: String,
    pub count: i32,
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// A broker as it registers with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// The cluster id this node's data directory records (`None` for a
    /// new node, which takes the cluster's).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// New each time the broker's process starts.
    #[serde(default)]
    pub incarnation_id: Uuid,
}

/// A request to the active controller, as it travels when a node that is
/// not the active one forwards it (Kafka's forwarding).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker(BrokerRegistration),
    BrokerHeartbeat(BrokerHeartbeat),
    CreateTopics {
        topics: Vec<CreateTopicRequest>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        requests: Vec<CreatePartitionsRequest>,
        validate_only: bool,
    },
    AlterConfigs {
        requests: Vec<AlterConfigsRequest>,
        validate_only: bool,
    },
    AllocateProducerIds {
        node_id: i32,
    },
    /// The quorum's state as the active controller knows it.
    DescribeQuorum,
    /// A leader's ISR changes.
    AlterPartition {
        broker_id: i32,
        broker_epoch: i64,
        updates: Vec<IsrUpdate>,
    },
    /// ElectLeaders: preferred (or unclean) elections of these partitions.
    ElectLeaders {
        partitions: Vec<(String, i32)>,
        unclean: bool,
    },
    /// AlterPartitionReassignments: start, replace or cancel reassignments.
    AlterPartitionReassignments {
        requests: Vec<ReassignRequest>,
        allow_replication_factor_change: bool,
    },
    /// Nothing to decide: answered once the asking node has applied what
    /// the active controller had (see [`Controller::catch_up`]).
    CatchUp,
}

/// What the active controller answers to a [`ControllerRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The cluster's id and the broker's epoch, or why it is refused.
    Registered(Result<Registered, ApiError>),
    Heartbeat(Result<HeartbeatReply, ApiError>),
    CreatedTopics(Vec<Result<CreatedTopic, ApiError>>),
    DeletedTopics(Vec<Result<Uuid, ApiError>>),
    /// Per-item outcomes (CreatePartitions, AlterConfigs).
    Items(Vec<Result<(), ApiError>>),
    ProducerIds {
        start: i64,
        end: i64,
    },
    Quorum(QuorumStatus),
    AlterPartition(Result<IsrOutcomes, ApiError>),
}

/// What a controller-to-controller message starts with: Raft's messages
/// and forwarded requests share the controller listener.
const FORWARDED: u8 = b'C';

/// How long a request waits before it goes to a leader that replaced the
/// one that refused it.
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Decides requests on the active controller (the quorum's leader), has
/// them committed by the quorum, and forwards them to the active
/// controller when this node is not it.
pub struct Controller {
    config: StaticConfig,
    quorum: Quorum,
    transport: Arc<dyn Transport>,
    /// One decision at a time, each on the image every earlier one made.
    turn: tokio::sync::Mutex<()>,
    /// Brokers' heartbeats, as this node heard them while active.
    sessions: std::sync::Mutex<Sessions>,
}

impl Controller {
    /// Opens this node's controller: its part of the quorum (formed on a
    /// first start), with the metadata of a single-node release's data
    /// directory carried into the quorum's log.
    pub async fn open(
        quorum: QuorumConfig,
        transport: Arc<dyn Transport>,
        config: StaticConfig,
    ) -> Result<Controller, ControllerError> {
        let dir = quorum.dir.clone();
        let quorum = Quorum::open(quorum, transport.clone()).await?;
        let controller = Controller {
            config,
            quorum,
            transport,
            turn: tokio::sync::Mutex::new(()),
            sessions: std::sync::Mutex::new(Sessions::default()),
        };
        controller.carry_legacy_log(&dir).await?;
        let image = controller.image();
        info!(
            offset = image.offset,
            topics = image.topics().len(),
            "metadata image loaded"
        );
        Ok(controller)
    }

    /// Proposes what a single-node release's metadata log in `dir` holds
    /// as the quorum's first metadata, once, then renames that log.
    async fn carry_legacy_log(&self, dir: &Path) -> Result<(), ControllerError> {
        let io = |e: std::io::Error| {
            ControllerError::Unavailable(format!(
                "cannot read the old metadata log in {}: {e}",
                dir.display()
            ))
        };
        let Some(legacy) = log::read_legacy(dir).map_err(io)? else {
            return Ok(());
        };
        if self.quorum.voters().len() > 1 || !self.quorum.is_voter() {
            return Err(ControllerError::Unavailable(format!(
                "{} holds the metadata log of a single-node Strom; start this node once as a single node (without controller.quorum.voters) so that its metadata moves into the quorum's log, then start it with the cluster's voters",
                dir.display()
            )));
        }
        self.quorum
            .wait_for_leader(self.quorum.write_timeout())
            .await?;
        let _turn = self.turn.lock().await;
        self.quorum.ensure_current().await?;
        // The carried metadata is the first the quorum commits: an image
        // with any is one a crash interrupted after the carry was committed.
        if self.quorum.image().to_records().is_empty() {
            let records = legacy.to_records();
            info!(
                records = records.len(),
                topics = legacy.topics().len(),
                "carrying the single-node metadata log into the quorum"
            );
            if !records.is_empty() {
                self.quorum.propose(records).await?;
            }
        }
        std::fs::rename(
            dir.join(log::LEGACY_LOG),
            dir.join(log::LEGACY_LOG_MIGRATED),
        )
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(io)?;
        Ok(())
    }

    pub fn config(&self) -> &StaticConfig {
        &self.config
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    /// Follows images as they are published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.quorum.subscribe()
    }

    /// Decides `request` on the active controller: here when this node is
    /// it, else forwarded to it. Waits (up to the quorum's write timeout)
    /// while there is no leader, and follows leadership when it moves
    /// before the request is decided.
    pub async fn submit(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, ControllerError> {
        let me = self.quorum.node_id();
        let deadline = tokio::time::Instant::now() + self.quorum.write_timeout();
        loop {
            // During an election (or the first moments of a fresh
            // quorum) there is no leader yet: wait for one.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let leader = self.quorum.wait_for_leader(left).await?;
            let outcome = if leader == me {
                self.decide(request.clone()).await.map(|(reply, _)| reply)
            } else {
                match self.forward(leader, &request).await {
                    Ok((reply, offset)) => {
                        // Answered once this node has applied the change too,
                        // so that what the client asks next sees it.
                        self.await_applied(offset, deadline).await;
                        Ok(reply)
                    }
                    Err(e) => Err(e),
                }
            };
            match outcome {
                // Leadership moved before the request was decided: nothing
                // was written, so it goes to the new leader.
                Err(ControllerError::NotController { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                // The leader this node knows is gone (killed, cut off):
                // wait for the quorum to elect another, until the deadline.
                Err(ControllerError::Unreachable(why)) => {
                    if tokio::time::Instant::now() >= deadline {
                        info!(%why, "no active controller reachable in time");
                        return Err(ControllerError::Timeout);
                    }
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Waits until this node's image holds `offset`, at most until
    /// `deadline` (the change is committed either way).
    async fn await_applied(&self, offset: i64, deadline: tokio::time::Instant) {
        let mut images = self.quorum.subscribe();
        let applied = images.wait_for(|image| image.offset >= offset);
        if tokio::time::timeout_at(deadline, applied).await.is_err() {
            info!(
                offset,
                "answering before this node applied the committed change"
            );
        }
    }

    /// Sends `request` to the active controller: its answer, and the offset
    /// of the metadata log that holds the decision.
    async fn forward(
        &self,
        leader: i32,
        request: &ControllerRequest,
    ) -> Result<(ControllerReply, i64), ControllerError> {
        let Some(address) = self.quorum.voters().get(&leader) else {
            return Err(ControllerError::NotController { leader: None });
        };
        let mut message = vec![FORWARDED];
        serde_json::to_writer(&mut message, request).expect("requests always serialise");
        let call = self.transport.call(address, message);
        let reply = match tokio::time::timeout(self.quorum.write_timeout(), call).await {
            Err(_) => return Err(ControllerError::Timeout),
            Ok(Err(e)) => {
                return Err(ControllerError::Unreachable(format!(
                    "cannot reach the active controller {leader} at {address}: {e}"
                )))
            }
            Ok(Ok(reply)) => reply,
        };
        serde_json::from_slice::<Result<(ControllerReply, i64), ControllerError>>(&reply)
            .unwrap_or_else(|e| {
                Err(ControllerError::Unavailable(format!(
                    "unreadable answer from the active controller {leader}: {e}"
                )))
            })
    }

    /// Answers what a peer's [`Transport`] sent: Raft's messages, and
    /// requests forwarded to this node as the active controller.
    pub async fn handle_peer(&self, message: &[u8]) -> Vec<u8> {
        match message.split_first() {
            Some((&FORWARDED, request)) => {
                let outcome = match serde_json::from_slice::<ControllerRequest>(request) {
                    Ok(request) => self.decide(request).await,
                    Err(e) => Err(ControllerError::Unavailable(format!(
                        "unreadable forwarded request: {e}"
                    ))),
                };
                serde_json::to_vec(&outcome).expect("replies always serialise")
            }
            _ => self.quorum.handle_peer(message).await,
        }
    }

    /// Decides `request` here, as the active controller: on an image that
    /// holds every committed decision, and answered once its records are
    /// committed, with the offset that holds them (or the image's, when
    /// there were none).
    async fn decide(
        &self,
        request: ControllerRequest,
    ) -> Result<(ControllerReply, i64), ControllerError> {
        let _turn = self.turn.lock().await;
        self.quorum.ensure_current().await?;
        let image = self.quorum.image();
        let unclean = self.unclean_policy(&image);
        let (mut reply, records) = match request {
            ControllerRequest::RegisterBroker(b) => {
                let node = b.node_id;
                let live = self.session_live(node);
                match decide_registration(&image, b, live, &unclean) {
                    Ok((registered, records)) => {
                        self.renew_session(node);
                        (ControllerReply::Registered(Ok(registered)), records)
                    }
                    Err(e) => (ControllerReply::Registered(Err(e)), Vec::new()),
                }
            }
            ControllerRequest::BrokerHeartbeat(hb) => {
                match decide_heartbeat(&image, &hb, &unclean) {
                    Ok((r, records)) => {
                        self.renew_session(hb.node_id);
                        (ControllerReply::Heartbeat(Ok(r)), records)
                    }
                    Err(e) => (ControllerReply::Heartbeat(Err(e)), Vec::new()),
                }
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => {
                let (r, records) = self.decide_create_topics(&image, topics, validate_only);
                (ControllerReply::CreatedTopics(r), records)
            }
            ControllerRequest::DeleteTopics { names } => {
                let (r, records) = self.decide_delete_topics(&image, &names);
                (ControllerReply::DeletedTopics(r), records)
            }
            ControllerRequest::CreatePartitions {
                requests,
                validate_only,
            } => {
                let (r, records) = decide_create_partitions(&image, requests, validate_only);
                (ControllerReply::Items(r), records)
            }
            ControllerRequest::AlterConfigs {
                requests,
                validate_only,
            } => {
                let (r, records) = configs::decide_alter_configs(&image, requests, validate_only);
                (ControllerReply::Items(r), records)
            }
            ControllerRequest::CatchUp => (ControllerReply::Items(Vec::new()), Vec::new()),
            ControllerRequest::DescribeQuorum => {
                (ControllerReply::Quorum(self.quorum.status()), Vec::new())
            }
            ControllerRequest::AlterPartition {
                broker_id,
                broker_epoch,
                updates,
            } => match decide_alter_partition(&image, broker_id, broker_epoch, &updates) {
                Ok((outcomes, records)) => (ControllerReply::AlterPartition(Ok(outcomes)), records),
                Err(e) => (ControllerReply::AlterPartition(Err(e)), Vec::new()),
            },
            ControllerRequest::ElectLeaders {
                partitions,
                unclean,
            } => {
                let (outcomes, records) = decide_elections(&image, &partitions, unclean);
                (ControllerReply::Items(outcomes), records)
            }
            ControllerRequest::AlterPartitionReassignments {
                requests,
                allow_replication_factor_change,
            } => {
                let (outcomes, records) =
                    decide_reassignments(&image, &requests, allow_replication_factor_change);
                (ControllerReply::Items(outcomes), records)
            }
            ControllerRequest::AllocateProducerIds { node_id } => {
                let start = image.next_producer_id;
                let end = start + PRODUCER_ID_BLOCK_SIZE;
                let record = MetadataRecord::ProducerIds {
                    node_id,
                    next_producer_id: end,
                };
                (ControllerReply::ProducerIds { start, end }, vec![record])
            }
        };
        let offset = if records.is_empty() {
            image.offset
        } else {
            self.quorum.propose(records).await?
        };
        // A new registration's epoch is the offset that holds it.
        if let ControllerReply::Registered(Ok(r)) = &mut reply {
            if r.broker_epoch < 0 {
                r.broker_epoch = offset;
            }
        }
        Ok((reply, offset))
    }

    /// `unclean.leader.election.enable` of each topic: its override, else
    /// the cluster-wide dynamic default, else this node's static config.
    fn unclean_policy(&self, image: &MetadataImage) -> impl Fn(&TopicImage) -> bool {
        const KEY: &str = "unclean.leader.election.enable";
        let default = self
            .config
            .with_dynamic(None, image.broker_configs(None))
            .get_bool(KEY);
        move |t: &TopicImage| t.configs.get(KEY).map_or(default, |v| v == "true")
    }

    /// Whether `node`'s session lasts (a controller that just became
    /// active gives every broker a whole one).
    fn session_live(&self, node: i32) -> bool {
        let timeout = self.session_timeout();
        let term = self.quorum.term();
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_live(term, node, std::time::Instant::now(), timeout)
    }

    fn renew_session(&self, node: i32) {
        let term = self.quorum.term();
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .renew(term, node, std::time::Instant::now());
    }

    /// `broker.session.timeout.ms`.
    pub fn session_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.config.get_i64("broker.session.timeout.ms").max(1) as u64
        )
    }

    /// On the active controller: fences the brokers whose sessions ended,
    /// moving their leaderships away. Returns how many were fenced.
    pub async fn fence_expired_brokers(&self) -> Result<usize, ControllerError> {
        if self.quorum.leader() != Some(self.quorum.node_id()) {
            return Ok(0);
        }
        let _turn = self.turn.lock().await;
        self.quorum.ensure_current().await?;
        let image = self.quorum.image();
        let expired = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expired(
                self.quorum.term(),
                &image,
                std::time::Instant::now(),
                self.session_timeout(),
            );
        if expired.is_empty() {
            return Ok(0);
        }
        let records = decide_fencing(&image, &expired, &self.unclean_policy(&image));
        info!(brokers = ?expired, partitions = records.len() - expired.len(), "fencing brokers whose sessions expired");
        self.quorum.propose(records).await?;
        Ok(expired.len())
    }

    /// Fences expired brokers while this node is the active controller,
    /// checking several times per session timeout, until the quorum stops.
    pub async fn run_sessions(self: Arc<Self>) {
        let period = (self.session_timeout() / 8).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(1),
        );
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.quorum.is_shut_down() {
                return;
            }
            if let Err(e) = self.fence_expired_brokers().await {
                info!(error = %e, "cannot fence expired brokers now");
            }
        }
    }

    /// Registers (or re-registers with a new address) a broker; answers
    /// the cluster's id, or INCONSISTENT_CLUSTER_ID when the broker's data
    /// directory belongs to another cluster.
    pub async fn register_broker(
        &self,
        broker: BrokerRegistration,
    ) -> Result<Result<Registered, ApiError>, ControllerError> {
        match self
            .submit(ControllerRequest::RegisterBroker(broker))
            .await?
        {
            ControllerReply::Registered(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// A broker's heartbeat: unfences it once it has caught up, and moves
    /// its leaderships away when it wants to shut down.
    pub async fn heartbeat(
        &self,
        heartbeat: BrokerHeartbeat,
    ) -> Result<Result<HeartbeatReply, ApiError>, ControllerError> {
        match self
            .submit(ControllerRequest::BrokerHeartbeat(heartbeat))
            .await?
        {
            ControllerReply::Heartbeat(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates topics (or only validates them). Each topic succeeds or fails alone.
    pub async fn create_topics(
        &self,
        topics: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<CreatedTopic, ApiError>>, ControllerError> {
        let request = ControllerRequest::CreateTopics {
            topics,
            validate_only,
        };
        match self.submit(request).await? {
            ControllerReply::CreatedTopics(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes topics by name; each succeeds or fails alone.
    pub async fn delete_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<Uuid, ApiError>>, ControllerError> {
        let request = ControllerRequest::DeleteTopics {
            names: names.to_vec(),
        };
        match self.submit(request).await? {
            ControllerReply::DeletedTopics(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Grows topics to a new partition count.
    pub async fn create_partitions(
        &self,
        requests: Vec<CreatePartitionsRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ApiError>>, ControllerError> {
        let request = ControllerRequest::CreatePartitions {
            requests,
            validate_only,
        };
        match self.submit(request).await? {
            ControllerReply::Items(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes the config overrides of topics and brokers (or only
    /// validates the changes). Each resource succeeds or fails alone, and
    /// is changed whole or not at all.
    pub async fn alter_configs(
        &self,
        requests: Vec<AlterConfigsRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ApiError>>, ControllerError> {
        let request = ControllerRequest::AlterConfigs {
            requests,
            validate_only,
        };
        match self.submit(request).await? {
            ControllerReply::Items(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes the ISRs a leader asks to change (AlterPartition): each
    /// partition's outcome, or why the broker is refused as a whole.
    pub async fn alter_partition(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        updates: Vec<IsrUpdate>,
    ) -> Result<Result<IsrOutcomes, ApiError>, ControllerError> {
        let request = ControllerRequest::AlterPartition {
            broker_id,
            broker_epoch,
            updates,
        };
        match self.submit(request).await? {
            ControllerReply::AlterPartition(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Starts, replaces or (`replicas` `None`) cancels the reassignment of
    /// each partition: each one's outcome.
    pub async fn alter_partition_reassignments(
        &self,
        requests: Vec<ReassignRequest>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<Result<(), ApiError>>, ControllerError> {
        let request = ControllerRequest::AlterPartitionReassignments {
            requests,
            allow_replication_factor_change,
        };
        match self.submit(request).await? {
            ControllerReply::Items(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Elects the preferred replica (or, `unclean`, any replica of a
    /// partition without a leader) of each partition: each one's outcome.
    pub async fn elect_leaders(
        &self,
        partitions: Vec<(String, i32)>,
        unclean: bool,
    ) -> Result<Vec<Result<(), ApiError>>, ControllerError> {
        let request = ControllerRequest::ElectLeaders {
            partitions,
            unclean,
        };
        match self.submit(request).await? {
            ControllerReply::Items(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// While this node is the active controller, every
    /// `leader.imbalance.check.interval.seconds` (with
    /// `auto.leader.rebalance.enable`): moves leadership back to each
    /// partition's preferred replica where it is in sync and active again
    /// (after a failover, a restart), as Kafka's controller does.
    pub async fn run_leader_balancing(self: Arc<Self>) {
        if !self.config.get_bool("auto.leader.rebalance.enable") {
            return;
        }
        let every = std::time::Duration::from_secs(
            self.config
                .get_i64("leader.imbalance.check.interval.seconds")
                .max(1) as u64,
        );
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.quorum.leader() != Some(self.quorum.node_id()) {
                continue;
            }
            let wanted = imbalanced(&self.image());
            if wanted.is_empty() {
                continue;
            }
            let count = wanted.len();
            match self.elect_leaders(wanted, false).await {
                Ok(outcomes) => {
                    let moved = outcomes.iter().filter(|o| o.is_ok()).count();
                    info!(moved, of = count, "preferred leaders elected");
                }
                Err(e) => {
                    info!(error = %e, "preferred leader balancing failed; trying again later")
                }
            }
        }
    }

    /// Hands `node_id` the next block of producer ids.
    pub async fn allocate_producer_ids(&self, node_id: i32) -> Result<Range<i64>, ControllerError> {
        match self
            .submit(ControllerRequest::AllocateProducerIds { node_id })
            .await?
        {
            ControllerReply::ProducerIds { start, end } => Ok(start..end),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until this node's image holds everything the active
    /// controller had applied when asked, so that what is answered from it
    /// next is as current as the controller's state (reads Kafka answers
    /// on the controller, such as ListPartitionReassignments, see every
    /// change committed before them, wherever they were made).
    pub async fn catch_up(&self) -> Result<(), ControllerError> {
        match self.submit(ControllerRequest::CatchUp).await? {
            ControllerReply::Items(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// The quorum's state from the active controller, which alone knows
    /// the other voters' progress (what DescribeQuorum serves).
    pub async fn describe_quorum(&self) -> Result<QuorumStatus, ControllerError> {
        match self.submit(ControllerRequest::DescribeQuorum).await? {
            ControllerReply::Quorum(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// Stops taking part in the quorum.
    pub async fn shutdown(&self) {
        self.quorum.shutdown().await;
    }

    fn decide_create_topics(
        &self,
        current: &MetadataImage,
        requests: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> (Vec<Result<CreatedTopic, ApiError>>, Vec<MetadataRecord>) {
        let total = self.requested_partitions(&requests);
        if total > MAX_PARTITIONS_PER_REQUEST {
            let refused = requests.iter().map(|_| Err(too_many_partitions()));
            return (refused.collect(), Vec::new());
        }
        let mut results = Vec::with_capacity(requests.len());
        let mut records = Vec::new();
        // Each topic is decided on the image with the earlier ones applied
        // (a name given twice is created once).
        let mut image = current.clone();
        for req in requests {
            let result = self.decide_topic(&image, &req).map(|(created, recs)| {
                if !validate_only {
                    let offset = image.offset;
                    image.apply_mut(offset, &recs);
                    records.extend(recs);
                }
                created
            });
            results.push(result);
        }
        (results, records)
    }

    /// How many partitions `requests` would create (a count of -1 taking
    /// `num.partitions`), counted before anything is decided.
    pub fn requested_partitions(&self, requests: &[CreateTopicRequest]) -> i64 {
        let default_partitions = self.config.get_i64("num.partitions");
        requests
            .iter()
            .map(|r| match (r.assignments.len(), r.num_partitions) {
                (0, -1) => default_partitions,
                (0, n) => i64::from(n.max(0)),
                (n, _) => n as i64,
            })
            .sum()
    }

    fn decide_topic(
        &self,
        image: &MetadataImage,
        req: &CreateTopicRequest,
    ) -> Result<(CreatedTopic, Vec<MetadataRecord>), ApiError> {
        validate_topic_name(&req.name)
            .map_err(|m| ApiError::new(ErrorCode::InvalidTopicException, m))?;
        if req.name == CLUSTER_METADATA_TOPIC {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited."),
            ));
        }
        if image.topic(&req.name).is_some() {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{}' already exists.", req.name),
            ));
        }
        if let Some(other) = image.colliding_topic(&req.name) {
            return Err(ApiError::new(
                ErrorCode::InvalidTopicException,
                format!(
                    "Topic '{}' collides with existing topic: {}",
                    req.name, other
                ),
            ));
        }
        let brokers = active_brokers(image);
        let assignments: Vec<Vec<i32>> = if !req.assignments.is_empty() {
            if req.num_partitions != -1 || req.replication_factor != -1 {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let expected: Vec<i32> = (0..req.assignments.len() as i32).collect();
            if req.assignments.keys().copied().collect::<Vec<_>>() != expected {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    "Partitions must be numbered consecutively from 0.",
                ));
            }
            for (p, replicas) in &req.assignments {
                check_assignment(image, *p, replicas)?;
            }
            req.assignments.values().cloned().collect()
        } else {
            let partitions = match req.num_partitions {
                -1 => self.config.get_i64("num.partitions") as i32,
                n if n <= 0 => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidPartitions,
                        "Number of partitions must be larger than 0.",
                    ))
                }
                n => n,
            };
            let rf = match req.replication_factor {
                -1 => self.config.get_i64("default.replication.factor") as i16,
                n if n <= 0 => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicationFactor,
                        "Replication factor must be larger than 0.",
                    ))
                }
                n => n,
            };
            if rf as usize > brokers.len() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.", brokers.len()),
                ));
            }
            placement::place(&brokers, 0, partitions, rf as usize)
        };
        let configs =
            validate_topic_configs(req.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: req.name.clone(),
            topic_id,
        }];
        records.extend(configs.iter().map(|(k, v)| MetadataRecord::Config {
            resource: ConfigResource::Topic(req.name.clone()),
            name: k.clone(),
            value: Some(v.clone()),
        }));
        records.extend(
            assignments
                .iter()
                .enumerate()
                .map(|(p, replicas)| new_partition(image, topic_id, p as i32, replicas)),
        );
        let created = CreatedTopic {
            topic_id,
            num_partitions: assignments.len() as i32,
            replication_factor: assignments[0].len() as i16,
            configs,
        };
        Ok((created, records))
    }

    fn decide_delete_topics(
        &self,
        image: &MetadataImage,
        names: &[String],
    ) -> (Vec<Result<Uuid, ApiError>>, Vec<MetadataRecord>) {
        if !self.config.get_bool("delete.topic.enable") {
            let e = ApiError::new(
                ErrorCode::TopicDeletionDisabled,
                "Topic deletion is disabled.",
            );
            return (names.iter().map(|_| Err(e.clone())).collect(), Vec::new());
        }
        let mut records = Vec::new();
        let results = names
            .iter()
            .map(|name| match image.topic(name) {
                Some(t) if !records.contains(&MetadataRecord::RemoveTopic { topic_id: t.id }) => {
                    records.push(MetadataRecord::RemoveTopic { topic_id: t.id });
                    Ok(t.id)
                }
                _ => Err(ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )),
            })
            .collect();
        (results, records)
    }
}

/// The brokers new replicas go to: unfenced and not shutting down.
fn active_brokers(image: &MetadataImage) -> Vec<placement::Candidate<'_>> {
    image
        .brokers()
        .filter(|b| b.is_active())
        .map(|b| (b.node_id, b.rack.as_deref()))
        .collect()
}

/// A manual assignment names registered brokers, once each, at least one
/// of them active (to lead).
fn check_assignment(
    image: &MetadataImage,
    partition: i32,
    replicas: &[i32],
) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, m));
    if replicas.is_empty() {
        return invalid(format!("The manual partition assignment includes an empty replica list for partition {partition}."));
    }
    if let Some(r) = replicas.iter().find(|r| image.broker(**r).is_none()) {
        return invalid(format!("The manual partition assignment includes broker {r}, but no such broker is registered."));
    }
    let mut dedup = replicas.to_vec();
    dedup.sort_unstable();
    dedup.dedup();
    if dedup.len() != replicas.len() {
        return invalid(format!(
            "The manual partition assignment includes the broker(s) {replicas:?} more than once."
        ));
    }
    if !replicas.iter().any(|r| image.is_active(*r)) {
        return invalid(format!("All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."));
    }
    Ok(())
}

/// The record of a new partition on `replicas`, led by the first active
/// one, with its active replicas in sync (an empty log is held by all of
/// them alike), as Kafka creates partitions.
fn new_partition(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: &[i32],
) -> MetadataRecord {
    let leader = replicas
        .iter()
        .copied()
        .find(|r| image.is_active(*r))
        .unwrap_or(replicas[0]);
    let mut isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| image.is_active(*r))
        .collect();
    if isr.is_empty() {
        isr.push(leader);
    }
    MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: replicas.to_vec(),
        isr,
        leader,
        leader_epoch: 0,
        partition_epoch: Some(0),
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}

/// Grows topics to a new partition count.
fn decide_create_partitions(
    image: &MetadataImage,
    requests: Vec<CreatePartitionsRequest>,
    validate_only: bool,
) -> (Vec<Result<(), ApiError>>, Vec<MetadataRecord>) {
    let added: i64 = requests
        .iter()
        .filter_map(|r| {
            let current = image.topic(&r.name)?.partitions.len() as i64;
            Some((i64::from(r.count) - current).max(0))
        })
        .sum();
    if added > MAX_PARTITIONS_PER_REQUEST {
        let refused = requests.iter().map(|_| Err(too_many_partitions()));
        return (refused.collect(), Vec::new());
    }
    let brokers = active_brokers(image);
    let mut records = Vec::new();
    let mut results = Vec::new();
    for req in requests {
        let result = (|| {
            let topic = image.topic(&req.name).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("The topic '{}' does not exist.", req.name),
                )
            })?;
            let current = topic.partitions.len() as i32;
            if req.count < current {
                return Err(ApiError::new(ErrorCode::InvalidPartitions, format!("The topic {} currently has {current} partition(s); {} would not be an increase.", req.name, req.count)));
            }
            if req.count == current {
                return Err(ApiError::new(
                    ErrorCode::InvalidPartitions,
                    format!("Topic already has {current} partition(s)."),
                ));
            }
            let rf = topic
                .partitions
                .values()
                .next()
                .map_or(1, |p| p.replicas.len());
            let added = req.count - current;
            let placement = match &req.assignments {
                Some(a) => {
                    if a.len() as i32 != added {
                        return Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, format!("Increasing the number of partitions by {added} but {} assignments provided.", a.len())));
                    }
                    for (i, replicas) in a.iter().enumerate() {
                        check_assignment(image, current + i as i32, replicas)?;
                    }
                    a.clone()
                }
                None if rf > brokers.len() => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.", brokers.len()),
                    ));
                }
                None => placement::place(&brokers, current, added, rf),
            };
            if !validate_only {
                records.extend(placement.iter().enumerate().map(|(i, replicas)| {
                    new_partition(image, topic.id, current + i as i32, replicas)
                }));
            }
            Ok(())
        })();
        results.push(result);
    }
    (results, records)
}

mod alter_partition;
mod brokers;
mod configs;
mod elections;
mod placement;
mod reassignment;
use brokers::{decide_fencing, decide_heartbeat, decide_registration, Sessions};
pub use brokers::{BrokerHeartbeat, HeartbeatReply, Registered};
pub use configs::{AlterConfigsRequest, ConfigOp};
use elections::{decide_elections, imbalanced};
use reassignment::decide_reassignments;
pub use reassignment::{reassigning, ReassignRequest, Reassigning};

#[cfg(test)]
mod tests;

fn unexpected(reply: &ControllerReply) -> ControllerError {
    ControllerError::Unavailable(format!("the active controller answered {reply:?}"))
}
