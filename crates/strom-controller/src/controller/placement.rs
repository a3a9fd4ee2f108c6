//! Where a new partition's replicas go.
//!
//! Without racks (or with every broker in one), round robin: partition `p`
//! is led by the `p`-th active broker and followed by the next ones, so
//! leaders are spread evenly. With racks, the brokers are first listed
//! rack by rack in turn (the first broker of each rack, then the second of
//! each, ...), so that consecutive brokers sit in different racks; each
//! partition's leader is the next broker in that list, and its followers
//! are taken at a shift from the leader (the shift grows each time the
//! partitions wrap around the list, so that the same pairs do not always
//! share partitions), skipping a broker whose rack already holds a replica
//! until every rack does. So every partition spans as many racks as its
//! replication factor allows, and leaders are spread as evenly as without
//! racks. This is the rack-aware assignment Kafka's admin tools have used.

use std::collections::{BTreeMap, BTreeSet};

/// An active broker and its rack (`None`: no `broker.rack`, all such
/// brokers counted as one rack).
pub(crate) type Candidate<'a> = (i32, Option<&'a str>);

/// Replicas for partitions `first_partition..first_partition + count`, each
/// `rf` distinct brokers (the caller checks `rf <= brokers.len()`), the
/// leader first.
pub(crate) fn place(
    brokers: &[Candidate<'_>],
    first_partition: i32,
    count: i32,
    rf: usize,
) -> Vec<Vec<i32>> {
    let racks: BTreeSet<Option<&str>> = brokers.iter().map(|(_, r)| *r).collect();
    let partitions = first_partition..first_partition + count;
    if racks.len() < 2 {
        let n = brokers.len();
        return partitions
            .map(|p| (0..rf).map(|r| brokers[(p as usize + r) % n].0).collect())
            .collect();
    }
    let arranged = alternate_racks(brokers);
    let n = arranged.len();
    partitions
        .map(|p| {
            let p = p as usize;
            let first = p % n;
            // Kafka's shift: 1 + (base + k) % (n - 1), never the leader.
            let base = (p / n) * racks.len();
            let (leader, leader_rack) = arranged[first];
            let mut replicas = vec![leader];
            let mut racks_used = BTreeSet::from([leader_rack]);
            let mut k = 0;
            while replicas.len() < rf {
                let shift = 1 + (base + k) % (n - 1);
                let (broker, rack) = arranged[(first + shift) % n];
                k += 1;
                let new_rack = !racks_used.contains(&rack) || racks_used.len() == racks.len();
                if new_rack && !replicas.contains(&broker) {
                    replicas.push(broker);
                    racks_used.insert(rack);
                } else if k >= 2 * n * rf {
                    // Unreachable for rf <= n (every broker is visited
                    // within n - 1 steps once all racks are used), but a
                    // loop bound keeps a mistake from hanging the
                    // controller.
                    break;
                }
            }
            replicas
        })
        .collect()
}

/// The brokers rack by rack in turn, each rack's in id order.
fn alternate_racks<'a>(brokers: &[Candidate<'a>]) -> Vec<Candidate<'a>> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(*rack).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| {
            by_rack
                .iter()
                .filter_map(move |(rack, ids)| ids.get(i).map(|id| (*id, *rack)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RACKS: [&str; 4] = ["a", "b", "c", "d"];

    #[test]
    fn three_racks_of_two() {
        let brokers: Vec<Candidate> = (1..=6)
            .map(|id| (id, Some(RACKS[(id as usize - 1) / 2])))
            .collect();
        // Alternated: 1(a) 3(b) 5(c) 2(a) 4(b) 6(c).
        let placed = place(&brokers, 0, 6, 3);
        assert_eq!(placed[0], vec![1, 3, 5]);
        assert_eq!(placed[1], vec![3, 5, 2]);
        for replicas in &placed {
            let racks: BTreeSet<_> = replicas.iter().map(|id| (id - 1) / 2).collect();
            assert_eq!(racks.len(), 3, "{replicas:?} spans every rack");
        }
        let leaders: Vec<i32> = placed.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn without_racks_round_robin() {
        let brokers: Vec<Candidate> = (1..=3).map(|id| (id, None)).collect();
        assert_eq!(
            place(&brokers, 1, 3, 2),
            vec![vec![2, 3], vec![3, 1], vec![1, 2]]
        );
    }

    fn brokers() -> impl Strategy<Value = Vec<(i32, Option<usize>)>> {
        proptest::collection::vec(proptest::option::of(0..RACKS.len()), 1..12).prop_map(|racks| {
            racks
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i as i32 * 3 + 1, r))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_span_racks_and_spread_leaders(
            brokers in brokers(),
            first in 0..50i32,
            count in 1..60i32,
            rf_seed in 0..100usize,
        ) {
            let candidates: Vec<Candidate> = brokers.iter().map(|(id, r)| (*id, r.map(|r| RACKS[r]))).collect();
            let rf = 1 + rf_seed % candidates.len();
            let rack_of: BTreeMap<i32, Option<&str>> = candidates.iter().copied().collect();
            let racks: BTreeSet<_> = rack_of.values().collect();
            let placed = place(&candidates, first, count, rf);
            prop_assert_eq!(placed.len(), count as usize);
            let mut led: BTreeMap<i32, usize> = rack_of.keys().map(|id| (*id, 0)).collect();
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), rf);
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), rf, "{:?} repeats a broker", replicas);
                let spanned: BTreeSet<_> = replicas.iter().map(|id| rack_of[id]).collect();
                prop_assert_eq!(spanned.len(), rf.min(racks.len()), "{:?} misses a rack", replicas);
                *led.get_mut(&replicas[0]).unwrap() += 1;
            }
            let most = led.values().max().unwrap();
            let least = led.values().min().unwrap();
            prop_assert!(most - least <= 1, "leaders spread unevenly: {:?}", led);
        }
    }
}
