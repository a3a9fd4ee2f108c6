//! A Jepsen-style workload on three real nodes: producers write numbered
//! records with acks=all while a seeded fault schedule kills (-9), pauses
//! (SIGSTOP) and restarts nodes, one at a time, and (where the nodes can
//! run in network namespaces of their own: as root) cuts one link between
//! two nodes or every link of one node, and heals them; the producers reach
//! every node throughout. Then a checker reads every partition back and
//! reports what Kafka's guarantees forbid.
//!
//! Idempotent producers: an acknowledged record lost or at another offset
//! than acknowledged, a record twice, a producer's records out of order, a
//! record nobody sent. A second run kills every node at once, twice,
//! mid-write, and starts them again.
//!
//! Transactional producers (each its own transactional.id) run
//! transactions over several partitions and commit or abort each as the
//! seed says; some "crash" mid-transaction or right after sending the
//! commit, and their next InitProducerId must end what they left. A
//! transaction whose commit was sent but not acknowledged is
//! indeterminate. The checker reads every partition as a read_committed
//! consumer does, once each last stable offset has reached the high
//! watermark (a transaction left open is reported), and reports a record
//! of an aborted transaction read, one of a committed transaction lost or
//! at another offset than acknowledged, a transaction partly visible
//! (indeterminate ones may be wholly visible or wholly not), a record
//! twice, a producer's records out of order, a record nobody sent.
//!
//! Reassignments: four nodes, the topic at replication factor 3; one
//! partition at a time is moved onto a replica set that swaps one of its
//! replicas for the node it lacks, and a node the move involves (its
//! leader, the replica dropped or added, or the active controller) is
//! killed (-9) while the move is under way, under idempotent producers.
//! Each move must end with exactly its target as replicas and ISR, the
//! idempotent checker must find nothing, and no node may keep a copy of a
//! partition moved off it.
//!
//! The seed is printed at the start (`STROM_TEST_SEED` repeats a run);
//! `STROM_CHAOS_FAULTS` sets how many faults the schedule of one node at a
//! time has, and how many moves the reassignment run makes (8: the test
//! command's short run; `scripts/chaos` runs long ones).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, MetadataRequest, ProduceRequest};
use strom_tests::cluster::{Cluster, COMBINED};
use strom_tests::{
    add_partitions_to_txn, end_txn, end_txn_request, fetch_all, find_coordinator,
    init_transactional, name, producer_batch, read_committed, transactional_id, Client,
};

const TOPIC: &str = "chaos";
const PARTITIONS: i32 = 3;

/// An acknowledged record: partition, offset, value.
type Ack = (i32, i64, String);

/// What a partition holds as read back: offset, value.
type Logs = BTreeMap<i32, Vec<(i64, String)>>;

/// A connection to one of `nodes`, tried in turn from `start`.
fn connect_any(nodes: &[SocketAddr], start: usize) -> Option<Client> {
    (0..nodes.len()).find_map(|i| {
        let mut c = Client::connect(nodes[(start + i) % nodes.len()]).ok()?;
        c.set_timeout(Duration::from_secs(3)).ok()?;
        Some(c)
    })
}

/// The leader's address of each partition of the topic, as some node says.
fn leaders(nodes: &[SocketAddr], start: usize) -> Option<HashMap<i32, SocketAddr>> {
    let mut c = connect_any(nodes, start)?;
    let m = c
        .request(12, &MetadataRequest::default().with_topics(None))
        .ok()?;
    let brokers: HashMap<i32, SocketAddr> = m
        .brokers
        .iter()
        .filter_map(|b| Some((b.node_id.0, format!("{}:{}", b.host, b.port).parse().ok()?)))
        .collect();
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))?;
    Some(
        t.partitions
            .iter()
            .filter_map(|p| Some((p.partition_index, *brokers.get(&p.leader_id.0)?)))
            .collect(),
    )
}

/// What became of a batch sent until acknowledged.
enum Sent {
    /// Acknowledged at this base offset.
    Acked(i64),
    /// Refused with an error code that is not retried.
    Refused(i16),
    /// Not acknowledged in time.
    TimedOut,
}

/// Produce errors an idempotent producer retries: UNKNOWN_TOPIC_OR_PARTITION
/// (metadata not there yet), LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER,
/// REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND).
const RETRIABLE: &[i16] = &[3, 5, 6, 7, 19, 20];

/// A producer's way to the partitions' leaders: the routes some node's
/// metadata gave, and a connection to each leader.
struct Leaders<'a> {
    nodes: &'a [SocketAddr],
    /// The node to ask for metadata first, moved on at each lookup.
    start: usize,
    routes: Option<HashMap<i32, SocketAddr>>,
    conns: HashMap<SocketAddr, Client>,
}

impl<'a> Leaders<'a> {
    fn new(nodes: &'a [SocketAddr], start: usize) -> Self {
        Leaders {
            nodes,
            start,
            routes: None,
            conns: HashMap::new(),
        }
    }

    /// Sends `records` (acks=all) to the partition's leader until it
    /// acknowledges them, as a Kafka client does: the same batch again
    /// after a network error or a `retriable` code, the routes looked up
    /// again; not after `until`.
    fn produce(
        &mut self,
        partition: i32,
        records: &Bytes,
        transactional: Option<&str>,
        retriable: &[i16],
        until: Instant,
    ) -> Sent {
        loop {
            if Instant::now() >= until {
                return Sent::TimedOut;
            }
            let Some(leader) = self
                .routes
                .as_ref()
                .and_then(|r| r.get(&partition).copied())
            else {
                self.start += 1;
                self.routes = leaders(self.nodes, self.start);
                if self.routes.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            };
            let request = ProduceRequest::default()
                .with_transactional_id(transactional.map(transactional_id))
                .with_acks(-1)
                .with_timeout_ms(3000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(TOPIC))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records.clone()))])]);
            let answer = match self.conns.get_mut(&leader) {
                Some(c) => c.request(9, &request),
                None => match Client::connect(leader) {
                    Ok(mut c) => {
                        let _ = c.set_timeout(Duration::from_secs(3));
                        let r = c.request(9, &request);
                        self.conns.insert(leader, c);
                        r
                    }
                    Err(e) => Err(e),
                },
            };
            match answer {
                Ok(r) => {
                    let p = &r.responses[0].partition_responses[0];
                    if p.error_code == 0 {
                        return Sent::Acked(p.base_offset);
                    }
                    if !retriable.contains(&p.error_code) {
                        return Sent::Refused(p.error_code);
                    }
                    self.routes = None;
                }
                Err(_) => {
                    self.conns.remove(&leader);
                    self.routes = None;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One idempotent producer: records round-robin over the partitions, one
/// every few milliseconds until `stop`, each retried (same sequence) until
/// acknowledged, as a Kafka client's idempotent producer does. Returns its
/// acknowledgements in order.
fn produce(id: usize, nodes: &[SocketAddr], stop: &AtomicBool, deadline: Instant) -> Vec<Ack> {
    let (pid, epoch) = loop {
        if let Some(mut c) = connect_any(nodes, id) {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000);
            match c.request(4, &request) {
                Ok(r) if r.error_code == 0 => break (r.producer_id.0, r.producer_epoch),
                other => eprintln!("producer {id}: InitProducerId: {other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "producer {id}: no producer id");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut seqs = [0i32; PARTITIONS as usize];
    let mut acks = Vec::new();
    let mut leaders = Leaders::new(nodes, id);
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        let partition = (n % PARTITIONS as usize) as i32;
        let value = format!("p{id}-{n}");
        let records = producer_batch(pid, epoch, seqs[partition as usize], false, &[&value]);
        match leaders.produce(partition, &records, None, RETRIABLE, deadline) {
            Sent::Acked(offset) => {
                acks.push((partition, offset, value));
                seqs[partition as usize] += 1;
            }
            Sent::Refused(code) => panic!("producer {id}: {value}: error {code}"),
            Sent::TimedOut => panic!("producer {id}: {value} not acknowledged in time"),
        }
    }
    acks
}

/// Lost, misplaced, duplicated, reordered and unexpected records.
fn check(acks: &[Vec<Ack>], logs: &Logs) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut at: HashMap<(i32, i64), &str> = HashMap::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (partition, log) in logs {
        for (offset, value) in log {
            at.insert((*partition, *offset), value);
            *seen.entry(value).or_default() += 1;
        }
    }
    let mut sent = HashSet::new();
    for producer in acks {
        let mut last: HashMap<i32, i64> = HashMap::new();
        for (partition, offset, value) in producer {
            sent.insert(value.as_str());
            match at.get(&(*partition, *offset)) {
                Some(v) if v == value => {}
                Some(v) => anomalies.push(format!(
                    "{value}: acknowledged at {partition}/{offset}, which holds {v}"
                )),
                None => anomalies.push(format!(
                    "{value}: acknowledged at {partition}/{offset}, lost"
                )),
            }
            if let Some(prev) = last.insert(*partition, *offset) {
                if prev >= *offset {
                    anomalies.push(format!(
                        "{value}: at {offset}, after {prev} in partition {partition}"
                    ));
                }
            }
        }
    }
    for (value, count) in seen {
        if count > 1 {
            anomalies.push(format!("{value}: {count} times"));
        }
        if !sent.contains(value) {
            anomalies.push(format!("{value}: never acknowledged"));
        }
    }
    anomalies.sort();
    anomalies
}

/// Three nodes (in network namespaces of their own where they can be, so
/// that links can be cut: `links` says) with `extra` settings, and the
/// chaos topic, every replica in sync.
fn chaos_cluster(extra: &[(&str, &str)]) -> (Cluster, bool) {
    let mut settings = vec![
        ("broker.session.timeout.ms", "2000"),
        ("broker.heartbeat.interval.ms", "300"),
        ("min.insync.replicas", "2"),
        ("replica.lag.time.max.ms", "3000"),
    ];
    settings.extend_from_slice(extra);
    let (cluster, links) = match Cluster::start_in_network(3, &settings) {
        Some(c) => (c, true),
        None => {
            println!("links cannot be cut here: the schedule kills and pauses only");
            (Cluster::start(3, &settings), false)
        }
    };
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(cluster.create_topic(1, TOPIC, PARTITIONS, 3), 0);
    wait_in_sync(&cluster, TOPIC, PARTITIONS, Duration::from_secs(20));
    (cluster, links)
}

/// Each of the `partitions` partitions of `topic` and its leader, once
/// every one is led and every replica in sync (as node 1 says).
fn wait_in_sync(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    within: Duration,
) -> Vec<(i32, i32)> {
    let m = cluster.wait_for_metadata(1, &format!("{topic} in sync"), within, |m| {
        m.topics.iter().any(|t| {
            t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)
                && t.partitions.len() == partitions as usize
                && t.partitions
                    .iter()
                    .all(|p| p.isr_nodes.len() == 3 && p.leader_id.0 > 0)
        })
    });
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .unwrap();
    t.partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect()
}

/// Runs `producers` producer threads (`producer(id, stop)` each) while
/// `schedule` injects its faults (and says what it did), and stops them
/// when it returns: the faults and what each producer returned.
fn under_faults<T: Send>(
    cluster: &mut Cluster,
    producers: usize,
    schedule: impl FnOnce(&mut Cluster) -> Vec<String>,
    producer: impl Fn(usize, &AtomicBool) -> T + Sync,
) -> (Vec<String>, Vec<T>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..producers)
            .map(|id| {
                let (producer, stop) = (&producer, &stop);
                s.spawn(move || producer(id, stop))
            })
            .collect();
        let faults = schedule(cluster);
        stop.store(true, Ordering::SeqCst);
        let results = threads.into_iter().map(|p| p.join().unwrap()).collect();
        (faults, results)
    })
}

/// Runs three idempotent producers while `schedule` injects its faults,
/// reads every partition back once every replica is in sync again, and
/// asserts that the checker found nothing and that the producers got far
/// enough to have tested something.
fn run_workload(
    cluster: &mut Cluster,
    within: Duration,
    schedule: impl FnOnce(&mut Cluster) -> Vec<String>,
) {
    let seed = cluster.seed;
    let nodes: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let deadline = Instant::now() + within;
    let (faults, acks) = under_faults(cluster, 3, schedule, |id, stop| {
        produce(id, &nodes, stop, deadline)
    });
    let logs = read_back(cluster, &acks);
    let anomalies = check(&acks, &logs);
    eprintln!(
        "seed {seed}; faults {faults:?}; acknowledged per producer {:?}; anomalies {}",
        acks.iter().map(Vec::len).collect::<Vec<_>>(),
        anomalies.len()
    );
    let acked: usize = acks.iter().map(Vec::len).sum();
    assert!(
        anomalies.is_empty(),
        "seed {seed}; faults {faults:?}; {acked} acknowledged; anomalies:\n{}",
        anomalies.join("\n")
    );
    // Each producer wrote throughout (some 200 records a second between
    // faults): a run that acknowledged little tested little.
    assert!(
        acks.iter().all(|a| a.len() >= 100),
        "seed {seed}; acknowledged per producer: {:?}",
        acks.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// Every partition's log, read from its leader once every replica is in
/// sync again (the high watermark then covers every acknowledged record).
fn read_back(cluster: &Cluster, acks: &[Vec<Ack>]) -> Logs {
    let mut logs = BTreeMap::new();
    for (partition, leader) in wait_in_sync(cluster, TOPIC, PARTITIONS, Duration::from_secs(60)) {
        // A new leader's high watermark may still be catching up with its
        // followers' first fetches: read until it covers the partition's
        // highest acknowledged offset, or 10 s have passed.
        let highest = acks
            .iter()
            .flatten()
            .filter(|a| a.0 == partition)
            .map(|a| a.1)
            .max()
            .unwrap_or(-1);
        let until = Instant::now() + Duration::from_secs(10);
        let values = loop {
            let mut c = cluster.node(leader).client();
            let values = fetch_all(&mut c, TOPIC, partition);
            if values.len() as i64 > highest || Instant::now() >= until {
                break values;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // fetch_all reads from offset 0 with no gaps (no compaction here).
        logs.insert(
            partition,
            values
                .into_iter()
                .enumerate()
                .map(|(o, v)| (o as i64, v))
                .collect(),
        );
    }
    logs
}

/// `STROM_CHAOS_FAULTS`, else 8.
fn faults_wanted() -> usize {
    std::env::var("STROM_CHAOS_FAULTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8)
}

/// How long producers may take under `faults` faults of the schedule of
/// one node at a time: each fault lasts at most 3 s and is followed by at
/// most 2 s; then every producer must be done within 2 min.
fn time_for(faults: usize) -> Duration {
    Duration::from_secs(120 + 5 * faults as u64)
}

/// The seeded schedule of `faults` faults, one node at a time: a node is
/// killed (-9) and restarted, or paused and resumed, or (with `links`) one
/// link or all of one node's links are cut and healed, at seeded moments.
/// What it did.
fn one_node_at_a_time(cluster: &mut Cluster, links: bool, faults: usize) -> Vec<String> {
    let mut done = Vec::new();
    let kinds = if links { 4 } else { 2 };
    for _ in 0..faults {
        let victim = (cluster.rng() % 3) as i32 + 1;
        let other = (victim % 3) + 1;
        let down = Duration::from_millis(500 + cluster.rng() % 2500);
        match cluster.rng() % kinds {
            0 => {
                done.push(format!("kill -9 node {victim} for {down:?}"));
                cluster.kill9(victim);
                std::thread::sleep(down);
                cluster.restart(victim);
            }
            1 => {
                done.push(format!("pause node {victim} for {down:?}"));
                cluster.pause(victim);
                std::thread::sleep(down);
                cluster.resume(victim);
            }
            2 => {
                done.push(format!("cut {victim}-{other} for {down:?}"));
                cluster.cut(victim, other);
                std::thread::sleep(down);
                cluster.heal(victim, other);
            }
            _ => {
                done.push(format!("isolate node {victim} for {down:?}"));
                let peers: Vec<i32> = (1..=3).filter(|p| *p != victim).collect();
                for p in &peers {
                    cluster.cut(victim, *p);
                }
                std::thread::sleep(down);
                for p in &peers {
                    cluster.heal(victim, *p);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500 + cluster.rng() % 1500));
    }
    done
}

#[test]
fn idempotent_producers_lose_and_duplicate_nothing_under_kills_and_pauses() {
    let (mut cluster, links) = chaos_cluster(&[]);
    let faults = faults_wanted();
    run_workload(&mut cluster, time_for(faults), |cluster| {
        one_node_at_a_time(cluster, links, faults)
    });
}

#[test]
fn a_whole_cluster_kill_9_under_load_loses_and_duplicates_nothing() {
    let (mut cluster, _) = chaos_cluster(&[]);
    run_workload(&mut cluster, Duration::from_secs(120), |cluster| {
        let mut faults = Vec::new();
        for round in 0..2 {
            std::thread::sleep(Duration::from_millis(1000 + cluster.rng() % 1000));
            // Every node at once, mid-write; then all start together (one
            // alone would wait for a quorum that is not there).
            faults.push(format!("round {round}: kill -9 of every node"));
            for id in 1..=3 {
                cluster.kill9(id);
            }
            std::thread::sleep(Duration::from_millis(cluster.rng() % 1000));
            for node in &mut cluster.nodes {
                node.launch();
            }
            for node in &cluster.nodes {
                node.wait_ready();
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        faults
    });
}

/// A connection to each running node but those in `avoid` (paused ones),
/// in turn.
fn clients<'a>(cluster: &'a Cluster, avoid: &'a [i32]) -> impl Iterator<Item = Client> + 'a {
    cluster
        .running()
        .into_iter()
        .filter(|id| !avoid.contains(id))
        .filter_map(|id| {
            let mut c = Client::connect(cluster.node(id).addr).ok()?;
            c.set_timeout(Duration::from_secs(12)).ok()?;
            Some(c)
        })
}

/// Partition `partition` of the chaos topic as some running node answers:
/// its replicas in order, its ISR sorted, its leader, and the active
/// controller.
fn placement(cluster: &Cluster, partition: i32) -> Option<(Vec<i32>, Vec<i32>, i32, i32)> {
    clients(cluster, &[]).find_map(|mut c| {
        let m = c
            .request(12, &MetadataRequest::default().with_topics(None))
            .ok()?;
        let t = m
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == partition)?;
        let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
        isr.sort();
        let replicas = p.replica_nodes.iter().map(|b| b.0).collect();
        (p.error_code == 0 && p.leader_id.0 > 0 && m.controller_id.0 > 0).then_some((
            replicas,
            isr,
            p.leader_id.0,
            m.controller_id.0,
        ))
    })
}

/// Starts moving `partition` onto `target` through some running node but
/// those in `avoid`, trying again while the controller is elected or moves.
fn reassign(cluster: &Cluster, avoid: &[i32], partition: i32, target: &[i32]) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId};
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(Some(
                    target.iter().map(|&b| BrokerId(b)).collect(),
                ))])]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        for mut c in clients(cluster, avoid) {
            match c.request(0, &request) {
                Ok(r) if r.error_code == 0 && r.responses[0].partitions[0].error_code == 0 => {
                    return
                }
                // INVALID_REPLICA_ASSIGNMENT: the move itself is refused.
                Ok(r)
                    if r.responses
                        .first()
                        .is_some_and(|t| t.partitions[0].error_code == 39) =>
                {
                    panic!(
                        "moving {partition} onto {target:?} refused: {r:?}; seed {}",
                        cluster.seed
                    )
                }
                other => last = format!("{other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "moving {partition} onto {target:?}: not accepted in 30 s, last {last}; seed {}",
        cluster.seed
    );
}

/// Whether a move of `partition` is under way, as ListPartitionReassignments
/// through some running node but those in `avoid` answers (None: no node
/// answered).
fn moving(cluster: &Cluster, avoid: &[i32], partition: i32) -> Option<bool> {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    use kafka_protocol::messages::ListPartitionReassignmentsRequest;
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![partition])]));
    clients(cluster, avoid).find_map(|mut c| {
        let r = c.request(0, &request).ok()?;
        (r.error_code == 0).then(|| r.topics.iter().any(|t| !t.partitions.is_empty()))
    })
}

/// The seeded schedule of `moves` reassignments, one partition at a time,
/// on four nodes: each swaps one of the partition's three replicas (by
/// seed) for the node it lacks, which is paused first so that the move
/// stays under way; then a node the move involves is killed (-9) mid-move
/// (by seed: the leader, the replica dropped, the one added, or the active
/// controller), the added node resumed and the killed one started again.
/// Each move must then end with exactly its target as replicas and ISR.
/// What it did, and each moved partition's last target.
fn moves_under_kills(
    cluster: &mut Cluster,
    moves: usize,
) -> (Vec<String>, BTreeMap<i32, Vec<i32>>) {
    let seed = cluster.seed;
    let nodes = cluster.nodes.len() as i32;
    let mut done = Vec::new();
    let mut targets = BTreeMap::new();
    for _ in 0..moves {
        let partition = (cluster.rng() % PARTITIONS as u64) as i32;
        let wait = Instant::now() + Duration::from_secs(30);
        let (replicas, _, leader, controller) = loop {
            match placement(cluster, partition) {
                Some(p) => break p,
                None if Instant::now() < wait => std::thread::sleep(Duration::from_millis(50)),
                None => panic!("partition {partition} not led; seed {seed}"),
            }
        };
        let added = (1..=nodes).find(|n| !replicas.contains(n)).unwrap();
        let mut target = replicas.clone();
        let slot = (cluster.rng() % target.len() as u64) as usize;
        let dropped = std::mem::replace(&mut target[slot], added);
        let (role, victim) = match cluster.rng() % 4 {
            0 => ("the leader", leader),
            1 => ("the dropped replica", dropped),
            2 => ("the added replica", added),
            _ => ("the active controller", controller),
        };
        let down = Duration::from_millis(500 + cluster.rng() % 2000);
        done.push(format!(
            "move {partition} {replicas:?} -> {target:?}, kill -9 {role} (node {victim}) for {down:?}"
        ));
        cluster.pause(added);
        reassign(cluster, &[added], partition, &target);
        let under_way = moving(cluster, &[added], partition);
        assert_eq!(
            under_way,
            Some(true),
            "move of {partition} not listed; seed {seed}; {done:?}"
        );
        cluster.kill9(victim);
        std::thread::sleep(down);
        if victim != added {
            cluster.resume(added);
        }
        cluster.restart(victim);
        let mut expected_isr = target.clone();
        expected_isr.sort();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = placement(cluster, partition);
            let ended = now
                .as_ref()
                .is_some_and(|(r, isr, _, _)| *r == target && *isr == expected_isr);
            if ended && moving(cluster, &[], partition) == Some(false) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "move of {partition} onto {target:?} not done in 60 s: {now:?}; seed {seed}; {done:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        targets.insert(partition, target);
    }
    (done, targets)
}

/// Four nodes (three controllers, all brokers) under idempotent producers
/// while [`moves_under_kills`] moves partitions: nothing lost, duplicated or
/// misplaced, each partition on its last target, and no copy left on a node
/// it was moved off.
#[test]
fn reassignments_under_kills_lose_and_duplicate_nothing() {
    let settings = [
        ("broker.session.timeout.ms", "2000"),
        ("broker.heartbeat.interval.ms", "300"),
        ("min.insync.replicas", "2"),
        ("replica.lag.time.max.ms", "3000"),
    ];
    let roles = [COMBINED, COMBINED, COMBINED, "broker"];
    let mut cluster = Cluster::start_roles(&roles, &settings, |_| Vec::new());
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(cluster.create_topic(1, TOPIC, PARTITIONS, 3), 0);
    wait_in_sync(&cluster, TOPIC, PARTITIONS, Duration::from_secs(20));
    let moves = faults_wanted();
    let mut targets = BTreeMap::new();
    run_workload(&mut cluster, time_for(2 * moves), |cluster| {
        let (done, last) = moves_under_kills(cluster, moves);
        targets = last;
        done
    });
    let seed = cluster.seed;
    for (partition, target) in &targets {
        for id in (1..=roles.len() as i32).filter(|id| !target.contains(id)) {
            let dir = cluster
                .node(id)
                .data_dir()
                .join(format!("{TOPIC}-{partition}"));
            let deadline = Instant::now() + Duration::from_secs(20);
            while dir.exists() {
                assert!(
                    Instant::now() < deadline,
                    "{} still there after partition {partition} moved onto {target:?}; seed {seed}",
                    dir.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn the_checker_reports_each_kind_of_anomaly() {
    let ack = |p: i32, o: i64, v: &str| (p, o, v.to_owned());
    let acks = vec![
        vec![ack(0, 0, "a0"), ack(0, 1, "a1"), ack(0, 2, "a2")],
        vec![ack(1, 1, "b0"), ack(1, 0, "b1")],
    ];
    let log = |entries: &[(i64, &str)]| -> Vec<(i64, String)> {
        entries.iter().map(|(o, v)| (*o, v.to_string())).collect()
    };
    let mut logs = BTreeMap::new();
    // a1 lost (offset 1 holds a2), a2 not at the offset acknowledged and
    // twice, one record nobody acknowledged.
    logs.insert(0, log(&[(0, "a0"), (1, "a2"), (3, "a2"), (4, "zz")]));
    logs.insert(1, log(&[(0, "b1"), (1, "b0")]));
    assert_eq!(
        check(&acks, &logs),
        [
            "a1: acknowledged at 0/1, which holds a2",
            "a2: 2 times",
            "a2: acknowledged at 0/2, lost",
            "b1: at 0, after 1 in partition 1",
            "zz: never acknowledged",
        ]
    );
    let clean = BTreeMap::from([
        (0, log(&[(0, "a0"), (1, "a1"), (2, "a2")])),
        (1, log(&[(0, "b1"), (1, "b0")])),
    ]);
    assert_eq!(
        check(&acks[..1], &clean),
        ["b0: never acknowledged", "b1: never acknowledged"]
    );
}

/// Transactional producers, each with a transactional id of its own.
const TXN_PRODUCERS: usize = 3;

/// Partitions of `__transaction_state` (few: made quickly).
const TXN_STATE_PARTITIONS: i32 = 3;

/// Produce errors a transactional producer retries: an idempotent one's
/// and NETWORK_EXCEPTION.
const TXN_RETRIABLE: &[i16] = &[3, 5, 6, 7, 13, 19, 20];

/// Errors after which a transactional producer starts again with
/// InitProducerId, as a Kafka client does once fenced or its transaction
/// broken: OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH,
/// INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED.
const FENCED: &[i16] = &[45, 47, 48, 49, 90];

/// How long one coordinator request or one record is retried before the
/// producer gives up on its transaction and starts again with
/// InitProducerId (a fault lasts 3 s at most).
const PATIENCE: Duration = Duration::from_secs(20);

/// Producer `producer`'s transactional id.
fn chaos_transactional_id(producer: usize) -> String {
    format!("chaos-tx-{producer}")
}

/// How a transaction ended, as its producer knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// EndTxn(commit) answered success.
    Committed,
    /// No commit asked for: aborted with EndTxn, or left to the next
    /// InitProducerId, which aborts it.
    Aborted,
    /// A commit sent and never acknowledged: committed or aborted, but as
    /// a whole.
    Indeterminate,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
            Outcome::Indeterminate => "indeterminate",
        })
    }
}

/// One transaction as its producer saw it.
#[derive(Debug, Clone)]
struct Txn {
    name: String,
    /// Its records in the order sent: partition, the offset acknowledged
    /// (if one was), value.
    records: Vec<(i32, Option<i64>, String)>,
    outcome: Outcome,
}

/// What one transactional producer did.
#[derive(Debug, Default)]
struct TxnRun {
    /// Its transactions in the order it ran them.
    txns: Vec<Txn>,
    /// InitProducerId calls that succeeded (one per producer instance).
    inits: usize,
    /// Error codes it has no handling for, and where they came.
    surprises: Vec<String>,
}

/// What a transaction is to do, as the producer's seeded numbers say.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    Commit,
    Abort,
    /// The producer dies midway.
    Crash,
    /// The producer sends the commit and dies before the answer.
    CommitAndCrash,
}

/// Why a coordinator request did not succeed.
enum Failure {
    /// An error code that is not retried.
    Refused(i16),
    /// No success in time, or (not retried) a network error.
    NoAnswer,
}

/// A transactional producer over the raw protocol, run as a Kafka client's
/// transactional producer runs: InitProducerId on the coordinator
/// FindCoordinator names, then transactions of AddPartitionsToTxn,
/// transactional batches (sequences per partition from 0 at each epoch)
/// and EndTxn, retrying what a client retries; once fenced, or when it
/// gives up on a transaction, or "crashes", the next transaction starts
/// with a new InitProducerId, which ends what was left open.
struct TxnProducer<'a> {
    id: usize,
    transactional_id: String,
    nodes: &'a [SocketAddr],
    deadline: Instant,
    rng: u64,
    /// FindCoordinator lookups so far (each asks the next node first).
    lookups: usize,
    coordinator: Option<Client>,
    /// The producer id and epoch; `None`: InitProducerId first.
    producer: Option<(i64, i16)>,
    seqs: [i32; PARTITIONS as usize],
    leaders: Leaders<'a>,
    run: TxnRun,
}

impl<'a> TxnProducer<'a> {
    fn new(id: usize, nodes: &'a [SocketAddr], seed: u64, deadline: Instant) -> Self {
        TxnProducer {
            id,
            transactional_id: chaos_transactional_id(id),
            nodes,
            deadline,
            rng: (seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
            lookups: 0,
            coordinator: None,
            producer: None,
            seqs: [0; PARTITIONS as usize],
            leaders: Leaders::new(nodes, id),
            run: TxnRun::default(),
        }
    }

    /// A number from the producer's seeded sequence (xorshift).
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A connection to the coordinator of the transactional id, looked up
    /// (FindCoordinator, key type 1) when there is none.
    fn coordinator(&mut self) -> Option<&mut Client> {
        if self.coordinator.is_none() {
            self.lookups += 1;
            let mut c = connect_any(self.nodes, self.id + self.lookups)?;
            let addr = find_coordinator(&mut c, &self.transactional_id, 1)
                .ok()?
                .ok()?;
            let mut c = Client::connect(addr).ok()?;
            c.set_timeout(Duration::from_secs(5)).ok()?;
            self.coordinator = Some(c);
        }
        self.coordinator.as_mut()
    }

    /// `request` on the coordinator until it answers 0, retried as a Kafka
    /// client retries: at once on COORDINATOR_LOAD_IN_PROGRESS and
    /// CONCURRENT_TRANSACTIONS; with the coordinator looked up again on
    /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, REQUEST_TIMED_OUT,
    /// NOT_ENOUGH_REPLICAS(_AFTER_APPEND), UNKNOWN_TOPIC_OR_PARTITION,
    /// NOT_LEADER_OR_FOLLOWER, and (if `network_retries`) a network error;
    /// for [`PATIENCE`] at most.
    fn call<T>(
        &mut self,
        network_retries: bool,
        mut request: impl FnMut(&mut Client) -> std::io::Result<(i16, T)>,
    ) -> Result<T, Failure> {
        let until = (Instant::now() + PATIENCE).min(self.deadline);
        loop {
            if let Some(c) = self.coordinator() {
                match request(c) {
                    Ok((0, t)) => return Ok(t),
                    Ok((14 | 51, _)) => {}
                    Ok((3 | 6 | 7 | 15 | 16 | 19 | 20, _)) => self.coordinator = None,
                    Ok((code, _)) => return Err(Failure::Refused(code)),
                    Err(_) => {
                        self.coordinator = None;
                        if !network_retries {
                            return Err(Failure::NoAnswer);
                        }
                    }
                }
            }
            if Instant::now() >= until {
                return Err(Failure::NoAnswer);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The producer id and epoch, from InitProducerId when there are none
    /// (a new instance of the producer: the coordinator first aborts the
    /// transaction the last one left open, or completes its commit).
    fn producer(&mut self) -> (i64, i16) {
        if let Some(p) = self.producer {
            return p;
        }
        let id = self.transactional_id.clone();
        loop {
            match self.call(true, |c| init_transactional(c, &id, 60_000)) {
                Ok(p) => {
                    self.producer = Some(p);
                    self.seqs = [0; PARTITIONS as usize];
                    self.run.inits += 1;
                    return p;
                }
                Err(Failure::Refused(code)) => {
                    self.run
                        .surprises
                        .push(format!("InitProducerId: error {code}"));
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(Failure::NoAnswer) => {}
            }
            assert!(
                Instant::now() < self.deadline,
                "producer {}: no producer id in time",
                self.id
            );
        }
    }

    /// Gives the transaction up after `failure` of `what`: the next one
    /// starts with InitProducerId. A code nothing explains is kept.
    fn restart(&mut self, what: &str, failure: Failure) {
        if let Failure::Refused(code) = failure {
            if !FENCED.contains(&code) {
                self.run.surprises.push(format!("{what}: error {code}"));
            }
        }
        self.coordinator = None;
        self.producer = None;
    }

    /// Transaction `n`: two or three partitions, a record or two to each,
    /// then the end its plan says.
    fn transaction(&mut self, n: usize) -> Txn {
        let pe = self.producer();
        let plan = match self.next() % 20 {
            0..=10 => Plan::Commit,
            11..=15 => Plan::Abort,
            16 | 17 => Plan::Crash,
            _ => Plan::CommitAndCrash,
        };
        let first = (self.next() % PARTITIONS as u64) as i32;
        let width = 2 + (self.next() % (PARTITIONS as u64 - 1)) as i32;
        let partitions: Vec<i32> = (0..width).map(|i| (first + i) % PARTITIONS).collect();
        let count = partitions.len() + (self.next() % 3) as usize;
        let mut txn = Txn {
            name: format!("t{}.{n}", self.id),
            records: Vec::new(),
            outcome: Outcome::Aborted,
        };
        let id = self.transactional_id.clone();
        let added = self.call(true, |c| {
            add_partitions_to_txn(c, &id, pe, TOPIC, &partitions).map(|code| (code, ()))
        });
        if let Err(failure) = added {
            self.restart("AddPartitionsToTxn", failure);
            return txn;
        }
        for k in 0..count {
            if plan == Plan::Crash && k == count / 2 {
                // Dead midway: the next instance's InitProducerId aborts
                // what this one wrote.
                self.producer = None;
                return txn;
            }
            let partition = partitions[k % partitions.len()];
            let value = format!("{}.{k}", txn.name);
            let seq = self.seqs[partition as usize];
            let records = producer_batch(pe.0, pe.1, seq, true, &[&value]);
            txn.records.push((partition, None, value));
            let until = (Instant::now() + PATIENCE).min(self.deadline);
            match self
                .leaders
                .produce(partition, &records, Some(&id), TXN_RETRIABLE, until)
            {
                Sent::Acked(offset) => {
                    txn.records.last_mut().unwrap().1 = Some(offset);
                    self.seqs[partition as usize] += 1;
                }
                // DUPLICATE_SEQUENCE_NUMBER: written before, at an offset
                // not told.
                Sent::Refused(46) => self.seqs[partition as usize] += 1,
                Sent::Refused(code) => {
                    self.restart("Produce", Failure::Refused(code));
                    return txn;
                }
                Sent::TimedOut => {
                    self.restart("Produce", Failure::NoAnswer);
                    return txn;
                }
            }
        }
        match plan {
            Plan::Abort => {
                let ended = self.call(true, |c| end_txn(c, &id, pe, false).map(|code| (code, ())));
                if let Err(failure) = ended {
                    self.restart("EndTxn (abort)", failure);
                }
            }
            Plan::Commit => {
                // A Kafka client sends a commit whose answer was lost
                // again; an application may as well restart its producer.
                let network_retries = self.next().is_multiple_of(2);
                let ended = self.call(network_retries, |c| {
                    end_txn(c, &id, pe, true).map(|code| (code, ()))
                });
                txn.outcome = match ended {
                    Ok(()) => Outcome::Committed,
                    Err(failure) => {
                        self.restart("EndTxn (commit)", failure);
                        Outcome::Indeterminate
                    }
                };
            }
            Plan::CommitAndCrash => {
                // The commit goes out and the producer dies before the
                // answer: the next instance's InitProducerId completes or
                // aborts it.
                if self.coordinator().is_some() {
                    txn.outcome = Outcome::Indeterminate;
                    let c = self.coordinator.take().unwrap();
                    let _ = c.send_and_close(3, &end_txn_request(&id, pe, true));
                }
                self.producer = None;
            }
            Plan::Crash => {}
        }
        txn
    }

    /// Transactions one after another until `stop`; then the last one
    /// settled (by an InitProducerId if it was left open).
    fn run(mut self, stop: &AtomicBool) -> TxnRun {
        for n in 0.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            let txn = self.transaction(n);
            self.run.txns.push(txn);
        }
        self.producer();
        self.run
    }
}

/// Aborted reads, and lost, misplaced, partly visible, duplicated,
/// reordered and unexpected records, of each producer's transactions (in
/// the order it ran them) in what read_committed consumers read.
fn check_txns(producers: &[Vec<Txn>], logs: &Logs) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut read: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for (partition, log) in logs {
        for (offset, value) in log {
            read.entry(value).or_default().push((*partition, *offset));
        }
    }
    // Each record's producer and place in all the sending.
    let mut sent: HashMap<&str, (usize, usize)> = HashMap::new();
    for (producer, txns) in producers.iter().enumerate() {
        for txn in txns {
            let mut visible = 0;
            for (partition, acked, value) in &txn.records {
                sent.insert(value, (producer, sent.len()));
                let places = read.get(value.as_str()).map_or(&[][..], Vec::as_slice);
                visible += usize::from(!places.is_empty());
                match (txn.outcome, places.first()) {
                    (Outcome::Aborted, _) => {
                        for (p, o) in places {
                            anomalies
                                .push(format!("{value}: of aborted {}, read at {p}/{o}", txn.name));
                        }
                    }
                    (Outcome::Committed, None) => {
                        anomalies.push(format!("{value}: of committed {}, lost", txn.name))
                    }
                    (_, Some(&(p, o))) => match acked {
                        Some(a) if (p, o) != (*partition, *a) => anomalies.push(format!(
                            "{value}: acknowledged at {partition}/{a}, read at {p}/{o}"
                        )),
                        _ => {}
                    },
                    (Outcome::Indeterminate, None) => {}
                }
            }
            if txn.outcome != Outcome::Aborted && visible > 0 && visible < txn.records.len() {
                anomalies.push(format!(
                    "{} ({}): {visible} of {} records read",
                    txn.name,
                    txn.outcome,
                    txn.records.len()
                ));
            }
        }
    }
    for (value, places) in &read {
        if places.len() > 1 {
            anomalies.push(format!("{value}: read {} times", places.len()));
        }
        if !sent.contains_key(value) {
            anomalies.push(format!("{value}: never sent"));
        }
    }
    for (partition, log) in logs {
        // Each producer's latest record so far in the partition.
        let mut last: HashMap<usize, (usize, &str)> = HashMap::new();
        for (offset, value) in log {
            let Some(&(producer, order)) = sent.get(value.as_str()) else {
                continue;
            };
            match last.get(&producer) {
                Some(&(latest, before)) if latest > order => {
                    anomalies.push(format!("{value}: at {partition}/{offset}, after {before}"))
                }
                _ => {
                    last.insert(producer, (order, value));
                }
            }
        }
    }
    anomalies.sort();
    anomalies
}

/// Every partition as a read_committed consumer reads it from its leader,
/// once every replica is in sync again and its last stable offset has
/// reached its high watermark, and that the highest offset acknowledged:
/// every transaction ended, its markers written. A partition where that
/// does not come within 60 s is reported (with what it read).
fn read_committed_back(cluster: &Cluster, runs: &[TxnRun]) -> (Logs, Vec<String>) {
    let mut logs = BTreeMap::new();
    let mut anomalies = Vec::new();
    for (partition, leader) in wait_in_sync(cluster, TOPIC, PARTITIONS, Duration::from_secs(60)) {
        let highest = runs
            .iter()
            .flat_map(|r| &r.txns)
            .flat_map(|t| &t.records)
            .filter(|r| r.0 == partition)
            .filter_map(|r| r.1)
            .max()
            .unwrap_or(-1);
        let until = Instant::now() + Duration::from_secs(60);
        let (read, settled) = loop {
            let read = Client::connect(cluster.node(leader).addr)
                .and_then(|mut c| read_committed(&mut c, TOPIC, partition));
            let settled = matches!(&read, Ok(Ok(r))
                if r.last_stable_offset == r.high_watermark && r.high_watermark > highest);
            if settled || Instant::now() >= until {
                break (read, settled);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match read {
            Ok(Ok(r)) => {
                if !settled {
                    anomalies.push(format!(
                        "partition {partition}: last stable offset {}, high watermark {} \
                         (highest acknowledged offset {highest}) after 60 s",
                        r.last_stable_offset, r.high_watermark
                    ));
                }
                logs.insert(partition, r.records);
            }
            Ok(Err(code)) => anomalies.push(format!(
                "partition {partition}: fetch error {code} from node {leader}"
            )),
            Err(e) => anomalies.push(format!("partition {partition}: node {leader}: {e}")),
        }
    }
    (logs, anomalies)
}

#[test]
fn transactional_producers_commit_whole_and_abort_unseen_under_kills_and_pauses() {
    let state_partitions = TXN_STATE_PARTITIONS.to_string();
    let (mut cluster, links) =
        chaos_cluster(&[("transaction.state.log.num.partitions", &state_partitions)]);
    let started = Instant::now();
    let seed = cluster.seed;
    let faults = faults_wanted();
    // The coordinators before the faults: __transaction_state made (on
    // the first FindCoordinator) and in sync.
    for id in 0..TXN_PRODUCERS {
        cluster.wait_for_coordinator(1, &chaos_transactional_id(id), 1, &[]);
    }
    wait_in_sync(
        &cluster,
        "__transaction_state",
        TXN_STATE_PARTITIONS,
        Duration::from_secs(30),
    );
    let nodes: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let deadline = Instant::now() + time_for(faults);
    let (done, runs) = under_faults(
        &mut cluster,
        TXN_PRODUCERS,
        |cluster| one_node_at_a_time(cluster, links, faults),
        |id, stop| TxnProducer::new(id, &nodes, seed, deadline).run(stop),
    );
    let (logs, mut anomalies) = read_committed_back(&cluster, &runs);
    let txns: Vec<Vec<Txn>> = runs.iter().map(|r| r.txns.clone()).collect();
    anomalies.extend(check_txns(&txns, &logs));
    let count = |outcome| -> Vec<usize> {
        txns.iter()
            .map(|t| t.iter().filter(|t| t.outcome == outcome).count())
            .collect()
    };
    let read: HashSet<&str> = logs.values().flatten().map(|(_, v)| v.as_str()).collect();
    let indeterminate_seen = txns
        .iter()
        .flatten()
        .filter(|t| t.outcome == Outcome::Indeterminate)
        .filter(|t| t.records.iter().any(|r| read.contains(r.2.as_str())))
        .count();
    // Records of aborted transactions that their leaders acknowledged: in
    // the logs, for the reading to leave out.
    let aborted_written = txns
        .iter()
        .flatten()
        .filter(|t| t.outcome == Outcome::Aborted)
        .flat_map(|t| &t.records)
        .filter(|r| r.1.is_some())
        .count();
    let committed = count(Outcome::Committed);
    eprintln!(
        "seed {seed}; faults {done:?}; per producer: committed {committed:?}, aborted {:?}, \
         indeterminate {:?} ({indeterminate_seen} of them visible), InitProducerId {:?}; \
         unexpected errors {:?}; records read {} (of aborted transactions, written and \
         to leave out: {aborted_written}); anomalies {}; {:?} after the cluster started",
        count(Outcome::Aborted),
        count(Outcome::Indeterminate),
        runs.iter().map(|r| r.inits).collect::<Vec<_>>(),
        runs.iter().map(|r| &r.surprises).collect::<Vec<_>>(),
        read.len(),
        anomalies.len(),
        started.elapsed()
    );
    assert!(
        anomalies.is_empty(),
        "seed {seed}; faults {done:?}; anomalies:\n{}",
        anomalies.join("\n")
    );
    // Each producer ran transactions throughout: a run that committed
    // few tested little.
    assert!(
        committed.iter().all(|c| *c >= 100),
        "seed {seed}; committed per producer: {committed:?}"
    );
}

#[test]
fn the_transaction_checker_reports_each_kind_of_anomaly() {
    use Outcome::*;
    let txn = |name: &str, outcome, records: &[(i32, Option<i64>)]| Txn {
        name: name.to_owned(),
        records: records
            .iter()
            .enumerate()
            .map(|(k, (p, o))| (*p, *o, format!("{name}.{k}")))
            .collect(),
        outcome,
    };
    let producers = vec![
        vec![
            txn("t0.0", Committed, &[(0, Some(0)), (1, Some(0))]),
            txn("t0.1", Aborted, &[(0, Some(1)), (1, None)]),
            txn("t0.2", Committed, &[(0, Some(3)), (1, Some(2))]),
            txn("t0.3", Indeterminate, &[(0, Some(4)), (2, Some(0))]),
            txn("t0.4", Indeterminate, &[(0, Some(5)), (1, Some(3))]),
        ],
        vec![
            txn(
                "t1.0",
                Committed,
                &[(2, Some(1)), (2, Some(2)), (1, Some(4))],
            ),
            txn("t1.1", Indeterminate, &[(1, Some(6))]),
        ],
    ];
    let log = |entries: &[(i64, &str)]| -> Vec<(i64, String)> {
        entries.iter().map(|(o, v)| (*o, v.to_string())).collect()
    };
    // t0.1 aborted but read; t0.2 committed, half lost; t0.3 indeterminate,
    // half read; t0.4 indeterminate and unseen, t1.1 wholly seen (both
    // fine); t1.0's first two records swapped, its third twice; one
    // record nobody sent.
    let logs = BTreeMap::from([
        (0, log(&[(0, "t0.0.0"), (1, "t0.1.0"), (3, "t0.2.0")])),
        (
            1,
            log(&[(0, "t0.0.1"), (4, "t1.0.2"), (5, "t1.0.2"), (6, "t1.1.0")]),
        ),
        (
            2,
            log(&[(0, "t0.3.1"), (1, "t1.0.1"), (2, "t1.0.0"), (3, "zz")]),
        ),
    ]);
    assert_eq!(
        check_txns(&producers, &logs),
        [
            "t0.1.0: of aborted t0.1, read at 0/1",
            "t0.2 (committed): 1 of 2 records read",
            "t0.2.1: of committed t0.2, lost",
            "t0.3 (indeterminate): 1 of 2 records read",
            "t1.0.0: acknowledged at 2/1, read at 2/2",
            "t1.0.0: at 2/2, after t1.0.1",
            "t1.0.1: acknowledged at 2/2, read at 2/1",
            "t1.0.2: read 2 times",
            "zz: never sent",
        ]
    );
    let clean = BTreeMap::from([
        (0, log(&[(0, "t0.0.0")])),
        (1, log(&[(0, "t0.0.1"), (4, "t1.0.2"), (6, "t1.1.0")])),
        (2, log(&[(1, "t1.0.0"), (2, "t1.0.1")])),
    ]);
    let fine: Vec<Vec<Txn>> = producers
        .iter()
        .map(|p| {
            p.iter()
                .filter(|t| t.name != "t0.2" && t.name != "t0.3")
                .cloned()
                .collect()
        })
        .collect();
    assert_eq!(check_txns(&fine, &clean), Vec::<String>::new());
}
