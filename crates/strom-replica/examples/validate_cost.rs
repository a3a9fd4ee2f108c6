//! What validating a produced batch costs, per codec: the full check
//! (`validate_produce_batch`: header, CRC, every record, streaming
//! decompression) against the CRC check alone (what validation was before
//! records were walked), on batches a client sends.
//!
//!     cargo run --release -p strom-replica --example validate_cost

use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::records::{build_batch, Batch, BatchProducer, Compression, NewRecord};
use strom_replica::{validate_produce_batch, ProduceRules};

/// Records of `size` bytes of text-like data (compressible as logs are).
fn batch(codec: Compression, records: usize, size: usize, now: i64) -> Vec<u8> {
    let line = b"2026-12-02T01:23:45Z INFO request served path=/api/v1/items status=200 ms=12 ";
    let records: Vec<NewRecord> = (0..records)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(
                line.iter()
                    .copied()
                    .cycle()
                    .skip(i)
                    .take(size)
                    .collect::<Vec<u8>>(),
            )),
            timestamp: now,
        })
        .collect();
    let producer = BatchProducer {
        id: 1000,
        epoch: 0,
        base_sequence: 0,
        transactional: false,
    };
    build_batch(producer, codec, &records).to_vec()
}

/// Runs `f` over and over for about half a second; nanoseconds per call.
fn time(mut f: impl FnMut()) -> f64 {
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        f();
        n += 1;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let now = 1_800_000_000_000;
    let rules = ProduceRules {
        max_message_bytes: 8 << 20,
        ..ProduceRules::default()
    };
    println!("| codec | records x bytes | batch bytes | CRC only | full validation | extra per MB inflated |");
    println!("|---|---|---|---|---|---|");
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        for (records, size) in [(16, 1024), (1000, 1024), (100, 100)] {
            let b = batch(codec, records, size, now);
            let crc = time(|| {
                Batch::parse(&b).unwrap().verify().unwrap();
            });
            let full = time(|| {
                validate_produce_batch(&b, &rules, now, "t-0").unwrap();
            });
            let inflated_mb = (records * size) as f64 / 1e6;
            println!(
                "| {codec:?} | {records} x {size} | {} | {:.1} µs | {:.1} µs | {:.0} µs |",
                b.len(),
                crc / 1e3,
                full / 1e3,
                (full - crc) / 1e3 / inflated_mb
            );
        }
    }
}
