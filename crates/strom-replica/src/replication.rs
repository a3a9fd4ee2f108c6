//! What a partition's leader knows of its followers, as Kafka's leader
//! keeps it: each follower's log end (the offset of its last fetch) and when
//! it was last caught up; from them the high watermark (the smallest log
//! end in the ISR) and the ISR changes to ask the controller for.
//!
//! Pure: the partition calls it under its lock with the time.

use std::collections::BTreeMap;

/// One follower, as its fetches showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Follower {
    /// Its log end: the offset it last fetched from (-1: not yet known
    /// in this leadership).
    pub(crate) log_end: i64,
    pub(crate) last_fetch_ms: i64,
    /// When its log end last reached the leader's (Kafka's
    /// lastCaughtUpTimeMs).
    pub(crate) last_caught_up_ms: i64,
    /// The leader's log end when it fetched last: a fetch from at least
    /// that far means it was caught up then.
    leader_end_at_last_fetch: i64,
    last_fetch_at_ms: i64,
}

/// The leader's view of its partition's replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leadership {
    pub(crate) me: i32,
    pub(crate) replicas: Vec<i32>,
    /// The ISR the metadata gives.
    pub(crate) isr: Vec<i32>,
    pub(crate) partition_epoch: i32,
    /// Replicas on brokers that may join the ISR (unfenced, not shutting
    /// down).
    pub(crate) eligible: Vec<i32>,
    followers: BTreeMap<i32, Follower>,
}

/// Never caught up (a replica outside the ISR when the leadership began).
const NEVER: i64 = i64::MIN / 2;

impl Leadership {
    /// A leadership that begins at `now_ms`: the followers' log ends are
    /// unknown until they fetch; the ISR's members count as caught up now
    /// (so none is dropped before it had the time to fetch), the others
    /// as never.
    pub(crate) fn new(
        me: i32,
        replicas: &[i32],
        isr: &[i32],
        eligible: &[i32],
        partition_epoch: i32,
        now_ms: i64,
    ) -> Self {
        let mut l = Leadership {
            me,
            replicas: Vec::new(),
            isr: isr.to_vec(),
            partition_epoch,
            eligible: Vec::new(),
            followers: BTreeMap::new(),
        };
        l.update(replicas, isr, eligible, partition_epoch, now_ms);
        l
    }

    /// The metadata changed the replicas, the ISR or the brokers' states:
    /// followers that stay keep what is known of them.
    pub(crate) fn update(
        &mut self,
        replicas: &[i32],
        isr: &[i32],
        eligible: &[i32],
        partition_epoch: i32,
        now_ms: i64,
    ) {
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        self.eligible = eligible.to_vec();
        self.partition_epoch = partition_epoch;
        let me = self.me;
        self.followers.retain(|id, _| replicas.contains(id));
        for id in replicas.iter().filter(|id| **id != me) {
            let caught_up = if isr.contains(id) { now_ms } else { NEVER };
            self.followers.entry(*id).or_insert(Follower {
                log_end: -1,
                last_fetch_ms: -1,
                last_caught_up_ms: caught_up,
                leader_end_at_last_fetch: i64::MAX,
                last_fetch_at_ms: now_ms,
            });
        }
    }

    #[cfg(test)]
    pub(crate) fn follower(&self, id: i32) -> Option<&Follower> {
        self.followers.get(&id)
    }

    /// Follower `id` fetched from `fetch_offset` when the leader's log
    /// ended at `leader_end`. False for a broker that is not a replica.
    pub(crate) fn record_fetch(
        &mut self,
        id: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&id) else {
            return false;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if fetch_offset >= f.leader_end_at_last_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_at_ms);
        }
        f.log_end = fetch_offset;
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = leader_end;
        f.last_fetch_at_ms = now_ms;
        true
    }

    /// Whether the ISR is smaller than `min_isr` (no more than the
    /// replicas there are: Kafka's effective minimum).
    pub(crate) fn under_min_isr(&self, min_isr: usize) -> bool {
        self.isr.len() < min_isr.min(self.replicas.len()).max(1)
    }

    /// The high watermark the replicas allow (Kafka's
    /// maybeIncrementLeaderHW): the smallest log end among the ISR's
    /// members (the leader's own is `leader_end`) and the followers about
    /// to join it (eligible and caught up within `lag_max_ms`), so that one
    /// catching up is not left behind; `None` while the partition is under
    /// its minimum ISR or a member's log end is not known yet.
    pub(crate) fn high_watermark(
        &self,
        leader_end: i64,
        min_isr: usize,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Option<i64> {
        if self.under_min_isr(min_isr) {
            return None;
        }
        let mut hw = leader_end;
        for (id, f) in &self.followers {
            let joining = self.eligible.contains(id)
                && f.log_end >= 0
                && (f.log_end == leader_end || now_ms - f.last_caught_up_ms <= lag_max_ms);
            if self.isr.contains(id) || joining {
                if f.log_end < 0 {
                    return None;
                }
                hw = hw.min(f.log_end);
            }
        }
        Some(hw)
    }

    /// The ISR without the followers that were not caught up for longer
    /// than `lag_max_ms` (Kafka's replica.lag.time.max.ms); `None` when
    /// every member is in time.
    pub(crate) fn shrunk_isr(&self, now_ms: i64, lag_max_ms: i64) -> Option<Vec<i32>> {
        let keep: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| {
                *id == self.me
                    || self
                        .followers
                        .get(id)
                        .is_some_and(|f| now_ms - f.last_caught_up_ms <= lag_max_ms)
            })
            .collect();
        (keep.len() < self.isr.len()).then_some(keep)
    }

    /// The ISR with the eligible replicas outside it whose log end reached
    /// `high_watermark` and that are caught up within `lag_max_ms`
    /// (Kafka's isFollowerInSync); `None` when none did.
    pub(crate) fn expanded_isr(
        &self,
        high_watermark: i64,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Option<Vec<i32>> {
        let joining: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|id| !self.isr.contains(id) && self.eligible.contains(id))
            .filter(|id| {
                self.followers.get(id).is_some_and(|f| {
                    f.log_end >= 0
                        && f.log_end >= high_watermark
                        && now_ms - f.last_caught_up_ms <= lag_max_ms
                })
            })
            .collect();
        if joining.is_empty() {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.extend(joining);
        Some(isr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_high_watermark_is_the_slowest_in_sync_log_end() {
        const LAG: i64 = 30_000;
        let all = [1, 2, 3];
        let mut l = Leadership::new(1, &all, &all, &all, 0, 0);
        let hw = |l: &Leadership, min_isr, now| l.high_watermark(10, min_isr, now, LAG);
        assert_eq!(hw(&l, 1, 0), None, "followers not heard from yet");
        l.record_fetch(2, 7, 10, 1);
        assert_eq!(hw(&l, 1, 1), None);
        l.record_fetch(3, 4, 10, 1);
        assert_eq!(hw(&l, 1, 1), Some(4));
        l.record_fetch(3, 10, 10, 2);
        assert_eq!(hw(&l, 1, 2), Some(7));
        // Out of the ISR, a follower still caught up holds it back (it is
        // about to join)...
        l.update(&all, &[1, 3], &all, 1, 2);
        assert_eq!(hw(&l, 1, 2), Some(7));
        // ...until it is out of time, or its broker is fenced.
        assert_eq!(hw(&l, 1, 2 + LAG), Some(10));
        l.update(&all, &[1, 3], &[1, 3], 2, 3);
        assert_eq!(hw(&l, 1, 3), Some(10));
        // Too small an ISR stops it; the minimum is at most the replicas.
        assert_eq!(hw(&l, 3, 3), None);
        let single = Leadership::new(1, &[1], &[1], &[1], 0, 0);
        assert_eq!(single.high_watermark(10, 2, 0, LAG), Some(10));
        assert!(!l.record_fetch(9, 0, 10, 3), "not a replica");
    }

    #[test]
    fn a_follower_out_of_time_leaves_the_isr_and_one_caught_up_joins() {
        let all = [1, 2, 3];
        let mut l = Leadership::new(1, &all, &all, &all, 0, 1000);
        l.record_fetch(2, 50, 50, 1000);
        l.record_fetch(3, 20, 50, 1000);
        assert_eq!(l.shrunk_isr(30_000, 30_000), None);
        // Follower 2 keeps up, 3 falls behind.
        l.record_fetch(2, 80, 80, 31_500);
        l.record_fetch(3, 30, 80, 31_500);
        assert_eq!(l.shrunk_isr(31_500, 30_000), Some(vec![1, 2]));
        l.update(&all, &[1, 2], &all, 1, 31_500);
        assert_eq!(l.expanded_isr(80, 31_600, 30_000), None);
        // 3 fetches from 80, the leader's end at its previous fetch: caught
        // up as of that fetch, and past the high watermark.
        l.record_fetch(3, 80, 90, 31_700);
        assert_eq!(l.expanded_isr(80, 31_700, 30_000), Some(vec![1, 2, 3]));
    }

    proptest! {
        /// Whatever the fetches, the high watermark never passes an ISR
        /// member's log end or the leader's.
        #[test]
        fn never_past_an_in_sync_log_end(
            fetches in proptest::collection::vec((2i32..5, 0i64..100, 0i64..100), 0..40),
            isr_mask in 0u8..8,
            leader_end in 0i64..100,
        ) {
            let isr: Vec<i32> = std::iter::once(1).chain((2..5).filter(|id| isr_mask & (1 << (id - 2)) != 0)).collect();
            let all = [1, 2, 3, 4];
            let mut l = Leadership::new(1, &all, &isr, &all, 0, 0);
            for (i, (id, offset, end)) in fetches.iter().enumerate() {
                l.record_fetch(*id, *offset, *end, i as i64);
            }
            if let Some(hw) = l.high_watermark(leader_end, 1, fetches.len() as i64, 30_000) {
                prop_assert!(hw <= leader_end);
                for id in isr.iter().filter(|id| **id != 1) {
                    prop_assert!(hw <= l.follower(*id).unwrap().log_end);
                }
            }
        }
    }
}
