//! KIP-848 consumer groups: the server assigns partitions, members converge
//! on the target assignment through heartbeats.
//!
//! Each change of membership, subscriptions or subscribed topics' partition
//! counts bumps the group epoch and recomputes the target assignment (with
//! the `uniform` or `range` assignor, both sticky). A member is then
//! reconciled on its heartbeats: it first gives up what is no longer its
//! target (keeping its epoch until it confirms), then takes the new epoch
//! and the target partitions nobody else still holds; the rest follow as
//! they are released. A member that has not revoked within its rebalance
//! timeout (the client's `max.poll.interval.ms`) is fenced, as one whose
//! session expired is.
//!
//! Static members (`group.instance.id`) leave with epoch -2 and keep their
//! assignment for the session timeout: the instance that comes back under
//! a new member id takes it over without a rebalance.
//!
//! Every change is written to `__consumer_offsets` as records (the group's
//! epochs, each member's subscription, target and current assignment), so
//! that a coordinator that loads the group, after a restart or on another
//! node, carries on with the same members at the same epochs.

mod assignors;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use strom_protocol::ErrorCode;
use tracing::{info, warn};
use uuid::Uuid;

pub use assignors::{range, uniform, Subscriptions, Topics};

use super::{GroupCoordinator, GroupState};
use crate::group::state::Group;
use crate::records::{
    encode, ConsumerAssignmentValue, ConsumerGroupValue, ConsumerMemberValue, RecordKey,
};

/// Partitions by topic id.
pub type Assignment = crate::records::TopicPartitions;

/// The epoch a static member leaves with, keeping its assignment.
const LEAVE_STATIC: i32 = -2;
/// The epoch a member leaves with for good.
const LEAVE: i32 = -1;

/// What the coordinator needs to know of topics: a metadata view.
pub trait TopicsView {
    /// Id and partition count of a topic, if it exists.
    fn topic(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic's name, internal ones included (what a subscription
    /// regex is matched against).
    fn names(&self) -> Vec<String>;
}

/// A member's subscription regex (KIP-848's SubscribedTopicRegex): matched
/// against whole topic names, with RE2's syntax, as Kafka's RE2/J does.
#[derive(Debug, Clone)]
pub struct TopicRegex {
    source: String,
    compiled: regex::Regex,
}

impl TopicRegex {
    /// Compiles `source`; INVALID_REGULAR_EXPRESSION's message if it is not
    /// a regular expression.
    pub fn new(source: &str) -> Result<TopicRegex, String> {
        let compiled = regex::Regex::new(&format!("^(?:{source})$")).map_err(|e| {
            format!("SubscribedTopicRegex `{source}` is not a valid regular expression: {e}")
        })?;
        Ok(TopicRegex {
            source: source.to_owned(),
            compiled,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.compiled.is_match(topic)
    }
}

impl PartialEq for TopicRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

pub const ASSIGNORS: &[&str] = &["uniform", "range"];

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    /// The request's version: from v1 on a member names its own id (KIP-1082).
    pub api_version: i16,
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `None`: unchanged; `Some(None)`: cleared (an empty regex).
    pub subscribed_topic_regex: Option<Option<TopicRegex>>,
    pub server_assignor: Option<String>,
    /// What the member owns now, when it reports it.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed since the member last heard it.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
pub struct ConsumerMemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupSummary {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberSummary>,
}

type Refusal = (ErrorCode, String);

fn invalid(message: &str) -> Refusal {
    (ErrorCode::InvalidRequest, message.to_owned())
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Kafka's checks of a ConsumerGroupHeartbeat before it reaches a group,
/// with its messages.
fn validate(req: &HeartbeatRequest) -> Result<(), Refusal> {
    let epoch = req.member_epoch;
    if (req.api_version >= 1 || epoch > 0 || epoch == LEAVE) && blank(&req.member_id) {
        return Err(invalid("MemberId can't be empty."));
    }
    if blank(&req.group_id) {
        return Err(invalid("GroupId can't be empty."));
    }
    if req.instance_id.as_deref().is_some_and(blank) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if req.rack_id.as_deref().is_some_and(blank) {
        return Err(invalid("RackId can't be empty."));
    }
    if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return Err(invalid(
                "RebalanceTimeoutMs must be provided in first request.",
            ));
        }
        if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
            return Err(invalid("TopicPartitions must be empty when (re-)joining."));
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return Err(invalid(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            ));
        }
    } else if epoch == LEAVE_STATIC {
        if req.instance_id.is_none() {
            return Err(invalid("InstanceId can't be null."));
        }
    } else if epoch < LEAVE_STATIC {
        return Err(invalid("MemberEpoch is invalid."));
    }
    if let Some(a) = &req.server_assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Err((
                ErrorCode::UnsupportedAssignor,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Whether every partition `owned` names is in `assigned` (false when the
/// member did not say what it owns).
fn is_subset(owned: Option<&Assignment>, assigned: &Assignment) -> bool {
    owned.is_some_and(|o| {
        o.iter()
            .all(|(t, ps)| assigned.get(t).is_some_and(|a| ps.is_subset(a)))
    })
}

#[derive(Debug)]
pub(super) struct ConsumerMember {
    id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    /// -2 once a static member left, keeping its assignment.
    epoch: i32,
    previous_epoch: i32,
    subscribed: Vec<String>,
    regex: Option<TopicRegex>,
    /// The topics the member subscribes to, by name and by regex, as of
    /// the last target computation.
    resolved: Vec<String>,
    assignor: Option<String>,
    rebalance_timeout: Duration,
    assigned: Assignment,
    /// Revoked from this member but not yet confirmed released by it.
    pending_revoke: Assignment,
    /// Since when the member has had partitions to revoke: fenced if it
    /// still has them a rebalance timeout later.
    revoking_since: Option<Instant>,
    last_sent: Option<Assignment>,
    last_seen: Instant,
}

impl ConsumerMember {
    fn new(id: &str, now: Instant) -> ConsumerMember {
        ConsumerMember {
            id: id.to_owned(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: -1,
            subscribed: Vec::new(),
            regex: None,
            resolved: Vec::new(),
            assignor: None,
            rebalance_timeout: Duration::from_millis(300_000),
            assigned: Assignment::new(),
            pending_revoke: Assignment::new(),
            revoking_since: None,
            last_sent: None,
            last_seen: now,
        }
    }

    fn metadata(&self) -> ConsumerMemberValue {
        ConsumerMemberValue {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout.as_millis() as u64,
            subscribed_topic_names: self.subscribed.clone(),
            subscribed_topic_regex: self.regex.as_ref().map(|r| r.as_str().to_owned()),
            server_assignor: self.assignor.clone(),
        }
    }

    fn current(&self) -> ConsumerAssignmentValue {
        ConsumerAssignmentValue {
            member_epoch: self.epoch,
            previous_member_epoch: self.previous_epoch,
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revoke.clone(),
        }
    }
}

/// Which of a member's records are to be written again.
const META: u8 = 1;
const TARGET: u8 = 2;
const CURRENT: u8 = 4;

/// What changed since the group's records were last written.
#[derive(Debug, Default)]
struct Dirty {
    group: bool,
    members: BTreeMap<String, u8>,
    removed: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(super) struct ConsumerGroup {
    pub(super) epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, Assignment>,
    /// Subscribed topics' (name, id, partitions) the target was computed for.
    topics: Vec<(String, Uuid, i32)>,
    dirty: Dirty,
}

impl ConsumerGroup {
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(super) fn member_epoch(&self, member_id: &str) -> Option<i32> {
        self.members.get(member_id).map(|m| m.epoch)
    }

    pub(super) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn assignor(&self) -> &str {
        self.members
            .values()
            .find_map(|m| m.assignor.as_deref())
            .unwrap_or(ASSIGNORS[0])
    }

    fn static_member(&self, instance_id: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    fn touch(&mut self, member_id: &str, what: u8) {
        *self.dirty.members.entry(member_id.to_owned()).or_default() |= what;
    }

    fn remove_member(&mut self, member_id: &str) {
        self.members.remove(member_id);
        self.target.remove(member_id);
        self.dirty.members.remove(member_id);
        self.dirty.removed.insert(member_id.to_owned());
    }

    /// Each member's subscribed topic names: those it named and those its
    /// regex matches (all topics' names are read only if some member has a
    /// regex).
    fn resolve(&self, view: &dyn TopicsView) -> BTreeMap<String, Vec<String>> {
        let all = if self.members.values().any(|m| m.regex.is_some()) {
            view.names()
        } else {
            Vec::new()
        };
        self.members
            .iter()
            .map(|(id, m)| {
                let mut names: BTreeSet<String> = m.subscribed.iter().cloned().collect();
                if let Some(re) = &m.regex {
                    names.extend(all.iter().filter(|t| re.matches(t)).cloned());
                }
                (id.clone(), names.into_iter().collect())
            })
            .collect()
    }

    fn subscribed_topics(&self, view: &dyn TopicsView) -> Vec<(String, Uuid, i32)> {
        let resolved = self.resolve(view);
        let names: BTreeSet<&String> = resolved.values().flatten().collect();
        names
            .into_iter()
            .filter_map(|n| view.topic(n).map(|(id, p)| (n.clone(), id, p)))
            .collect()
    }

    /// Recomputes the target assignment for the current members and
    /// topics (the topics of the last computation without a `view`).
    fn compute_target(&mut self, view: Option<&dyn TopicsView>) {
        if let Some(view) = view {
            self.topics = self.subscribed_topics(view);
            for (id, names) in self.resolve(view) {
                if let Some(m) = self.members.get_mut(&id) {
                    m.resolved = names;
                }
            }
        }
        let subs: Subscriptions<'_> = self
            .members
            .iter()
            .map(|(id, m)| (id.as_str(), &m.resolved))
            .collect();
        let target = match self.assignor() {
            "range" => range(&subs, &self.topics, &self.target),
            _ => uniform(&subs, &self.topics, &self.target),
        };
        let changed: Vec<String> = target
            .iter()
            .filter(|(id, a)| self.target.get(*id) != Some(*a))
            .map(|(id, _)| id.clone())
            .collect();
        self.target = target;
        for id in changed {
            self.touch(&id, TARGET);
        }
        self.assignment_epoch = self.epoch;
        self.dirty.group = true;
    }

    fn bump(&mut self, view: Option<&dyn TopicsView>, why: &str, group: &str) {
        self.epoch += 1;
        self.compute_target(view);
        info!(
            group,
            epoch = self.epoch,
            members = self.members.len(),
            why,
            "consumer group epoch bumped"
        );
    }

    /// Moves `member` toward its target; see the module docs. `owned` is
    /// what the member reported owning in this heartbeat, if it did: a
    /// revoked partition is free for others only once the member no longer
    /// reports it.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let before = self.members.get(member_id).map(ConsumerMember::current);
        self.move_toward_target(member_id, owned);
        let m = self.members.get_mut(member_id).expect("member");
        if m.pending_revoke.is_empty() {
            m.revoking_since = None;
        } else if before
            .as_ref()
            .is_none_or(|b| b.pending_revocation != m.pending_revoke)
        {
            // Kafka restarts the member's rebalance timeout whenever what it
            // has to revoke changes.
            m.revoking_since = Some(now);
        }
        if before.as_ref() != Some(&m.current()) {
            self.touch(member_id, CURRENT);
        }
    }

    fn move_toward_target(&mut self, member_id: &str, owned: Option<&Assignment>) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        {
            let m = self.members.get_mut(member_id).expect("member");
            if let Some(owned) = owned {
                m.pending_revoke = intersect(&m.pending_revoke, owned);
            }
            let kept = intersect(&m.assigned, &target);
            if kept != m.assigned {
                // Revoke first; the member keeps its epoch until it has let go.
                for (t, ps) in &m.assigned {
                    for p in ps {
                        if !kept.get(t).is_some_and(|k| k.contains(p)) {
                            m.pending_revoke.entry(*t).or_default().insert(*p);
                        }
                    }
                }
                m.assigned = kept;
                return;
            }
            if !m.pending_revoke.is_empty() {
                return;
            }
        }
        let held_by_others: BTreeSet<(Uuid, i32)> = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| {
                m.assigned
                    .iter()
                    .chain(m.pending_revoke.iter())
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            })
            .collect();
        let m = self.members.get_mut(member_id).expect("member");
        for (topic, parts) in &target {
            for p in parts {
                if !held_by_others.contains(&(*topic, *p)) {
                    m.assigned.entry(*topic).or_default().insert(*p);
                }
            }
        }
        // With nothing left to revoke the member moves to the new epoch;
        // partitions others have not released yet follow on later heartbeats.
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
    }

    /// The records for what changed since they were last written.
    fn records(&self, group: &str) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let key = |member: &str, which: u8| {
            let (group, member) = (group.to_owned(), member.to_owned());
            match which {
                META => RecordKey::ConsumerMember { group, member },
                TARGET => RecordKey::ConsumerTarget { group, member },
                _ => RecordKey::ConsumerAssignment { group, member },
            }
            .encode()
        };
        let mut out = Vec::new();
        if self.dirty.group {
            let value = ConsumerGroupValue {
                epoch: self.epoch,
                assignment_epoch: self.assignment_epoch,
                topics: self.topics.clone(),
            };
            let key = RecordKey::ConsumerGroup {
                group: group.to_owned(),
            };
            out.push((key.encode(), Some(encode(&value))));
        }
        for id in &self.dirty.removed {
            for which in [META, TARGET, CURRENT] {
                out.push((key(id, which), None));
            }
        }
        for (id, what) in &self.dirty.members {
            let Some(m) = self.members.get(id) else {
                continue;
            };
            if what & META != 0 {
                out.push((key(id, META), Some(encode(&m.metadata()))));
            }
            if what & TARGET != 0 {
                let target = self.target.get(id).cloned().unwrap_or_default();
                out.push((key(id, TARGET), Some(encode(&target))));
            }
            if what & CURRENT != 0 {
                out.push((key(id, CURRENT), Some(encode(&m.current()))));
            }
        }
        out
    }

    /// Every record that removes the group's consumer state.
    pub(super) fn tombstones(&self, group: &str) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = vec![(
            RecordKey::ConsumerGroup {
                group: group.to_owned(),
            }
            .encode(),
            None,
        )];
        let ids = self.members.keys().chain(self.dirty.removed.iter());
        for id in ids {
            let (group, member) = (group.to_owned(), id.clone());
            out.push((
                RecordKey::ConsumerMember {
                    group: group.clone(),
                    member: member.clone(),
                }
                .encode(),
                None,
            ));
            out.push((
                RecordKey::ConsumerTarget {
                    group: group.clone(),
                    member: member.clone(),
                }
                .encode(),
                None,
            ));
            out.push((
                RecordKey::ConsumerAssignment { group, member }.encode(),
                None,
            ));
        }
        out
    }

    /// Applies one KIP-848 record read back from `__consumer_offsets`;
    /// records of one member may come in any order (compaction keeps each
    /// key's latest), so any of them creates the member. A loaded member
    /// has a whole session and rebalance timeout from `now`, and hears its
    /// assignment again on its next heartbeat.
    pub(super) fn replay(&mut self, key: &RecordKey, value: Option<&[u8]>, now: Instant) {
        fn member<'a>(cg: &'a mut ConsumerGroup, id: &str, now: Instant) -> &'a mut ConsumerMember {
            cg.members
                .entry(id.to_owned())
                .or_insert_with(|| ConsumerMember::new(id, now))
        }
        match (key, value) {
            (RecordKey::ConsumerGroup { .. }, Some(v)) => {
                if let Ok(v) = serde_json::from_slice::<ConsumerGroupValue>(v) {
                    self.epoch = v.epoch;
                    self.assignment_epoch = v.assignment_epoch;
                    self.topics = v.topics;
                }
            }
            (
                RecordKey::ConsumerMember { member: id, .. }
                | RecordKey::ConsumerTarget { member: id, .. }
                | RecordKey::ConsumerAssignment { member: id, .. },
                None,
            ) => {
                self.members.remove(id);
                self.target.remove(id);
            }
            (RecordKey::ConsumerMember { member: id, .. }, Some(v)) => {
                let Ok(v) = serde_json::from_slice::<ConsumerMemberValue>(v) else {
                    return;
                };
                let m = member(self, id, now);
                m.instance_id = v.instance_id;
                m.rack_id = v.rack_id;
                m.client_id = v.client_id;
                m.client_host = v.client_host;
                m.rebalance_timeout = Duration::from_millis(v.rebalance_timeout_ms);
                m.regex = v
                    .subscribed_topic_regex
                    .and_then(|r| TopicRegex::new(&r).ok());
                m.subscribed = v.subscribed_topic_names;
                m.assignor = v.server_assignor;
                // Resolved as of the last computation: the names, and the
                // matching topics the group's target covers.
                let topics = &self.topics;
                let m = self.members.get_mut(id).expect("member");
                let mut resolved: BTreeSet<String> = m.subscribed.iter().cloned().collect();
                if let Some(re) = &m.regex {
                    resolved.extend(
                        topics
                            .iter()
                            .filter(|(n, _, _)| re.matches(n))
                            .map(|(n, _, _)| n.clone()),
                    );
                }
                m.resolved = resolved.into_iter().collect();
            }
            (RecordKey::ConsumerTarget { member: id, .. }, Some(v)) => {
                if let Ok(target) = serde_json::from_slice::<Assignment>(v) {
                    member(self, id, now);
                    self.target.insert(id.clone(), target);
                }
            }
            (RecordKey::ConsumerAssignment { member: id, .. }, Some(v)) => {
                let Ok(v) = serde_json::from_slice::<ConsumerAssignmentValue>(v) else {
                    return;
                };
                let m = member(self, id, now);
                m.epoch = v.member_epoch;
                m.previous_epoch = v.previous_member_epoch;
                m.assigned = v.assigned;
                m.revoking_since = (!v.pending_revocation.is_empty()).then_some(now);
                m.pending_revoke = v.pending_revocation;
            }
            _ => {}
        }
    }
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let common: BTreeSet<i32> = b
                .get(t)
                .map(|bs| ps.intersection(bs).copied().collect())
                .unwrap_or_default();
            (!common.is_empty()).then_some((*t, common))
        })
        .collect()
}

/// How a failed write of the group's records is answered: as Kafka's group
/// coordinator maps append errors.
fn write_error(code: ErrorCode) -> Refusal {
    let code = match code {
        ErrorCode::NotLeaderOrFollower
        | ErrorCode::NotCoordinator
        | ErrorCode::KafkaStorageError => ErrorCode::NotCoordinator,
        _ => ErrorCode::CoordinatorNotAvailable,
    };
    (code, "the group's records could not be written".to_owned())
}

impl GroupCoordinator {
    /// Writes what changed in `cg` since its records were last written.
    fn write_consumer_records(&self, group: &str, cg: &mut ConsumerGroup) -> Result<(), ErrorCode> {
        let records = cg.records(group);
        if !records.is_empty() {
            self.log.append(self.partition_for(group), records)?;
        }
        cg.dirty = Dirty::default();
        Ok(())
    }

    /// ConsumerGroupHeartbeat.
    pub fn consumer_heartbeat(
        &self,
        req: HeartbeatRequest,
        view: &dyn TopicsView,
        now: Instant,
    ) -> Result<HeartbeatResponse, Refusal> {
        validate(&req)?;
        let interval = self.config.consumer_heartbeat_interval.as_millis() as i32;
        let mut groups = self.lock();
        if !groups.contains_key(&req.group_id) {
            if req.member_epoch != 0 {
                return Err((
                    ErrorCode::GroupIdNotFound,
                    format!("Consumer group {} not found.", req.group_id),
                ));
            }
            groups.insert(req.group_id.clone(), Group::new(&req.group_id));
        }
        let g = groups.get_mut(&req.group_id).expect("present");
        if !g.members.is_empty() {
            return Err((
                ErrorCode::GroupIdNotFound,
                format!("Group {} is not a consumer group", g.id),
            ));
        }
        let group_id = g.id.clone();
        let cg = g.consumer.get_or_insert_with(ConsumerGroup::default);
        let answer = self.consumer_heartbeat_in(cg, &group_id, req, view, interval, now);
        let written = self
            .write_consumer_records(&group_id, cg)
            .map_err(write_error);
        if cg.members.is_empty() {
            g.state = GroupState::Empty;
        }
        let answer = answer?;
        written.map(|()| answer)
    }

    fn consumer_heartbeat_in(
        &self,
        cg: &mut ConsumerGroup,
        group_id: &str,
        req: HeartbeatRequest,
        view: &dyn TopicsView,
        interval: i32,
        now: Instant,
    ) -> Result<HeartbeatResponse, Refusal> {
        let left = |epoch| HeartbeatResponse {
            member_id: req.member_id.clone(),
            member_epoch: epoch,
            heartbeat_interval_ms: interval,
            assignment: None,
        };
        let max = self.config.consumer_max_size;
        if req.member_epoch >= 0
            && cg.members.len() >= max
            && !cg.members.contains_key(&req.member_id)
        {
            return Err((
                ErrorCode::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {max} members."),
            ));
        }
        if req.member_epoch == 0 {
            let id = self.join_consumer(cg, group_id, &req, view, now)?;
            return Ok(self.answer(cg, &id, None, interval, now));
        }
        // The member this heartbeat is from: by instance id for a static
        // member (a newer instance may have taken it over), else by id.
        if let Some(instance) = &req.instance_id {
            let Some(m) = cg.static_member(instance) else {
                return Err((
                    ErrorCode::UnknownMemberId,
                    format!("Instance id {instance} is unknown."),
                ));
            };
            if m.id != req.member_id {
                return Err((
                    ErrorCode::FencedInstanceId,
                    format!(
                        "Static member {} with instance id {instance} was fenced by member {}.",
                        req.member_id, m.id
                    ),
                ));
            }
        }
        let Some(m) = cg.members.get(&req.member_id) else {
            return Err((
                ErrorCode::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {group_id}.",
                    req.member_id
                ),
            ));
        };
        let (current, previous) = (m.epoch, m.previous_epoch);
        let subset = is_subset(req.owned.as_ref(), &m.assigned);
        match req.member_epoch {
            LEAVE => {
                info!(group = group_id, member = %req.member_id, "consumer group member left");
                cg.remove_member(&req.member_id);
                cg.bump(Some(view), "member left", group_id);
                return Ok(left(LEAVE));
            }
            LEAVE_STATIC => {
                info!(group = group_id, member = %req.member_id, "static consumer group member left for now");
                let m = cg.members.get_mut(&req.member_id).expect("member");
                m.epoch = LEAVE_STATIC;
                m.pending_revoke.clear();
                m.revoking_since = None;
                m.last_seen = now;
                cg.touch(&req.member_id, CURRENT);
                return Ok(left(LEAVE_STATIC));
            }
            _ => {}
        }
        let epoch = req.member_epoch;
        if epoch > current {
            return Err((
                ErrorCode::FencedMemberEpoch,
                format!(
                    "The consumer group member has a greater member epoch ({epoch}) than the one \
                     known by the group coordinator ({current}). The member must abandon all its \
                     partitions and rejoin."
                ),
            ));
        }
        if epoch < current && (epoch != previous || !subset) {
            return Err((
                ErrorCode::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({epoch}) than the one \
                     known by the group coordinator ({current}). The member must abandon all its \
                     partitions and rejoin."
                ),
            ));
        }
        let m = cg.members.get_mut(&req.member_id).expect("member");
        if epoch < current {
            // The member missed our last answer: send it again.
            m.last_sent = None;
        }
        m.last_seen = now;
        let metadata = m.metadata();
        let retarget = update_member(m, &req);
        if m.metadata() != metadata {
            cg.touch(&req.member_id, META);
        }
        if retarget {
            cg.bump(Some(view), "subscription changed", group_id);
        }
        if cg.subscribed_topics(view) != cg.topics {
            cg.bump(Some(view), "subscribed topics changed", group_id);
        }
        Ok(self.answer(cg, &req.member_id, req.owned.as_ref(), interval, now))
    }

    /// A member (re)joins with epoch 0; returns its id. A static member
    /// whose instance left with -2 takes over its assignment under the new
    /// id, without a rebalance; one whose instance is still in the group
    /// is refused.
    fn join_consumer(
        &self,
        cg: &mut ConsumerGroup,
        group_id: &str,
        req: &HeartbeatRequest,
        view: &dyn TopicsView,
        now: Instant,
    ) -> Result<String, Refusal> {
        let id = if req.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        let previous = req
            .instance_id
            .as_deref()
            .and_then(|i| cg.static_member(i))
            .map(|m| (m.id.clone(), m.epoch));
        let fresh = previous.is_none();
        let mut member = match previous {
            Some((old, epoch)) if epoch != LEAVE_STATIC => {
                return Err((
                    ErrorCode::UnreleasedInstanceId,
                    format!(
                        "Static member {id} with instance id {} cannot join the group because \
                         the instance id is owned by {old} member.",
                        req.instance_id.as_deref().unwrap_or_default()
                    ),
                ));
            }
            Some((old, _)) => {
                // The new instance carries on with the old one's assignment.
                let mut m = cg.members.remove(&old).expect("member");
                let target = cg.target.remove(&old);
                cg.dirty.members.remove(&old);
                if old != id {
                    cg.dirty.removed.insert(old.clone());
                }
                if let Some(t) = target {
                    cg.target.insert(id.clone(), t);
                }
                info!(group = group_id, member = %id, replaced = %old, "static consumer group member rejoined");
                m.id = id.clone();
                m.epoch = 0;
                m.previous_epoch = 0;
                m.last_sent = None;
                m
            }
            None => {
                // A member rejoining under its id starts afresh.
                if cg.members.contains_key(&id) {
                    cg.remove_member(&id);
                    cg.dirty.removed.remove(&id);
                }
                ConsumerMember::new(&id, now)
            }
        };
        member.last_seen = now;
        member.instance_id = req.instance_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        let changed = update_member(&mut member, req);
        cg.members.insert(id.clone(), member);
        cg.touch(&id, META | TARGET | CURRENT);
        if fresh {
            cg.bump(Some(view), "member joined", group_id);
        } else if changed || cg.subscribed_topics(view) != cg.topics {
            cg.bump(
                Some(view),
                "static member rejoined with another subscription",
                group_id,
            );
        }
        Ok(id)
    }

    fn answer(
        &self,
        cg: &mut ConsumerGroup,
        member_id: &str,
        owned: Option<&Assignment>,
        interval: i32,
        now: Instant,
    ) -> HeartbeatResponse {
        cg.reconcile(member_id, owned, now);
        let m = cg.members.get_mut(member_id).expect("member");
        m.last_seen = now;
        let assignment = (m.last_sent.as_ref() != Some(&m.assigned)).then(|| m.assigned.clone());
        if assignment.is_some() {
            m.last_sent = Some(m.assigned.clone());
        }
        HeartbeatResponse {
            member_id: member_id.to_owned(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment,
        }
    }

    /// Removes consumer-group members whose session expired, and fences
    /// those that did not revoke within their rebalance timeout.
    pub(super) fn expire_consumer_members(
        &self,
        g: &mut Group,
        now: Instant,
        view: Option<&dyn TopicsView>,
    ) {
        let timeout = self.config.consumer_session_timeout;
        let Some(cg) = g.consumer.as_mut() else {
            return;
        };
        let mut fenced = Vec::new();
        for m in cg.members.values() {
            if now.saturating_duration_since(m.last_seen) > timeout {
                info!(group = %g.id, member = %m.id, "consumer group member session expired");
                fenced.push(m.id.clone());
            } else if m
                .revoking_since
                .is_some_and(|since| now.saturating_duration_since(since) > m.rebalance_timeout)
            {
                info!(
                    group = %g.id,
                    member = %m.id,
                    epoch = m.epoch,
                    timeout_ms = m.rebalance_timeout.as_millis() as u64,
                    "consumer group member fenced: it did not revoke its partitions within its rebalance timeout"
                );
                fenced.push(m.id.clone());
            }
        }
        if fenced.is_empty() {
            return;
        }
        for id in &fenced {
            cg.remove_member(id);
        }
        // Without a metadata view, the remaining members share the topics
        // of the last computation.
        cg.bump(view, "members fenced", &g.id);
        if let Err(code) = self.write_consumer_records(&g.id, cg) {
            warn!(group = %g.id, ?code, "cannot write the group's records after fencing members");
        }
        if cg.members.is_empty() {
            g.state = GroupState::Empty;
        }
    }

    /// ConsumerGroupDescribe for one group; `None` if it is not a consumer group.
    pub fn consumer_describe(&self, group_id: &str) -> Option<ConsumerGroupSummary> {
        let groups = self.lock();
        let cg = groups.get(group_id)?.consumer.as_ref()?;
        Some(ConsumerGroupSummary {
            state: cg.state(),
            group_epoch: cg.epoch,
            assignment_epoch: cg.assignment_epoch,
            assignor: cg.assignor().to_owned(),
            members: cg
                .members
                .values()
                .map(|m| ConsumerMemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed.clone(),
                    subscribed_topic_regex: m.regex.as_ref().map(|r| r.as_str().to_owned()),
                    assignment: m.assigned.clone(),
                    target_assignment: cg.target.get(&m.id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// Applies what a heartbeat changes of a member's subscription, rack,
/// assignor and rebalance timeout; true if the target must be computed
/// again (the subscription, regex or assignor changed).
fn update_member(m: &mut ConsumerMember, req: &HeartbeatRequest) -> bool {
    let mut changed = false;
    if let Some(subs) = &req.subscribed_topic_names {
        if *subs != m.subscribed {
            m.subscribed = subs.clone();
            changed = true;
        }
    }
    if let Some(regex) = &req.subscribed_topic_regex {
        if *regex != m.regex {
            m.regex = regex.clone();
            changed = true;
        }
    }
    if req.server_assignor.is_some() && req.server_assignor != m.assignor {
        m.assignor = req.server_assignor.clone();
        changed = true;
    }
    if req.rack_id.is_some() {
        m.rack_id = req.rack_id.clone();
    }
    if req.rebalance_timeout_ms > 0 {
        m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
    }
    changed
}
