//! KIP-848 consumer groups: the server assigns partitions, members converge
//! on the target assignment through heartbeats.
//!
//! Each change of membership, subscriptions or subscribed topics' partition
//! counts bumps the group epoch and recomputes the target assignment (with
//! the `uniform` or `range` assignor). A member is then reconciled on its
//! heartbeats: it first gives up what is no longer its target (keeping its
//! epoch until it confirms), then takes the new epoch and the target
//! partitions nobody else still holds; the rest follow as they are released.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use strom_protocol::ErrorCode;
use tracing::info;
use uuid::Uuid;

use super::{GroupCoordinator, GroupState};
use crate::group::state::Group;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

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
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
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

#[derive(Debug)]
pub(super) struct ConsumerMember {
    id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    subscribed: Vec<String>,
    regex: Option<TopicRegex>,
    /// The topics the member subscribes to, by name and by regex, as of
    /// the last target computation.
    resolved: Vec<String>,
    assignor: Option<String>,
    assigned: Assignment,
    /// Revoked from this member but not yet confirmed released by it.
    pending_revoke: Assignment,
    last_sent: Option<Assignment>,
    last_seen: Instant,
}

#[derive(Debug, Default)]
pub(super) struct ConsumerGroup {
    pub(super) epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, Assignment>,
    /// Subscribed topics' (name, id, partitions) the target was computed for.
    topics: Vec<(String, Uuid, i32)>,
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

    /// Recomputes the target assignment for the current members and topics.
    fn compute_target(&mut self, view: &dyn TopicsView) {
        self.topics = self.subscribed_topics(view);
        for (id, names) in self.resolve(view) {
            if let Some(m) = self.members.get_mut(&id) {
                m.resolved = names;
            }
        }
        let subs: BTreeMap<&str, &Vec<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.as_str(), &m.resolved))
            .collect();
        self.target = match self.assignor() {
            "range" => range(&subs, &self.topics),
            _ => uniform(&subs, &self.topics, &self.target),
        };
        self.assignment_epoch = self.epoch;
    }

    fn bump(&mut self, view: &dyn TopicsView, why: &str, group: &str) {
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
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>) {
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

/// Per topic, contiguous ranges of partitions to the subscribed members in
/// member-id order, the first ones getting one more when it does not divide.
pub fn range(
    subs: &BTreeMap<&str, &Vec<String>>,
    topics: &[(String, Uuid, i32)],
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| ((*m).to_owned(), Assignment::new()))
        .collect();
    for (name, id, count) in topics {
        let members: Vec<&str> = subs
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| *m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let (per, extra) = (
            *count as usize / members.len(),
            *count as usize % members.len(),
        );
        let mut next = 0i32;
        for (i, m) in members.iter().enumerate() {
            let n = per + usize::from(i < extra);
            let parts: BTreeSet<i32> = (next..next + n as i32).collect();
            next += n as i32;
            if !parts.is_empty() {
                out.get_mut(*m).expect("member").insert(*id, parts);
            }
        }
    }
    out
}

/// Spreads all partitions evenly over the members subscribed to them,
/// keeping each member's previous target where the balance allows (sticky).
pub fn uniform(
    subs: &BTreeMap<&str, &Vec<String>>,
    topics: &[(String, Uuid, i32)],
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| ((*m).to_owned(), Assignment::new()))
        .collect();
    let mut load: BTreeMap<&str, usize> = subs.keys().map(|m| (*m, 0)).collect();
    let all: Vec<(&String, Uuid, i32)> = topics
        .iter()
        .flat_map(|(n, id, c)| (0..*c).map(move |p| (n, *id, p)))
        .collect();
    let eligible = |name: &String| -> Vec<&str> {
        subs.iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| *m)
            .collect()
    };
    let members = subs.len().max(1);
    let quota = all.len().div_ceil(members);
    let mut unassigned = Vec::new();
    for (name, id, p) in &all {
        let keeper = previous
            .iter()
            .find(|(m, a)| {
                a.get(id).is_some_and(|ps| ps.contains(p))
                    && load.get(m.as_str()).is_some_and(|l| *l < quota)
                    && subs[m.as_str()].contains(name)
            })
            .map(|(m, _)| m.as_str());
        match keeper {
            Some(m) => {
                out.get_mut(m)
                    .expect("member")
                    .entry(*id)
                    .or_default()
                    .insert(*p);
                *load.get_mut(m).expect("member") += 1;
            }
            None => unassigned.push((*name, *id, *p)),
        }
    }
    for (name, id, p) in unassigned {
        let Some(m) = eligible(name).into_iter().min_by_key(|m| (load[m], *m)) else {
            continue;
        };
        out.get_mut(m)
            .expect("member")
            .entry(id)
            .or_default()
            .insert(p);
        *load.get_mut(m).expect("member") += 1;
    }
    out
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat.
    pub fn consumer_heartbeat(
        &self,
        req: HeartbeatRequest,
        view: &dyn TopicsView,
        now: Instant,
    ) -> Result<HeartbeatResponse, (ErrorCode, String)> {
        let interval = self.config.consumer_heartbeat_interval.as_millis() as i32;
        let mut groups = self.lock();
        if !groups.contains_key(&req.group_id) {
            if req.member_epoch != 0 {
                return Err((ErrorCode::UnknownMemberId, "unknown group".into()));
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
        match req.member_epoch {
            -1 | -2 => {
                if cg.members.remove(&req.member_id).is_some() {
                    cg.target.remove(&req.member_id);
                    cg.bump(view, "member left", &group_id);
                }
                return Ok(HeartbeatResponse {
                    member_id: req.member_id,
                    member_epoch: req.member_epoch,
                    heartbeat_interval_ms: interval,
                    assignment: None,
                });
            }
            0 => {
                let regex = req.subscribed_topic_regex.clone().flatten();
                if req.subscribed_topic_names.is_none() && regex.is_none() {
                    return Err((
                        ErrorCode::InvalidRequest,
                        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
                            .into(),
                    ));
                }
                let subscribed = req.subscribed_topic_names.clone().unwrap_or_default();
                if let Some(a) = &req.server_assignor {
                    if !ASSIGNORS.contains(&a.as_str()) {
                        return Err((
                            ErrorCode::UnsupportedAssignor,
                            format!("Assignor {a} is not supported; use one of {ASSIGNORS:?}"),
                        ));
                    }
                }
                let id = if req.member_id.is_empty() {
                    Uuid::new_v4().to_string()
                } else {
                    req.member_id.clone()
                };
                cg.members.insert(
                    id.clone(),
                    ConsumerMember {
                        id: id.clone(),
                        instance_id: req.instance_id.clone(),
                        rack_id: req.rack_id.clone(),
                        client_id: req.client_id.clone(),
                        client_host: req.client_host.clone(),
                        epoch: 0,
                        previous_epoch: -1,
                        subscribed,
                        regex,
                        resolved: Vec::new(),
                        assignor: req.server_assignor.clone(),
                        assigned: Assignment::new(),
                        pending_revoke: Assignment::new(),
                        last_sent: None,
                        last_seen: now,
                    },
                );
                cg.bump(view, "member joined", &group_id);
                return Ok(self.answer(cg, &id, None, interval, now));
            }
            epoch => {
                let Some(m) = cg.members.get_mut(&req.member_id) else {
                    return Err((ErrorCode::UnknownMemberId, "unknown member".into()));
                };
                if epoch != m.epoch && epoch != m.previous_epoch {
                    return Err((
                        ErrorCode::FencedMemberEpoch,
                        format!("epoch {epoch} is fenced; the member is at {}", m.epoch),
                    ));
                }
                if epoch == m.previous_epoch && epoch != m.epoch {
                    // The member missed our last answer: send it again.
                    m.last_sent = None;
                }
                m.last_seen = now;
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
                if changed {
                    cg.bump(view, "subscription changed", &group_id);
                }
            }
        }
        if cg.subscribed_topics(view) != cg.topics {
            cg.bump(view, "subscribed topics changed", &group_id);
        }
        Ok(self.answer(cg, &req.member_id, req.owned.as_ref(), interval, now))
    }

    fn answer(
        &self,
        cg: &mut ConsumerGroup,
        member_id: &str,
        owned: Option<&Assignment>,
        interval: i32,
        now: Instant,
    ) -> HeartbeatResponse {
        cg.reconcile(member_id, owned);
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

    /// Removes consumer-group members whose session expired.
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
        let expired: Vec<String> = cg
            .members
            .values()
            .filter(|m| now.saturating_duration_since(m.last_seen) > timeout)
            .map(|m| m.id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in &expired {
            info!(group = %g.id, member = %id, "consumer group member session expired");
            cg.members.remove(id);
            cg.target.remove(id);
        }
        match view {
            Some(v) => cg.bump(v, "session expired", &g.id),
            None => {
                // Without a metadata view, redistribute what the remaining
                // members know of: the topics of the last computation.
                cg.epoch += 1;
                let topics = cg.topics.clone();
                let subs: BTreeMap<&str, &Vec<String>> = cg
                    .members
                    .iter()
                    .map(|(id, m)| (id.as_str(), &m.resolved))
                    .collect();
                cg.target = if cg.assignor() == "range" {
                    range(&subs, &topics)
                } else {
                    uniform(&subs, &topics, &cg.target)
                };
                cg.assignment_epoch = cg.epoch;
            }
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
