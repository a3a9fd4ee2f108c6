//! The consumer group coordinator, classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), with committed offsets.
//!
//! All state sits behind one mutex; a request holds it only while it
//! decides. Waiting requests hold a oneshot receiver that the completing
//! request (or `tick`) answers.

pub mod consumer;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::ErrorCode;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::partition_for;
use crate::records::{encode, CoordinatorLog, GroupValue, MemberValue, OffsetValue, RecordKey};
pub use state::GroupState;
use state::{Group, Member};

/// Coordinator settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay: Duration,
    /// `offsets.topic.num.partitions`
    pub offsets_partitions: i32,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`
    pub offsets_retention: Duration,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub consumer_heartbeat_interval: Duration,
    /// `group.max.size` (classic groups)
    pub classic_max_size: usize,
    /// `group.consumer.max.size` (KIP-848 groups)
    pub consumer_max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3000),
            offsets_partitions: 50,
            offset_metadata_max_bytes: 4096,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            consumer_session_timeout: Duration::from_millis(45_000),
            consumer_heartbeat_interval: Duration::from_millis(5_000),
            classic_max_size: i32::MAX as usize,
            consumer_max_size: i32::MAX as usize,
        }
    }
}

/// An answer now, or one that arrives when the group gets there.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl<T> Reply<T> {
    /// Waits for the answer; `on_drop` if the coordinator dropped the waiter.
    pub async fn wait(self, on_drop: impl FnOnce() -> T) -> T {
        match self {
            Reply::Now(t) => t,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| on_drop()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<ErrorCode>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinMember>,
}

impl JoinResponse {
    fn error(code: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error: Some(code),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<ErrorCode>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(code: ErrorCode) -> SyncResponse {
        SyncResponse {
            error: Some(code),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// One partition's offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Who commits: the group and, for members, their identity.
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    pub group_id: &'a str,
    /// -1 for a group that only stores offsets.
    pub generation: i32,
    pub member_id: &'a str,
    pub instance: Option<&'a str>,
}

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A group as ListGroups and DescribeGroups report it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    /// The state's name: a classic state, or for KIP-848 groups Empty,
    /// Assigning, Reconciling or Stable.
    pub state_name: &'static str,
    /// "classic" or "consumer".
    pub group_type: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    log: Arc<dyn CoordinatorLog>,
    groups: Mutex<HashMap<String, Group>>,
}

type Groups<'a> = MutexGuard<'a, HashMap<String, Group>>;

/// An offset commit turned into records.
struct OffsetRecords {
    /// Per partition: OFFSET_METADATA_TOO_LARGE refuses just that one.
    results: Vec<Option<ErrorCode>>,
    /// The records to write, for the accepted partitions.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The values those records carry, by partition.
    values: Vec<((String, i32), OffsetValue)>,
}

/// A record removing a committed offset.
fn offset_tombstone(group: &str, topic: &str, partition: i32) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = RecordKey::Offset {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    };
    (key.encode(), None)
}

/// The records removing a group's metadata: its classic group record, and
/// its KIP-848 records if it has any.
fn group_tombstones(g: &Group) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let key = RecordKey::Group {
        group: g.id.clone(),
    };
    let mut out = vec![(key.encode(), None)];
    if let Some(cg) = &g.consumer {
        out.extend(cg.tombstones(&g.id));
    }
    out
}

/// Restores the members of a group record: a group with members is Stable
/// in that generation, and each member has a full session from `now` to
/// heartbeat before it expires (Kafka does the same when it loads a group).
fn restore_members(g: &mut Group, members: Vec<MemberValue>, now: Instant) {
    g.members.clear();
    g.static_members.clear();
    g.pending.clear();
    for m in members {
        if let Some(inst) = &m.instance_id {
            g.static_members.insert(inst.clone(), m.member_id.clone());
        }
        g.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: Duration::from_millis(m.session_timeout_ms),
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                protocols: m
                    .protocols
                    .into_iter()
                    .map(|(n, md)| (n, Bytes::from(md)))
                    .collect(),
                assignment: Bytes::from(m.assignment),
                join_waiter: None,
                sync_waiter: None,
                last_seen: now,
            },
        );
    }
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, log: Arc<dyn CoordinatorLog>) -> Self {
        GroupCoordinator {
            config,
            log,
            groups: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The `__consumer_offsets` partition that holds `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_partitions)
    }

    fn lock(&self) -> Groups<'_> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the groups of `__consumer_offsets` partition `partition`
    /// (this node no longer leads it: their coordinator is elsewhere now).
    /// Members waiting in a join or sync phase are answered
    /// NOT_COORDINATOR, so they find the new coordinator. Returns how many
    /// groups went.
    pub fn unload(&self, partition: i32) -> usize {
        let mut groups = self.lock();
        let gone: Vec<String> = groups
            .keys()
            .filter(|id| self.partition_for(id) == partition)
            .cloned()
            .collect();
        for id in &gone {
            let Some(mut g) = groups.remove(id) else {
                continue;
            };
            for m in g.members.values_mut() {
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(JoinResponse::error(ErrorCode::NotCoordinator, &m.id));
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResponse::error(ErrorCode::NotCoordinator));
                }
            }
        }
        gone.len()
    }

    /// Applies one record read back from `__consumer_offsets`: loading is
    /// replaying.
    pub fn replay(&self, key: &[u8], value: Option<&[u8]>) {
        let Some(key) = RecordKey::decode(key) else {
            return;
        };
        let mut groups = self.lock();
        match key {
            RecordKey::ConsumerGroup { ref group } if value.is_none() => {
                if let Some(g) = groups.get_mut(group) {
                    g.consumer = None;
                }
            }
            RecordKey::ConsumerMember { ref group, .. }
            | RecordKey::ConsumerTarget { ref group, .. }
            | RecordKey::ConsumerAssignment { ref group, .. }
                if value.is_none() =>
            {
                // A member's tombstone: nothing to do for a group gone.
                if let Some(cg) = groups.get_mut(group).and_then(|g| g.consumer.as_mut()) {
                    cg.replay(&key, None, Instant::now());
                }
            }
            RecordKey::ConsumerGroup { ref group }
            | RecordKey::ConsumerMember { ref group, .. }
            | RecordKey::ConsumerTarget { ref group, .. }
            | RecordKey::ConsumerAssignment { ref group, .. } => {
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group));
                g.consumer
                    .get_or_insert_with(Default::default)
                    .replay(&key, value, Instant::now());
            }
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => match value.and_then(|v| serde_json::from_slice::<OffsetValue>(v).ok()) {
                Some(mut v) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group));
                    v.order = g.next_order();
                    g.offsets.insert((topic, partition), v);
                }
                None => {
                    if let Some(g) = groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            },
            RecordKey::Group { group } => {
                match value.and_then(|v| serde_json::from_slice::<GroupValue>(v).ok()) {
                    Some(v) => {
                        let g = groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(&group));
                        g.generation = v.generation;
                        g.protocol_type = v.protocol_type;
                        g.protocol = v.protocol;
                        g.leader = v.leader;
                        restore_members(g, v.members, Instant::now());
                    }
                    None => {
                        // Offsets of open transactions outlive the group's
                        // metadata: their marker may still come.
                        if let Some(old) = groups.remove(&group) {
                            if !old.txn_offsets.is_empty() {
                                let mut g = Group::new(&group);
                                g.txn_offsets = old.txn_offsets;
                                g.commits = old.commits;
                                groups.insert(group, g);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies an offset record written inside `producer_id`'s transaction:
    /// pending until the transaction's marker.
    pub fn replay_transactional(&self, producer_id: i64, key: &[u8], value: Option<&[u8]>) {
        let Some(RecordKey::Offset {
            group,
            topic,
            partition,
        }) = RecordKey::decode(key)
        else {
            return;
        };
        let Some(mut v) = value.and_then(|v| serde_json::from_slice::<OffsetValue>(v).ok()) else {
            return;
        };
        let mut groups = self.lock();
        let g = groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group));
        v.order = g.next_order();
        g.txn_offsets
            .entry(producer_id)
            .or_default()
            .insert((topic, partition), v);
    }

    /// A transaction marker reached `__consumer_offsets` partition
    /// `partition`: the offsets `producer_id` committed there in the
    /// transaction become visible (commit) or are dropped (abort).
    pub fn complete_transaction(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut groups = self.lock();
        for g in groups.values_mut() {
            if partition_for(&g.id, self.config.offsets_partitions) != partition {
                continue;
            }
            if let Some(offsets) = g.txn_offsets.remove(&producer_id) {
                if commit {
                    debug!(group = %g.id, producer_id, offsets = offsets.len(), "transactional offsets committed");
                    // As Kafka: an offset committed outside the transaction
                    // after it was written stays.
                    for (tp, v) in offsets {
                        if g.offsets.get(&tp).is_none_or(|cur| cur.order < v.order) {
                            g.offsets.insert(tp, v);
                        }
                    }
                }
            }
        }
    }

    /// Partitions of the group with offsets in open transactions: OffsetFetch
    /// with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them.
    pub fn unstable_offsets(&self, group_id: &str) -> std::collections::BTreeSet<(String, i32)> {
        self.lock()
            .get(group_id)
            .map(|g| {
                g.txn_offsets
                    .values()
                    .flat_map(|o| o.keys().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// TxnOffsetCommit: offsets committed inside a transaction, visible once
    /// it commits. The member checks are those of OffsetCommit, except that
    /// a commit without a generation is accepted from any group.
    /// `guard` is the offsets partition's verification guard (see
    /// [`CoordinatorLog::append_transactional`]).
    pub fn commit_transactional_offsets(
        &self,
        who: &Committer<'_>,
        producer: (i64, i16),
        guard: u64,
        offsets: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        let Committer {
            group_id,
            generation,
            member_id,
            instance,
        } = *who;
        let mut groups = self.lock();
        match groups.get(group_id) {
            None if generation >= 0 => return Err(ErrorCode::IllegalGeneration),
            None => {
                groups.insert(group_id.to_owned(), Group::new(group_id));
            }
            Some(g) if g.consumer.as_ref().is_some_and(|c| !c.is_empty()) => {
                let cg = g.consumer.as_ref().expect("consumer group");
                if generation >= 0 || !member_id.is_empty() {
                    match cg.member_epoch(member_id) {
                        None => return Err(ErrorCode::UnknownMemberId),
                        Some(epoch) if epoch != generation => {
                            return Err(ErrorCode::IllegalGeneration)
                        }
                        Some(_) => {}
                    }
                }
            }
            Some(g) => {
                if generation >= 0 || !member_id.is_empty() || instance.is_some() {
                    g.validate_member(member_id, instance, generation)?;
                }
            }
        }
        let g = groups.get_mut(group_id).expect("present");
        let OffsetRecords {
            results,
            writes,
            values,
        } = self.offset_records(group_id, offsets, now_ms);
        if writes.is_empty() {
            return Ok(results);
        }
        self.log.append_transactional(
            self.partition_for(group_id),
            producer.0,
            producer.1,
            guard,
            writes,
        )?;
        for (tp, mut v) in values {
            v.order = g.next_order();
            g.txn_offsets.entry(producer.0).or_default().insert(tp, v);
        }
        Ok(results)
    }

    fn persist_group(&self, g: &Group) -> Result<(), ErrorCode> {
        let key = RecordKey::Group {
            group: g.id.clone(),
        }
        .encode();
        let members = if g.state == GroupState::Empty {
            Vec::new()
        } else {
            g.members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, md)| (n.clone(), md.to_vec()))
                        .collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect()
        };
        let value = GroupValue {
            protocol_type: g.protocol_type.clone(),
            generation: g.generation,
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            members,
        };
        self.log
            .append(self.partition_for(&g.id), vec![(key, Some(encode(&value)))])
    }

    /// JoinGroup.
    pub fn join(&self, req: JoinRequest, now: Instant) -> Reply<JoinResponse> {
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        if session < self.config.min_session_timeout || session > self.config.max_session_timeout {
            return Reply::Now(JoinResponse::error(
                ErrorCode::InvalidSessionTimeout,
                &req.member_id,
            ));
        }
        let mut groups = self.lock();
        if !groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return Reply::Now(JoinResponse::error(
                    ErrorCode::UnknownMemberId,
                    &req.member_id,
                ));
            }
            groups.insert(req.group_id.clone(), Group::new(&req.group_id));
        }
        let g = groups.get_mut(&req.group_id).expect("present");
        if !self.accepts_joining(g, &req.member_id) {
            // Kafka drops a known member it turns away (one that did not
            // rejoin in time to be counted).
            if g.members.contains_key(&req.member_id) {
                g.remove_member(&req.member_id);
                self.after_removal(g, now, "member over the group's capacity");
            }
            return Reply::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, ""));
        }
        if g.consumer.as_ref().is_some_and(|c| !c.is_empty())
            || !g.supports(&req.protocol_type, &req.protocols)
        {
            return Reply::Now(JoinResponse::error(
                ErrorCode::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        let (tx, rx) = oneshot::channel();
        if req.member_id.is_empty() {
            let member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = &req.group_instance_id {
                if let Some(old) = g.static_members.get(instance).cloned() {
                    return self.rejoin_static(g, &old, member_id, req, now);
                }
            } else if req.require_known_member_id {
                g.pending.insert(member_id.clone(), now + session);
                return Reply::Now(JoinResponse::error(ErrorCode::MemberIdRequired, &member_id));
            }
            self.add_member(g, member_id, req, tx, now);
            self.maybe_complete_join(g, now);
            return Reply::Later(rx);
        }
        let member_id = req.member_id.clone();
        if !g.members.contains_key(&member_id) {
            if g.pending.remove(&member_id).is_some() {
                self.add_member(g, member_id, req, tx, now);
                self.maybe_complete_join(g, now);
                return Reply::Later(rx);
            }
            return Reply::Now(JoinResponse::error(ErrorCode::UnknownMemberId, &member_id));
        }
        if let Some(instance) = &req.group_instance_id {
            if g.static_members.get(instance) != Some(&member_id) {
                return Reply::Now(JoinResponse::error(ErrorCode::FencedInstanceId, &member_id));
            }
        }
        let unchanged = g.members[&member_id].protocols == req.protocols;
        let is_leader = g.leader.as_deref() == Some(member_id.as_str());
        // Kafka's rules for a known member that joins again with the same
        // metadata: while the group awaits SyncGroup, anyone (the leader
        // too, with the member list) gets the current generation back, as
        // when it missed its JoinGroup answer; once stable, only followers
        // do, while the leader's join starts a rebalance (its way to act on
        // topic changes).
        let current = unchanged
            && match g.state {
                GroupState::CompletingRebalance => true,
                GroupState::Stable => !is_leader,
                _ => false,
            };
        let m = g.members.get_mut(&member_id).expect("member");
        if current {
            m.last_seen = now;
            return Reply::Now(g.join_response(&member_id));
        }
        m.session_timeout = session;
        m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        self.await_join(g, &member_id, req.protocols, now, "member rejoined")
    }

    /// Whether `g` takes a JoinGroup from `member_id` under `group.max.size`,
    /// as Kafka decides: an empty group always; one preparing a rebalance a
    /// member already waiting, or anyone while fewer wait than the limit;
    /// otherwise a member, or anyone while the group is below the limit.
    fn accepts_joining(&self, g: &Group, member_id: &str) -> bool {
        let max = self.config.classic_max_size;
        let member = g.members.get(member_id);
        match g.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                member.is_some_and(|m| m.join_waiter.is_some())
                    || g.members
                        .values()
                        .filter(|m| m.join_waiter.is_some())
                        .count()
                        < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.is_some() || g.members.len() < max
            }
        }
    }

    /// KIP-345: a static member's new instance takes over the old member's
    /// place, and the old member id is fenced.
    fn rejoin_static(
        &self,
        g: &mut Group,
        old: &str,
        new_id: String,
        req: JoinRequest,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let mut member = g.members.remove(old).expect("static member present");
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResponse::error(ErrorCode::FencedInstanceId, old));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResponse::error(ErrorCode::FencedInstanceId));
        }
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.last_seen = now;
        if g.leader.as_deref() == Some(old) {
            g.leader = Some(new_id.clone());
        }
        g.static_members.insert(
            req.group_instance_id.clone().expect("static"),
            new_id.clone(),
        );
        g.members.insert(new_id.clone(), member);
        if g.state == GroupState::Stable && unchanged {
            debug!(group = %g.id, member = %new_id, "static member rejoined without a rebalance");
            let mut resp = g.join_response(&new_id);
            // The leader keeps the current assignment: nothing to compute.
            resp.members.clear();
            return Reply::Now(resp);
        }
        self.await_join(
            g,
            &new_id,
            req.protocols,
            now,
            "static member rejoined with new metadata",
        )
    }

    /// A known member (re)joins: it waits for the join phase, which starts
    /// now unless it is already under way.
    fn await_join(
        &self,
        g: &mut Group,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        now: Instant,
        reason: &str,
    ) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        let m = g.members.get_mut(member_id).expect("member");
        m.protocols = protocols;
        m.join_waiter = Some(tx);
        m.last_seen = now;
        if g.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(g, now, reason);
        }
        self.maybe_complete_join(g, now);
        Reply::Later(rx)
    }

    fn add_member(
        &self,
        g: &mut Group,
        member_id: String,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
        now: Instant,
    ) {
        let was_empty = g.members.is_empty();
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            g.static_members.insert(instance.clone(), member_id.clone());
        }
        g.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                last_seen: now,
            },
        );
        if g.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(g, now, "member joined");
            if was_empty {
                // Give the other members of a starting group time to join
                // (group.initial.rebalance.delay.ms).
                g.initial_delay_until = Some(now + self.config.initial_rebalance_delay);
            }
        } else if g.initial_delay_until.is_some() {
            let until = now + self.config.initial_rebalance_delay;
            g.initial_delay_until = Some(until.min(g.rebalance_deadline.unwrap_or(until)));
        }
    }

    fn prepare_rebalance(&self, g: &mut Group, now: Instant, reason: &str) {
        info!(group = %g.id, generation = g.generation, reason, "preparing rebalance");
        // Members waiting for an assignment learn that a new round started.
        for m in g.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResponse::error(ErrorCode::RebalanceInProgress));
            }
        }
        g.state = GroupState::PreparingRebalance;
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        g.rebalance_deadline = Some(now + timeout);
    }

    /// Completes the join phase when every member has rejoined (and the
    /// initial delay is over), or when the rebalance timeout has passed.
    fn maybe_complete_join(&self, g: &mut Group, now: Instant) {
        if g.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            g.members.values().all(|m| m.join_waiter.is_some()) && g.pending.is_empty();
        let delay_over = g.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = g.rebalance_deadline.is_some_and(|t| now >= t);
        if !(all_joined && delay_over || timed_out) {
            return;
        }
        // Members that did not rejoin in time are removed.
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            g.remove_member(&id);
        }
        g.pending.clear();
        g.initial_delay_until = None;
        g.rebalance_deadline = None;
        g.generation += 1;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.protocol = None;
            g.leader = None;
            let _ = self.persist_group(g);
            return;
        }
        g.protocol = g.select_protocol();
        if !g.leader.as_ref().is_some_and(|l| g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.state = GroupState::CompletingRebalance;
        info!(group = %g.id, generation = g.generation, members = g.members.len(), protocol = ?g.protocol, "join phase complete");
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let resp = g.join_response(&id);
            let m = g.members.get_mut(&id).expect("member");
            m.last_seen = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(resp);
            }
        }
    }

    /// SyncGroup.
    pub fn sync(&self, req: SyncRequest, now: Instant) -> Reply<SyncResponse> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(&req.group_id) else {
            return Reply::Now(SyncResponse::error(ErrorCode::UnknownMemberId));
        };
        if let Err(code) = g.validate_member(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            return Reply::Now(SyncResponse::error(code));
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != g.protocol.as_ref())
        {
            return Reply::Now(SyncResponse::error(ErrorCode::InconsistentGroupProtocol));
        }
        match g.state {
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResponse::error(ErrorCode::RebalanceInProgress))
            }
            GroupState::Stable => Reply::Now(g.sync_response(&req.member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = g.members.get_mut(&req.member_id).expect("validated");
                m.sync_waiter = Some(tx);
                m.last_seen = now;
                if g.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assigned: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in g.members.values_mut() {
                        m.assignment = assigned.get(&m.id).cloned().unwrap_or_default();
                    }
                    if let Err(code) = self.persist_group(g) {
                        // Kafka answers every member with the write's error
                        // and rebalances.
                        for m in g.members.values_mut() {
                            if let Some(w) = m.sync_waiter.take() {
                                let _ = w.send(SyncResponse::error(code));
                            }
                        }
                        self.prepare_rebalance(g, now, "cannot persist the assignment");
                        return Reply::Later(rx);
                    }
                    g.state = GroupState::Stable;
                    info!(group = %g.id, generation = g.generation, "group stable");
                    let ids: Vec<String> = g.members.keys().cloned().collect();
                    for id in ids {
                        let resp = g.sync_response(&id);
                        if let Some(w) = g.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                            let _ = w.send(resp);
                        }
                    }
                }
                Reply::Later(rx)
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(SyncResponse::error(ErrorCode::UnknownMemberId))
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> Option<ErrorCode> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Some(ErrorCode::UnknownMemberId);
        };
        if let Err(code) = g.validate_member(member_id, instance, generation) {
            return Some(code);
        }
        g.members.get_mut(member_id).expect("validated").last_seen = now;
        match g.state {
            GroupState::PreparingRebalance => Some(ErrorCode::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
            GroupState::Empty | GroupState::Dead => Some(ErrorCode::UnknownMemberId),
        }
    }

    /// LeaveGroup: the outcome per member (or `Err` when the group is unknown).
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Instant,
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        let mut left = false;
        let results = members
            .iter()
            .map(|(member_id, instance)| {
                let id = match instance {
                    Some(inst) => match g.static_members.get(inst) {
                        Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                        Some(_) => return Some(ErrorCode::FencedInstanceId),
                        None => return Some(ErrorCode::UnknownMemberId),
                    },
                    None => member_id.clone(),
                };
                if !g.members.contains_key(&id) {
                    return Some(ErrorCode::UnknownMemberId);
                }
                g.remove_member(&id);
                left = true;
                None
            })
            .collect();
        if left {
            self.after_removal(g, now, "member left");
        }
        Ok(results)
    }

    fn after_removal(&self, g: &mut Group, now: Instant, reason: &str) {
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if g.members.is_empty() {
                    g.state = GroupState::Empty;
                    g.generation += 1;
                    g.leader = None;
                    g.protocol = None;
                    let _ = self.persist_group(g);
                } else {
                    self.prepare_rebalance(g, now, reason);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(g, now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Time passes: completes join phases whose time is up and removes
    /// members whose session expired.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for g in groups.values_mut() {
            g.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none()
                        && now.saturating_duration_since(m.last_seen) > m.session_timeout
                })
                .map(|m| m.id.clone())
                .collect();
            for id in &expired {
                info!(group = %g.id, member = %id, "session expired");
                g.remove_member(id);
            }
            if !expired.is_empty() {
                self.after_removal(g, now, "session expired");
            }
            self.maybe_complete_join(g, now);
            self.expire_consumer_members(g, now, None);
        }
    }

    /// Expires the committed offsets of empty groups older than
    /// `offsets.retention.minutes` (tombstones written), and forgets a group
    /// left with neither members nor offsets. Returns how many expired.
    pub fn expire_offsets(&self, now_ms: i64) -> usize {
        let retention = self.config.offsets_retention.as_millis() as i64;
        let mut groups = self.lock();
        let mut expired = 0;
        let mut forgotten = Vec::new();
        // A group with offsets in open transactions is kept whole, as Kafka
        // counts pending transactional offsets as offsets of the group.
        for g in groups.values_mut().filter(|g| {
            g.state == GroupState::Empty
                && g.consumer.as_ref().is_none_or(|c| c.is_empty())
                && g.txn_offsets.is_empty()
        }) {
            let old: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(_, v)| now_ms.saturating_sub(v.commit_timestamp) >= retention)
                .map(|(tp, _)| tp.clone())
                .collect();
            let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = old
                .iter()
                .map(|(t, p)| offset_tombstone(&g.id, t, *p))
                .collect();
            let empties = old.len() == g.offsets.len();
            if empties {
                records.extend(group_tombstones(g));
            }
            if records.is_empty()
                || self
                    .log
                    .append(
                        partition_for(&g.id, self.config.offsets_partitions),
                        records,
                    )
                    .is_err()
            {
                continue;
            }
            info!(group = %g.id, offsets = old.len(), "expired committed offsets");
            expired += old.len();
            for tp in &old {
                g.offsets.remove(tp);
            }
            if empties {
                forgotten.push(g.id.clone());
            }
        }
        for id in forgotten {
            groups.remove(&id);
        }
        expired
    }

    /// OffsetCommit: per-partition outcome, or an error for the whole request.
    pub fn commit_offsets(
        &self,
        who: &Committer<'_>,
        offsets: &[OffsetCommit],
        now: Instant,
        now_ms: i64,
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        let Committer {
            group_id,
            generation,
            member_id,
            instance,
        } = *who;
        let mut groups = self.lock();
        match groups.get_mut(group_id) {
            None if generation >= 0 => return Err(ErrorCode::IllegalGeneration),
            None => {
                groups.insert(group_id.to_owned(), Group::new(group_id));
            }
            Some(g) if g.consumer.as_ref().is_some_and(|c| !c.is_empty()) => {
                // A KIP-848 group: the generation field carries the member epoch.
                let cg = g.consumer.as_ref().expect("consumer group");
                match cg.member_epoch(member_id) {
                    None => return Err(ErrorCode::UnknownMemberId),
                    Some(epoch) if epoch != generation => return Err(ErrorCode::StaleMemberEpoch),
                    Some(_) => {}
                }
            }
            Some(g) => {
                let simple = generation < 0 && member_id.is_empty() && instance.is_none();
                if simple {
                    if !g.members.is_empty() {
                        return Err(ErrorCode::UnknownMemberId);
                    }
                } else {
                    g.validate_member(member_id, instance, generation)?;
                    if g.state == GroupState::CompletingRebalance {
                        return Err(ErrorCode::RebalanceInProgress);
                    }
                    // A commit from a member counts as a heartbeat.
                    if let Some(m) = g.members.get_mut(member_id) {
                        m.last_seen = now;
                    }
                }
            }
        }
        let g = groups.get_mut(group_id).expect("present");
        let OffsetRecords {
            results,
            writes,
            values,
        } = self.offset_records(group_id, offsets, now_ms);
        if writes.is_empty() {
            return Ok(results);
        }
        self.log.append(self.partition_for(group_id), writes)?;
        for (tp, mut value) in values {
            value.order = g.next_order();
            g.offsets.insert(tp, value);
        }
        Ok(results)
    }

    /// Turns an offset commit into records (see [`OffsetRecords`]).
    fn offset_records(
        &self,
        group_id: &str,
        offsets: &[OffsetCommit],
        now_ms: i64,
    ) -> OffsetRecords {
        let mut writes = Vec::new();
        let mut values = Vec::new();
        let results = offsets
            .iter()
            .map(|o| {
                if o.metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes)
                {
                    return Some(ErrorCode::OffsetMetadataTooLarge);
                }
                let key = RecordKey::Offset {
                    group: group_id.to_owned(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                };
                let value = OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp: now_ms,
                    order: 0,
                };
                writes.push((key.encode(), Some(encode(&value))));
                values.push(((o.topic.clone(), o.partition), value));
                None
            })
            .collect();
        OffsetRecords {
            results,
            writes,
            values,
        }
    }

    /// OffsetFetch: the committed offsets of the named partitions (all
    /// committed ones when `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<((String, i32), Option<CommittedOffset>)> {
        let groups = self.lock();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        let to_committed = |v: &OffsetValue| CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
        };
        match partitions {
            Some(ps) => ps
                .iter()
                .map(|tp| {
                    (
                        tp.clone(),
                        offsets.and_then(|o| o.get(tp)).map(to_committed),
                    )
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|(tp, v)| (tp.clone(), Some(to_committed(v))))
                .collect(),
        }
    }

    /// Every group, for ListGroups and DescribeGroups.
    pub fn groups(&self) -> Vec<GroupSummary> {
        let groups = self.lock();
        let mut out: Vec<GroupSummary> = groups.values().map(Group::summary).collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        self.lock().get(group_id).map(Group::summary)
    }

    /// DeleteGroups for one group: its offsets and metadata are tombstoned.
    pub fn delete_group(&self, group_id: &str) -> Result<(), ErrorCode> {
        let mut groups = self.lock();
        let g = groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
        if !g.members.is_empty() || g.consumer.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(ErrorCode::NonEmptyGroup);
        }
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = g
            .offsets
            .keys()
            .map(|(t, p)| offset_tombstone(group_id, t, *p))
            .collect();
        records.extend(group_tombstones(g));
        self.log.append(self.partition_for(group_id), records)?;
        groups.remove(group_id);
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of partitions the group does
    /// not consume.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
        let active = g.state != GroupState::Empty;
        let mut records = Vec::new();
        let results = partitions
            .iter()
            .map(|(t, p)| {
                if active {
                    return Some(ErrorCode::GroupSubscribedToTopic);
                }
                if g.offsets.contains_key(&(t.clone(), *p)) {
                    records.push(offset_tombstone(group_id, t, *p));
                }
                None
            })
            .collect();
        if !records.is_empty() {
            self.log.append(self.partition_for(group_id), records)?;
            for tp in partitions {
                g.offsets.remove(tp);
            }
        }
        Ok(results)
    }
}
