//! The server-side assignors of KIP-848 groups: `uniform` and `range`,
//! both sticky (a member keeps what it had where the balance allows, so a
//! join or a leave moves as few partitions as it must).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::Assignment;

/// Each member's subscribed topic names, by member id.
pub type Subscriptions<'a> = BTreeMap<&'a str, &'a Vec<String>>;

/// Subscribed topics as (name, id, partition count).
pub type Topics = [(String, Uuid, i32)];

fn empty_targets(subs: &Subscriptions<'_>) -> BTreeMap<String, Assignment> {
    subs.keys()
        .map(|m| ((*m).to_owned(), Assignment::new()))
        .collect()
}

/// Per topic, each subscribed member gets `count / members` partitions and
/// the first `count % members` of them one more, in contiguous ranges
/// where it can: members taken in member-id order, so that co-partitioned
/// topics give the same member the same partition numbers.
///
/// Sticky, as Kafka's server-side range assignor is: a member first keeps
/// the lowest of the partitions `previous` gave it, up to its share (one
/// more if an extra is still to give), and only the rest is dealt out in
/// ranges to the members still short of their share.
pub fn range(
    subs: &Subscriptions<'_>,
    topics: &Topics,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_targets(subs);
    for (name, id, count) in topics {
        let members: Vec<&str> = subs
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| *m)
            .collect();
        if members.is_empty() || *count <= 0 {
            continue;
        }
        let quota = *count as usize / members.len();
        let mut extras = *count as usize % members.len();
        let mut kept: BTreeSet<i32> = BTreeSet::new();
        // Members still short of their share, with how many they lack.
        let mut short: Vec<(&str, usize)> = Vec::new();
        for m in &members {
            let had: Vec<i32> = previous
                .get(*m)
                .and_then(|a| a.get(id))
                .map(|ps| {
                    ps.iter()
                        .copied()
                        .filter(|p| *p < *count && !kept.contains(p))
                        .collect()
                })
                .unwrap_or_default();
            let mut keep = had.len().min(quota);
            if had.len() > quota && extras > 0 {
                extras -= 1;
                keep += 1;
            } else {
                short.push((m, quota - keep));
            }
            if keep > 0 {
                let mine = out.get_mut(*m).expect("member").entry(*id).or_default();
                for p in &had[..keep] {
                    mine.insert(*p);
                    kept.insert(*p);
                }
            }
        }
        let mut free = (0..*count).filter(|p| !kept.contains(p));
        for (m, mut lacking) in short {
            if extras > 0 {
                extras -= 1;
                lacking += 1;
            }
            if lacking == 0 {
                continue;
            }
            let mine = out.get_mut(m).expect("member").entry(*id).or_default();
            mine.extend(free.by_ref().take(lacking));
        }
    }
    out.values_mut()
        .for_each(|a| a.retain(|_, ps| !ps.is_empty()));
    out
}

/// Spreads all partitions evenly over the members subscribed to them,
/// keeping each member's previous target where the balance allows (sticky).
pub fn uniform(
    subs: &Subscriptions<'_>,
    topics: &Topics,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_targets(subs);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(a: &BTreeMap<String, Assignment>, m: &str) -> Vec<i32> {
        a[m].values().flatten().copied().collect()
    }

    #[test]
    fn range_deals_contiguous_ranges_then_sticks() {
        let t = vec!["t".to_owned()];
        let topics = vec![("t".to_owned(), Uuid::from_u128(1), 7)];
        let three: Subscriptions<'_> = [("a", &t), ("b", &t), ("c", &t)].into_iter().collect();
        let first = range(&three, &topics, &BTreeMap::new());
        assert_eq!(parts(&first, "a"), [0, 1, 2]);
        assert_eq!(parts(&first, "b"), [3, 4]);
        assert_eq!(parts(&first, "c"), [5, 6]);
        // "0" joins ahead of everyone in member-id order: a plain range
        // assignor would shift every range; this one keeps each member's
        // lowest partitions up to its share and gives "0" what is freed.
        let four: Subscriptions<'_> = [("0", &t), ("a", &t), ("b", &t), ("c", &t)]
            .into_iter()
            .collect();
        let second = range(&four, &topics, &first);
        assert_eq!(parts(&second, "a"), [0, 1]);
        assert_eq!(parts(&second, "b"), [3, 4]);
        assert_eq!(parts(&second, "c"), [5, 6]);
        assert_eq!(parts(&second, "0"), [2]);
        // "b" leaves: its partitions go to those short of their share, the
        // extra one to the first of them in member-id order.
        let back: Subscriptions<'_> = [("0", &t), ("a", &t), ("c", &t)].into_iter().collect();
        let third = range(&back, &topics, &second);
        assert_eq!(parts(&third, "0"), [2, 3, 4]);
        assert_eq!(parts(&third, "a"), [0, 1]);
        assert_eq!(parts(&third, "c"), [5, 6]);
    }

    #[test]
    fn range_gives_co_partitioned_topics_the_same_numbers() {
        let both = vec!["x".to_owned(), "y".to_owned()];
        let subs: Subscriptions<'_> = [("a", &both), ("b", &both)].into_iter().collect();
        let topics = vec![
            ("x".to_owned(), Uuid::from_u128(1), 4),
            ("y".to_owned(), Uuid::from_u128(2), 4),
        ];
        let r = range(&subs, &topics, &BTreeMap::new());
        for m in ["a", "b"] {
            assert_eq!(r[m][&Uuid::from_u128(1)], r[m][&Uuid::from_u128(2)]);
        }
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let t = vec!["t".to_owned()];
        let topics = vec![("t".to_owned(), Uuid::from_u128(1), 7)];
        let three: Subscriptions<'_> = [("a", &t), ("b", &t), ("c", &t)].into_iter().collect();
        let u = uniform(&three, &topics, &BTreeMap::new());
        let sizes: Vec<usize> = ["a", "b", "c"].iter().map(|m| parts(&u, m).len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        let four: Subscriptions<'_> = [("a", &t), ("b", &t), ("c", &t), ("d", &t)]
            .into_iter()
            .collect();
        let u2 = uniform(&four, &topics, &u);
        for m in ["a", "b", "c"] {
            assert!(
                parts(&u2, m).iter().all(|p| parts(&u, m).contains(p)),
                "{m} only loses partitions"
            );
        }
    }

    proptest! {
        /// Whatever the previous assignment (even one naming partitions
        /// that no longer exist or giving one partition to two members),
        /// range gives every partition to exactly one subscribed member,
        /// each at most one more than another, and keeps at least
        /// min(had, share) of what each member had.
        #[test]
        fn range_is_a_balanced_sticky_partition(
            members in 1usize..6,
            count in 0i32..20,
            previous in proptest::collection::vec((0usize..6, 0i32..24), 0..40),
        ) {
            let t = vec!["t".to_owned()];
            let ids: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
            let subs: Subscriptions<'_> = ids.iter().map(|m| (m.as_str(), &t)).collect();
            let topic = Uuid::from_u128(7);
            let topics = vec![("t".to_owned(), topic, count)];
            let mut prev: BTreeMap<String, Assignment> = BTreeMap::new();
            for (m, p) in previous {
                prev.entry(format!("m{m}")).or_default().entry(topic).or_default().insert(p);
            }
            let out = range(&subs, &topics, &prev);
            let mut seen = BTreeSet::new();
            let mut sizes = Vec::new();
            for m in &ids {
                let mine = out[m].get(&topic).cloned().unwrap_or_default();
                for p in &mine {
                    prop_assert!(seen.insert(*p), "{p} twice");
                    prop_assert!(*p < count);
                }
                sizes.push(mine.len());
            }
            prop_assert_eq!(seen.len(), count as usize);
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1);
            let share = count as usize / members;
            for m in &ids {
                let had = prev.get(m).and_then(|a| a.get(&topic)).map_or(0, |ps| {
                    ps.iter().filter(|p| **p < count).count()
                });
                let kept = prev.get(m).and_then(|a| a.get(&topic)).map_or(0, |ps| {
                    ps.iter().filter(|p| out[m].get(&topic).is_some_and(|o| o.contains(p))).count()
                });
                // Partitions two members both had can be kept by one only.
                let shared = prev.get(m).and_then(|a| a.get(&topic)).map_or(0, |ps| {
                    ps.iter().filter(|p| prev.iter().any(|(o, a)| o != m
                        && a.get(&topic).is_some_and(|x| x.contains(p)))).count()
                });
                prop_assert!(kept + shared >= had.min(share), "{m} kept {kept} of {had}");
            }
        }
    }
}
