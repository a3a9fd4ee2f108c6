//! Helpers shared by the fuzz targets and the seed generator
//! (`examples/gen_corpus.rs`): building request frames and record batches
//! that are valid where the fuzzer would otherwise stall (headers, lengths,
//! CRCs), and what the broker does with a decoded request.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom_protocol::legacy_produce;
use strom_protocol::request::{Body, Request};
use strom_replica::{validate_produce_batch, ProduceRules};

/// The wall clock the targets validate against (2023-11-14), so that seeds
/// stamped near it pass the timestamp checks.
pub const NOW_MS: i64 = 1_700_000_000_000;

/// The frame bound the targets split with: small, so that a declared size
/// near it does not make every run reserve 100 MiB.
pub const MAX_FRAME: usize = 1 << 20;

/// A request (header of the version `api_key`/`version` need, then `body`),
/// without the length prefix.
pub fn request(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let header_version = ApiKey::try_from(api_key)
        .map(|k| k.request_header_version(version))
        .unwrap_or(1);
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_owned())))
        .encode(&mut out, header_version)
        .expect("a request header always encodes");
    out.extend_from_slice(body);
    out.to_vec()
}

/// `body` with its big-endian `i32` length in front.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What the broker does with a decoded request beyond decoding it, for the
/// parts that read bytes: Produce v0-v2 bodies are read by
/// `legacy_produce::refuse`, the records of Produce v3+ by the produce
/// validation.
pub fn exercise_request(req: Request) {
    match req.body {
        Body::Refused(raw) => {
            let _ = legacy_produce::refuse(raw, req.version);
        }
        Body::Served(kind) => {
            if let RequestKind::Produce(p) = *kind {
                let rules = ProduceRules::default();
                for topic in &p.topic_data {
                    for partition in &topic.partition_data {
                        if let Some(records) = &partition.records {
                            let _ = validate_produce_batch(records, &rules, NOW_MS, "fuzz-0");
                        }
                    }
                }
            }
        }
    }
}

/// The fields of a magic-2 batch header other than its length and CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl Header {
    /// A header as a client writes one: `count` records, no producer.
    pub fn plain(codec: u8, count: i32) -> Header {
        Header {
            base_offset: 0,
            partition_leader_epoch: -1,
            magic: 2,
            attributes: i16::from(codec & 0x07),
            last_offset_delta: count - 1,
            base_timestamp: NOW_MS,
            max_timestamp: NOW_MS,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: count,
        }
    }

    /// Reads the fields from `b` (missing bytes are zero), 49 bytes in all.
    pub fn from_bytes(b: &[u8]) -> Header {
        let mut buf = [0u8; Self::FIELD_BYTES];
        let n = b.len().min(buf.len());
        buf[..n].copy_from_slice(&b[..n]);
        let i16_at = |at: usize| i16::from_be_bytes([buf[at], buf[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes(buf[at..at + 4].try_into().expect("4"));
        let i64_at = |at: usize| i64::from_be_bytes(buf[at..at + 8].try_into().expect("8"));
        Header {
            base_offset: i64_at(0),
            partition_leader_epoch: i32_at(8),
            magic: buf[12] as i8,
            attributes: i16_at(13),
            last_offset_delta: i32_at(15),
            base_timestamp: i64_at(19),
            max_timestamp: i64_at(27),
            producer_id: i64_at(35),
            producer_epoch: i16_at(43),
            base_sequence: i32_at(45),
            records_count: 0,
        }
    }

    /// How many bytes [`from_bytes`](Self::from_bytes) reads.
    pub const FIELD_BYTES: usize = 49;

    /// The header followed by `records`, with the batch length and the
    /// CRC32C computed.
    pub fn batch(&self, records: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(61 + records.len());
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        let batch_length = (49 + records.len()) as i32;
        b.extend_from_slice(&batch_length.to_be_bytes());
        b.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b.push(self.magic as u8);
        b.extend_from_slice(&[0; 4]); // CRC, below
        b.extend_from_slice(&self.attributes.to_be_bytes());
        b.extend_from_slice(&self.last_offset_delta.to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&self.records_count.to_be_bytes());
        b.extend_from_slice(records);
        fix_crc(&mut b);
        b
    }
}

/// Recomputes the CRC32C of the batch at the front of `batch` (which must
/// hold at least a header).
pub fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Recomputes the CRC of every whole batch in `log`, walking batch by batch
/// by their length fields; stops at the first that is not whole.
pub fn fix_all_crcs(log: &mut [u8]) {
    let mut pos = 0;
    while let Ok(size) = strom_protocol::records::batch_size(&log[pos..]) {
        if log.len() - pos < size || size < 61 {
            break;
        }
        fix_crc(&mut log[pos..pos + size]);
        pos += size;
    }
}

/// Compresses `raw` as Kafka producers do for `codec` (1 gzip, 2 snappy in
/// xerial framing, or a raw block when `raw_snappy`, 3 lz4 frame, 4 zstd);
/// other codecs return `raw` unchanged.
pub fn compress(codec: u8, raw: &[u8], raw_snappy: bool) -> Vec<u8> {
    use std::io::Write;
    match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(raw).expect("in memory");
            e.finish().expect("in memory")
        }
        2 => {
            let block = snap::raw::Encoder::new()
                .compress_vec(raw)
                .expect("snappy compresses any input");
            if raw_snappy {
                return block;
            }
            let mut out = b"\x82SNAPPY\x00".to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
            out
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(1)
                .build(Vec::new())
                .expect("in memory");
            e.write_all(raw).expect("in memory");
            let (out, res) = e.finish();
            res.expect("in memory");
            out
        }
        4 => zstd::bulk::compress(raw, 1).expect("zstd compresses any input"),
        _ => raw.to_vec(),
    }
}

/// Splits `data` at each occurrence of [`SEP`].
pub fn sections(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SEP.len()).position(|w| w == SEP) {
        out.push(&rest[..at]);
        rest = &rest[at + SEP.len()..];
    }
    out.push(rest);
    out
}

/// What separates the parts of a structured input.
pub const SEP: &[u8] = b"#|#|";

/// Joins parts with [`SEP`] (the inverse of [`sections`]).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(p);
    }
    out
}

/// Whether to check the invariants that go beyond "never panics" and are
/// known to fail today: only in the `strict` build.
pub fn invariants() -> bool {
    cfg!(feature = "strict")
}

/// A frame's bytes as `Bytes` for the decoder.
pub fn bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}
