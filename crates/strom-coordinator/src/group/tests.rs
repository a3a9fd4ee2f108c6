//! The group state machine with a fake clock: time moves only through the
//! `now` passed in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::ErrorCode;

use super::*;

/// (partition, key, value) of every record written.
type Written = (i32, Vec<u8>, Option<Vec<u8>>);

/// Records written inside a transaction: partition, producer id, key, value.
type WrittenInTxn = (i32, i64, Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct MemLog(Mutex<Vec<Written>>, Mutex<Vec<WrittenInTxn>>);

impl CoordinatorLog for MemLog {
    fn append(
        &self,
        partition: i32,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        let mut log = self.0.lock().unwrap();
        log.extend(records.into_iter().map(|(k, v)| (partition, k, v)));
        Ok(())
    }

    fn append_transactional(
        &self,
        partition: i32,
        producer_id: i64,
        _epoch: i16,
        _guard: u64,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ErrorCode> {
        let mut log = self.1.lock().unwrap();
        log.extend(
            records
                .into_iter()
                .map(|(k, v)| (partition, producer_id, k, v)),
        );
        Ok(())
    }
}

fn coordinator() -> (GroupCoordinator, Arc<MemLog>) {
    let log = Arc::new(MemLog::default());
    let config = GroupConfig {
        initial_rebalance_delay: Duration::from_millis(100),
        ..GroupConfig::default()
    };
    (GroupCoordinator::new(config, log.clone()), log)
}

fn join_req(member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: instance.map(str::to_owned),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(b"meta")),
            ("roundrobin".into(), Bytes::new()),
        ],
        require_known_member_id: true,
    }
}

fn now_of(reply: Reply<JoinResponse>) -> JoinResponse {
    match reply {
        Reply::Now(r) => r,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T: std::fmt::Debug>(reply: Reply<T>) -> tokio::sync::oneshot::Receiver<T> {
    match reply {
        Reply::Later(rx) => rx,
        Reply::Now(r) => panic!("expected to wait, got {r:?}"),
    }
}

/// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and waiter.
fn join_new(
    c: &GroupCoordinator,
    t: Instant,
) -> (String, tokio::sync::oneshot::Receiver<JoinResponse>) {
    let first = now_of(c.join(join_req("", None), t));
    assert_eq!(first.error, Some(ErrorCode::MemberIdRequired));
    let rx = later(c.join(join_req(&first.member_id, None), t));
    (first.member_id, rx)
}

fn sync(
    c: &GroupCoordinator,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    t: Instant,
) -> Reply<SyncResponse> {
    c.sync(
        SyncRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        },
        t,
    )
}

/// Two members form a stable group: returns (leader, follower, generation).
fn stable_pair(c: &GroupCoordinator, t0: Instant) -> (String, String, i32) {
    let (a, mut rx_a) = join_new(c, t0);
    let (b, mut rx_b) = join_new(c, t0);
    c.tick(t0 + Duration::from_millis(50));
    assert!(rx_a.try_recv().is_err(), "the initial delay holds the join");
    c.tick(t0 + Duration::from_millis(150));
    let ja = rx_a.try_recv().unwrap();
    let jb = rx_b.try_recv().unwrap();
    assert_eq!(ja.generation_id, 1);
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    assert_eq!(ja.leader, jb.leader);
    let (leader, follower) = if ja.leader == a { (a, b) } else { (b, a) };
    let leader_resp = if ja.leader == ja.member_id { &ja } else { &jb };
    assert_eq!(
        leader_resp.members.len(),
        2,
        "the leader gets every member's metadata"
    );
    let t1 = t0 + Duration::from_millis(200);
    let mut rx_f = later(sync(c, &follower, 1, vec![], t1));
    let mut rx_l = later(sync(
        c,
        &leader,
        1,
        vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
        ],
        t1,
    ));
    assert_eq!(
        rx_f.try_recv().unwrap().assignment,
        Bytes::from_static(b"F")
    );
    assert_eq!(
        rx_l.try_recv().unwrap().assignment,
        Bytes::from_static(b"L")
    );
    (leader, follower, 1)
}

#[test]
fn two_members_join_and_sync() {
    let (c, _) = coordinator();
    let t0 = Instant::now();
    let (leader, follower, generation) = stable_pair(&c, t0);
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
    let t = t0 + Duration::from_secs(1);
    assert_eq!(c.heartbeat("g", generation, &leader, None, t), None);
    assert_eq!(
        c.heartbeat("g", generation + 1, &leader, None, t),
        Some(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        c.heartbeat("g", generation, "nobody", None, t),
        Some(ErrorCode::UnknownMemberId)
    );
    // A follower rejoining with the same metadata does not rebalance.
    let again = now_of(c.join(join_req(&follower, None), t));
    assert_eq!(again.generation_id, generation);
    // The leader's join does: it is how a leader acts on topic changes.
    let mut rx = later(c.join(join_req(&leader, None), t));
    assert!(rx.try_recv().is_err(), "waits for the new join phase");
    assert_eq!(
        c.describe("g").unwrap().state,
        GroupState::PreparingRebalance
    );
}

#[test]
fn a_leader_that_missed_its_join_answer_gets_the_current_generation() {
    let (c, _) = coordinator();
    let t0 = Instant::now();
    let (_, mut rx_a) = join_new(&c, t0);
    let (_, _rx_b) = join_new(&c, t0);
    c.tick(t0 + Duration::from_millis(150));
    let first = rx_a.try_recv().unwrap();
    let leader = first.leader.clone();
    assert_eq!(
        c.describe("g").unwrap().state,
        GroupState::CompletingRebalance
    );
    // The leader joins again before syncing (its answer was lost): Kafka
    // answers from the current generation, members included.
    let again = now_of(c.join(join_req(&leader, None), t0 + Duration::from_millis(200)));
    assert_eq!(again.generation_id, first.generation_id);
    assert_eq!(again.leader, leader);
    assert_eq!(again.members.len(), 2);
    assert_eq!(
        c.describe("g").unwrap().state,
        GroupState::CompletingRebalance
    );
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout_and_not_before() {
    let (c, _) = coordinator();
    let t0 = Instant::now();
    let (leader, follower, generation) = stable_pair(&c, t0);
    // The leader keeps heartbeating, the follower stops.
    let mut t = t0 + Duration::from_millis(200);
    for _ in 0..9 {
        t += Duration::from_secs(1);
        assert_eq!(c.heartbeat("g", generation, &leader, None, t), None);
        c.tick(t);
    }
    assert_eq!(
        c.describe("g").unwrap().members.len(),
        2,
        "not evicted before 10 s"
    );
    t += Duration::from_millis(1500);
    c.tick(t);
    assert_eq!(
        c.heartbeat("g", generation, &leader, None, t),
        Some(ErrorCode::RebalanceInProgress)
    );
    let mut rx = later(c.join(join_req(&leader, None), t));
    let resp = rx.try_recv().unwrap();
    assert_eq!(resp.generation_id, generation + 1);
    assert_eq!(resp.members.len(), 1, "{follower} was evicted");
}

#[test]
fn leaving_rebalances_the_rest() {
    let (c, _) = coordinator();
    let t0 = Instant::now();
    let (leader, follower, generation) = stable_pair(&c, t0);
    let t = t0 + Duration::from_secs(1);
    assert_eq!(
        c.leave("g", &[(follower.clone(), None)], t).unwrap(),
        vec![None]
    );
    assert_eq!(
        c.leave("g", &[(follower, None)], t).unwrap(),
        vec![Some(ErrorCode::UnknownMemberId)]
    );
    assert_eq!(
        c.heartbeat("g", generation, &leader, None, t),
        Some(ErrorCode::RebalanceInProgress)
    );
    let mut rx = later(c.join(join_req(&leader, None), t));
    assert_eq!(rx.try_recv().unwrap().generation_id, generation + 1);
    c.leave("g", &[(leader, None)], t).unwrap();
    assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
}

fn as_member(member_id: &str, generation: i32) -> Committer<'_> {
    Committer {
        group_id: "g",
        generation,
        member_id,
        instance: None,
    }
}

#[test]
fn offsets_commit_fetch_and_replay() {
    let (c, log) = coordinator();
    let t0 = Instant::now();
    let commit = |topic: &str, p, o| OffsetCommit {
        topic: topic.into(),
        partition: p,
        offset: o,
        leader_epoch: 0,
        metadata: Some("m".into()),
    };
    // A group used only for offsets (generation -1) may commit while empty.
    c.commit_offsets(
        &as_member("", -1),
        &[commit("t", 0, 5), commit("t", 1, 7)],
        t0,
        1,
    )
    .unwrap();
    let (leader, _, generation) = stable_pair(&c, t0);
    assert_eq!(
        c.commit_offsets(
            &Committer {
                group_id: "g",
                generation: -1,
                member_id: "",
                instance: None
            },
            &[commit("t", 0, 6)],
            t0,
            2
        ),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        c.commit_offsets(
            &as_member(&leader, generation + 5),
            &[commit("t", 0, 6)],
            t0,
            2
        ),
        Err(ErrorCode::IllegalGeneration)
    );
    c.commit_offsets(
        &Committer {
            group_id: "g",
            generation,
            member_id: &leader,
            instance: None,
        },
        &[commit("t", 0, 9)],
        t0,
        3,
    )
    .unwrap();
    let big = OffsetCommit {
        metadata: Some("x".repeat(5000)),
        ..commit("t", 2, 1)
    };
    assert_eq!(
        c.commit_offsets(
            &Committer {
                group_id: "g",
                generation,
                member_id: &leader,
                instance: None
            },
            &[big],
            t0,
            3
        )
        .unwrap(),
        vec![Some(ErrorCode::OffsetMetadataTooLarge)]
    );
    let got = c.fetch_offsets(
        "g",
        Some(&[("t".into(), 0), ("t".into(), 1), ("t".into(), 3)]),
    );
    assert_eq!(got[0].1.as_ref().unwrap().offset, 9);
    assert_eq!(got[1].1.as_ref().unwrap().offset, 7);
    assert!(got[2].1.is_none());
    assert_eq!(c.fetch_offsets("g", None).len(), 2);
    assert_eq!(c.delete_group("g"), Err(ErrorCode::NonEmptyGroup));

    // Loading is replaying: a new coordinator fed the log knows the offsets.
    let (c2, _) = coordinator();
    for (p, k, v) in log.0.lock().unwrap().iter() {
        assert_eq!(*p, c.partition_for("g"));
        c2.replay(k, v.as_deref());
    }
    assert_eq!(
        c2.fetch_offsets("g", Some(&[("t".into(), 0)]))[0]
            .1
            .as_ref()
            .unwrap()
            .offset,
        9
    );
    // The stable generation's members come back with their assignments
    // and may carry on; they expire if they do not heartbeat in time.
    let restored = c2.describe("g").unwrap();
    assert_eq!(restored.state, GroupState::Stable);
    assert_eq!(restored.members.len(), 2);
    let later = Instant::now();
    assert_eq!(c2.heartbeat("g", generation, &leader, None, later), None);
    assert_eq!(c2.delete_group("g"), Err(ErrorCode::NonEmptyGroup));
    c2.tick(later + Duration::from_secs(11));
    assert_eq!(c2.describe("g").unwrap().state, GroupState::Empty);
    c2.delete_group("g").unwrap();
    assert!(c2.describe("g").is_none());
    assert_eq!(c2.delete_group("g"), Err(ErrorCode::GroupIdNotFound));
}

#[test]
fn static_members_rejoin_without_a_rebalance_and_fence_the_old_id() {
    let (c, _) = coordinator();
    let t0 = Instant::now();
    let mut rx = later(c.join(join_req("", Some("i-1")), t0));
    c.tick(t0 + Duration::from_millis(150));
    let j = rx.try_recv().unwrap();
    let old = j.member_id.clone();
    let mut s = later(sync(
        &c,
        &old,
        j.generation_id,
        vec![(old.clone(), Bytes::from_static(b"A"))],
        t0 + Duration::from_millis(160),
    ));
    assert_eq!(s.try_recv().unwrap().assignment, Bytes::from_static(b"A"));
    // The instance restarts: it comes back without its member id.
    let back = now_of(c.join(join_req("", Some("i-1")), t0 + Duration::from_secs(1)));
    assert_eq!(back.error, None);
    assert_eq!(back.generation_id, j.generation_id, "no rebalance");
    assert_ne!(back.member_id, old);
    assert_eq!(
        c.heartbeat("g", j.generation_id, &old, Some("i-1"), t0),
        Some(ErrorCode::FencedInstanceId)
    );
    assert_eq!(
        c.heartbeat("g", j.generation_id, &back.member_id, Some("i-1"), t0),
        None
    );
}

#[test]
fn protocol_and_timeout_validation() {
    let (c, _) = coordinator();
    let t0 = Instant::now();
    let mut bad = join_req("", None);
    bad.session_timeout_ms = 10;
    assert_eq!(
        now_of(c.join(bad, t0)).error,
        Some(ErrorCode::InvalidSessionTimeout)
    );
    let (_a, _rx) = join_new(&c, t0);
    let mut other = join_req("", None);
    other.protocols = vec![("sticky".into(), Bytes::new())];
    other.require_known_member_id = false;
    assert_eq!(
        now_of(c.join(other, t0)).error,
        Some(ErrorCode::InconsistentGroupProtocol)
    );
    assert_eq!(
        now_of(c.join(join_req("ghost", None), t0)).error,
        Some(ErrorCode::UnknownMemberId)
    );
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention() {
    let (c, log) = coordinator();
    let t0 = Instant::now();
    let day = 24 * 3600 * 1000;
    let commit = |p, o| OffsetCommit {
        topic: "t".into(),
        partition: p,
        offset: o,
        leader_epoch: -1,
        metadata: None,
    };
    c.commit_offsets(&as_member("", -1), &[commit(0, 1)], t0, 0)
        .unwrap();
    c.commit_offsets(&as_member("", -1), &[commit(1, 2)], t0, 3 * day)
        .unwrap();
    assert_eq!(c.expire_offsets(6 * day), 0);
    assert_eq!(
        c.expire_offsets(7 * day),
        1,
        "the offset committed at day 0 expires at day 7"
    );
    assert_eq!(c.fetch_offsets("g", None).len(), 1);
    // A group with members keeps its offsets.
    let (leader, _, generation) = stable_pair(&c, t0);
    c.commit_offsets(
        &as_member(&leader, generation),
        &[commit(2, 3)],
        t0,
        8 * day,
    )
    .unwrap();
    assert_eq!(c.expire_offsets(100 * day), 0);
    c.leave(
        "g",
        &c.describe("g")
            .unwrap()
            .members
            .iter()
            .map(|m| (m.member_id.clone(), None))
            .collect::<Vec<_>>(),
        t0,
    )
    .unwrap();
    assert_eq!(c.expire_offsets(100 * day), 2);
    assert!(
        c.describe("g").is_none(),
        "a group with nothing left is forgotten"
    );
    let tombstones = log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, v)| v.is_none())
        .count();
    assert_eq!(tombstones, 4, "three offsets and the group");
}

#[test]
fn a_full_classic_group_turns_new_members_away() {
    let log = Arc::new(MemLog::default());
    let config = GroupConfig {
        initial_rebalance_delay: Duration::from_millis(100),
        classic_max_size: 2,
        ..GroupConfig::default()
    };
    let c = GroupCoordinator::new(config, log);
    let t0 = Instant::now();
    let (leader, follower, _) = stable_pair(&c, t0);
    let t = t0 + Duration::from_millis(200);
    // Stable and full: a newcomer is turned away before MEMBER_ID_REQUIRED,
    // with no member id; a member's rejoin is taken.
    let refused = now_of(c.join(join_req("", None), t));
    assert_eq!(refused.error, Some(ErrorCode::GroupMaxSizeReached));
    assert_eq!(refused.member_id, "");
    let _ = c.join(join_req(&follower, None), t);
    // Preparing a rebalance (the leader rejoined), what counts is who
    // waits: both members once the follower has rejoined too.
    let _l = later(c.join(join_req(&leader, None), t));
    let _f = later(c.join(join_req(&follower, None), t));
    let refused = now_of(c.join(join_req("", Some("inst-x")), t));
    assert_eq!(refused.error, Some(ErrorCode::GroupMaxSizeReached));
}

mod consumer_protocol {
    use super::*;
    use crate::group::consumer::{Assignment, HeartbeatRequest, TopicsView};
    use uuid::Uuid;

    /// One topic "t" of four partitions.
    pub(super) struct Topics;
    impl TopicsView for Topics {
        fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
            (name == "t").then_some((Uuid::from_u128(1), 4))
        }
        fn names(&self) -> Vec<String> {
            vec!["t".into()]
        }
    }

    /// Topics by name: (id, partitions).
    struct Named(BTreeMap<String, (Uuid, i32)>);
    impl TopicsView for Named {
        fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    #[test]
    fn a_regex_subscription_follows_the_topics_it_matches() {
        use crate::group::consumer::TopicRegex;
        let (c, _) = coordinator();
        let mut topics = Named(BTreeMap::from([
            ("orders".to_owned(), (Uuid::from_u128(1), 2)),
            ("orders-old".to_owned(), (Uuid::from_u128(2), 1)),
            ("payments".to_owned(), (Uuid::from_u128(3), 1)),
        ]));
        let mut join = hb("", 0, None);
        join.subscribed_topic_names = None;
        join.subscribed_topic_regex = Some(Some(TopicRegex::new("orders.*").unwrap()));
        let r = c.consumer_heartbeat(join, &topics, Instant::now()).unwrap();
        let got = r.assignment.unwrap();
        assert_eq!(
            got.keys().copied().collect::<Vec<_>>(),
            vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            "whole names match: not payments"
        );
        // A new matching topic joins the assignment at the next heartbeat.
        topics
            .0
            .insert("orders-v2".to_owned(), (Uuid::from_u128(4), 3));
        let next = hb(&r.member_id, r.member_epoch, Some(got));
        let r2 = c.consumer_heartbeat(next, &topics, Instant::now()).unwrap();
        assert!(r2.member_epoch > r.member_epoch);
        assert_eq!(count(&r2.assignment.unwrap()), 6);
        // Neither names nor regex: refused.
        let mut bare = hb("", 0, None);
        bare.subscribed_topic_names = None;
        let e = c
            .consumer_heartbeat(bare, &topics, Instant::now())
            .unwrap_err();
        assert_eq!(e.0, ErrorCode::InvalidRequest);
        assert!(TopicRegex::new("orders(").is_err());
    }

    fn hb(member: &str, epoch: i32, owned: Option<Assignment>) -> HeartbeatRequest {
        HeartbeatRequest {
            // v0 members may leave their id to the coordinator.
            api_version: if member.is_empty() { 0 } else { 1 },
            group_id: "cg".into(),
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_owned()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: owned.or_else(|| (epoch == 0).then(Assignment::new)),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    #[test]
    fn members_converge_revoking_before_others_take_over() {
        let (c, _) = coordinator();
        let t = Instant::now();
        let a = c.consumer_heartbeat(hb("a", 0, None), &Topics, t).unwrap();
        assert_eq!(
            (a.member_epoch, count(a.assignment.as_ref().unwrap())),
            (1, 4)
        );
        let b = c.consumer_heartbeat(hb("b", 0, None), &Topics, t).unwrap();
        assert_eq!(
            count(b.assignment.as_ref().unwrap()),
            0,
            "a still holds everything"
        );
        assert_eq!(
            b.member_epoch, 2,
            "nothing to revoke: at the new epoch at once"
        );
        // a is told to give up two partitions and stays at its epoch.
        let a2 = c.consumer_heartbeat(hb("a", 1, None), &Topics, t).unwrap();
        let kept = a2.assignment.clone().unwrap();
        assert_eq!((a2.member_epoch, count(&kept)), (1, 2));
        // Until a confirms, b gets nothing.
        let b2 = c
            .consumer_heartbeat(hb("b", b.member_epoch, None), &Topics, t)
            .unwrap();
        assert_eq!(b2.assignment.as_ref().map_or(0, count), 0);
        let a3 = c
            .consumer_heartbeat(hb("a", 1, Some(kept.clone())), &Topics, t)
            .unwrap();
        assert_eq!(a3.member_epoch, 2);
        let b3 = c
            .consumer_heartbeat(hb("b", b.member_epoch, None), &Topics, t)
            .unwrap();
        assert_eq!(
            (b3.member_epoch, count(b3.assignment.as_ref().unwrap())),
            (2, 2)
        );
        let d = c.consumer_describe("cg").unwrap();
        assert_eq!(d.state, "Stable");
        assert_eq!(c.groups()[0].group_type, "consumer");
        // Errors and leaving.
        assert_eq!(
            c.consumer_heartbeat(hb("a", 7, None), &Topics, t)
                .unwrap_err()
                .0,
            ErrorCode::FencedMemberEpoch
        );
        assert_eq!(
            c.consumer_heartbeat(hb("zz", 2, None), &Topics, t)
                .unwrap_err()
                .0,
            ErrorCode::UnknownMemberId
        );
        assert_eq!(
            c.consumer_heartbeat(hb("b", -1, None), &Topics, t)
                .unwrap()
                .member_epoch,
            -1
        );
        let a4 = c
            .consumer_heartbeat(hb("a", 2, Some(kept)), &Topics, t)
            .unwrap();
        assert_eq!(
            (a4.member_epoch, count(a4.assignment.as_ref().unwrap())),
            (3, 4)
        );
        // Offsets commit with the member epoch.
        let commit = OffsetCommit {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
        };
        let who = |epoch| Committer {
            group_id: "cg",
            generation: epoch,
            member_id: "a",
            instance: None,
        };
        assert_eq!(
            c.commit_offsets(&who(2), std::slice::from_ref(&commit), t, 0),
            Err(ErrorCode::StaleMemberEpoch)
        );
        c.commit_offsets(&who(3), &[commit], t, 0).unwrap();
        assert_eq!(c.delete_group("cg"), Err(ErrorCode::NonEmptyGroup));
        // A silent member's session expires.
        c.tick(t + Duration::from_secs(60));
        assert!(c.consumer_describe("cg").unwrap().members.is_empty());
    }
}

mod consumer_membership {
    use super::consumer_protocol::Topics;
    use super::*;
    use crate::group::consumer::{Assignment, HeartbeatRequest, HeartbeatResponse};

    fn hb(member: &str, epoch: i32, instance: Option<&str>) -> HeartbeatRequest {
        HeartbeatRequest {
            api_version: 1,
            group_id: "cg".into(),
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: instance.map(str::to_owned),
            rack_id: None,
            rebalance_timeout_ms: if epoch == 0 { 10_000 } else { -1 },
            subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_owned()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: (epoch == 0).then(Assignment::new),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn owning(mut req: HeartbeatRequest, owned: &Assignment) -> HeartbeatRequest {
        req.owned = Some(owned.clone());
        req
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    fn beat(
        c: &GroupCoordinator,
        req: HeartbeatRequest,
        t: Instant,
    ) -> Result<HeartbeatResponse, ErrorCode> {
        c.consumer_heartbeat(req, &Topics, t).map_err(|e| e.0)
    }

    #[test]
    fn requests_are_checked_as_kafka_checks_them() {
        let (c, _) = coordinator();
        let t = Instant::now();
        let refused = |req: HeartbeatRequest| c.consumer_heartbeat(req, &Topics, t).unwrap_err();
        let cases: Vec<(HeartbeatRequest, ErrorCode, &str)> = vec![
            (
                hb("", 0, None),
                ErrorCode::InvalidRequest,
                "MemberId can't be empty.",
            ),
            (
                HeartbeatRequest {
                    group_id: " ".into(),
                    ..hb("m", 0, None)
                },
                ErrorCode::InvalidRequest,
                "GroupId can't be empty.",
            ),
            (
                hb("m", 0, Some("")),
                ErrorCode::InvalidRequest,
                "InstanceId can't be empty.",
            ),
            (
                HeartbeatRequest {
                    rebalance_timeout_ms: -1,
                    ..hb("m", 0, None)
                },
                ErrorCode::InvalidRequest,
                "RebalanceTimeoutMs must be provided in first request.",
            ),
            (
                HeartbeatRequest {
                    owned: None,
                    ..hb("m", 0, None)
                },
                ErrorCode::InvalidRequest,
                "TopicPartitions must be empty when (re-)joining.",
            ),
            (
                HeartbeatRequest {
                    subscribed_topic_names: None,
                    ..hb("m", 0, None)
                },
                ErrorCode::InvalidRequest,
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            ),
            (
                hb("m", -2, None),
                ErrorCode::InvalidRequest,
                "InstanceId can't be null.",
            ),
            (
                hb("m", -3, None),
                ErrorCode::InvalidRequest,
                "MemberEpoch is invalid.",
            ),
            (
                HeartbeatRequest {
                    server_assignor: Some("sticky".into()),
                    ..hb("m", 0, None)
                },
                ErrorCode::UnsupportedAssignor,
                "ServerAssignor sticky is not supported. Supported assignors: uniform, range.",
            ),
        ];
        for (req, code, message) in cases {
            assert_eq!(refused(req), (code, message.to_owned()));
        }
        assert_eq!(
            refused(hb("m", 3, None)).0,
            ErrorCode::GroupIdNotFound,
            "a heartbeat to a group that does not exist"
        );
    }

    #[test]
    fn a_full_group_turns_new_members_away() {
        let log = Arc::new(MemLog::default());
        let config = GroupConfig {
            consumer_max_size: 2,
            ..GroupConfig::default()
        };
        let c = GroupCoordinator::new(config, log);
        let t = Instant::now();
        let a = beat(&c, hb("a", 0, None), t).unwrap();
        beat(&c, hb("b", 0, Some("inst-b")), t).unwrap();
        let full = c
            .consumer_heartbeat(hb("c", 0, None), &Topics, t)
            .unwrap_err();
        assert_eq!(
            full,
            (
                ErrorCode::GroupMaxSizeReached,
                "The consumer group has reached its maximum capacity of 2 members.".to_owned()
            )
        );
        assert_eq!(
            beat(&c, hb("c", 4, None), t).unwrap_err(),
            ErrorCode::GroupMaxSizeReached,
            "a heartbeat from a non-member is turned away before its epoch is looked at"
        );
        // Members go on; leaving is not refused; a left static member's
        // place still counts (Kafka keeps it until its session ends).
        let owned = a.assignment.clone().unwrap_or_default();
        assert!(beat(&c, owning(hb("a", a.member_epoch, None), &owned), t).is_ok());
        assert_eq!(
            beat(&c, hb("c", -1, None), t).unwrap_err(),
            ErrorCode::UnknownMemberId
        );
        beat(&c, hb("b", -2, Some("inst-b")), t).unwrap();
        assert_eq!(
            beat(&c, hb("b2", 0, Some("inst-b")), t).unwrap_err(),
            ErrorCode::GroupMaxSizeReached
        );
        beat(&c, hb("a", -1, None), t).unwrap();
        assert!(
            beat(&c, hb("c", 0, None), t).is_ok(),
            "a place left free is taken"
        );
    }

    #[test]
    fn a_static_member_that_left_is_taken_over_without_a_rebalance() {
        let (c, _) = coordinator();
        let t = Instant::now();
        let a = beat(&c, hb("a1", 0, Some("inst-a")), t).unwrap();
        let b = beat(&c, hb("b", 0, None), t).unwrap();
        // Converge: a revokes two of its four.
        let a = beat(&c, hb("a1", a.member_epoch, Some("inst-a")), t).unwrap();
        let kept = a.assignment.clone().unwrap();
        let a = beat(&c, owning(hb("a1", 1, Some("inst-a")), &kept), t).unwrap();
        let b = beat(&c, hb("b", b.member_epoch, None), t).unwrap();
        assert_eq!((a.member_epoch, b.member_epoch), (2, 2));
        assert_eq!(count(&kept), 2);

        // Another process with the same instance id while a1 is in: refused.
        assert_eq!(
            beat(&c, hb("a2", 0, Some("inst-a")), t).unwrap_err(),
            ErrorCode::UnreleasedInstanceId
        );
        // a1 leaves for now: it keeps its partitions and the epoch stays.
        let left = beat(&c, hb("a1", -2, Some("inst-a")), t).unwrap();
        assert_eq!(left.member_epoch, -2);
        let d = c.consumer_describe("cg").unwrap();
        assert_eq!(d.group_epoch, 2);
        assert_eq!(d.members.len(), 2);
        // Its successor takes over the same partitions at the same group epoch.
        let a2 = beat(&c, hb("a2", 0, Some("inst-a")), t).unwrap();
        assert_eq!(a2.member_epoch, 2);
        assert_eq!(a2.assignment.as_ref(), Some(&kept));
        assert_eq!(c.consumer_describe("cg").unwrap().group_epoch, 2);
        // The old member id is fenced by the new one; an unknown instance
        // is unknown.
        assert_eq!(
            beat(&c, hb("a1", 2, Some("inst-a")), t).unwrap_err(),
            ErrorCode::FencedInstanceId
        );
        assert_eq!(
            beat(&c, hb("a2", 2, Some("inst-x")), t).unwrap_err(),
            ErrorCode::UnknownMemberId
        );
        // Leaving with -1 is for good: a rebalance.
        assert_eq!(
            beat(&c, hb("a2", -1, Some("inst-a")), t)
                .unwrap()
                .member_epoch,
            -1
        );
        assert_eq!(c.consumer_describe("cg").unwrap().group_epoch, 3);

        // A static member that left and does not come back within the
        // session timeout is removed.
        let s = beat(&c, hb("s1", 0, Some("inst-s")), t).unwrap();
        beat(&c, hb("s1", -2, Some("inst-s")), t).unwrap();
        assert!(s.member_epoch > 3);
        c.tick(t + Duration::from_secs(44));
        assert_eq!(c.consumer_describe("cg").unwrap().members.len(), 2);
        // b heartbeats on; s1 stays silent past its session.
        let epoch_of_b = c
            .consumer_describe("cg")
            .unwrap()
            .members
            .iter()
            .find(|m| m.member_id == "b")
            .map(|m| m.member_epoch)
            .unwrap();
        beat(&c, hb("b", epoch_of_b, None), t + Duration::from_secs(44)).unwrap();
        c.tick(t + Duration::from_secs(46));
        let members: Vec<String> = c
            .consumer_describe("cg")
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        assert_eq!(members, ["b"]);
    }

    #[test]
    fn the_epoch_check_is_kafkas() {
        let (c, _) = coordinator();
        let t = Instant::now();
        let a = beat(&c, hb("a", 0, None), t).unwrap();
        let mine = a.assignment.clone().unwrap();
        assert_eq!(a.member_epoch, 1);
        beat(&c, hb("b", 0, None), t).unwrap();
        let a = beat(&c, hb("a", 1, None), t).unwrap();
        let kept = a.assignment.unwrap();
        let a = beat(&c, owning(hb("a", 1, None), &kept), t).unwrap();
        assert_eq!(a.member_epoch, 2);
        // The previous epoch is taken if what the member owns is a subset
        // of what it has (the answer bumping it may have been lost)...
        let again = beat(&c, owning(hb("a", 1, None), &kept), t).unwrap();
        assert_eq!(again.member_epoch, 2);
        assert_eq!(again.assignment, Some(kept), "the assignment sent again");
        // ...not if it claims more, nor without saying what it owns, nor
        // an older or a newer epoch.
        for req in [
            owning(hb("a", 1, None), &mine),
            hb("a", 1, None),
            hb("a", 3, None),
        ] {
            assert_eq!(beat(&c, req, t).unwrap_err(), ErrorCode::FencedMemberEpoch);
        }
        assert_eq!(
            beat(&c, hb("nobody", -1, None), t).unwrap_err(),
            ErrorCode::UnknownMemberId
        );
    }

    #[test]
    fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
        let (c, _) = coordinator();
        let t = Instant::now();
        let a = beat(&c, hb("a", 0, None), t).unwrap();
        assert_eq!(count(a.assignment.as_ref().unwrap()), 4);
        let b = beat(&c, hb("b", 0, None), t).unwrap();
        // a is asked to revoke two (its rebalance timeout is 10 s) and
        // keeps heartbeating without letting go.
        let a = beat(&c, hb("a", 1, None), t).unwrap();
        assert_eq!(a.member_epoch, 1);
        for s in [3, 6, 9] {
            let at = t + Duration::from_secs(s);
            beat(&c, hb("a", 1, None), at).unwrap();
            beat(&c, hb("b", b.member_epoch, None), at).unwrap();
            c.tick(at);
        }
        assert_eq!(c.consumer_describe("cg").unwrap().members.len(), 2);
        let late = t + Duration::from_millis(10_500);
        beat(&c, hb("b", b.member_epoch, None), late).unwrap();
        c.tick(late);
        let d = c.consumer_describe("cg").unwrap();
        assert_eq!(
            d.members
                .iter()
                .map(|m| m.member_id.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(
            beat(&c, hb("a", 1, None), late).unwrap_err(),
            ErrorCode::UnknownMemberId,
            "fenced: it must rejoin"
        );
        // b gets everything once it heartbeats.
        let b = beat(&c, hb("b", b.member_epoch, None), late).unwrap();
        assert_eq!(count(b.assignment.as_ref().unwrap()), 4);
    }

    /// A coordinator that loads the group's records (after a restart, or
    /// on the node that leads its partition next) has every member at its
    /// epoch with its assignment: nobody rejoins, the epoch does not move.
    #[test]
    fn a_loaded_group_carries_on_where_its_records_left_it() {
        let (c, log) = coordinator();
        let t = Instant::now();
        let a = beat(&c, hb("a", 0, Some("inst-a")), t).unwrap();
        let b = beat(&c, hb("b", 0, None), t).unwrap();
        let a1 = beat(&c, hb("a", a.member_epoch, Some("inst-a")), t).unwrap();
        let kept = a1.assignment.unwrap();
        // a still has two to revoke when the coordinator goes.
        let before = c.consumer_describe("cg").unwrap();

        let log2 = Arc::new(MemLog::default());
        let c2 = GroupCoordinator::new(GroupConfig::default(), log2.clone());
        for (_, k, v) in log.0.lock().unwrap().iter() {
            c2.replay(k, v.as_deref());
        }
        let after = c2.consumer_describe("cg").unwrap();
        assert_eq!(after.group_epoch, before.group_epoch);
        assert_eq!(after.assignment_epoch, before.assignment_epoch);
        let summary = |d: &crate::group::consumer::ConsumerGroupSummary| {
            d.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.instance_id.clone(),
                        m.member_epoch,
                        m.assignment.clone(),
                        m.target_assignment.clone(),
                        m.subscribed_topic_names.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&after), summary(&before));
        assert_eq!(after.state, before.state);

        // Both carry on with their epochs; a finishes revoking, b takes over.
        let t2 = t + Duration::from_secs(1);
        let a2 = beat(&c2, owning(hb("a", 1, Some("inst-a")), &kept), t2).unwrap();
        assert_eq!(a2.member_epoch, 2);
        assert_eq!(a2.assignment, Some(kept), "told its assignment again");
        let b2 = c2
            .consumer_heartbeat(hb("b", b.member_epoch, None), &Topics, t2)
            .unwrap();
        assert_eq!(
            (b2.member_epoch, count(b2.assignment.as_ref().unwrap())),
            (2, 2)
        );
        assert_eq!(c2.consumer_describe("cg").unwrap().group_epoch, 2);

        // Leaving and deleting leave nothing behind for a third load.
        beat(&c2, hb("a", -1, Some("inst-a")), t2).unwrap();
        beat(&c2, hb("b", -1, None), t2).unwrap();
        c2.delete_group("cg").unwrap();
        let c3 = GroupCoordinator::new(GroupConfig::default(), Arc::new(MemLog::default()));
        for (_, k, v) in log
            .0
            .lock()
            .unwrap()
            .iter()
            .chain(log2.0.lock().unwrap().iter())
        {
            c3.replay(k, v.as_deref());
        }
        assert!(c3.consumer_describe("cg").is_none());
        assert!(c3.groups().is_empty());
    }
}

#[test]
fn a_member_tombstone_after_its_group_s_leaves_no_group_behind() {
    use crate::records::RecordKey;
    let (c, _) = coordinator();
    for key in [
        RecordKey::Group { group: "g".into() },
        RecordKey::ConsumerGroup { group: "g".into() },
        RecordKey::ConsumerMember {
            group: "g".into(),
            member: "m".into(),
        },
        RecordKey::ConsumerAssignment {
            group: "g".into(),
            member: "m".into(),
        },
    ] {
        c.replay(&key.encode(), None);
    }
    assert!(c.groups().is_empty());
}

mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize),
        Sync(usize),
        Heartbeat(usize),
        Leave(usize),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0usize..4).prop_map(Op::Join),
            3 => (0usize..4).prop_map(Op::Sync),
            2 => (0usize..4).prop_map(Op::Heartbeat),
            1 => (0usize..4).prop_map(Op::Leave),
            2 => (0u64..15_000).prop_map(Op::Tick),
        ]
    }

    #[derive(Default)]
    struct Client {
        member_id: String,
        generation: i32,
        join: Option<tokio::sync::oneshot::Receiver<JoinResponse>>,
        sync: Option<tokio::sync::oneshot::Receiver<SyncResponse>>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever members do and however time passes: generations only
        /// grow, each generation has one leader who got every member's
        /// metadata, and a member's assignment is what its leader gave it.
        #[test]
        fn classic_group_invariants(ops in proptest::collection::vec(op(), 1..80)) {
            let (c, _) = coordinator();
            let mut now = Instant::now();
            let mut clients: Vec<Client> = (0..4).map(|_| Client::default()).collect();
            let mut leaders: HashMap<i32, String> = HashMap::new();
            let mut last_generation = 0;
            let mut assigned: HashMap<(i32, String), Bytes> = HashMap::new();
            for op in ops {
                match op {
                    Op::Join(i) => {
                        let cl = &mut clients[i];
                        if cl.join.is_none() {
                            match c.join(join_req(&cl.member_id, None), now) {
                                Reply::Now(r) => {
                                    if r.error == Some(ErrorCode::MemberIdRequired) || r.error.is_none() {
                                        cl.member_id = r.member_id.clone();
                                    }
                                    if r.error == Some(ErrorCode::UnknownMemberId) {
                                        cl.member_id.clear();
                                    }
                                }
                                Reply::Later(rx) => cl.join = Some(rx),
                            }
                        }
                    }
                    Op::Sync(i) => {
                        let cl = &mut clients[i];
                        if !cl.member_id.is_empty() && cl.sync.is_none() {
                            let is_leader = leaders.get(&cl.generation) == Some(&cl.member_id);
                            let members: Vec<String> = c.describe("g").map(|d| d.members.into_iter().map(|m| m.member_id).collect()).unwrap_or_default();
                            let assignments = if is_leader {
                                members.iter().map(|m| (m.clone(), Bytes::from(format!("{}:{m}", cl.generation)))).collect()
                            } else {
                                vec![]
                            };
                            if is_leader {
                                for (m, a) in &assignments {
                                    assigned.insert((cl.generation, m.clone()), a.clone());
                                }
                            }
                            if let Reply::Later(rx) = sync(&c, &cl.member_id, cl.generation, assignments, now) {
                                cl.sync = Some(rx);
                            }
                        }
                    }
                    Op::Heartbeat(i) => {
                        let cl = &clients[i];
                        if !cl.member_id.is_empty() {
                            c.heartbeat("g", cl.generation, &cl.member_id, None, now);
                        }
                    }
                    Op::Leave(i) => {
                        let cl = &mut clients[i];
                        if !cl.member_id.is_empty() {
                            let _ = c.leave("g", &[(cl.member_id.clone(), None)], now);
                            *cl = Client::default();
                        }
                    }
                    Op::Tick(ms) => {
                        now += Duration::from_millis(ms);
                        c.tick(now);
                    }
                }
                for cl in clients.iter_mut() {
                    if let Some(mut rx) = cl.join.take() {
                        match rx.try_recv() {
                            Ok(r) if r.error.is_none() => {
                                prop_assert!(r.generation_id >= last_generation, "generations only grow");
                                last_generation = r.generation_id;
                                let leader = leaders.entry(r.generation_id).or_insert_with(|| r.leader.clone());
                                prop_assert_eq!(&*leader, &r.leader, "one leader per generation");
                                if r.leader == r.member_id {
                                    let members = c.describe("g").map_or(0, |d| d.members.len());
                                    prop_assert_eq!(r.members.len(), members, "the leader sees every member");
                                }
                                cl.generation = r.generation_id;
                                cl.member_id = r.member_id;
                            }
                            Ok(_) => cl.member_id.clear(),
                            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => cl.join = Some(rx),
                            Err(_) => {}
                        }
                    }
                    if let Some(mut rx) = cl.sync.take() {
                        match rx.try_recv() {
                            Ok(r) if r.error.is_none() => {
                                if let Some(expected) = assigned.get(&(cl.generation, cl.member_id.clone())) {
                                    prop_assert_eq!(&r.assignment, expected, "the leader's assignment arrives");
                                }
                            }
                            Ok(_) => {}
                            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => cl.sync = Some(rx),
                            Err(_) => {}
                        }
                    }
                }
                let members = c.describe("g").map_or(0, |d| d.members.len());
                prop_assert!(members <= clients.len());
            }
        }
    }
}

#[test]
fn transactional_offsets_are_visible_only_after_commit() {
    let (c, log) = coordinator();
    let commit = |p, o| OffsetCommit {
        topic: "t".into(),
        partition: p,
        offset: o,
        leader_epoch: -1,
        metadata: None,
    };
    let anyone = as_member("", -1);
    c.commit_offsets(&anyone, &[commit(0, 1)], Instant::now(), 1)
        .unwrap();
    c.commit_transactional_offsets(&anyone, (7, 0), 0, &[commit(0, 5), commit(1, 6)], 2)
        .unwrap();
    c.commit_transactional_offsets(&anyone, (8, 0), 0, &[commit(2, 9)], 2)
        .unwrap();
    let offset = |c: &GroupCoordinator, p| {
        c.fetch_offsets("g", Some(&[("t".into(), p)]))[0]
            .1
            .as_ref()
            .map(|o| o.offset)
    };
    assert_eq!(offset(&c, 0), Some(1), "pending until the marker");
    assert_eq!(offset(&c, 1), None);
    assert_eq!(c.unstable_offsets("g").len(), 3);
    let part = c.partition_for("g");
    c.complete_transaction(part + 1, 7, true);
    assert_eq!(offset(&c, 0), Some(1), "a marker on another partition");
    c.complete_transaction(part, 7, true);
    c.complete_transaction(part, 8, false);
    assert_eq!(
        (offset(&c, 0), offset(&c, 1), offset(&c, 2)),
        (Some(5), Some(6), None)
    );
    assert!(c.unstable_offsets("g").is_empty());
    assert_eq!(
        c.commit_transactional_offsets(&as_member("nobody", 3), (7, 1), 0, &[commit(0, 1)], 3),
        Err(ErrorCode::UnknownMemberId)
    );
    // Loading: transactional records stay pending until a replayed marker.
    let (c2, _) = coordinator();
    for (_, k, v) in log.0.lock().unwrap().iter() {
        c2.replay(k, v.as_deref());
    }
    for (_, pid, k, v) in log.1.lock().unwrap().iter() {
        c2.replay_transactional(*pid, k, v.as_deref());
    }
    assert_eq!(offset(&c2, 0), Some(1));
    c2.complete_transaction(part, 7, true);
    assert_eq!(offset(&c2, 0), Some(5));
}

#[test]
fn offset_expiry_keeps_groups_with_offsets_in_open_transactions() {
    let (c, _) = coordinator();
    let commit = OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    };
    c.commit_transactional_offsets(&as_member("", -1), (7, 0), 0, &[commit], 1)
        .unwrap();
    assert_eq!(c.expire_offsets(i64::MAX / 2), 0);
    c.complete_transaction(c.partition_for("g"), 7, true);
    let got = c.fetch_offsets("g", Some(&[("t".into(), 0)]));
    assert_eq!(got[0].1.as_ref().map(|o| o.offset), Some(42));
}

#[test]
fn a_later_plain_commit_wins_over_an_earlier_transactional_one() {
    let (c, log) = coordinator();
    let commit = |o| OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset: o,
        leader_epoch: -1,
        metadata: None,
    };
    let anyone = as_member("", -1);
    c.commit_transactional_offsets(&anyone, (7, 0), 0, &[commit(10)], 1)
        .unwrap();
    c.commit_offsets(&anyone, &[commit(20)], Instant::now(), 2)
        .unwrap();
    c.complete_transaction(c.partition_for("g"), 7, true);
    let offset = |c: &GroupCoordinator| {
        c.fetch_offsets("g", Some(&[("t".into(), 0)]))[0]
            .1
            .as_ref()
            .map(|o| o.offset)
    };
    assert_eq!(offset(&c), Some(20), "Kafka keeps the newer record");
    // Loading in log order decides the same way.
    let (c2, _) = coordinator();
    for (_, pid, k, v) in log.1.lock().unwrap().iter() {
        c2.replay_transactional(*pid, k, v.as_deref());
    }
    for (_, k, v) in log.0.lock().unwrap().iter() {
        c2.replay(k, v.as_deref());
    }
    c2.complete_transaction(c2.partition_for("g"), 7, true);
    assert_eq!(offset(&c2), Some(20));
}
