//! A group and its members.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::ErrorCode;
use tokio::sync::oneshot;

use super::{GroupSummary, JoinMember, JoinResponse, MemberSummary, SyncResponse};
use crate::records::OffsetValue;

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name ListGroups and DescribeGroups use.
    pub fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResponse>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    pub(super) last_seen: Instant,
}

pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pub(super) pending: HashMap<String, Instant>,
    /// group.instance.id -> member id.
    pub(super) static_members: HashMap<String, String>,
    pub(super) rebalance_deadline: Option<Instant>,
    pub(super) initial_delay_until: Option<Instant>,
    pub(super) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets committed inside open transactions, by producer id: they
    /// become `offsets` when the transaction commits.
    pub(super) txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), OffsetValue>>,
    /// Counts the group's offset records (see `OffsetValue::order`).
    pub(super) commits: u64,
    /// Set when the group uses the KIP-848 consumer protocol.
    pub(super) consumer: Option<super::consumer::ConsumerGroup>,
}

impl Group {
    /// The order number of the group's next offset record.
    pub(super) fn next_order(&mut self) -> u64 {
        self.commits += 1;
        self.commits
    }

    pub(super) fn new(id: &str) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            offsets: BTreeMap::new(),
            txn_offsets: BTreeMap::new(),
            commits: 0,
            consumer: None,
        }
    }

    /// Whether a member with this protocol type and these protocols can
    /// join: same type, and at least one protocol every member supports.
    pub(super) fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The protocol every member supports with the most votes, each member
    /// voting for the first of its protocols that all support (Kafka's rule).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some(choice) = m
                .protocols
                .iter()
                .map(|(n, _)| n)
                .find(|n| candidates.contains(n))
            {
                if let Some(v) = votes.iter_mut().find(|(c, _)| *c == choice) {
                    v.1 += 1;
                }
            }
        }
        votes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(c, _)| (*c).clone())
    }

    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if let Some(inst) = instance {
            match self.static_members.get(inst) {
                Some(id) if id != member_id => return Err(ErrorCode::FencedInstanceId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    pub(super) fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.static_members.get(inst).map(String::as_str) == Some(id) {
                    self.static_members.remove(inst);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResponse::error(ErrorCode::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResponse::error(ErrorCode::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    pub(super) fn join_response(&self, member_id: &str) -> JoinResponse {
        let protocol = self.protocol.clone();
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            self.members
                .values()
                .map(|m| JoinMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
        }
    }

    pub(super) fn sync_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub(super) fn summary(&self) -> GroupSummary {
        let protocol = self.protocol.clone().unwrap_or_default();
        let consumer = self.consumer.as_ref().filter(|c| !c.is_empty());
        GroupSummary {
            group_id: self.id.clone(),
            state: self.state,
            state_name: consumer.map_or(self.state.name(), |c| c.state()),
            group_type: if self.consumer.is_some() {
                "consumer"
            } else {
                "classic"
            },
            protocol_type: if self.consumer.is_some() {
                "consumer".to_owned()
            } else {
                self.protocol_type.clone().unwrap_or_default()
            },
            protocol: protocol.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}
