use std::collections::BTreeMap;

use bytes::Bytes;
use strom_metadata::config::StaticConfig;
use strom_metadata::{MetadataImage, MetadataRecord, Uuid};
use strom_protocol::records::{build_batch, BatchProducer, Compression, NewRecord};
use strom_protocol::ErrorCode;

use crate::{OffsetSpec, ReplicaManager};

fn batch(pid: i64, epoch: i16, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let producer = if pid < 0 {
        BatchProducer::NONE
    } else {
        BatchProducer {
            id: pid,
            epoch,
            base_sequence: seq,
        }
    };
    let records: Vec<NewRecord> = (0..n)
        .map(|_| NewRecord {
            key: None,
            value: Some(Bytes::from_static(b"value")),
            timestamp: ts,
        })
        .collect();
    build_batch(producer, Compression::None, &records).to_vec()
}

fn image(topic: &str, id: u128, configs: &[(&str, &str)]) -> MetadataImage {
    let topic_id = Uuid::from_u128(id);
    let mut records = vec![MetadataRecord::Topic {
        name: topic.into(),
        topic_id,
    }];
    records.extend(configs.iter().map(|(k, v)| MetadataRecord::Config {
        resource: strom_metadata::ConfigResource::Topic(topic.into()),
        name: (*k).into(),
        value: Some((*v).into()),
    }));
    records.push(MetadataRecord::Partition {
        topic_id,
        partition: 0,
        replicas: vec![1],
        isr: vec![1],
        leader: 1,
        leader_epoch: 0,
    });
    MetadataImage::empty().apply(0, &records)
}

fn manager(dir: &std::path::Path) -> ReplicaManager {
    ReplicaManager::new(1, dir, StaticConfig::new(BTreeMap::new()).unwrap().0)
}

#[test]
fn produce_errors_use_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[("max.message.bytes", "200")]))
        .unwrap();
    let p = rm.get("t", 0).unwrap();
    let code = |bytes: &[u8]| p.append(bytes, 0).unwrap_err().0;
    assert_eq!(code(&[]), ErrorCode::InvalidRecord);
    let mut two = batch(-1, -1, 0, 1, 0);
    two.extend(batch(-1, -1, 0, 1, 0));
    assert_eq!(code(&two), ErrorCode::InvalidRecord);
    assert_eq!(code(&batch(-1, -1, 0, 20, 0)), ErrorCode::MessageTooLarge);
    let mut corrupt = batch(-1, -1, 0, 1, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(code(&corrupt), ErrorCode::CorruptMessage);
    let mut old_magic = batch(-1, -1, 0, 1, 0);
    old_magic[16] = 1;
    assert_eq!(code(&old_magic), ErrorCode::InvalidRecord);
    assert_eq!(code(&corrupt[..30]), ErrorCode::CorruptMessage);
    assert_eq!(p.append(&batch(-1, -1, 0, 1, 0), 0).unwrap().base_offset, 0);
}

#[test]
fn idempotent_dedup_survives_unclean_and_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    let img = image("t", 1, &[("segment.bytes", "300")]);
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    let mut offsets = Vec::new();
    for i in 0..10 {
        offsets.push(p.append(&batch(7, 0, i * 2, 2, 0), 0).unwrap().base_offset);
    }
    // A retry of the last batch is answered with its original offset.
    assert_eq!(p.append(&batch(7, 0, 18, 2, 0), 0).unwrap().base_offset, 18);
    assert_eq!(
        p.append(&batch(7, 0, 30, 2, 0), 0).unwrap_err().0,
        ErrorCode::OutOfOrderSequenceNumber
    );
    drop(p);
    drop(rm); // as after kill -9: nothing closed
    let rm = manager(dir.path());
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(p.append(&batch(7, 0, 16, 2, 0), 0).unwrap().base_offset, 16);
    assert_eq!(p.append(&batch(7, 0, 20, 2, 0), 0).unwrap().base_offset, 20);
    assert_eq!(
        p.append(&batch(7, -1, 22, 1, 0), 0).unwrap_err().0,
        ErrorCode::InvalidProducerEpoch
    );
    drop(p);
    rm.shutdown();
    let rm = manager(dir.path());
    rm.apply_image(&img).unwrap();
    let p = rm.get("t", 0).unwrap();
    assert_eq!(p.append(&batch(7, 0, 20, 2, 0), 0).unwrap().base_offset, 20);
    assert_eq!(p.log_end_offset(), 22);
}

#[test]
fn list_offsets_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    let p = rm.get("t", 0).unwrap();
    for ts in [100, 300, 200] {
        p.append(&batch(-1, -1, 0, 1, ts), 0).unwrap();
    }
    let at = |spec| p.list_offset(spec).unwrap();
    assert_eq!(at(OffsetSpec::Earliest).offset, 0);
    assert_eq!(at(OffsetSpec::Latest).offset, 3);
    assert_eq!(
        (
            at(OffsetSpec::MaxTimestamp).offset,
            at(OffsetSpec::MaxTimestamp).timestamp
        ),
        (1, 300)
    );
    assert_eq!(at(OffsetSpec::Timestamp(150)).offset, 1);
    assert_eq!(at(OffsetSpec::Timestamp(301)).offset, -1);
    assert_eq!(
        p.read(4, 100, true).unwrap_err(),
        ErrorCode::OffsetOutOfRange
    );
    assert!(p.read(3, 100, true).unwrap().records.is_empty());
    assert_eq!(p.read(0, 1 << 20, true).unwrap().high_watermark, 3);
}

#[test]
fn deleted_and_recreated_topics_lose_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 1, &[])).unwrap();
    rm.get("t", 0)
        .unwrap()
        .append(&batch(-1, -1, 0, 1, 0), 0)
        .unwrap();
    rm.shutdown();
    // Recreated under a new id while the node was down.
    let rm = manager(dir.path());
    rm.apply_image(&image("t", 2, &[])).unwrap();
    assert_eq!(rm.get("t", 0).unwrap().log_end_offset(), 0);
    rm.apply_image(&MetadataImage::empty()).unwrap();
    assert!(rm.get("t", 0).is_none());
    assert!(!dir.path().join("t-0").exists());
}
