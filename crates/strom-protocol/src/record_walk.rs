//! Walking the records of a batch without materialising them.
//!
//! A magic-2 record, after the batch header (all varints zigzag-encoded):
//!
//! ```text
//! length varint          the bytes of the record after this field
//! attributes i8          unused
//! timestamp_delta varlong
//! offset_delta varint
//! key_length varint      -1: null key
//! key bytes
//! value_length varint    -1: null value
//! value bytes
//! header_count varint
//!   header_key_length varint (>= 0), key bytes,
//!   header_value_length varint (-1: null), value bytes
//! ```
//!
//! [`walk`] reads these fields one record at a time and skips keys,
//! values and headers without copying them. An uncompressed batch is read
//! in place; a compressed one through a streaming decoder and a fixed
//! buffer, so memory does not grow with the inflated size, which is itself
//! bounded by the caller. This is what validates produced batches (every
//! record well formed, the declared count true) and what finds records by
//! timestamp.

use std::io::Read;
use std::ops::ControlFlow;

use crate::records::{Batch, HEADER_LEN};

/// What [`walk`] reports of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// -1 for a null key.
    pub key_len: i32,
    /// -1 for a null value (a tombstone).
    pub value_len: i32,
    pub headers: i32,
}

/// Why the records of a batch cannot be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("Unknown compression type id: {0}")]
    UnknownCodec(u8),
    #[error("Failed to decompress record stream: {0}")]
    Decompress(String),
    #[error("{0}")]
    Malformed(String),
    #[error("The records of the batch inflate to more than {0} bytes")]
    TooLarge(u64),
}

fn malformed(m: impl Into<String>) -> RecordsError {
    RecordsError::Malformed(m.into())
}

/// Bytes to read records from.
trait Input {
    /// The next byte; `None` at the end.
    fn byte(&mut self) -> Result<Option<u8>, RecordsError>;
    /// Skips `n` bytes; false if fewer were left.
    fn skip(&mut self, n: usize) -> Result<bool, RecordsError>;
    /// Bytes consumed so far.
    fn consumed(&self) -> u64;
}

/// An uncompressed records section, read in place.
struct SliceInput<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Input for SliceInput<'_> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        let b = self.buf.get(self.pos).copied();
        self.pos += usize::from(b.is_some());
        Ok(b)
    }
    fn skip(&mut self, n: usize) -> Result<bool, RecordsError> {
        if self.buf.len() - self.pos < n {
            self.pos = self.buf.len();
            return Ok(false);
        }
        self.pos += n;
        Ok(true)
    }
    fn consumed(&self) -> u64 {
        self.pos as u64
    }
}

/// Size of the buffer a decompressing walk reads through.
const STREAM_BUFFER: usize = 32 * 1024;

/// A decompressing reader seen through a fixed buffer; refuses to inflate
/// past `limit` bytes.
struct StreamInput<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes taken from `inner` so far.
    inflated: u64,
    limit: u64,
}

impl<R: Read> StreamInput<R> {
    fn new(inner: R, limit: u64) -> Self {
        StreamInput {
            inner,
            buf: vec![0; STREAM_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            inflated: 0,
            limit,
        }
    }

    /// Refills the buffer; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, RecordsError> {
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.inflated += n as u64;
                    if self.inflated > self.limit {
                        return Err(RecordsError::TooLarge(self.limit));
                    }
                    self.start = 0;
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RecordsError::Decompress(e.to_string())),
            }
        }
    }
}

impl<R: Read> Input for StreamInput<R> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        if self.start == self.end && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(Some(b))
    }
    fn skip(&mut self, mut n: usize) -> Result<bool, RecordsError> {
        loop {
            let here = (self.end - self.start).min(n);
            self.start += here;
            n -= here;
            if n == 0 {
                return Ok(true);
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
    }
    fn consumed(&self) -> u64 {
        self.inflated - (self.end - self.start) as u64
    }
}

/// Kafka's unsigned varint of at most `max_bytes` bytes, zigzag-decoded.
fn varlong(input: &mut impl Input, max_bytes: u32) -> Result<i64, RecordsError> {
    let mut raw = 0u64;
    for i in 0..max_bytes {
        let Some(b) = input.byte()? else {
            return Err(malformed(
                "Incorrect declared batch size, premature EOF reached",
            ));
        };
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(malformed(format!(
        "Varint is too long, the most significant bit in the {max_bytes}th byte is set"
    )))
}

fn varint(input: &mut impl Input) -> Result<i32, RecordsError> {
    // Five bytes carry 35 bits; Kafka refuses what does not fit an i32.
    let v = varlong(input, 5)?;
    i32::try_from(v).map_err(|_| malformed("Varint is too long"))
}

/// A length that is negative (null, as Kafka reads any negative length)
/// or a byte count; skips the bytes. Returns the length (-1 for null) and
/// where the bytes began.
fn skip_bytes(input: &mut impl Input) -> Result<(i32, u64), RecordsError> {
    let len = varint(input)?;
    let start = input.consumed();
    if len < 0 {
        return Ok((-1, start));
    }
    if len > 0 && !input.skip(len as usize)? {
        return Err(malformed(
            "Incorrect declared batch size, premature EOF reached",
        ));
    }
    Ok((len, start))
}

/// A record read from an input: its fields, and where its parts lie (in
/// bytes consumed from the input's start).
#[derive(Debug, Clone, Copy)]
struct Located {
    meta: RecordMeta,
    start: u64,
    body_start: u64,
    timestamp_end: u64,
    key_start: u64,
    value_start: u64,
    end: u64,
}

fn read_record(input: &mut impl Input) -> Result<Option<Located>, RecordsError> {
    // The end of the input before a record begins is not an error here:
    // the caller compares the count.
    let first = input.consumed();
    let Some(b) = input.byte()? else {
        return Ok(None);
    };
    // The length varint, whose first byte is already read.
    let mut raw = u64::from(b & 0x7f);
    let mut more = b & 0x80 != 0;
    let mut shift = 7;
    while more {
        if shift >= 35 {
            return Err(malformed(
                "Varint is too long, the most significant bit in the 5th byte is set",
            ));
        }
        let Some(b) = input.byte()? else {
            return Err(malformed(
                "Incorrect declared batch size, premature EOF reached",
            ));
        };
        raw |= u64::from(b & 0x7f) << shift;
        more = b & 0x80 != 0;
        shift += 7;
    }
    let length = (raw >> 1) as i64 ^ -((raw & 1) as i64);
    if length < 0 || length > i64::from(i32::MAX) {
        return Err(malformed(format!("Invalid record size {length}")));
    }
    let body_start = input.consumed();
    let Some(_attributes) = input.byte()? else {
        return Err(malformed(
            "Incorrect declared batch size, premature EOF reached",
        ));
    };
    let timestamp_delta = varlong(input, 10)?;
    let timestamp_end = input.consumed();
    let offset_delta = varint(input)?;
    let (key_len, key_start) = skip_bytes(input)?;
    let (value_len, value_start) = skip_bytes(input)?;
    let headers = varint(input)?;
    if headers < 0 {
        return Err(malformed(format!(
            "Found invalid number of record headers {headers}"
        )));
    }
    for _ in 0..headers {
        let key = varint(input)?;
        if key < 0 {
            return Err(malformed(format!("Invalid negative header key size {key}")));
        }
        if !input.skip(key as usize)? {
            return Err(malformed(
                "Incorrect declared batch size, premature EOF reached",
            ));
        }
        skip_bytes(input)?;
    }
    let read = input.consumed() - body_start;
    if read != length as u64 {
        return Err(malformed(format!(
            "Invalid record size: expected to read {length} bytes in record payload, but instead read {read}"
        )));
    }
    debug_assert!(input.consumed() > first);
    Ok(Some(Located {
        meta: RecordMeta {
            offset_delta,
            timestamp_delta,
            key_len,
            value_len,
            headers,
        },
        start: first,
        body_start,
        timestamp_end,
        key_start,
        value_start,
        end: input.consumed(),
    }))
}

fn walk_input(
    input: &mut impl Input,
    count: i32,
    f: &mut dyn FnMut(usize, Located) -> Result<ControlFlow<()>, RecordsError>,
) -> Result<(), RecordsError> {
    for i in 0..count.max(0) as usize {
        match read_record(input)? {
            Some(located) => {
                if f(i, located)?.is_break() {
                    return Ok(());
                }
            }
            None => {
                return Err(malformed(
                    "Incorrect declared batch size, premature EOF reached",
                ))
            }
        }
    }
    if input.byte()?.is_some() {
        return Err(malformed(
            "Incorrect declared batch size, records still remaining in file",
        ));
    }
    Ok(())
}

/// Kafka's (xerial) snappy framing: a magic header, then blocks each
/// prefixed by its compressed length; without the header, one raw block.
struct SnappyReader<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    pos: usize,
    raw: bool,
    limit: u64,
}

const SNAPPY_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// The most a snappy block can inflate by: a 3-byte copy yields 64 bytes.
const SNAPPY_MAX_RATIO: usize = 22;
/// The xerial header: magic, then version and compatible version (i32 each).
const SNAPPY_HEADER_LEN: usize = 16;

impl<'a> SnappyReader<'a> {
    fn new(compressed: &'a [u8], limit: u64) -> Self {
        let framed = compressed.starts_with(SNAPPY_MAGIC) && compressed.len() >= SNAPPY_HEADER_LEN;
        SnappyReader {
            rest: if framed {
                &compressed[SNAPPY_HEADER_LEN..]
            } else {
                compressed
            },
            block: Vec::new(),
            pos: 0,
            raw: !framed,
            limit,
        }
    }

    fn next_block(&mut self) -> std::io::Result<bool> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        if self.rest.is_empty() {
            return Ok(false);
        }
        let block = if self.raw {
            std::mem::take(&mut self.rest)
        } else {
            if self.rest.len() < 4 {
                return Err(bad("truncated snappy block length".into()));
            }
            let len = u32::from_be_bytes(self.rest[..4].try_into().expect("4 bytes")) as usize;
            if self.rest.len() - 4 < len {
                return Err(bad("truncated snappy block".into()));
            }
            let (block, rest) = self.rest[4..].split_at(len);
            self.rest = rest;
            block
        };
        let size = snap::raw::decompress_len(block).map_err(|e| bad(e.to_string()))?;
        // The size is declared up front: refuse before allocating it what
        // the bound forbids, or what the block's bytes cannot hold (a
        // snappy element of 3 bytes yields at most 64).
        if size as u64 > self.limit || size > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(bad(format!(
                "a snappy block of {} bytes declares {size} bytes",
                block.len()
            )));
        }
        self.block.resize(size, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut self.block)
            .map_err(|e| bad(e.to_string()))?;
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A record's key and value, each `None` when null.
type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The key and value of the first record of an uncompressed batch, read in
/// place; `None` if the batch is compressed, empty or its first key is
/// malformed (a null key, and a null or malformed value, are `None` inside).
fn first_record<'a>(batch: &Batch<'a>) -> Option<KeyValue<'a>> {
    if batch.compression() != 0 || batch.records_count() < 1 {
        return None;
    }
    let body = &batch.bytes()[HEADER_LEN..];
    let mut input = SliceInput { buf: body, pos: 0 };
    let _length = varlong(&mut input, 5).ok()?;
    input.byte().ok()??; // attributes
    varlong(&mut input, 10).ok()?; // timestamp delta
    varint(&mut input).ok()?; // offset delta
    let field = |input: &mut SliceInput<'a>| -> Option<Option<&'a [u8]>> {
        let len = varint(input).ok()?;
        if len < 0 {
            return Some(None);
        }
        let end = input.pos.checked_add(usize::try_from(len).ok()?)?;
        let bytes = body.get(input.pos..end)?;
        input.pos = end;
        Some(Some(bytes))
    };
    let key = field(&mut input)?;
    // The key is read whether or not the value reads.
    let value = field(&mut input).flatten();
    Some((key, value))
}

/// The key of the first record of an uncompressed batch, read in place
/// (how a control batch's marker type is found); `None` if the batch is
/// compressed, empty or malformed, or the key is null.
pub fn first_key<'a>(batch: &Batch<'a>) -> Option<&'a [u8]> {
    first_record(batch)?.0
}

/// The value of the first record of an uncompressed batch, read in place
/// (a control batch's marker value: its version and the coordinator epoch);
/// `None` as for [`first_key`], or if the value is null.
pub fn first_value<'a>(batch: &Batch<'a>) -> Option<&'a [u8]> {
    first_record(batch)?.1
}

/// Calls `f` with the index and fields of each record of `batch`, in order,
/// checking that every record is well formed and that there are exactly as
/// many as the header declares, with nothing after them (unless `f` breaks
/// off the walk). A compressed batch is decompressed as a stream: at most
/// `max_inflated` bytes, through a fixed buffer.
pub fn walk(
    batch: &Batch<'_>,
    max_inflated: u64,
    mut f: impl FnMut(usize, RecordMeta) -> Result<ControlFlow<()>, RecordsError>,
) -> Result<(), RecordsError> {
    let body = &batch.bytes()[HEADER_LEN..];
    let count = batch.records_count();
    let f = &mut |i, located: Located| f(i, located.meta);
    match batch.compression() {
        0 => walk_input(&mut SliceInput { buf: body, pos: 0 }, count, f),
        codec => walk_input(
            &mut StreamInput::new(decoder(codec, body, max_inflated)?, max_inflated),
            count,
            f,
        ),
    }
}

/// A streaming decoder of a compressed records section.
fn decoder<'a>(
    codec: u8,
    body: &'a [u8],
    max_inflated: u64,
) -> Result<Box<dyn Read + 'a>, RecordsError> {
    let decompress = |e: std::io::Error| RecordsError::Decompress(e.to_string());
    Ok(match codec {
        1 => Box::new(flate2::read::MultiGzDecoder::new(body)),
        2 => Box::new(SnappyReader::new(body, max_inflated)),
        3 => Box::new(lz4::Decoder::new(body).map_err(decompress)?),
        4 => Box::new(zstd::stream::read::Decoder::with_buffer(body).map_err(decompress)?),
        codec => return Err(RecordsError::UnknownCodec(codec)),
    })
}

/// Where one record lies in an [`Inflated`] records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub meta: RecordMeta,
    /// The record's first byte (its length varint).
    pub start: usize,
    /// The attributes byte, after the length.
    pub body_start: usize,
    /// The first byte after the timestamp delta (the offset delta's).
    pub timestamp_end: usize,
    /// The key's first byte (meaningless for a null key).
    pub key_start: usize,
    /// The value's first byte (meaningless for a null value).
    pub value_start: usize,
    /// One past the record's last byte.
    pub end: usize,
}

/// The records section of a batch, decompressed, with each record located.
#[derive(Debug, Clone)]
pub struct Inflated<'a> {
    pub bytes: std::borrow::Cow<'a, [u8]>,
    pub records: Vec<RecordSpan>,
}

impl Inflated<'_> {
    /// The key of record `i`; `None` when it is null.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let r = &self.records[i];
        (r.meta.key_len >= 0)
            .then(|| &self.bytes[r.key_start..r.key_start + r.meta.key_len as usize])
    }
    /// The value of record `i`; `None` when it is null (a tombstone).
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        let r = &self.records[i];
        (r.meta.value_len >= 0)
            .then(|| &self.bytes[r.value_start..r.value_start + r.meta.value_len as usize])
    }
    /// The bytes of record `i`, length prefix included.
    pub fn raw(&self, i: usize) -> &[u8] {
        let r = &self.records[i];
        &self.bytes[r.start..r.end]
    }
}

/// Decompresses the records of `batch` (at most `max_inflated` bytes) and
/// locates each, checking them as [`walk`] does.
pub fn inflate<'a>(batch: &Batch<'a>, max_inflated: u64) -> Result<Inflated<'a>, RecordsError> {
    let body = &batch.bytes()[HEADER_LEN..];
    let bytes = match batch.compression() {
        0 => std::borrow::Cow::Borrowed(body),
        codec => {
            let mut out = Vec::new();
            decoder(codec, body, max_inflated)?
                .take(max_inflated.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| RecordsError::Decompress(e.to_string()))?;
            if out.len() as u64 > max_inflated {
                return Err(RecordsError::TooLarge(max_inflated));
            }
            std::borrow::Cow::Owned(out)
        }
    };
    let mut records = Vec::with_capacity(batch.records_count().clamp(0, 1 << 16) as usize);
    walk_input(
        &mut SliceInput {
            buf: &bytes,
            pos: 0,
        },
        batch.records_count(),
        &mut |_, l: Located| {
            records.push(RecordSpan {
                meta: l.meta,
                start: l.start as usize,
                body_start: l.body_start as usize,
                timestamp_end: l.timestamp_end as usize,
                key_start: l.key_start as usize,
                value_start: l.value_start as usize,
                end: l.end as usize,
            });
            Ok(ControlFlow::Continue(()))
        },
    )?;
    Ok(Inflated { bytes, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{build_batch, BatchProducer, Compression, NewRecord, CODECS};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn batch_of(values: &[Option<Vec<u8>>], compression: Compression) -> Vec<u8> {
        let records: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| NewRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: v.clone().map(Bytes::from),
                timestamp: 1000 + i as i64 * 3,
            })
            .collect();
        build_batch(BatchProducer::NONE, compression, &records).to_vec()
    }

    fn metas(b: &[u8], limit: u64) -> Result<Vec<RecordMeta>, RecordsError> {
        let mut out = Vec::new();
        walk(&Batch::parse(b).unwrap(), limit, |i, m| {
            assert_eq!(i, out.len());
            out.push(m);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    #[test]
    fn every_codec_walks_to_the_same_records() {
        let values = vec![Some(b"a".to_vec()), None, Some(vec![7; 100_000])];
        for codec in CODECS {
            let m = metas(&batch_of(&values, codec), 1 << 20).unwrap();
            assert_eq!(m.len(), 3, "{codec:?}");
            assert_eq!(
                m.iter().map(|r| r.offset_delta).collect::<Vec<_>>(),
                [0, 1, 2]
            );
            assert_eq!(
                m.iter().map(|r| r.timestamp_delta).collect::<Vec<_>>(),
                [0, 3, 6]
            );
            assert_eq!(
                m.iter().map(|r| r.value_len).collect::<Vec<_>>(),
                [1, -1, 100_000]
            );
            assert_eq!(m.iter().map(|r| r.key_len).collect::<Vec<_>>(), [2, -1, 2]);
        }
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        let values = vec![Some(vec![0; 4 << 20])];
        for codec in &CODECS[1..] {
            let b = batch_of(&values, *codec);
            assert!(b.len() < 1 << 20, "{codec:?} compresses zeros");
            assert_eq!(
                metas(&b, 1 << 20),
                Err(RecordsError::TooLarge(1 << 20)),
                "{codec:?}"
            );
            assert!(metas(&b, 8 << 20).is_ok(), "{codec:?}");
        }
    }

    #[test]
    fn a_count_that_lies_is_refused() {
        for codec in CODECS {
            let mut b = batch_of(&[Some(b"x".to_vec()), Some(b"y".to_vec())], codec);
            b[57..61].copy_from_slice(&3i32.to_be_bytes());
            assert!(
                matches!(metas(&b, 1 << 20), Err(RecordsError::Malformed(m)) if m.contains("premature EOF"))
            );
            b[57..61].copy_from_slice(&1i32.to_be_bytes());
            assert!(
                matches!(metas(&b, 1 << 20), Err(RecordsError::Malformed(m)) if m.contains("still remaining"))
            );
            b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
            assert!(metas(&b, 1 << 20).is_err());
        }
    }

    #[test]
    fn unknown_codecs_and_garbage_are_refused() {
        let mut b = batch_of(&[Some(b"x".to_vec())], Compression::None);
        b[22] = (b[22] & !7) | 7;
        assert_eq!(metas(&b, 1 << 20), Err(RecordsError::UnknownCodec(7)));
        for codec in 1..=4u8 {
            b[22] = (b[22] & !7) | codec;
            assert!(metas(&b, 1 << 20).is_err(), "codec {codec} on plain bytes");
        }
    }

    #[test]
    fn a_snappy_block_cannot_declare_more_than_its_bytes_hold() {
        let mut b = batch_of(&[Some(b"x".to_vec())], Compression::None);
        b.truncate(HEADER_LEN);
        // Raw snappy: a varint declaring 64 MiB - 1, then a few bytes.
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0x1f, 0, 0, 0, 0, 0, 0]);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[22] = (b[22] & !7) | 2;
        assert!(matches!(
            metas(&b, 256 << 20),
            Err(RecordsError::Decompress(m)) if m.contains("declares")
        ));
    }

    #[test]
    fn negative_key_and_value_lengths_read_as_null() {
        // Kafka reads any negative length as null.
        let mut b = batch_of(&[Some(b"v".to_vec())], Compression::None);
        // The record: length, attributes, ts delta, offset delta, key length.
        let key_at = HEADER_LEN + 4;
        assert_eq!(b[key_at], 4, "key length 2, zigzag");
        b[key_at] = 9; // -5
                       // Drop the two key bytes to keep the record's length right.
        b.drain(key_at + 1..key_at + 3);
        b[HEADER_LEN] -= 4; // record length (zigzag) shrinks by 2
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let m = metas(&b, 1 << 20).unwrap();
        assert_eq!((m[0].key_len, m[0].value_len), (-1, 1));
    }

    proptest! {
        /// Any bytes after a header: an answer, never a panic, and never
        /// more records than declared.
        #[test]
        fn arbitrary_records_never_panic(codec in 0u8..8, count in -2i32..6, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = batch_of(&[Some(b"x".to_vec())], Compression::None);
            b.truncate(HEADER_LEN);
            b.extend_from_slice(&body);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[22] = (b[22] & !7) | codec;
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let mut seen = 0;
            let _ = walk(&Batch::parse(&b).unwrap(), 1 << 16, |_, _| { seen += 1; Ok(ControlFlow::Continue(())) });
            prop_assert!(seen <= count.max(0));
        }

        /// Well-formed batches of any codec walk to what was encoded.
        #[test]
        fn encoded_batches_walk_back(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)), 1..20), codec in 0usize..5) {
            let b = batch_of(&values, CODECS[codec]);
            let m = metas(&b, 1 << 20).unwrap();
            prop_assert_eq!(m.len(), values.len());
            for (r, v) in m.iter().zip(&values) {
                prop_assert_eq!(r.value_len, v.as_ref().map_or(-1, |v| v.len() as i32));
            }
        }
    }
}
