//! Followers fetch from their leaders, as Kafka's replica fetchers do: for
//! each leader broker, `num.replica.fetchers` tasks, each sending Fetch
//! (with this node's replica id and each partition's last fetched epoch)
//! for the partitions it follows from that leader, appending what comes
//! back as the leader wrote it, taking the high watermark the leader sends,
//! and truncating where the leader says the logs diverged.
//!
//! How a Fetch reaches a leader is the server's business ([`LeaderLink`]):
//! nothing here knows about sockets.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strom_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use strom_protocol::messages::fetch_response::PartitionData;
use strom_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use strom_protocol::ErrorCode;
use strom_protocol::StrBytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::manager::{ReplicaManager, TopicPartition};
use crate::partition::{FetchPosition, Partition};

/// A boxed future, for [`LeaderLink`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a follower sends a Fetch (version [`FETCH_VERSION`]) to broker
/// `leader` and reads its answer.
pub trait LeaderLink: Send + Sync + 'static {
    fn fetch(
        &self,
        leader: i32,
        request: FetchRequest,
    ) -> BoxFuture<'static, std::io::Result<FetchResponse>>;
}

/// The Fetch version followers send: topics by name, the replica id in
/// the request, and the last fetched epoch and diverging epoch (v12).
pub const FETCH_VERSION: i16 = 12;

/// `replica.fetch.*` and `num.replica.fetchers`, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetcherConfig {
    pub fetchers_per_leader: usize,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub partition_max_bytes: i32,
    pub response_max_bytes: i32,
    pub backoff: Duration,
}

impl FetcherConfig {
    pub fn from(config: &strom_metadata::config::StaticConfig) -> FetcherConfig {
        let int = |k: &str| config.get_i64(k).clamp(0, i64::from(i32::MAX)) as i32;
        FetcherConfig {
            fetchers_per_leader: config.get_i64("num.replica.fetchers").max(1) as usize,
            max_wait_ms: int("replica.fetch.wait.max.ms"),
            min_bytes: int("replica.fetch.min.bytes").max(1),
            partition_max_bytes: int("replica.fetch.max.bytes").max(1),
            response_max_bytes: int("replica.fetch.response.max.bytes").max(1),
            backoff: Duration::from_millis(config.get_i64("replica.fetch.backoff.ms").max(0) as u64),
        }
    }
}

type Followed = BTreeMap<TopicPartition, Arc<Partition>>;

struct Fetcher {
    partitions: watch::Sender<Followed>,
    task: tokio::task::JoinHandle<()>,
}

/// This node's fetchers, one set per leader it follows.
pub struct ReplicaFetchers {
    node_id: i32,
    link: Arc<dyn LeaderLink>,
    config: FetcherConfig,
    runtime: tokio::runtime::Handle,
    /// By (leader, fetcher index).
    fetchers: Mutex<HashMap<(i32, usize), Fetcher>>,
}

impl ReplicaFetchers {
    /// Must be created inside the tokio runtime its tasks run on.
    pub fn new(node_id: i32, link: Arc<dyn LeaderLink>, config: FetcherConfig) -> ReplicaFetchers {
        ReplicaFetchers {
            node_id,
            link,
            config,
            runtime: tokio::runtime::Handle::current(),
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Follows what `replicas` hosts as a follower, from each partition's
    /// leader: fetchers start for new leaders, change their partitions, and
    /// stop for leaders no longer followed.
    pub fn reconcile(&self, replicas: &ReplicaManager) {
        let mut wanted: HashMap<(i32, usize), Followed> = HashMap::new();
        for p in replicas.hosted() {
            let leader = p.leader();
            if leader < 0 || leader == self.node_id {
                continue;
            }
            let tp = TopicPartition::new(p.topic(), p.index());
            let slot = fetcher_index(&tp, self.config.fetchers_per_leader);
            wanted.entry((leader, slot)).or_default().insert(tp, p);
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        fetchers.retain(|key, f| {
            let keep = wanted.contains_key(key);
            if !keep {
                f.task.abort();
                info!(leader = key.0, fetcher = key.1, "replica fetcher stopped");
            }
            keep
        });
        for (key, partitions) in wanted {
            match fetchers.get(&key) {
                Some(f) => {
                    f.partitions.send_if_modified(|current| {
                        let changed = !same(current, &partitions);
                        if changed {
                            *current = partitions;
                        }
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(partitions);
                    let run = FetchLoop {
                        node_id: self.node_id,
                        leader: key.0,
                        link: self.link.clone(),
                        config: self.config,
                    };
                    let task = self.runtime.spawn(run.run(rx));
                    info!(leader = key.0, fetcher = key.1, "replica fetcher started");
                    fetchers.insert(
                        key,
                        Fetcher {
                            partitions: tx,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// Stops every fetcher.
    pub fn shutdown(&self) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, f) in fetchers.drain() {
            f.task.abort();
        }
    }
}

fn same(a: &Followed, b: &Followed) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, pa), (kb, pb))| ka == kb && Arc::ptr_eq(pa, pb))
}

fn fetcher_index(tp: &TopicPartition, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

struct FetchLoop {
    node_id: i32,
    leader: i32,
    link: Arc<dyn LeaderLink>,
    config: FetcherConfig,
}

/// A partition in one fetch: where its fetch started.
type Fetching<'a> = Vec<(&'a TopicPartition, &'a Arc<Partition>, FetchPosition)>;

impl FetchLoop {
    /// Fetches until stopped. A partition whose answer was an error waits
    /// `replica.fetch.backoff.ms` before it is fetched again while the
    /// others go on (Kafka's delayed partitions), but only [`SOON`] when the
    /// leader has not taken its leadership in yet; a fetch that failed as
    /// a whole backs the fetcher off.
    async fn run(self, mut partitions: watch::Receiver<Followed>) {
        let mut delayed: HashMap<TopicPartition, Instant> = HashMap::new();
        loop {
            let followed = partitions.borrow_and_update().clone();
            let now = Instant::now();
            delayed.retain(|tp, until| *until > now && followed.contains_key(tp));
            let fetching: Fetching<'_> = followed
                .iter()
                .filter(|(tp, _)| !delayed.contains_key(*tp))
                .map(|(tp, p)| (tp, p, p.fetch_position()))
                .collect();
            if fetching.is_empty() {
                match delayed.values().min().copied() {
                    Some(wake) => tokio::select! {
                        () = tokio::time::sleep_until(wake) => {}
                        r = partitions.changed() => if r.is_err() { return },
                    },
                    None => {
                        if partitions.changed().await.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            let request = self.request(&fetching);
            // A partition added while a fetch waits at the leader (up to
            // replica.fetch.wait.max.ms) is not left waiting with it: the
            // fetch is dropped (its connection with it; nothing of it was
            // applied) and the next one asks for every partition.
            let fetched = tokio::select! {
                r = self.link.fetch(self.leader, request) => r,
                r = partitions.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue;
                }
            };
            match fetched {
                Ok(response) => {
                    let now = Instant::now();
                    for (tp, retry) in self.handle(&fetching, response) {
                        let wait = match retry {
                            Retry::Soon => SOON.min(self.config.backoff),
                            Retry::Later => self.config.backoff,
                        };
                        delayed.insert(tp, now + wait);
                    }
                }
                Err(e) => {
                    debug!(leader = self.leader, error = %e, "replica fetch failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.backoff) => {}
                        _ = partitions.changed() => {}
                    }
                }
            }
        }
    }

    fn request(&self, fetching: &Fetching<'_>) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, _, at) in fetching {
            let partition = FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(at.leader_epoch)
                .with_fetch_offset(at.offset)
                .with_last_fetched_epoch(at.last_fetched_epoch)
                .with_log_start_offset(at.log_start_offset)
                .with_partition_max_bytes(self.config.partition_max_bytes);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == tp.topic => t.partitions.push(partition),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        FetchRequest::default()
            .with_replica_id(BrokerId(self.node_id))
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.response_max_bytes)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics)
    }

    /// Takes a leader's answer in; returns the partitions whose answer was
    /// an error (all of them for an error of the whole fetch) and when to
    /// fetch each again.
    fn handle(
        &self,
        fetching: &Fetching<'_>,
        response: FetchResponse,
    ) -> Vec<(TopicPartition, Retry)> {
        if response.error_code != 0 {
            warn!(
                leader = self.leader,
                code = response.error_code,
                "replica fetch refused"
            );
            return fetching
                .iter()
                .map(|(tp, _, _)| ((*tp).clone(), Retry::Later))
                .collect();
        }
        let mut failed = Vec::new();
        for topic in response.responses {
            for data in topic.partitions {
                let tp = TopicPartition::new(topic.topic.0.as_str(), data.partition_index);
                let Some((tp, p, at)) = fetching.iter().find(|(t, _, _)| **t == tp) else {
                    continue;
                };
                if p.leader() != self.leader {
                    continue;
                }
                if let Err(retry) = follow(p, *at, data, self.leader) {
                    failed.push(((*tp).clone(), retry));
                }
            }
        }
        failed
    }
}

/// How long a partition whose answer was an error waits before it is
/// fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// [`SOON`]: the leader named by the metadata has not taken the new
    /// leadership in yet (it answers UNKNOWN_LEADER_EPOCH), which takes it
    /// milliseconds. Kafka waits `replica.fetch.backoff.ms` (1 s) here too,
    /// and every acks=all write after a failover waits with it for the
    /// high watermark.
    Soon,
    /// `replica.fetch.backoff.ms`.
    Later,
}

/// The wait of [`Retry::Soon`] (`replica.fetch.backoff.ms` if shorter).
const SOON: Duration = Duration::from_millis(25);

/// Applies one partition's answer from `leader` to a fetch made at `at`:
/// `Err` if it was an error (the partition then waits before its next
/// fetch). An answer that no longer applies (the epoch or the log end moved
/// meanwhile) changes nothing.
fn follow(p: &Partition, at: FetchPosition, data: PartitionData, leader: i32) -> Result<(), Retry> {
    let applied = |r: Result<(), (ErrorCode, String)>, what: &str| match r {
        Ok(()) => Ok(()),
        Err((ErrorCode::FencedLeaderEpoch, why)) => {
            debug!(partition = ?p, %why, "answer dropped");
            Ok(())
        }
        Err((code, why)) => {
            warn!(partition = ?p, leader, ?code, %why, "cannot {what}");
            Err(Retry::Later)
        }
    };
    match ErrorCode::try_from_code(data.error_code) {
        None if data.error_code == 0 => {}
        Some(ErrorCode::OffsetOutOfRange) if data.log_start_offset > at.offset => {
            // Behind the leader's log start (retention or DeleteRecords
            // removed what it lacks): start again there.
            info!(partition = ?p, leader_start = data.log_start_offset, "behind the leader's log start; starting again there");
            let r = p.truncate_fully_and_start_at(at, data.log_start_offset);
            return applied(r, "restart the log");
        }
        Some(ErrorCode::OffsetOutOfRange)
            if data.high_watermark >= 0 && at.offset > data.high_watermark =>
        {
            // Ahead of the leader's log with no epoch to compare by: keep
            // what the leader says is committed, fetch the rest again.
            info!(partition = ?p, leader_high_watermark = data.high_watermark, end = at.offset, "ahead of the leader's log; truncating to its high watermark");
            let r = p.truncate_to(at, data.high_watermark).map(|_| ());
            return applied(r, "truncate");
        }
        Some(ErrorCode::UnknownLeaderEpoch) => {
            debug!(partition = ?p, leader, "the leader has not taken its leadership in yet");
            return Err(Retry::Soon);
        }
        _ => {
            debug!(partition = ?p, leader, code = data.error_code, "replica fetch error");
            return Err(Retry::Later);
        }
    }
    if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 {
        let to = truncation_offset(
            p,
            data.diverging_epoch.epoch,
            data.diverging_epoch.end_offset,
        );
        info!(partition = ?p, leader, epoch = data.diverging_epoch.epoch, leader_end = data.diverging_epoch.end_offset, to, "log diverged from the leader's; truncating");
        return applied(p.truncate_to(at, to).map(|_| ()), "truncate");
    }
    let now = now_ms();
    if let Some(records) = data.records.filter(|r| !r.is_empty()) {
        if let Err(e) = p.append_as_follower(at, &records, now) {
            return applied(Err(e), "append what the leader sent");
        }
    }
    let r = p.follow_leader(at, data.high_watermark, data.log_start_offset, now);
    applied(r, "follow the leader's high watermark and log start")
}

/// Where to cut a log the leader says diverged: its epoch `epoch` ends at
/// `leader_end` there; here that epoch (or the newest before it) ends at
/// some offset; the log is kept to the smaller of the two (Kafka's
/// truncation on a diverging epoch). The next fetch, with the epoch left
/// last, has the leader check again.
pub(crate) fn truncation_offset(p: &Partition, epoch: i32, leader_end: i64) -> i64 {
    let end = p.log_end_offset();
    if leader_end < 0 {
        // The leader knows no epoch this old: only what is committed stays.
        return p.high_watermark().min(end);
    }
    let (local_epoch, local_end) = p.end_offset_for_epoch(epoch);
    let local = if local_epoch < 0 { end } else { local_end };
    leader_end.min(local).min(end)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
