//! Transactions against the real binary: every transaction API at every
//! version, and transaction state and visibility across kill -9.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use std::time::{Duration, Instant};
use strom_tests::cluster::Cluster;
use strom_tests::{name, Broker, Client};

const TOPIC: &str = "tx-topic";

/// A transactional batch of `values` from `pid`/`epoch` at sequence `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    strom_tests::producer_batch(pid, epoch, seq, true, values)
}

fn init(c: &mut Client, id: &str, version: i16) -> (i64, i16) {
    let r = c
        .request(
            version,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(strom_tests::transactional_id(id)))
                .with_transaction_timeout_ms(60_000),
        )
        .unwrap();
    assert_eq!(r.error_code, 0, "InitProducerId v{version}");
    (r.producer_id.0, r.producer_epoch)
}

fn add_partition(c: &mut Client, id: &str, pe: (i64, i16), version: i16) -> i16 {
    add_partitions(c, id, pe, version, TOPIC, &[0])[0]
}

/// Adds `partitions` of `topic` to the transaction; their error codes.
fn add_partitions(
    c: &mut Client,
    id: &str,
    (pid, epoch): (i64, i16),
    version: i16,
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let topic = AddPartitionsToTxnTopic::default()
        .with_name(name(topic))
        .with_partitions(partitions.to_vec());
    if version <= 3 {
        let r = c
            .request(
                version,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(strom_tests::transactional_id(id))
                    .with_v3_and_below_producer_id(ProducerId(pid))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![topic]),
            )
            .unwrap();
        r.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect()
    } else {
        let r = c
            .request(
                version,
                &AddPartitionsToTxnRequest::default().with_transactions(vec![
                    AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(strom_tests::transactional_id(id))
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_topics(vec![topic]),
                ]),
            )
            .unwrap();
        r.results_by_transaction[0].topic_results[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect()
    }
}

fn produce(c: &mut Client, id: &str, records: Bytes) -> (i16, i64) {
    produce_to(c, id, TOPIC, 0, records)
}

fn produce_to(c: &mut Client, id: &str, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let r = c
        .request(
            9,
            &ProduceRequest::default()
                .with_transactional_id(Some(strom_tests::transactional_id(id)))
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records))])]),
        )
        .unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// EndTxn at `version` (the lib's `end_txn` sends v3 only).
fn end(c: &mut Client, id: &str, producer: (i64, i16), commit: bool, version: i16) -> i16 {
    c.request(version, &strom_tests::end_txn_request(id, producer, commit))
        .unwrap()
        .error_code
}

/// Reads the partition from the start as a read_committed consumer does:
/// the values it keeps (control batches and aborted transactions dropped),
/// the last stable offset and the aborted transactions' (producer id,
/// first offset) the fetches reported.
fn fetch_committed(c: &mut Client) -> (Vec<String>, i64, Vec<(i64, i64)>) {
    fetch_committed_from(c, TOPIC, 0)
}

fn fetch_committed_from(
    c: &mut Client,
    topic: &str,
    partition: i32,
) -> (Vec<String>, i64, Vec<(i64, i64)>) {
    let mut offset = 0;
    let mut values = Vec::new();
    let mut aborted: Vec<(i64, i64)> = Vec::new();
    loop {
        let r = c
            .request(12, &strom_tests::fetch_from(topic, partition, offset, 1))
            .unwrap();
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        for a in p
            .aborted_transactions
            .as_ref()
            .expect("read_committed fetches carry the aborted list")
        {
            if !aborted.contains(&(a.producer_id.0, a.first_offset)) {
                aborted.push((a.producer_id.0, a.first_offset));
            }
        }
        let mut bytes = p.records.clone().unwrap_or_default();
        if bytes.is_empty() {
            return (values, p.last_stable_offset, aborted);
        }
        while !bytes.is_empty() {
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            for r in set.records {
                offset = offset.max(r.offset + 1);
                let in_aborted = aborted
                    .iter()
                    .any(|&(pid, first)| pid == r.producer_id && r.offset >= first);
                if r.control || (r.transactional && in_aborted) {
                    continue;
                }
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
    }
}

fn latest(c: &mut Client, isolation: i8) -> i64 {
    let r = c
        .request(
            7,
            &ListOffsetsRequest::default()
                .with_isolation_level(isolation)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]),
        )
        .unwrap();
    r.topics[0].partitions[0].offset
}

#[test]
fn transaction_apis_answer_every_version() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    c.create_topic(TOPIC, 1);
    for v in c.versions(ApiKey::InitProducerId) {
        let id = format!("init-v{v}");
        let first = init(&mut c, &id, v);
        assert_eq!(first.1, 0);
        let second = init(&mut c, &id, v);
        assert_eq!(second, (first.0, 1), "re-initialising bumps the epoch");
    }
    for v in c.versions(ApiKey::AddPartitionsToTxn) {
        let id = format!("add-v{v}");
        let producer = init(&mut c, &id, 4);
        assert_eq!(
            add_partition(&mut c, &id, producer, v),
            0,
            "AddPartitionsToTxn v{v}"
        );
        let fenced = add_partition(&mut c, &id, (producer.0, producer.1 - 1), v);
        let expected = if v < 2 { 47 } else { 90 }; // INVALID_PRODUCER_EPOCH, PRODUCER_FENCED
        assert_eq!(fenced, expected, "stale epoch, AddPartitionsToTxn v{v}");
        let (code, _) = produce(&mut c, &id, txn_batch(producer.0, producer.1, 0, &["x"]));
        assert_eq!(code, 0);
        if v >= 4 {
            // Verification only: the partition is in the transaction.
            let r = c
                .request(
                    v,
                    &AddPartitionsToTxnRequest::default().with_transactions(vec![
                        AddPartitionsToTxnTransaction::default()
                            .with_transactional_id(strom_tests::transactional_id(&id))
                            .with_producer_id(ProducerId(producer.0))
                            .with_producer_epoch(producer.1)
                            .with_verify_only(true)
                            .with_topics(vec![AddPartitionsToTxnTopic::default()
                                .with_name(name(TOPIC))
                                .with_partitions(vec![0])]),
                    ]),
                )
                .unwrap();
            assert_eq!(
                r.results_by_transaction[0].topic_results[0].results_by_partition[0]
                    .partition_error_code,
                0
            );
        }
        assert_eq!(end(&mut c, &id, producer, v % 2 == 0, 4), 0);
    }
    for v in c.versions(ApiKey::AddOffsetsToTxn) {
        let id = format!("offsets-v{v}");
        let producer = init(&mut c, &id, 4);
        let r = c
            .request(
                v,
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(strom_tests::transactional_id(&id))
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_group_id(GroupId(StrBytes::from_string(format!("g{v}")))),
            )
            .unwrap();
        assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{v}");
        for tv in c.versions(ApiKey::TxnOffsetCommit) {
            let r = c
                .request(
                    tv,
                    &TxnOffsetCommitRequest::default()
                        .with_transactional_id(strom_tests::transactional_id(&id))
                        .with_group_id(GroupId(StrBytes::from_string(format!("g{v}"))))
                        .with_producer_id(ProducerId(producer.0))
                        .with_producer_epoch(producer.1)
                        .with_generation_id(-1)
                        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                            .with_name(name(TOPIC))
                            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(i64::from(tv) + 1)])]),
                )
                .unwrap();
            assert_eq!(
                r.topics[0].partitions[0].error_code, 0,
                "TxnOffsetCommit v{tv}"
            );
        }
        // Pending until the commit: a stable fetch is told to retry.
        let fetch = |c: &mut Client| {
            let r = c
                .request(
                    7,
                    &OffsetFetchRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(format!("g{v}"))))
                        .with_require_stable(true)
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopic::default()
                                .with_name(name(TOPIC))
                                .with_partition_indexes(vec![0]),
                        ])),
                )
                .unwrap();
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.committed_offset)
        };
        assert_eq!(fetch(&mut c), (88, -1), "UNSTABLE_OFFSET_COMMIT");
        assert_eq!(end(&mut c, &id, producer, true, 3), 0);
        let last = i64::from(*c.versions(ApiKey::TxnOffsetCommit).end()) + 1;
        assert_eq!(fetch(&mut c), (0, last));
    }
    for v in c.versions(ApiKey::EndTxn) {
        let id = format!("end-v{v}");
        let producer = init(&mut c, &id, 4);
        assert_eq!(
            end(&mut c, &id, producer, true, v),
            48,
            "nothing open: INVALID_TXN_STATE"
        );
        assert_eq!(add_partition(&mut c, &id, producer, 3), 0);
        assert_eq!(end(&mut c, &id, producer, false, v), 0, "EndTxn v{v}");
        assert_eq!(end(&mut c, &id, producer, false, v), 0, "a retried abort");
        let stale = end(&mut c, &id, (producer.0, producer.1 - 1), false, v);
        assert_eq!(stale, if v < 2 { 47 } else { 90 });
    }
    // Administration: an open transaction, then after its end.
    let id = "admin";
    let producer = init(&mut c, id, 4);
    assert_eq!(add_partition(&mut c, id, producer, 3), 0);
    let (code, offset) = produce(&mut c, id, txn_batch(producer.0, producer.1, 0, &["a"]));
    assert_eq!(code, 0);
    let described = c
        .request(
            0,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                strom_tests::transactional_id(id),
                strom_tests::transactional_id("nope"),
            ]),
        )
        .unwrap();
    let s = &described.transaction_states[0];
    assert_eq!((s.error_code, s.transaction_state.as_str()), (0, "Ongoing"));
    assert_eq!(s.producer_id.0, producer.0);
    assert_eq!(s.topics[0].partitions, vec![0]);
    assert_eq!(described.transaction_states[1].error_code, 105);
    for v in c.versions(ApiKey::ListTransactions) {
        let listed = c
            .request(
                v,
                &ListTransactionsRequest::default().with_state_filters(vec![
                    StrBytes::from_static_str("Ongoing"),
                    StrBytes::from_static_str("Bogus"),
                ]),
            )
            .unwrap();
        let ids: Vec<&str> = listed
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.0.as_str())
            .collect();
        assert_eq!(ids, vec![id], "ListTransactions v{v}");
        assert_eq!(listed.unknown_state_filters.len(), 1);
    }
    let producers = |c: &mut Client| {
        let r = c
            .request(
                0,
                &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                    .with_name(name(TOPIC))
                    .with_partition_indexes(vec![0, 7])]),
            )
            .unwrap();
        assert_eq!(r.topics[0].partitions[1].error_code, 3);
        r.topics[0].partitions[0]
            .active_producers
            .iter()
            .find(|p| p.producer_id.0 == producer.0)
            .map(|p| p.current_txn_start_offset)
    };
    assert_eq!(producers(&mut c), Some(offset));
    assert_eq!(end(&mut c, id, producer, true, 3), 0);
    assert_eq!(producers(&mut c), Some(-1));
    // Transactional records without their transactional id are refused.
    let r = c
        .request(
            9,
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(TOPIC))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(txn_batch(producer.0, producer.1, 1, &["x"])))])]),
        )
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 53,
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    );
    // Clients cannot write the coordinator's own topic.
    let r = c
        .request(
            9,
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name("__transaction_state"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(txn_batch(-1, -1, -1, &["x"])))])]),
        )
        .unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 17,
        "INVALID_TOPIC_EXCEPTION"
    );
}

#[test]
fn transaction_outcomes_survive_kill_9() {
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    c.create_topic(TOPIC, 1);
    let committed = init(&mut c, "committed", 4);
    let aborted = init(&mut c, "aborted", 4);
    let open = init(&mut c, "open", 4);
    assert_eq!(add_partition(&mut c, "committed", committed, 3), 0);
    assert_eq!(add_partition(&mut c, "aborted", aborted, 3), 0);
    assert_eq!(add_partition(&mut c, "open", open, 3), 0);
    let batch = |p: (i64, i16), v: &str| txn_batch(p.0, p.1, 0, &[v, v]);
    assert_eq!(produce(&mut c, "committed", batch(committed, "c")).0, 0);
    assert_eq!(produce(&mut c, "aborted", batch(aborted, "a")).0, 0);
    assert_eq!(end(&mut c, "committed", committed, true, 3), 0);
    assert_eq!(end(&mut c, "aborted", aborted, false, 3), 0);
    let (code, open_offset) = produce(&mut c, "open", batch(open, "o"));
    assert_eq!(code, 0);
    // A batch outside the transaction is refused.
    let other = add_partition(&mut c, "open", (open.0 + 1000, 0), 3);
    assert_eq!(other, 49, "INVALID_PRODUCER_ID_MAPPING");
    let check = |c: &mut Client| {
        let (values, lso, aborted_list) = fetch_committed(c);
        assert_eq!(values, vec!["c", "c"]);
        assert_eq!(lso, open_offset, "the open transaction holds the LSO");
        assert_eq!(aborted_list, vec![(aborted.0, 2)]);
        assert_eq!(latest(c, 1), open_offset);
        assert_eq!(latest(c, 0), open_offset + 2);
    };
    check(&mut c);
    b.kill9();
    b.restart();
    let mut c = b.client();
    check(&mut c);
    // A new instance of "open" fences the old one and aborts its transaction.
    let reopened = init(&mut c, "open", 4);
    assert_eq!(reopened, (open.0, open.1 + 2));
    let (code, _) = produce(&mut c, "open", batch(open, "late"));
    assert_eq!(code, 47, "the fenced instance: INVALID_PRODUCER_EPOCH");
    let (values, lso, aborted_list) = fetch_committed(&mut c);
    assert_eq!(values, vec!["c", "c"]);
    assert_eq!(lso, latest(&mut c, 0));
    assert_eq!(aborted_list, vec![(aborted.0, 2), (open.0, open_offset)]);
    b.kill9();
    b.restart();
    let mut c = b.client();
    let (_, _, aborted_list) = fetch_committed(&mut c);
    assert_eq!(aborted_list.len(), 2, "the abort index survives");
}

fn txn_coordinator(cluster: &Cluster, via: i32, id: &str, not: &[i32]) -> i32 {
    cluster.wait_for_coordinator(via, id, 1, not)
}

/// InitProducerId for `id` on node `node`, retried while the coordinator
/// loads or finishes an end: the producer id and epoch.
fn init_on(cluster: &Cluster, node: i32, id: &str) -> (i64, i16) {
    retried(cluster, "init", || {
        let r = cluster
            .node(node)
            .client()
            .request(
                3,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(strom_tests::transactional_id(id)))
                    .with_transaction_timeout_ms(60_000),
            )
            .unwrap();
        (r.error_code, (r.producer_id.0, r.producer_epoch))
    })
}

/// Retries `f` while it answers what a client retries (NOT_COORDINATOR,
/// COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
/// CONCURRENT_TRANSACTIONS, NOT_ENOUGH_REPLICAS); its last answer.
fn retried<T>(cluster: &Cluster, what: &str, mut f: impl FnMut() -> (i16, T)) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, t) = f();
        match code {
            0 => return t,
            14 | 15 | 16 | 19 | 51 if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            code => panic!("{what}: error {code}; seed {}", cluster.seed),
        }
    }
}

/// What a read_committed consumer reads of partition `partition` of `x`
/// from `leader`, once its last stable offset reached `stable` (the markers
/// follow the end's answer); with that offset.
fn committed_values(
    cluster: &Cluster,
    leader: i32,
    partition: i32,
    stable: i64,
) -> (Vec<String>, i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (values, lso, _) =
            fetch_committed_from(&mut cluster.node(leader).client(), "x", partition);
        if lso >= stable || Instant::now() >= deadline {
            return (values, lso);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_transaction_spans_partitions_led_by_other_brokers_and_survives_its_coordinator() {
    let settings = [
        ("broker.session.timeout.ms", "2000"),
        ("broker.heartbeat.interval.ms", "300"),
        ("min.insync.replicas", "2"),
        ("transaction.state.log.num.partitions", "3"),
        ("offsets.topic.num.partitions", "3"),
    ];
    let mut cluster = Cluster::start(3, &settings);
    cluster.wait_for_controller(1, &[], Duration::from_secs(10));
    assert_eq!(cluster.create_topic(1, "x", 3, 3), 0);
    // Each partition's leader, once all three are in sync everywhere.
    let m = cluster.wait_for_metadata(1, "x in sync", Duration::from_secs(20), |m| {
        m.topics.iter().any(|t| {
            t.name.as_ref().is_some_and(|n| n.0.as_str() == "x")
                && t.partitions.len() == 3
                && t.partitions.iter().all(|p| p.isr_nodes.len() == 3)
        })
    });
    let mut leaders = [0i32; 3];
    for p in &m
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "x")
        .unwrap()
        .partitions
    {
        leaders[p.partition_index as usize] = p.leader_id.0;
    }

    let coordinator = txn_coordinator(&cluster, 1, "t1", &[]);
    assert!(
        leaders.iter().any(|l| *l != coordinator),
        "leaders are spread: {leaders:?} (coordinator {coordinator})"
    );
    let pe = init_on(&cluster, coordinator, "t1");

    // Committed: every partition, wherever it is led, shows the records.
    let codes = add_partitions(
        &mut cluster.node(coordinator).client(),
        "t1",
        pe,
        3,
        "x",
        &[0, 1, 2],
    );
    assert_eq!(codes, [0, 0, 0]);
    // One record of the transaction to each partition, on its leader.
    let produce_everywhere = |seq: i32, value: &dyn Fn(usize) -> String| {
        for (p, &leader) in leaders.iter().enumerate() {
            let records = txn_batch(pe.0, pe.1, seq, &[value(p).as_str()]);
            let (code, _) = produce_to(
                &mut cluster.node(leader).client(),
                "t1",
                "x",
                p as i32,
                records,
            );
            assert_eq!(code, 0, "produce to {p} on {leader}; seed {}", cluster.seed);
        }
    };
    produce_everywhere(0, &|p| format!("c{p}"));
    let committed: Vec<Vec<String>> = (0..3).map(|p| vec![format!("c{p}")]).collect();
    assert_eq!(
        end(&mut cluster.node(coordinator).client(), "t1", pe, true, 3),
        0
    );
    for (p, &leader) in leaders.iter().enumerate() {
        // The record at 0, the commit marker at 1.
        assert_eq!(
            committed_values(&cluster, leader, p as i32, 2),
            (committed[p].clone(), 2),
            "partition {p}; seed {}",
            cluster.seed
        );
    }

    // Aborted: the next transaction waits for the markers, then its
    // records never show.
    retried(&cluster, "add after commit", || {
        let codes = add_partitions(
            &mut cluster.node(coordinator).client(),
            "t1",
            pe,
            3,
            "x",
            &[0, 1, 2],
        );
        (codes.iter().copied().find(|c| *c != 0).unwrap_or(0), ())
    });
    produce_everywhere(1, &|_| "aborted".to_string());
    assert_eq!(
        end(&mut cluster.node(coordinator).client(), "t1", pe, false, 3),
        0
    );

    // The coordinator dies: the new one has the transactional id (its epoch
    // moves on from the old one's) and the abort completes everywhere.
    cluster.kill9(coordinator);
    let survivor = (1..=3).find(|n| *n != coordinator).unwrap();
    let next = txn_coordinator(&cluster, survivor, "t1", &[coordinator]);
    let (pid, epoch) = init_on(&cluster, next, "t1");
    assert_eq!(pid, pe.0, "the same producer id");
    assert!(epoch > pe.1, "a bumped epoch: {epoch} after {}", pe.1);
    let m = cluster.wait_for_metadata(survivor, "x led", Duration::from_secs(20), |m| {
        m.topics.iter().any(|t| {
            t.name.as_ref().is_some_and(|n| n.0.as_str() == "x")
                && t.partitions
                    .iter()
                    .all(|p| p.leader_id.0 > 0 && p.leader_id.0 != coordinator)
        })
    });
    for p in &m
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "x")
        .unwrap()
        .partitions
    {
        let i = p.partition_index as usize;
        // The aborted record at 2, its marker at 3 (and the new
        // coordinator may write it again: harmless, as in Kafka).
        let (values, stable) = committed_values(&cluster, p.leader_id.0, p.partition_index, 4);
        assert!(
            values == committed[i] && stable >= 4,
            "partition {i} after failover: {values:?} stable to {stable}; seed {}",
            cluster.seed
        );
    }
}
