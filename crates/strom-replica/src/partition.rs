//! One hosted partition: log, producer state, leader epoch, high watermark.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use strom_metadata::PartitionImage;
use strom_producer::{BatchInfo, CompletedTxn, ProducerEntry, ProducerStateManager, Verdict};
use strom_protocol::records::{self, Batch, BatchProducer, ControlMarker};
use strom_protocol::ErrorCode;
use strom_storage::{
    AbortedTxn, CleanStats, CleanerSettings, Dirtiness, LeaderEpochCache, Log, LogConfig,
    StorageError, Throttle,
};
use tokio::sync::watch;
use tracing::{error, info};
use uuid::Uuid;

use crate::replication::Leadership;
use crate::validate::{validate_produce_batch, ProduceError, ProduceRules};

/// How many producer snapshots a partition keeps.
const SNAPSHOTS_KEPT: usize = 3;

/// Where the topic id of a partition directory is written.
pub(crate) const PARTITION_METADATA: &str = "partition.metadata";

/// The outcome of a produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    /// The offset after the batch: an acks=all write is committed once the
    /// high watermark reaches it.
    pub next_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The leadership the batch was written in (see
    /// [`Partition::still_leads`]): an acks=all answer is a success only if
    /// that leadership lasted until the high watermark passed the batch.
    pub leadership: u64,
}

/// Where a follower's fetch starts, read under one lock: what the fetch
/// request carries, and what its answer is applied against, so an answer
/// to a fetch made in an earlier leader epoch, or from a log end that
/// moved since (a truncation), changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub leader_epoch: i32,
    /// The log end: the fetch offset.
    pub offset: i64,
    /// The newest leader epoch of the log (-1: none).
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// For read_committed: the aborted transactions overlapping `records`;
    /// `None` for read_uncommitted.
    pub aborted: Option<Vec<AbortedTxn>>,
}

/// Why [`Partition::wait_committed`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncommitted {
    /// The leadership the write was made in ended: it may be lost.
    LeadershipEnded,
    TimedOut,
}

/// An ISR change a leader asks for, with the epochs it holds, so that the
/// controller refuses it should the partition have changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    /// Whether followers leave (else they join).
    pub shrink: bool,
}

/// A leader's answer to a follower's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerRead {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Where the follower's log diverged: the epoch and the offset it ends
    /// at here (the follower truncates there). No records with it.
    pub diverging: Option<(i32, i64)>,
}

/// What [`Partition::log_stats`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub size_bytes: u64,
    pub segments: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// What a reader may see (Kafka's `isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark.
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, with aborted ranges.
    ReadCommitted,
}

impl Isolation {
    /// Kafka's wire value: 0 read_uncommitted, 1 read_committed.
    pub fn from_wire(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// One producer's state in this partition, for DescribeProducers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// -1 when no transaction is open.
    pub current_txn_start_offset: i64,
}

/// What ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    MaxTimestamp,
    Timestamp(i64),
    /// The last offset in tiered storage (KIP-1005): none, without it.
    LatestTiered,
}

impl OffsetSpec {
    /// Kafka's encoding of the spec in a ListOffsets request.
    pub fn from_wire(timestamp: i64) -> Option<OffsetSpec> {
        match timestamp {
            // -4: the earliest local offset (KIP-1005): all of it is local.
            -2 | -4 => Some(OffsetSpec::Earliest),
            // -5: the latest tiered offset: nothing is tiered.
            -5 => Some(OffsetSpec::LatestTiered),
            -1 => Some(OffsetSpec::Latest),
            -3 => Some(OffsetSpec::MaxTimestamp),
            t if t >= 0 => Some(OffsetSpec::Timestamp(t)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetResult {
    /// -1 when nothing matches.
    pub offset: i64,
    pub timestamp: i64,
}

struct State {
    log: Log,
    producers: ProducerStateManager,
    /// Set once the log was closed or deleted: the partition no longer
    /// serves, even to requests that still hold it.
    closed: bool,
    /// Verification guards by producer id (see [`Partition::start_verification`]).
    verifying: HashMap<i64, u64>,
    next_guard: u64,
    /// Where each leader epoch began in this log.
    epochs: LeaderEpochCache,
    /// While this node leads: its followers, and the leader epoch it
    /// leads in.
    leadership: Option<(i32, Leadership)>,
    /// `replica.lag.time.max.ms`.
    lag_max_ms: i64,
    /// The high watermark in [`HW_CHECKPOINT`] (`None`: no such file).
    hw_checkpoint: Option<i64>,
}

/// Where a replicated partition keeps its high watermark across restarts
/// (Kafka keeps it in a log dir's replication-offset-checkpoint): one
/// number. A partition without the file (it never had followers) starts
/// with its high watermark at its log end, as every record it holds was
/// committed when written; one with it starts no higher than it says, so
/// a restarted replica never serves what its followers may not have.
const HW_CHECKPOINT: &str = "high-watermark-checkpoint";

/// The checkpointed high watermark: `None` without the file, the log
/// start for a file that cannot be read (safe: it only moves up).
fn read_hw_checkpoint(dir: &Path, log_start: i64) -> Option<i64> {
    match std::fs::read_to_string(dir.join(HW_CHECKPOINT)) {
        Ok(text) => Some(text.trim().parse().unwrap_or(log_start)),
        Err(_) => None,
    }
}

fn write_hw_checkpoint(dir: &Path, hw: i64) -> std::io::Result<()> {
    // Unsynced: lost, the older (lower) value or an unreadable file stays,
    // and both are safe.
    let tmp = dir.join(format!("{HW_CHECKPOINT}.tmp"));
    std::fs::write(&tmp, format!("{hw}\n"))?;
    std::fs::rename(tmp, dir.join(HW_CHECKPOINT))
}

pub struct Partition {
    topic: String,
    /// `topic-index`, for messages.
    name: String,
    topic_id: Uuid,
    index: i32,
    leader_epoch: AtomicI32,
    /// The leader's node id in the image applied last (-1: none yet).
    leader: AtomicI32,
    /// Whether that leader is this node; changed and read under the state
    /// lock, so no append is accepted once the metadata moved leadership.
    leads: AtomicBool,
    state: Mutex<State>,
    /// Apart from the state, so batches are validated without its lock.
    rules: RwLock<ProduceRules>,
    high_watermark: watch::Sender<i64>,
    /// The log end, for the followers' fetches that wait for appends.
    log_end: watch::Sender<i64>,
    /// Counts the times this node stopped leading (or the partition
    /// closed): a leadership is the span of one count while leading. Bumped
    /// under the state lock before the log can change under a new leader,
    /// so a high watermark seen to pass a batch while the count stands was
    /// moved by the leadership that wrote it.
    leadership: watch::Sender<u64>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

fn storage_error(e: StorageError) -> ErrorCode {
    match e {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::InvalidBatch(_) => ErrorCode::CorruptMessage,
        e => {
            error!(error = %e, "storage error");
            ErrorCode::KafkaStorageError
        }
    }
}

fn aborted_entry(done: &CompletedTxn, first_unstable: Option<i64>) -> AbortedTxn {
    AbortedTxn {
        producer_id: done.producer_id,
        first_offset: done.first_offset,
        last_offset: done.last_offset,
        last_stable_offset: first_unstable.unwrap_or(done.last_offset + 1),
    }
}

/// Whether `producer_id` at `epoch` has a transaction open in `producers`.
fn has_open_transaction(producers: &ProducerStateManager, producer_id: i64, epoch: i16) -> bool {
    producers
        .entry(producer_id)
        .is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == epoch)
}

/// The last stable offset: no higher than the high watermark nor the first
/// offset of an open transaction.
fn last_stable_offset(producers: &ProducerStateManager, high_watermark: i64) -> i64 {
    producers
        .first_unstable_offset()
        .map_or(high_watermark, |o| o.min(high_watermark))
}

/// The producer state at the log end: the newest snapshot at or below it
/// (those above are deleted) plus the log after it, and where that replay
/// began. Aborted transactions met on the way are (re)indexed: an entry
/// may have been lost with a crash right after its marker was written.
fn load_producers(log: &mut Log) -> Result<(i64, ProducerStateManager), StorageError> {
    let dir = log.dir().to_path_buf();
    let end = log.log_end_offset();
    let snapshot_err = |e: strom_producer::SnapshotError| StorageError::Corrupt {
        path: dir.clone(),
        reason: e.to_string(),
    };
    strom_producer::delete_snapshots_above(&dir, end).map_err(snapshot_err)?;
    let (from, mut producers) = strom_producer::latest_snapshot(&dir, end)
        .map_err(snapshot_err)?
        .unwrap_or((log.log_start_offset(), ProducerStateManager::new()));
    let mut completed = Vec::new();
    log.scan_batches(from, |b| {
        if let Some(done) = producers.replay(&b) {
            completed.push((done, producers.first_unstable_offset()));
        }
    })?;
    for (done, unstable) in completed {
        if done.aborted {
            log.add_aborted(aborted_entry(&done, unstable));
        }
    }
    Ok((from, producers))
}

impl Partition {
    /// Opens the partition's log in `dir` (recovering it) and rebuilds the
    /// producer state from the newest snapshot plus the log after it.
    pub(crate) fn open(
        dir: &Path,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        leader_epoch: i32,
        config: LogConfig,
        rules: ProduceRules,
    ) -> Result<Partition, StorageError> {
        let mut log = Log::open(dir, config)?;
        std::fs::write(
            dir.join(PARTITION_METADATA),
            format!("version: 0\ntopic_id: {topic_id}\n"),
        )
        .map_err(|source| StorageError::Io {
            path: dir.join(PARTITION_METADATA),
            source,
        })?;
        let (from, producers) = load_producers(&mut log)?;
        if !producers.is_empty() {
            info!(
                topic,
                partition = index,
                producers = producers.len(),
                from,
                "producer state rebuilt"
            );
        }
        let end = log.log_end_offset();
        let epochs = LeaderEpochCache::open(dir, log.log_start_offset(), end)?;
        let hw_checkpoint = read_hw_checkpoint(dir, log.log_start_offset());
        let hw = hw_checkpoint.map_or(end, |c| c.clamp(log.log_start_offset(), end));
        let (high_watermark, _) = watch::channel(hw);
        let (log_end, _) = watch::channel(end);
        let (leadership, _) = watch::channel(0);
        Ok(Partition {
            topic: topic.to_owned(),
            name: format!("{topic}-{index}"),
            topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            leader: AtomicI32::new(-1),
            leads: AtomicBool::new(false),
            state: Mutex::new(State {
                log,
                producers,
                closed: false,
                verifying: HashMap::new(),
                next_guard: 0,
                epochs,
                leadership: None,
                lag_max_ms: 30_000,
                hw_checkpoint,
            }),
            rules: RwLock::new(rules),
            high_watermark,
            log_end,
            leadership,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, unless the partition was closed or deleted.
    fn serving(&self) -> Result<MutexGuard<'_, State>, ErrorCode> {
        let s = self.lock();
        if s.closed {
            Err(ErrorCode::NotLeaderOrFollower)
        } else {
            Ok(s)
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }
    pub fn index(&self) -> i32 {
        self.index
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }
    /// The leader's node id as the metadata says.
    pub fn leader(&self) -> i32 {
        self.leader.load(Ordering::Acquire)
    }
    /// Takes the role the metadata gives: leadership and epoch, and on the
    /// leader the replicas, the ISR and which replicas may join it
    /// (`eligible`). A leader records where its epoch begins (its log end),
    /// so OffsetForLeaderEpoch can say where every earlier epoch ended; a
    /// new leadership knows nothing of its followers until they fetch.
    pub(crate) fn set_role(
        &self,
        p: &PartitionImage,
        eligible: &[i32],
        me: i32,
        lag_max_ms: i64,
        now_ms: i64,
    ) {
        let mut s = self.lock();
        self.leader_epoch.store(p.leader_epoch, Ordering::Release);
        self.leader.store(p.leader, Ordering::Release);
        if self.leads.swap(p.leader == me, Ordering::AcqRel) && p.leader != me {
            self.end_leadership();
        }
        s.lag_max_ms = lag_max_ms;
        if p.replicas.len() > 1 && s.hw_checkpoint.is_none() && !s.closed {
            // From now on records may be written before they are committed.
            self.checkpoint_high_watermark(&mut s);
        }
        if p.leader != me || s.closed {
            s.leadership = None;
            return;
        }
        let end = s.log.log_end_offset();
        s.epochs.assign(p.leader_epoch, end);
        match &mut s.leadership {
            Some((epoch, l)) if *epoch == p.leader_epoch => {
                l.update(&p.replicas, &p.isr, eligible, p.partition_epoch, now_ms)
            }
            _ => {
                let l =
                    Leadership::new(me, &p.replicas, &p.isr, eligible, p.partition_epoch, now_ms);
                s.leadership = Some((p.leader_epoch, l));
            }
        }
        self.advance_high_watermark(&s, now_ms);
    }

    /// The leadership of the moment: what [`AppendResult::leadership`]
    /// holds for a batch written now, and what [`Partition::wait_committed`]
    /// waits within for what is written after this call.
    pub fn leadership(&self) -> u64 {
        *self.leadership.borrow()
    }

    /// Ends this node's leadership (it follows now, or the partition
    /// closed), waking whoever waits on it.
    fn end_leadership(&self) {
        self.leadership.send_modify(|n| *n += 1);
    }

    /// Whether this node still leads in the leadership `leadership` (from
    /// an [`AppendResult`]): it has led without a break since, so its log
    /// kept what it wrote then.
    pub fn still_leads(&self, leadership: u64) -> bool {
        self.leads.load(Ordering::Acquire) && self.leadership() == leadership
    }

    /// Waits until the high watermark reaches `offset` within the
    /// leadership `leadership` (Kafka's delayed produce): an acks=all
    /// write, or a coordinator's records, is committed then. A high
    /// watermark seen to pass it after that leadership ended proves
    /// nothing (a follower's comes from a new leader, whose log may lack
    /// the write), so it waits for the leadership too.
    pub async fn wait_committed(
        &self,
        offset: i64,
        leadership: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), Uncommitted> {
        let mut hw = self.high_watermark.subscribe();
        let mut term = self.leadership.subscribe();
        tokio::select! {
            _ = hw.wait_for(|h| *h >= offset) => {}
            _ = term.wait_for(|l| *l != leadership) => return Err(Uncommitted::LeadershipEnded),
            () = tokio::time::sleep_until(deadline) => return Err(Uncommitted::TimedOut),
        }
        if self.still_leads(leadership) {
            Ok(())
        } else {
            Err(Uncommitted::LeadershipEnded)
        }
    }

    /// Writes the high watermark to its checkpoint if it moved since.
    fn checkpoint_high_watermark(&self, s: &mut State) {
        let hw = self.high_watermark();
        if s.hw_checkpoint == Some(hw) {
            return;
        }
        match write_hw_checkpoint(s.log.dir(), hw) {
            Ok(()) => s.hw_checkpoint = Some(hw),
            Err(e) => {
                error!(partition = ?self, error = %e, "cannot write the high-watermark checkpoint")
            }
        }
    }

    /// The ISR this leader should ask the controller for (AlterPartition):
    /// without the followers out of time for `replica.lag.time.max.ms`,
    /// else with the eligible ones caught up to the high watermark (Kafka's
    /// maybeShrinkIsr and maybeExpandIsr); `None` while the ISR stands or
    /// this node does not lead.
    pub fn wanted_isr(&self, now_ms: i64) -> Option<IsrChange> {
        let s = self.lock();
        let (epoch, l) = s.leadership.as_ref()?;
        let (isr, shrink) = match l.shrunk_isr(now_ms, s.lag_max_ms) {
            Some(isr) => (isr, true),
            None => (
                l.expanded_isr(self.high_watermark(), now_ms, s.lag_max_ms)?,
                false,
            ),
        };
        Some(IsrChange {
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: *epoch,
            partition_epoch: l.partition_epoch,
            isr,
            shrink,
        })
    }

    /// Moves the high watermark up to what the ISR allows (never down).
    /// It is published while the state lock is held, so it moves in the
    /// order appends and fetches happened and never back (a reader that
    /// saw it may fetch up to it at once).
    fn advance_high_watermark(&self, s: &State, now_ms: i64) {
        let Some((_, l)) = &s.leadership else {
            return;
        };
        let end = s.log.log_end_offset();
        let Some(hw) = l.high_watermark(end, self.min_insync_replicas(), now_ms, s.lag_max_ms)
        else {
            return;
        };
        self.high_watermark.send_if_modified(|current| {
            let moved = hw > *current;
            *current = (*current).max(hw);
            moved
        });
    }

    /// The newest leader epoch this log holds records of (-1: none), what a
    /// follower names as its last fetched epoch.
    pub fn latest_epoch(&self) -> i32 {
        self.lock().epochs.latest_epoch().unwrap_or(-1)
    }

    /// Where the log of leader epoch `requested` ends here: the epoch no
    /// newer than it and the offset the next began at, the log end for the
    /// latest, `(-1, -1)` for an epoch unknown here.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        let s = self.lock();
        s.epochs.end_offset_for(requested, s.log.log_end_offset())
    }
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }
    /// Resolves when the high watermark moves: what a waiting fetch awaits.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }
    /// Resolves when the log end moves: what a follower's fetch awaits.
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }
    fn publish_log_end(&self, s: &State) {
        let end = s.log.log_end_offset();
        self.log_end.send_if_modified(|e| {
            let moved = *e != end;
            *e = end;
            moved
        });
    }
    pub fn log_end_offset(&self) -> i64 {
        self.lock().log.log_end_offset()
    }
    pub fn log_start_offset(&self) -> i64 {
        self.lock().log.log_start_offset()
    }
    /// Bytes of the log's segment files.
    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }

    /// The log's size, segment count and offsets, read under one lock.
    pub fn log_stats(&self) -> LogStats {
        let state = self.lock();
        LogStats {
            size_bytes: state.log.size_bytes(),
            segments: state.log.segment_count(),
            log_start_offset: state.log.log_start_offset(),
            log_end_offset: state.log.log_end_offset(),
        }
    }

    /// Deletes the records below `offset` (-1: the high watermark), as
    /// Kafka's DeleteRecords does: POLICY_VIOLATION unless the topic's
    /// cleanup policy includes delete, OFFSET_OUT_OF_RANGE past the high
    /// watermark. Returns the low watermark (the log start offset) after.
    pub fn delete_records(&self, offset: i64, now_ms: i64) -> Result<i64, ErrorCode> {
        let mut s = self.serving()?;
        if !s.log.config().delete_policy {
            return Err(ErrorCode::PolicyViolation);
        }
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let start = s
            .log
            .advance_log_start(offset, now_ms)
            .map_err(storage_error)?;
        s.epochs.truncate_from_start(start).map_err(storage_error)?;
        Ok(start)
    }

    /// The topic's `min.insync.replicas`, as its configs stand.
    pub fn min_insync_replicas(&self) -> usize {
        self.rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .min_insync_replicas
    }

    pub(crate) fn update_config(&self, config: LogConfig, rules: ProduceRules) {
        let mut s = self.lock();
        s.log.set_config(config);
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
    }

    /// Starts the check that `producer_id`'s next transactional batch here
    /// belongs to its open transaction (Kafka's verification guard): the
    /// caller asks the transaction coordinator, then appends with the
    /// guard. A marker for the producer written in between voids the guard,
    /// so a batch verified for a transaction that has just ended cannot
    /// open a transaction here that nothing would ever close.
    pub fn start_verification(&self, producer_id: i64) -> u64 {
        let mut s = self.lock();
        s.next_guard += 1;
        let guard = s.next_guard;
        s.verifying.insert(producer_id, guard);
        guard
    }

    /// Whether `producer_id` at `epoch` has a transaction open here: its
    /// next batches need no verification.
    pub fn in_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        has_open_transaction(&self.lock().producers, producer_id, epoch)
    }

    /// A transactional batch may start a transaction here only with a
    /// guard that no marker voided; once one is open, later batches of it
    /// need none.
    fn check_guard(
        s: &State,
        batch: &Batch<'_>,
        guard: Option<u64>,
    ) -> Result<(), (ErrorCode, String)> {
        if !batch.is_transactional() {
            return Ok(());
        }
        let pid = batch.producer_id();
        let open = has_open_transaction(&s.producers, pid, batch.producer_epoch());
        if open || (guard.is_some() && s.verifying.get(&pid) == guard.as_ref()) {
            Ok(())
        } else {
            Err((
                ErrorCode::InvalidTxnState,
                "The transaction of this batch is not open on this partition".into(),
            ))
        }
    }

    /// Appends a client's batch as the leader. A transactional batch needs
    /// the guard of [`Partition::start_verification`].
    ///
    /// The batch is validated before the partition is locked (decompressing
    /// it may take a while), against the rules of the moment.
    pub fn append(
        &self,
        records: &[u8],
        now_ms: i64,
        guard: Option<u64>,
    ) -> Result<AppendResult, ProduceError> {
        let checked = validate_produce_batch(
            records,
            &self.rules.read().unwrap_or_else(|p| p.into_inner()),
            now_ms,
            &self.name,
        )?;
        let s = self.leading()?;
        let batch = Batch::parse(records).expect("validated");
        if let Some(info) = BatchInfo::of(&batch) {
            match s.producers.check(&info) {
                Ok(Verdict::Append) => {}
                Ok(Verdict::Duplicate(m)) => {
                    return Ok(AppendResult {
                        base_offset: m.first_offset,
                        next_offset: m.last_offset + 1,
                        log_append_time: -1,
                        log_start_offset: s.log.log_start_offset(),
                        leadership: self.leadership(),
                    })
                }
                Err(e) => return Err((e.code(), e.to_string()).into()),
            }
        }
        Self::check_guard(&s, &batch, guard)?;
        let mut owned = records.to_vec();
        if let Some(ts) = checked.corrected_max_timestamp {
            records::set_max_timestamp(&mut owned, ts);
        }
        Ok(self.write(s, owned, now_ms)?)
    }

    /// The state, if the partition serves and this node leads it: what
    /// every leader append takes.
    fn leading(&self) -> Result<MutexGuard<'_, State>, (ErrorCode, String)> {
        let s = self
            .serving()
            .map_err(|c| (c, "partition is closed".to_owned()))?;
        if !self.leads.load(Ordering::Acquire) {
            let message = format!("this node does not lead {}", self.name);
            return Err((ErrorCode::NotLeaderOrFollower, message));
        }
        Ok(s)
    }

    /// Appends a batch a coordinator built (its internal topics): the
    /// producer epoch is checked, sequences are not (Kafka's coordinator
    /// origin: transactional offset commits carry no sequence). A
    /// transactional batch needs a verification guard, as in `append`.
    pub fn append_from_coordinator(
        &self,
        records: &[u8],
        now_ms: i64,
        guard: Option<u64>,
    ) -> Result<AppendResult, (ErrorCode, String)> {
        let s = self.leading()?;
        let batch =
            Batch::parse(records).map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
        if batch.has_producer_id() {
            s.producers
                .check_marker(batch.producer_id(), batch.producer_epoch())
                .map_err(|e| (e.code(), e.to_string()))?;
        }
        Self::check_guard(&s, &batch, guard)?;
        self.write(s, records.to_vec(), now_ms)
    }

    /// Writes a transaction marker for `producer_id`: ends its transaction
    /// here (an aborted one goes to the aborted-transaction index).
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        marker: ControlMarker,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendResult, (ErrorCode, String)> {
        let mut s = self.leading()?;
        s.verifying.remove(&producer_id);
        s.producers
            .check_marker(producer_id, epoch)
            .and_then(|()| {
                s.producers
                    .check_coordinator(producer_id, coordinator_epoch)
            })
            .map_err(|e| (e.code(), e.to_string()))?;
        let producer = BatchProducer {
            id: producer_id,
            epoch,
            base_sequence: records::NO_SEQUENCE,
            transactional: true,
        };
        let bytes = records::build_control_batch(producer, marker, coordinator_epoch, now_ms);
        self.write(s, bytes.to_vec(), now_ms)
    }

    /// Appends batches fetched from the leader, as it wrote them: offsets,
    /// epochs and timestamps kept. The producer state, the aborted
    /// transactions and the leader-epoch cache follow them as they do on a
    /// leader, so that this replica can lead at any moment (deduplicate
    /// retries, serve read_committed, end transactions). The high
    /// watermark is not moved: a follower learns it from the leader.
    /// Returns the new log end.
    pub fn append_as_follower(
        &self,
        at: FetchPosition,
        records: &[u8],
        now_ms: i64,
    ) -> Result<i64, (ErrorCode, String)> {
        let mut s = self.following(&at, true)?;
        // Where each new epoch starts, on disk before its batches.
        for batch in records::batches(records) {
            let batch = batch.map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
            let epoch = batch.partition_leader_epoch();
            if s.epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
                s.epochs.assign(epoch, batch.base_offset());
            }
        }
        s.epochs.flush().map_err(|e| {
            (
                storage_error(e),
                "cannot write the leader-epoch checkpoint".into(),
            )
        })?;
        let end_before = s.log.log_end_offset();
        let appended = s.log.append_as_follower(records, now_ms);
        if appended.is_err() {
            // Nothing was written: neither are the epochs it would start.
            let _ = s.epochs.truncate_from_end(end_before);
        }
        let appended = appended.map_err(|e| match e {
            StorageError::UnexpectedAppend(why) | StorageError::Corrupt { reason: why, .. } => {
                (ErrorCode::CorruptMessage, why)
            }
            StorageError::InvalidBatch(e) => (ErrorCode::CorruptMessage, e.to_string()),
            e => (storage_error(e), "replicated append failed".into()),
        })?;
        if let Some(at) = appended.rolled_to {
            self.snapshot_producers(&s, at);
        }
        for batch in records::batches(records).flatten() {
            Self::replay(&mut s, &batch);
        }
        self.publish_log_end(&s);
        Ok(s.log.log_end_offset())
    }

    /// Where this follower's next fetch starts.
    pub fn fetch_position(&self) -> FetchPosition {
        let s = self.lock();
        FetchPosition {
            leader_epoch: self.leader_epoch(),
            offset: s.log.log_end_offset(),
            last_fetched_epoch: s.epochs.latest_epoch().unwrap_or(-1),
            log_start_offset: s.log.log_start_offset(),
        }
    }

    /// The state, if this node follows in the epoch of `at` and (when
    /// `same_end`) its log end has not moved since `at` was taken.
    fn following(
        &self,
        at: &FetchPosition,
        same_end: bool,
    ) -> Result<MutexGuard<'_, State>, (ErrorCode, String)> {
        let s = self
            .serving()
            .map_err(|c| (c, "partition is closed".to_owned()))?;
        if self.leads.load(Ordering::Acquire) {
            let message = format!("this node leads {}: it follows no one", self.name);
            return Err((ErrorCode::NotLeaderOrFollower, message));
        }
        let epoch = self.leader_epoch();
        let end = s.log.log_end_offset();
        if epoch != at.leader_epoch || same_end && end != at.offset {
            let message = format!(
                "a stale fetch answer for {} (fetched in epoch {} from {}, now epoch {epoch} at {end})",
                self.name, at.leader_epoch, at.offset
            );
            return Err((ErrorCode::FencedLeaderEpoch, message));
        }
        Ok(s)
    }

    /// A follower learns the high watermark and the log start from its
    /// leader's fetch answers: it takes the high watermark up to its own
    /// log end, never down, and moves its log start up to the leader's
    /// (DeleteRecords and retention there), no further than what it knows
    /// committed, as Kafka's followers do.
    pub fn follow_leader(
        &self,
        at: FetchPosition,
        leader_high_watermark: i64,
        leader_log_start: i64,
        now_ms: i64,
    ) -> Result<(), (ErrorCode, String)> {
        let mut s = self.following(&at, false)?;
        let hw = leader_high_watermark.min(s.log.log_end_offset());
        self.high_watermark.send_if_modified(|current| {
            let moved = hw > *current;
            *current = (*current).max(hw);
            moved
        });
        let start = leader_log_start.min(self.high_watermark());
        if start > s.log.log_start_offset() {
            let fail = |e: StorageError| (storage_error(e), "cannot move the log start".to_owned());
            let start = s.log.advance_log_start(start, now_ms).map_err(fail)?;
            s.epochs.truncate_from_start(start).map_err(fail)?;
        }
        Ok(())
    }

    /// Removes this replica's log from `offset` on, where it diverged from
    /// the leader's (a batch holding `offset` goes whole): the producer
    /// state is rebuilt to the new end, later leader epochs are forgotten,
    /// and the high watermark comes down to the end should it be above.
    /// Returns the new log end.
    pub fn truncate_to(&self, at: FetchPosition, offset: i64) -> Result<i64, (ErrorCode, String)> {
        let mut s = self.following(&at, true)?;
        let fail = |e: StorageError| (storage_error(e), "truncation failed".to_owned());
        let end = s.log.truncate_to(offset).map_err(fail)?;
        self.after_truncation(&mut s, end).map_err(fail)?;
        Ok(end)
    }

    /// Empties this replica's log to start again at `offset` (a follower
    /// whose log lies out of the leader's range). Everything below the
    /// leader's log start was committed there, so the high watermark
    /// starts at `offset` (as Kafka's truncateFullyAndStartAt sets it).
    pub fn truncate_fully_and_start_at(
        &self,
        at: FetchPosition,
        offset: i64,
    ) -> Result<(), (ErrorCode, String)> {
        let mut s = self.following(&at, true)?;
        let fail = |e: StorageError| (storage_error(e), "truncation failed".to_owned());
        s.log.truncate_fully_and_start_at(offset).map_err(fail)?;
        s.epochs.truncate_from_start(offset).map_err(fail)?;
        self.after_truncation(&mut s, offset).map_err(fail)?;
        self.high_watermark.send_replace(offset);
        Ok(())
    }

    fn after_truncation(&self, s: &mut State, end: i64) -> Result<(), StorageError> {
        s.epochs.truncate_from_end(end)?;
        let (_, producers) = load_producers(&mut s.log)?;
        s.producers = producers;
        s.verifying.clear();
        self.publish_log_end(s);
        self.high_watermark.send_if_modified(|hw| {
            let moved = *hw > end;
            *hw = (*hw).min(end);
            moved
        });
        Ok(())
    }

    /// A producer snapshot at `at` (a new segment's base offset): the state
    /// before the batch that rolled the log.
    fn snapshot_producers(&self, s: &State, at: i64) {
        let dir = s.log.dir().to_path_buf();
        if let Err(e) = strom_producer::write_snapshot(&dir, at, &s.producers)
            .and_then(|_| strom_producer::retain_latest_snapshots(&dir, SNAPSHOTS_KEPT))
        {
            error!(partition = ?self, error = %e, "cannot write producer snapshot");
        }
    }

    /// The producer state takes an appended batch in (and the
    /// aborted-transaction index an abort marker).
    fn replay(s: &mut State, batch: &Batch<'_>) {
        if let Some(done) = s.producers.replay(batch) {
            if done.aborted {
                let entry = aborted_entry(&done, s.producers.first_unstable_offset());
                s.log.add_aborted(entry);
            }
        }
    }

    /// Appends validated bytes, updates the producer state (and the
    /// aborted-transaction index for an abort marker) and the high watermark.
    fn write(
        &self,
        mut s: MutexGuard<'_, State>,
        mut owned: Vec<u8>,
        now_ms: i64,
    ) -> Result<AppendResult, (ErrorCode, String)> {
        let epoch = self.leader_epoch();
        // The epoch's start is on disk before anything written in it.
        s.epochs.flush().map_err(|e| {
            (
                storage_error(e),
                "cannot write the leader-epoch checkpoint".into(),
            )
        })?;
        let appended = s
            .log
            .append(&mut owned, epoch, now_ms)
            .map_err(|e| (storage_error(e), "append failed".into()))?;
        if let Some(at) = appended.rolled_to {
            self.snapshot_producers(&s, at);
        }
        let batch = Batch::parse(&owned).expect("appended");
        Self::replay(&mut s, &batch);
        let start = s.log.log_start_offset();
        // With the leader alone in the ISR the high watermark follows the
        // log end; with followers, their fetches move it.
        self.publish_log_end(&s);
        self.advance_high_watermark(&s, now_ms);
        let leadership = self.leadership();
        drop(s);
        Ok(AppendResult {
            base_offset: appended.first_offset,
            next_offset: appended.last_offset + 1,
            log_append_time: appended.log_append_time.unwrap_or(-1),
            log_start_offset: start,
            leadership,
        })
    }

    /// The last stable offset (the high watermark when no transaction is open).
    pub fn last_stable_offset(&self) -> i64 {
        let s = self.lock();
        last_stable_offset(&s.producers, self.high_watermark())
    }

    /// The producers with state here, for DescribeProducers.
    pub fn producers(&self) -> Result<Vec<ProducerSummary>, ErrorCode> {
        let s = self.serving()?;
        Ok(s.producers
            .producers()
            .map(|(id, e): (i64, &ProducerEntry)| ProducerSummary {
                producer_id: id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: if e.last_timestamp > 0 {
                    e.last_timestamp
                } else {
                    -1
                },
                coordinator_epoch: e.coordinator_epoch.unwrap_or(-1),
                current_txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect())
    }

    /// Reads whole batches from `offset`, below the high watermark (the last
    /// stable offset for read_committed).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<ReadResult, ErrorCode> {
        let s = self.serving()?;
        let hw = self.high_watermark();
        // Between the high watermark and the log end there is nothing to
        // read yet (a new leader's high watermark may still be below what
        // a consumer read from the old one), past the end nothing at all.
        if offset > hw.max(s.log.log_end_offset()) {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let lso = last_stable_offset(&s.producers, hw);
        let limit = match isolation {
            Isolation::ReadUncommitted => hw,
            Isolation::ReadCommitted => lso,
        };
        let data = if offset >= limit {
            strom_storage::FetchData {
                records: Vec::new(),
            }
        } else {
            s.log
                .read(offset, max_bytes, limit, min_one)
                .map_err(storage_error)?
        };
        let aborted = (isolation == Isolation::ReadCommitted).then(|| {
            let upper = records::batches(&data.records)
                .filter_map(Result::ok)
                .last()
                .map_or(offset, |b| b.last_offset() + 1);
            if upper > offset {
                s.log.aborted_txns(offset, upper)
            } else {
                Vec::new()
            }
        });
        Ok(ReadResult {
            records: Bytes::from(data.records),
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: s.log.log_start_offset(),
            aborted,
        })
    }

    /// Reads whole batches from `offset` up to the log end, past the high
    /// watermark: what a coordinator loads its state from when this node
    /// becomes the leader of its partition (what it holds there will be
    /// committed in its leadership, or the leadership ends first).
    pub fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<Bytes, ErrorCode> {
        let s = self.serving()?;
        if offset >= s.log.log_end_offset() {
            return Ok(Bytes::new());
        }
        let data = s
            .log
            .read(offset, max_bytes, i64::MAX, true)
            .map_err(storage_error)?;
        Ok(Bytes::from(data.records))
    }

    /// Answers a follower's fetch (as its leader): where its log diverged
    /// from this one, if it did (its last fetched epoch ends earlier here,
    /// or is not known); else the batches from `offset` up to the log end
    /// (not the high watermark), after its fetch offset was taken as its
    /// log end, which may move the high watermark.
    pub fn read_for_follower(
        &self,
        replica: i32,
        offset: i64,
        last_fetched_epoch: i32,
        max_bytes: usize,
        min_one: bool,
        now_ms: i64,
    ) -> Result<FollowerRead, ErrorCode> {
        let mut s = self.serving()?;
        if !self.leads.load(Ordering::Acquire) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let end = s.log.log_end_offset();
        let start = s.log.log_start_offset();
        let answer = |records: Vec<u8>, diverging| FollowerRead {
            records: Bytes::from(records),
            high_watermark: self.high_watermark(),
            log_start_offset: start,
            log_end_offset: end,
            diverging,
        };
        if last_fetched_epoch >= 0 {
            let (epoch, epoch_end) = s.epochs.end_offset_for(last_fetched_epoch, end);
            if epoch < 0 || epoch_end < 0 {
                // No epoch here to compare with (Kafka answers so too): the
                // follower resets from the log start and high watermark.
                return Err(ErrorCode::OffsetOutOfRange);
            }
            if epoch != last_fetched_epoch || epoch_end < offset {
                return Ok(answer(Vec::new(), Some((epoch, epoch_end))));
            }
        }
        if offset < start || offset > end {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let recorded = match &mut s.leadership {
            Some((_, l)) => l.record_fetch(replica, offset, end, now_ms),
            None => false,
        };
        if !recorded {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        self.advance_high_watermark(&s, now_ms);
        let data = if offset < end {
            s.log
                .read(offset, max_bytes, i64::MAX, min_one)
                .map_err(storage_error)?
                .records
        } else {
            Vec::new()
        };
        Ok(answer(data, None))
    }

    /// Answers ListOffsets for this partition; read_committed sees up to
    /// the last stable offset.
    pub fn list_offset(
        &self,
        spec: OffsetSpec,
        isolation: Isolation,
    ) -> Result<ListOffsetResult, ErrorCode> {
        let s = self.serving()?;
        let hw = match isolation {
            Isolation::ReadUncommitted => self.high_watermark(),
            Isolation::ReadCommitted => last_stable_offset(&s.producers, self.high_watermark()),
        };
        let none = ListOffsetResult {
            offset: -1,
            timestamp: -1,
        };
        let found = match spec {
            OffsetSpec::Earliest => ListOffsetResult {
                offset: s.log.log_start_offset(),
                timestamp: -1,
            },
            OffsetSpec::Latest => ListOffsetResult {
                offset: hw,
                timestamp: -1,
            },
            OffsetSpec::MaxTimestamp => {
                s.log
                    .max_timestamp()
                    .map_err(storage_error)?
                    .map_or(none, |t| ListOffsetResult {
                        offset: t.offset,
                        timestamp: t.timestamp,
                    })
            }
            OffsetSpec::LatestTiered => none,
            OffsetSpec::Timestamp(ts) => s
                .log
                .offset_for_timestamp(ts)
                .map_err(storage_error)?
                .map_or(none, |t| ListOffsetResult {
                    offset: t.offset,
                    timestamp: t.timestamp,
                }),
        };
        // Clients never see offsets at or past the high watermark (or LSO)
        // by time.
        Ok(
            if matches!(spec, OffsetSpec::Timestamp(_) | OffsetSpec::MaxTimestamp)
                && found.offset >= hw
            {
                none
            } else {
                found
            },
        )
    }

    /// Fsyncs rolled segments (outside the lock, so appends go on),
    /// enforces `flush.ms`, removes deleted segments' files when due, and,
    /// when `retention` (a retention check is due), enforces retention.
    pub(crate) fn maintain(&self, now_ms: i64, retention: bool) -> Result<(), StorageError> {
        let pending = {
            let mut s = self.lock();
            if s.closed {
                return Ok(());
            }
            s.log.take_pending_flushes()
        };
        for (path, file) in pending {
            file.sync_data()
                .map_err(|source| StorageError::Io { path, source })?;
        }
        let mut s = self.lock();
        s.log.flush_if_due(now_ms)?;
        s.log.remove_deleted_files(now_ms);
        if s.hw_checkpoint.is_some() {
            self.checkpoint_high_watermark(&mut s);
        }
        if retention && s.log.enforce_retention(now_ms, self.high_watermark())? > 0 {
            let start = s.log.log_start_offset();
            s.epochs.truncate_from_start(start)?;
        }
        Ok(())
    }

    /// How much the cleaner would clean here now; `None` unless the topic
    /// is compacted (or once the partition closed).
    pub(crate) fn dirtiness(&self, now_ms: i64) -> Option<Dirtiness> {
        let s = self.lock();
        if s.closed {
            return None;
        }
        let stable = last_stable_offset(&s.producers, self.high_watermark());
        s.log.dirtiness(now_ms, stable)
    }

    /// Compacts the log (see `strom_storage::cleaner`): planned under the
    /// lock, below the last stable offset; cleaned without it, so produce
    /// and fetch go on; swapped in under it. The last batch of each known
    /// producer stays, so its sequence survives a rebuild from the log.
    /// Returns what it did, `None` if it did not finish or was not needed.
    pub(crate) fn clean(
        &self,
        settings: &CleanerSettings,
        now_ms: i64,
        throttle: &mut Throttle,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<CleanStats>, StorageError> {
        let (job, last_batches) = {
            let s = self.lock();
            if s.closed {
                return Ok(None);
            }
            let stable = last_stable_offset(&s.producers, self.high_watermark());
            let Some(job) = s.log.plan_cleaning(now_ms, stable)? else {
                return Ok(None);
            };
            let last_batches: HashMap<i64, i64> = s
                .producers
                .producers()
                .filter_map(|(id, e)| e.batches.back().map(|b| (id, b.last_offset)))
                .collect();
            (job, last_batches)
        };
        let Some(cleaned) = job.run(settings, &last_batches, now_ms, throttle, stop)? else {
            return Ok(None);
        };
        let stats = cleaned.stats;
        let mut s = self.lock();
        if s.closed {
            cleaned.discard();
            return Ok(None);
        }
        Ok(s.log.install_cleaned(cleaned, now_ms)?.then_some(stats))
    }

    /// Forgets idle producers (see `ProducerStateManager::expire`).
    pub(crate) fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.lock().producers.expire(now_ms, expiration_ms)
    }

    /// Snapshots producer state at the log end and closes the log cleanly.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        let mut s = self.lock();
        if std::mem::replace(&mut s.closed, true) {
            return Ok(());
        }
        self.end_leadership();
        if s.hw_checkpoint.is_some() {
            self.checkpoint_high_watermark(&mut s);
        }
        // Nothing written since the log opened: the snapshots on disk and
        // the log still rebuild exactly this state.
        if !s.log.has_unsaved_changes() {
            return s.log.close();
        }
        // The log first: if its files cannot be made current, no snapshot
        // may claim the state at its end (replay from the last snapshot
        // restores what the files lack).
        s.log.close()?;
        let dir = s.log.dir().to_path_buf();
        if let Err(e) = strom_producer::write_snapshot(&dir, s.log.log_end_offset(), &s.producers)
            .and_then(|_| strom_producer::retain_latest_snapshots(&dir, SNAPSHOTS_KEPT))
        {
            error!(partition = ?self, error = %e, "cannot write producer snapshot at shutdown");
        }
        Ok(())
    }

    /// Stops serving and removes the partition's data.
    pub(crate) fn delete(&self) -> Result<(), StorageError> {
        let mut s = self.lock();
        s.closed = true;
        self.end_leadership();
        let dir = s.log.dir().to_path_buf();
        std::fs::remove_dir_all(&dir).map_err(|source| StorageError::Io { path: dir, source })
    }
}
