//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`
//! from the crates' own builders (kafka-protocol's encoders, `build_batch`,
//! a real `Log` written and closed, a real producer snapshot, metadata log
//! entries). Run it after a format changes, from the repository root:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
//!
//! It replaces the files it writes and leaves others alone; the seeds are
//! small (the whole corpus stays well under 200 KB).

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    api_versions_request::ApiVersionsRequest,
    create_topics_request::{CreatableTopic, CreateTopicsRequest},
    fetch_request::{FetchPartition, FetchRequest, FetchTopic},
    find_coordinator_request::FindCoordinatorRequest,
    init_producer_id_request::InitProducerIdRequest,
    join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic},
    metadata_request::{MetadataRequest, MetadataRequestTopic},
    offset_commit_request::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    },
    produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData},
    ApiKey, GroupId, RequestKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_fuzz::{framed, join, request, NOW_MS};
use strom_metadata::{ConfigResource, MetadataRecord};
use strom_producer::{BatchInfo, ProducerStateManager};
use strom_protocol::records::{
    build_batch, build_control_batch, BatchProducer, Compression, ControlMarker, NewRecord,
};
use strom_protocol::registry;
use strom_storage::{AbortedTxn, Log, LogConfig};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(name), bytes).unwrap();
}

fn records(n: usize, keyed: bool) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            key: keyed.then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            timestamp: NOW_MS + i as i64,
        })
        .collect()
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];

fn encode(kind: &RequestKind, version: i16) -> Option<Vec<u8>> {
    let mut b = BytesMut::new();
    kind.encode(&mut b, version).ok()?;
    Some(b.to_vec())
}

/// A body for each served API: populated for the common ones, the
/// message's default otherwise.
fn body_for(key: ApiKey, version: i16) -> RequestKind {
    let batch = build_batch(BatchProducer::NONE, Compression::None, &records(2, true));
    match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch))])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(52_428_800)
                .with_topics(vec![(if version >= 13 {
                    FetchTopic::default().with_topic_id(uuid::Uuid::from_u128(7))
                } else {
                    FetchTopic::default().with_topic(TopicName(s("t")))
                })
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1_048_576)])]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(NOW_MS)])]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(s("t")))),
            ])))
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(5)])]),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        }),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(
                        b"\x00\x01\x00\x00\x00\x01\x00\x01t",
                    ))]),
        ),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(s("librdkafka"))
                .with_client_software_version(s("2.10.0")),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_num_partitions(3)
                    .with_replication_factor(1)]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        other => default_body(other),
    }
}

fn default_body(key: ApiKey) -> RequestKind {
    use kafka_protocol::messages::*;
    macro_rules! defaults {
        ($($k:ident => $t:ident),* $(,)?) => {
            match key {
                $(ApiKey::$k => RequestKind::$k($t::default()),)*
                other => panic!("no default body for {other:?}: add it here"),
            }
        };
    }
    defaults! {
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        DeleteTopics => DeleteTopicsRequest,
        OffsetFetch => OffsetFetchRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeConfigs => DescribeConfigsRequest,
        CreatePartitions => CreatePartitionsRequest,
        DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
    }
}

fn requests() {
    // request_bodies: [registry index u16][version - min][client id / corr]
    // then the body, for each API at its lowest served and highest version.
    let mut frames = Vec::new();
    for (idx, support) in registry::SUPPORTED.iter().enumerate() {
        let mut versions = vec![support.min_served, support.max];
        versions.dedup();
        for version in versions {
            let kind = body_for(support.key, version);
            let Some(body) = encode(&kind, version) else {
                eprintln!("{:?} v{version} does not encode; no seed", support.key);
                continue;
            };
            let mut seed = (idx as u16).to_be_bytes().to_vec();
            seed.push((version - support.min) as u8);
            seed.push(2 | (1 << 2)); // client id "rdkafka", correlation id 1
            seed.extend_from_slice(&body);
            let name = format!("{:?}_v{version}", support.key).to_lowercase();
            write("request_bodies", &name, &seed);
            frames.push((
                name,
                request(support.key as i16, version, 1, Some("rdkafka"), &body),
            ));
        }
    }
    // Produce v2, refused per partition: hand-written (no codec has it).
    let mut legacy = Vec::new();
    legacy.extend_from_slice(&1i16.to_be_bytes()); // acks
    legacy.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    legacy.extend_from_slice(&1i32.to_be_bytes()); // topics
    legacy.extend_from_slice(&1i16.to_be_bytes());
    legacy.extend_from_slice(b"t");
    legacy.extend_from_slice(&1i32.to_be_bytes()); // partitions
    legacy.extend_from_slice(&0i32.to_be_bytes()); // index
    legacy.extend_from_slice(&3i32.to_be_bytes()); // message set size
    legacy.extend_from_slice(b"xyz");
    let mut seed = vec![0, 0, 2, 2 | (1 << 2)];
    seed.extend_from_slice(&legacy);
    write("request_bodies", "produce_v2", &seed);

    // frame_and_header: whole frames, as a connection reads them.
    let keep = [
        "apiversions_v0",
        "apiversions_v4",
        "metadata_v0",
        "metadata_v13",
        "produce_v3",
        "produce_v12",
        "fetch_v4",
        "fetch_v17",
        "listoffsets_v10",
        "findcoordinator_v6",
        "joingroup_v9",
        "createtopics_v7",
        "initproducerid_v5",
        "offsetcommit_v9",
    ];
    let mut pipeline = Vec::new();
    for (name, frame) in &frames {
        if keep.contains(&name.as_str()) {
            write("frame_and_header", name, &framed(frame));
            if name.starts_with("apiversions")
                || name.starts_with("metadata")
                || name == "produce_v12"
            {
                pipeline.extend_from_slice(&framed(frame));
            }
        }
    }
    write("frame_and_header", "pipeline", &pipeline);
    write(
        "frame_and_header",
        "produce_v2",
        &framed(&request(0, 2, 1, Some("rdkafka"), &legacy)),
    );
    // A Produce v9 whose partition carries a zstd batch.
    let zstd = build_batch(BatchProducer::NONE, Compression::Zstd, &records(3, true));
    let produce = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(zstd))])]),
    );
    let body = encode(&produce, 9).unwrap();
    write(
        "frame_and_header",
        "produce_v9_zstd",
        &framed(&request(0, 9, 7, None, &body)),
    );
}

fn batches() {
    let t = "record_batch";
    for (codec, name) in CODECS {
        let b = build_batch(BatchProducer::NONE, codec, &records(3, true));
        write(t, &format!("raw_{name}"), &[&[0u8][..], &b].concat());
    }
    let idempotent = BatchProducer {
        id: 1000,
        epoch: 0,
        base_sequence: 0,
        transactional: false,
    };
    let b = build_batch(idempotent, Compression::Lz4, &records(2, false));
    write(t, "raw_idempotent_lz4", &[&[0u8][..], &b].concat());
    let txn = BatchProducer {
        transactional: true,
        ..idempotent
    };
    let b = build_batch(txn, Compression::None, &records(2, true));
    write(t, "raw_transactional", &[&[0u8][..], &b].concat());
    // Structured: the records section of an uncompressed batch, compressed
    // here with each codec ([mode 1][codec | 0x08][count 3][variations 0]).
    let plain = build_batch(BatchProducer::NONE, Compression::None, &records(3, true));
    let section = &plain[61..];
    for (codec, name) in CODECS {
        let c = codec as u8;
        let mut seed = vec![1, c | 0x08, 3, 0];
        seed.extend_from_slice(section);
        write(t, &format!("built_{name}"), &seed);
    }
    let mut seed = vec![1, 2 | 0x08 | 0x10, 3, 0];
    seed.extend_from_slice(section);
    write(t, "built_snappy_raw_block", &seed);
    let mut seed = vec![1, 0x20, 3, 0x01];
    seed.extend_from_slice(section);
    write(t, "built_compacted_idempotent", &seed);
}

fn disk() {
    let t = "disk_formats";
    // Indexes: three offset entries (24 bytes: also two time entries).
    let mut idx = vec![0u8];
    idx.extend_from_slice(&100_000u64.to_be_bytes());
    for (rel, pos) in [(0u32, 0u32), (10, 4096), (25, 9000)] {
        idx.extend_from_slice(&rel.to_be_bytes());
        idx.extend_from_slice(&pos.to_be_bytes());
    }
    write(t, "index_offsets", &idx);
    let mut tidx = vec![0u8];
    tidx.extend_from_slice(&0u64.to_be_bytes());
    for (ts, rel) in [(NOW_MS, 3u32), (NOW_MS + 10, 9)] {
        tidx.extend_from_slice(&ts.to_be_bytes());
        tidx.extend_from_slice(&rel.to_be_bytes());
    }
    write(t, "index_times", &tidx);
    let mut txn = vec![0u8, 0, 0, 0, 0, 0, 0, 0, 0];
    txn.extend_from_slice(
        &AbortedTxn {
            producer_id: 7,
            first_offset: 3,
            last_offset: 9,
            last_stable_offset: 3,
        }
        .encode(),
    );
    write(t, "index_txn", &txn);

    // A producer snapshot.
    let mut state = ProducerStateManager::new();
    for (id, seq) in [(1000i64, 0i32), (1001, 5)] {
        for k in 0..2 {
            let info = BatchInfo {
                producer_id: id,
                epoch: 1,
                first_seq: seq + k * 2,
                last_seq: seq + k * 2 + 1,
                max_timestamp: NOW_MS,
                transactional: false,
            };
            state.record(&info, i64::from(k) * 2, i64::from(k) * 2 + 1);
        }
    }
    let snap = state.encode();
    write(t, "snapshot", &[&[1u8][..], &snap].concat());
    write(
        t,
        "snapshot_crc_added",
        &[&[2u8][..], &snap[..snap.len() - 4]].concat(),
    );

    // Metadata log entries.
    let topic_id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let entries: Vec<Vec<MetadataRecord>> = vec![
        vec![MetadataRecord::RegisterBroker {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        }],
        vec![
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            },
            MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
            },
            MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            },
        ],
        vec![
            MetadataRecord::ProducerIds {
                node_id: 1,
                next_producer_id: 1000,
            },
            MetadataRecord::RemoveTopic { topic_id },
        ],
    ];
    let payloads: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let mut file = vec![3u8];
    for p in &payloads {
        file.extend_from_slice(&(p.len() as u32).to_be_bytes());
        file.extend_from_slice(&crc32c::crc32c(p).to_be_bytes());
        file.extend_from_slice(p);
    }
    write(t, "metadata_log", &file);
    let parts: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    write(
        t,
        "metadata_log_framed_here",
        &[&[4u8][..], &join(&parts)].concat(),
    );

    // A partition directory written by the real log: plain, idempotent and
    // transactional batches, an abort marker, a snapshot; closed cleanly,
    // then also seen as after a crash, with a torn tail, and rolled into two
    // segments.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |name: &str| std::fs::read(d.join(name)).unwrap_or_default();
    let stem = |o: i64| format!("{o:020}");
    {
        let mut log = Log::open(d, LogConfig::default()).unwrap();
        let idem = BatchProducer {
            id: 1000,
            epoch: 0,
            base_sequence: 0,
            transactional: false,
        };
        let txn = BatchProducer {
            id: 1001,
            epoch: 0,
            base_sequence: 0,
            transactional: true,
        };
        let mut end = 0;
        for mut b in [
            build_batch(BatchProducer::NONE, Compression::None, &records(2, true)).to_vec(),
            build_batch(idem, Compression::Gzip, &records(2, false)).to_vec(),
            build_batch(txn, Compression::None, &records(1, true)).to_vec(),
            build_control_batch(txn, ControlMarker::Abort, 0, NOW_MS + 5).to_vec(),
        ] {
            end = log.append(&mut b, 0, NOW_MS).unwrap().last_offset + 1;
        }
        log.add_aborted(AbortedTxn {
            producer_id: 1001,
            first_offset: 4,
            last_offset: 5,
            last_stable_offset: 6,
        });
        let mut state = ProducerStateManager::new();
        log.scan_batches(0, |b| {
            state.replay(&b);
        })
        .unwrap();
        strom_producer::write_snapshot(d, end, &state).unwrap();
        log.close().unwrap();
    }
    let log0 = read(&format!("{}.log", stem(0)));
    let idx0 = read(&format!("{}.index", stem(0)));
    let tidx0 = read(&format!("{}.timeindex", stem(0)));
    let txn0 = read(&format!("{}.txnindex", stem(0)));
    let snap = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".snapshot"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .unwrap_or_default();
    let dirseed = |flags: u8, parts: &[&[u8]]| [&[5u8, flags][..], &join(parts)].concat();
    write(
        t,
        "partition_clean",
        &dirseed(
            0x01 | 0x04 | 0x08 | 0x10 | 0x20,
            &[&log0, &idx0, &tidx0, &txn0, &snap],
        ),
    );
    write(
        t,
        "partition_crashed",
        &dirseed(0x10 | 0x20, &[&log0, &[], &[], &txn0, &snap]),
    );
    write(
        t,
        "partition_torn_tail",
        &dirseed(0x00, &[&log0[..log0.len() - 7]]),
    );
    // Two segments: the same batches again, as the second one.
    let mut log1 = log0.clone();
    let mut pos = 0;
    let mut next = 6i64;
    while pos < log1.len() {
        let size = strom_protocol::records::batch_size(&log1[pos..]).unwrap();
        let b = &mut log1[pos..pos + size];
        let count = i64::from(i32::from_be_bytes(b[23..27].try_into().unwrap())) + 1;
        strom_protocol::records::set_base_offset(b, next);
        next += count;
        pos += size;
    }
    write(
        t,
        "partition_two_segments",
        &dirseed(0x80 | 0x04 | 0x08, &[&log0, &idx0, &tidx0, &[], &[], &log1]),
    );
}

fn main() {
    requests();
    batches();
    disk();
    let mut total = 0;
    for target in [
        "frame_and_header",
        "request_bodies",
        "record_batch",
        "disk_formats",
    ] {
        for e in std::fs::read_dir(corpus(target)).unwrap().flatten() {
            total += e.metadata().unwrap().len();
        }
    }
    println!("corpus: {total} bytes");
}
