use super::*;

fn params(offset: i64) -> Params {
    Params {
        fetch_offset: offset,
        max_bytes: 1 << 20,
        current_leader_epoch: -1,
        log_start_offset: -1,
        last_fetched_epoch: -1,
    }
}

fn part(topic: &str, partition: i32, offset: i64) -> Wanted {
    Wanted {
        topic: TopicRef::Name(topic.into()),
        partition,
        params: params(offset),
    }
}

fn quiet(hw: i64) -> Answered {
    Answered {
        high_watermark: hw,
        log_start_offset: 0,
        has_records: false,
        error: false,
    }
}

fn with_records(hw: i64) -> Answered {
    Answered {
        has_records: true,
        ..quiet(hw)
    }
}

const V12: i16 = 12;

fn req(version: i16, session_id: i32, epoch: i32, privileged: bool) -> Request {
    Request {
        version,
        session_id,
        epoch,
        privileged,
    }
}
const NOW: i64 = 1_000_000;

/// Opens a session over `parts` (all answered quiet at hw 10); its id.
fn open(cache: &FetchSessions, parts: Vec<Wanted>, privileged: bool, now: i64) -> i32 {
    let (ctx, fetched) = cache.new_context(req(V12, 0, 0, privileged), parts, &[], now);
    assert!(matches!(ctx, Context::Full { .. }), "{ctx:?}");
    let answers = vec![quiet(10); fetched.len()];
    let (id, include) = cache.finish(&ctx, &fetched, &answers, now).unwrap();
    assert!(
        include.iter().all(|i| *i),
        "a full fetch answers every partition"
    );
    id
}

/// An incremental fetch at `epoch` sending `changed`; the context and
/// the partitions it fetches.
fn incremental(
    cache: &FetchSessions,
    id: i32,
    epoch: i32,
    changed: Vec<Wanted>,
    forgotten: &[(TopicRef, i32)],
) -> (Context, Vec<Wanted>) {
    cache.new_context(req(V12, id, epoch, false), changed, forgotten, NOW)
}

/// Asserts that an incremental fetch of `id` is told the session is gone.
fn assert_gone(cache: &FetchSessions, id: i32, epoch: i32, why: &str) {
    assert_eq!(
        incremental(cache, id, epoch, vec![], &[]).0,
        Context::Error(ErrorCode::FetchSessionIdNotFound),
        "{why}"
    );
}

#[test]
fn a_full_fetch_opens_a_session_and_increments_follow_its_epoch() {
    let cache = FetchSessions::new(10);
    let id = open(&cache, vec![part("a", 0, 0), part("a", 1, 0)], false, NOW);
    assert_ne!(id, NO_SESSION);
    for epoch in 1..5 {
        let (ctx, fetched) = incremental(&cache, id, epoch, vec![], &[]);
        assert_eq!(
            ctx,
            Context::Incremental {
                id,
                epoch: epoch + 1
            }
        );
        assert_eq!(fetched, vec![part("a", 0, 0), part("a", 1, 0)]);
        let (sid, include) = cache
            .finish(&ctx, &fetched, &[quiet(10), quiet(10)], NOW)
            .unwrap();
        assert_eq!(sid, id);
        assert_eq!(
            include,
            vec![false, false],
            "nothing changed, nothing answered"
        );
    }
}

#[test]
fn session_errors_are_kafkas() {
    let cache = FetchSessions::new(10);
    let id = open(&cache, vec![part("a", 0, 0)], false, NOW);
    assert_gone(&cache, id + 1, 1, "no such session");
    assert_gone(&cache, NO_SESSION, 1, "id 0 is never a session");
    assert_eq!(
        incremental(&cache, id, 2, vec![], &[]).0,
        Context::Error(ErrorCode::InvalidFetchSessionEpoch)
    );
    assert_eq!(
        cache.new_context(req(13, id, 1, false), vec![], &[], NOW).0,
        Context::Error(ErrorCode::FetchSessionTopicIdError),
        "a session opened by names is not continued by ids"
    );
    // The errors left the session as it was.
    assert!(matches!(
        incremental(&cache, id, 1, vec![], &[]).0,
        Context::Incremental { .. }
    ));
}

#[test]
fn only_changes_are_answered_and_errors_always() {
    let cache = FetchSessions::new(10);
    let parts = vec![part("a", 0, 0), part("a", 1, 0), part("b", 0, 0)];
    let id = open(&cache, parts, false, NOW);
    let (ctx, fetched) = incremental(&cache, id, 1, vec![], &[]);
    let errored = Answered {
        error: true,
        ..quiet(-1)
    };
    let (_, include) = cache
        .finish(&ctx, &fetched, &[quiet(11), quiet(10), errored], NOW)
        .unwrap();
    assert_eq!(
        include,
        vec![true, false, true],
        "a moved high watermark and an error"
    );
    let (ctx, fetched) = incremental(&cache, id, 2, vec![], &[]);
    let moved_start = Answered {
        log_start_offset: 5,
        ..quiet(10)
    };
    let (_, include) = cache
        .finish(&ctx, &fetched, &[quiet(11), moved_start, quiet(10)], NOW)
        .unwrap();
    assert_eq!(
        include,
        vec![false, true, true],
        "a moved log start; the partition that erred is sent again once the error is gone"
    );
}

#[test]
fn partitions_that_returned_records_go_last() {
    let cache = FetchSessions::new(10);
    let parts = vec![part("a", 0, 0), part("a", 1, 0), part("a", 2, 0)];
    let id = open(&cache, parts, false, NOW);
    let (ctx, fetched) = incremental(&cache, id, 1, vec![], &[]);
    cache
        .finish(
            &ctx,
            &fetched,
            &[with_records(10), quiet(10), quiet(10)],
            NOW,
        )
        .unwrap();
    // The client sends the partition with its next offset.
    let (_, fetched) = incremental(&cache, id, 2, vec![part("a", 0, 7)], &[]);
    assert_eq!(
        fetched,
        vec![part("a", 1, 0), part("a", 2, 0), part("a", 0, 7)]
    );
}

#[test]
fn added_partitions_are_answered_and_forgotten_ones_dropped() {
    let cache = FetchSessions::new(10);
    let id = open(&cache, vec![part("a", 0, 0)], false, NOW);
    let forget = [(TopicRef::Name("a".into()), 0)];
    let (ctx, fetched) = incremental(&cache, id, 1, vec![part("b", 3, 4)], &forget);
    assert_eq!(fetched, vec![part("b", 3, 4)]);
    let (_, include) = cache.finish(&ctx, &fetched, &[quiet(10)], NOW).unwrap();
    assert_eq!(include, vec![true], "a new partition is answered once");
    // Forgetting the last one closes the session: a sessionless answer.
    let forget = [(TopicRef::Name("b".into()), 3)];
    let (ctx, fetched) = incremental(&cache, id, 2, vec![], &forget);
    assert_eq!(ctx, Context::Sessionless);
    assert!(fetched.is_empty());
    assert_eq!(
        cache.finish(&ctx, &fetched, &[], NOW).unwrap().0,
        NO_SESSION
    );
    assert_eq!(cache.len(), 0);
}

#[test]
fn the_final_epoch_and_full_fetches_close_the_named_session() {
    let cache = FetchSessions::new(10);
    let id = open(&cache, vec![part("a", 0, 0)], false, NOW);
    let (ctx, _) = cache.new_context(
        req(V12, id, FINAL_EPOCH, false),
        vec![part("a", 0, 0)],
        &[],
        NOW,
    );
    assert_eq!(ctx, Context::Sessionless);
    assert_eq!(cache.len(), 0);
    let id = open(&cache, vec![part("a", 0, 0)], false, NOW);
    // A full fetch carrying the old id (the Java client's restart) opens anew.
    let (ctx, fetched) = cache.new_context(req(V12, id, 0, false), vec![part("a", 0, 0)], &[], NOW);
    let (new_id, _) = cache.finish(&ctx, &fetched, &[quiet(10)], NOW).unwrap();
    assert_ne!(new_id, id);
    assert_eq!(cache.len(), 1);
    assert_gone(&cache, id, 1, "the full fetch closed the old session");
}

#[test]
fn a_session_moved_on_meanwhile_fails_the_fetch_and_a_closed_one_answers_all() {
    let cache = FetchSessions::new(10);
    let id = open(&cache, vec![part("a", 0, 0)], false, NOW);
    let (first, fetched) = incremental(&cache, id, 1, vec![], &[]);
    // A duplicate of the next request arrives while the first waits.
    let (second, _) = incremental(&cache, id, 2, vec![], &[]);
    assert_eq!(
        cache.finish(&first, &fetched, &[quiet(10)], NOW),
        Err((ErrorCode::InvalidFetchSessionEpoch, id))
    );
    assert!(cache.finish(&second, &fetched, &[quiet(10)], NOW).is_ok());
    // Closed while the fetch waited: what was read is still answered.
    cache.new_context(req(V12, id, FINAL_EPOCH, false), vec![], &[], NOW);
    assert_eq!(
        cache.finish(&second, &fetched, &[quiet(10)], NOW),
        Ok((id, vec![true]))
    );
}

#[test]
fn forgetting_many_partitions_at_once_keeps_the_rest_in_order() {
    let cache = FetchSessions::new(10);
    let id = open(&cache, parts(2000), false, NOW);
    let forget: Vec<_> = (0..2000)
        .filter(|p| p % 3 != 0)
        .map(|p| (TopicRef::Name("t".into()), p))
        .collect();
    let (_, fetched) = incremental(&cache, id, 1, vec![], &forget);
    let kept: Vec<i32> = fetched.iter().map(|w| w.partition).collect();
    assert_eq!(kept, (0..2000).filter(|p| p % 3 == 0).collect::<Vec<_>>());
}

#[test]
fn epochs_wrap_to_one() {
    assert_eq!(next_epoch(0), 1);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(-1), -1);
}

#[test]
fn requests_name_each_partition_once() {
    let deduped = dedup(vec![part("a", 0, 1), part("b", 0, 2), part("a", 0, 3)]);
    assert_eq!(deduped, vec![part("a", 0, 3), part("b", 0, 2)]);
}

fn parts(n: i32) -> Vec<Wanted> {
    (0..n).map(|p| part("t", p, 0)).collect()
}

#[test]
fn a_full_cache_opens_no_session_until_one_may_be_evicted() {
    let cache = FetchSessions::new(2);
    let small = open(&cache, parts(1), false, NOW);
    let other = open(&cache, parts(3), false, NOW + 1);
    // Young sessions are safe from consumers, even from a bigger one.
    assert_eq!(open(&cache, parts(5), false, NOW + 2), NO_SESSION);
    // Used again past the protection (and so not stale), a bigger session
    // evicts the smallest...
    let later = NOW + EVICTION_MS + 10;
    for (id, n) in [(small, 1), (other, 3)] {
        let (ctx, fetched) = cache.new_context(req(V12, id, 1, false), vec![], &[], later);
        cache
            .finish(&ctx, &fetched, &vec![quiet(10); n], later)
            .unwrap();
    }
    assert_eq!(
        open(&cache, parts(1), false, later),
        NO_SESSION,
        "...but not one of the same size"
    );
    let big = open(&cache, parts(2), false, later);
    assert_ne!(big, NO_SESSION);
    assert_gone(&cache, small, 2, "the smallest session went");
    assert_eq!(cache.len(), 2);
}

#[test]
fn stale_sessions_make_room_and_followers_evict_consumers() {
    let cache = FetchSessions::new(1);
    let consumer = open(&cache, parts(10), false, NOW);
    let follower = open(&cache, parts(1), true, NOW + 1);
    assert_ne!(
        follower, NO_SESSION,
        "a follower may evict a young consumer"
    );
    assert_eq!(
        open(&cache, parts(50), false, NOW + 2),
        NO_SESSION,
        "a consumer never evicts a young follower"
    );
    let stale = NOW + 1 + EVICTION_MS + 1;
    let replacement = open(&cache, parts(1), false, stale);
    assert_ne!(replacement, NO_SESSION, "an unused session goes stale");
    assert_eq!(cache.len(), 1);
    assert_gone(&cache, consumer, 1, "the stale session was evicted");
}

#[test]
fn no_slots_means_no_sessions() {
    let cache = FetchSessions::new(0);
    assert_eq!(open(&cache, parts(1), true, NOW), NO_SESSION);
}
