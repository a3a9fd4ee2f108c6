//! One segment: a `.log` file of whole batches and its in-memory indexes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strom_protocol::record_walk;
use strom_protocol::records::{self, Batch, HEADER_LEN};

use crate::error::{IoContext, StorageError};
use crate::file_pool::PooledFile;
use crate::index::{self, OffsetEntry, TimeEntry};

/// The file name stem of a segment with this base offset.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Parses `00000000000000000042.log` to 42.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// What recovery found in a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanOutcome {
    Clean,
    /// Bytes from `valid_size` on were torn or corrupt and were cut off.
    Truncated {
        valid_size: u64,
        reason: String,
    },
}

pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    file: PooledFile,
    /// Size, end offset and indexes.
    ix: Indexing,
    /// Wall-clock ms when the segment was created (its file's mtime once
    /// reopened): `segment.ms` counts from it when no batch has a timestamp.
    created_ms: i64,
    /// How much earlier than `segment.ms` this segment rolls.
    roll_jitter_ms: i64,
    /// The index files on disk describe the segment as it is (it was opened
    /// from them, or they were written since its last append).
    indexes_current: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("size", &self.ix.size)
            .field("next_offset", &self.ix.next_offset)
            .finish()
    }
}

/// Where a read starts: the position of the batch holding an offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub(crate) position: u64,
}

/// What a segment knows of its batches: its size and end offset, its
/// largest timestamp, and its offset and time indexes (one entry per
/// `index.interval.bytes`). The log's segments and the cleaner's output
/// are indexed alike by it.
#[derive(Debug, Clone)]
pub(crate) struct Indexing {
    base_offset: i64,
    /// Bytes of whole batches in the file.
    pub(crate) size: u64,
    /// One past the last offset stored here (the base offset when empty).
    pub(crate) next_offset: i64,
    pub(crate) index: Vec<OffsetEntry>,
    pub(crate) time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
    /// Largest batch max timestamp and the base offset of its batch.
    pub(crate) max_timestamp: i64,
    max_timestamp_batch: i64,
    /// Max timestamp of the first batch, for `segment.ms`.
    pub(crate) first_timestamp: Option<i64>,
}

impl Indexing {
    pub(crate) fn new(base_offset: i64) -> Self {
        Indexing {
            base_offset,
            size: 0,
            next_offset: base_offset,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            max_timestamp: -1,
            max_timestamp_batch: base_offset,
            first_timestamp: None,
        }
    }

    /// The encoded offset and time index files, as they are when the
    /// segment is closed.
    pub(crate) fn encode(&mut self) -> (Vec<u8>, Vec<u8>) {
        self.maybe_append_time_entry();
        (
            index::encode_offsets(&self.index),
            index::encode_times(&self.time_index),
        )
    }

    fn observe(&mut self, base: i64, last: i64, max_ts: i64) {
        if self.first_timestamp.is_none() {
            self.first_timestamp = Some(max_ts);
        }
        if max_ts > self.max_timestamp {
            self.max_timestamp = max_ts;
            self.max_timestamp_batch = base;
        }
        self.next_offset = last + 1;
    }

    /// Accounts for a batch just written at `self.size`.
    pub(crate) fn index_batch(
        &mut self,
        base: i64,
        last: i64,
        max_ts: i64,
        size: u64,
        interval: u64,
    ) {
        if self.bytes_since_index >= interval {
            self.index.push(OffsetEntry {
                relative_offset: (base - self.base_offset) as u32,
                position: self.size as u32,
            });
            self.maybe_append_time_entry();
            self.bytes_since_index = 0;
        }
        self.observe(base, last, max_ts);
        self.size += size;
        self.bytes_since_index += size;
    }

    pub(crate) fn maybe_append_time_entry(&mut self) {
        if self.max_timestamp < 0 {
            return;
        }
        let grew = self
            .time_index
            .last()
            .is_none_or(|e| e.timestamp < self.max_timestamp);
        let entry = TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: (self.max_timestamp_batch - self.base_offset) as u32,
        };
        let offset_grew = self
            .time_index
            .last()
            .is_none_or(|e| e.relative_offset < entry.relative_offset);
        if grew && offset_grew {
            self.time_index.push(entry);
        }
    }
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base);
        (
            dir.join(format!("{stem}.log")),
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    pub fn log_path(&self) -> PathBuf {
        Self::paths(&self.dir, self.base_offset).0
    }

    /// The data file, open (see `file_pool`).
    fn data(&self) -> Result<std::sync::Arc<File>, StorageError> {
        self.file.get().at(&self.log_path())
    }

    fn empty(dir: &Path, base_offset: i64, file: File) -> Segment {
        let file = PooledFile::new(&Self::paths(dir, base_offset).0, file);
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            ix: Indexing::new(base_offset),
            created_ms: wall_clock_ms(),
            roll_jitter_ms: 0,
            indexes_current: false,
        }
    }

    /// Creates a new, empty segment (replacing any stale files of that name).
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment, StorageError> {
        let (log, idx, tidx) = Self::paths(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log)
            .at(&log)?;
        let _ = std::fs::remove_file(idx);
        let _ = std::fs::remove_file(tidx);
        let mut seg = Self::empty(dir, base_offset, file);
        // An empty segment needs no index files: opening it without them
        // scans nothing.
        seg.indexes_current = true;
        Ok(seg)
    }

    fn open_file(dir: &Path, base_offset: i64) -> Result<(File, u64, i64), StorageError> {
        let (log, _, _) = Self::paths(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log)
            .at(&log)?;
        let meta = file.metadata().at(&log)?;
        Ok((file, meta.len(), mtime_ms(&meta)))
    }

    /// Opens a segment whose index files can be trusted (it was closed
    /// cleanly); `None` if they are missing or malformed.
    pub(crate) fn open_indexed(
        dir: &Path,
        base_offset: i64,
    ) -> Result<Option<Segment>, StorageError> {
        let (_, idx, tidx) = Self::paths(dir, base_offset);
        let (file, len, mtime) = Self::open_file(dir, base_offset)?;
        let (Ok(idx_bytes), Ok(tidx_bytes)) = (std::fs::read(&idx), std::fs::read(&tidx)) else {
            return Ok(None);
        };
        let (Some(index), Some(time_index)) = (
            index::decode_offsets(&idx_bytes, len),
            index::decode_times(&tidx_bytes),
        ) else {
            return Ok(None);
        };
        let mut seg = Self::empty(dir, base_offset, file);
        seg.created_ms = mtime;
        seg.ix.size = len;
        if let Some(last) = time_index.last() {
            seg.ix.max_timestamp = last.timestamp;
            seg.ix.max_timestamp_batch = base_offset + i64::from(last.relative_offset);
        }
        let tail_start = index.last().map_or(0, |e| u64::from(e.position));
        seg.ix.index = index;
        seg.ix.time_index = time_index;
        // Walk the headers after the last index entry to learn the end offset.
        // The headers are trusted only while their offsets grow from the
        // last index entry: anything else sends the segment to recovery.
        let mut pos = tail_start;
        let mut expected = seg
            .ix
            .index
            .last()
            .map_or(base_offset, |e| base_offset + i64::from(e.relative_offset));
        let mut header = [0u8; HEADER_LEN];
        while pos < len {
            if seg.data()?.read_exact_at(&mut header, pos).is_err() {
                return Ok(None);
            }
            let Ok(size) = records::batch_size(&header) else {
                return Ok(None);
            };
            let batch = HeaderView(&header);
            let delta = batch.last_offset_delta();
            let Some(next) = batch
                .base_offset()
                .checked_add(i64::from(delta))
                .and_then(|l| l.checked_add(1))
                .filter(|_| delta >= 0 && batch.base_offset() >= expected)
            else {
                return Ok(None);
            };
            seg.ix
                .observe(batch.base_offset(), next - 1, batch.max_timestamp());
            expected = next;
            pos += size as u64;
        }
        if pos != len {
            return Ok(None);
        }
        seg.ix.first_timestamp = seg.read_first_timestamp();
        seg.indexes_current = true;
        Ok(Some(seg))
    }

    /// Opens a segment by reading every batch, checking its CRC and offsets,
    /// rebuilding the indexes and truncating the file at the first bad batch.
    pub(crate) fn recover(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
    ) -> Result<(Segment, ScanOutcome), StorageError> {
        let (file, len, mtime) = Self::open_file(dir, base_offset)?;
        let mut seg = Self::empty(dir, base_offset, file);
        seg.created_ms = mtime;
        let mut pos = 0u64;
        let mut buf = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        let outcome = loop {
            if pos == len {
                break ScanOutcome::Clean;
            }
            if len - pos < HEADER_LEN as u64 {
                break ScanOutcome::Truncated {
                    valid_size: pos,
                    reason: format!("{} trailing bytes", len - pos),
                };
            }
            seg.data()?
                .read_exact_at(&mut header, pos)
                .at(&seg.log_path())?;
            let size = match records::batch_size(&header) {
                Ok(s) if pos + s as u64 <= len => s,
                Ok(s) => {
                    break ScanOutcome::Truncated {
                        valid_size: pos,
                        reason: format!("batch of {s} bytes runs past the end"),
                    }
                }
                Err(e) => {
                    break ScanOutcome::Truncated {
                        valid_size: pos,
                        reason: e.to_string(),
                    }
                }
            };
            buf.resize(size, 0);
            seg.data()?
                .read_exact_at(&mut buf, pos)
                .at(&seg.log_path())?;
            let batch = Batch::parse(&buf).expect("size checked");
            if let Err(e) = batch.verify() {
                break ScanOutcome::Truncated {
                    valid_size: pos,
                    reason: e.to_string(),
                };
            }
            // Offsets only grow; a cleaned segment has gaps between batches.
            if batch.base_offset() < seg.ix.next_offset && seg.ix.size > 0
                || batch.base_offset() < base_offset
                || batch.last_offset_delta() < 0
            {
                break ScanOutcome::Truncated {
                    valid_size: pos,
                    reason: format!(
                        "batch at offset {} does not follow {}",
                        batch.base_offset(),
                        seg.ix.next_offset
                    ),
                };
            }
            seg.ix.index_batch(
                batch.base_offset(),
                batch.last_offset(),
                batch.max_timestamp(),
                size as u64,
                index_interval,
            );
            pos += size as u64;
        };
        if let ScanOutcome::Truncated { valid_size, .. } = &outcome {
            seg.data()?.set_len(*valid_size).at(&seg.log_path())?;
            seg.data()?.sync_all().at(&seg.log_path())?;
        }
        seg.indexes_current = seg.ix.size == 0;
        Ok((seg, outcome))
    }

    fn read_first_timestamp(&self) -> Option<i64> {
        let mut header = [0u8; HEADER_LEN];
        (self.ix.size >= HEADER_LEN as u64
            && self
                .data()
                .is_ok_and(|f| f.read_exact_at(&mut header, 0).is_ok()))
        .then(|| HeaderView(&header).max_timestamp())
    }

    /// Appends whole, already validated batches whose offsets continue this
    /// segment. `records` may hold several batches.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        index_interval: u64,
    ) -> Result<(), StorageError> {
        self.indexes_current = false;
        self.data()?
            .write_all_at(records, self.ix.size)
            .at(&self.log_path())?;
        for batch in records::batches(records) {
            let b = batch?;
            self.ix.index_batch(
                b.base_offset(),
                b.last_offset(),
                b.max_timestamp(),
                b.size() as u64,
                index_interval,
            );
        }
        Ok(())
    }

    /// Removes every batch whose last offset is at or past `offset` (a batch
    /// holding `offset` goes whole, as Kafka truncates). The index files go
    /// first, so a crash before they are written again makes the next open
    /// recover this segment by scanning it; the indexes in memory are
    /// rebuilt from the headers of the batches that remain.
    pub(crate) fn truncate_to(
        &mut self,
        offset: i64,
        index_interval: u64,
    ) -> Result<(), StorageError> {
        let Some(Position { position }) = self.find(offset)? else {
            return Ok(());
        };
        let (_, idx, tidx) = Self::paths(&self.dir, self.base_offset);
        for p in [idx, tidx] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&p),
                _ => {}
            }
        }
        self.indexes_current = false;
        let file = self.data()?;
        file.set_len(position).at(&self.log_path())?;
        file.sync_all().at(&self.log_path())?;
        let mut ix = Indexing::new(self.base_offset);
        let mut header = [0u8; HEADER_LEN];
        let mut pos = 0u64;
        while pos < position {
            file.read_exact_at(&mut header, pos).at(&self.log_path())?;
            let size =
                records::batch_size(&header).map_err(|e| self.corrupt(e.to_string()))? as u64;
            let view = HeaderView(&header);
            ix.index_batch(
                view.base_offset(),
                view.last_offset(),
                view.max_timestamp(),
                size,
                index_interval,
            );
            pos += size;
        }
        self.ix = ix;
        self.ix.first_timestamp = self.read_first_timestamp();
        Ok(())
    }

    /// Finds the position of the batch that holds `offset` (or the first
    /// batch after it), scanning forward from the nearest index entry.
    pub(crate) fn find(&self, offset: i64) -> Result<Option<Position>, StorageError> {
        let rel = (offset.max(self.base_offset) - self.base_offset).min(u32::MAX as i64) as u32;
        let mut pos = index::floor_offset(&self.ix.index, rel).map_or(0, |e| u64::from(e.position));
        let mut header = [0u8; HEADER_LEN];
        let file = self.data()?;
        while pos < self.ix.size {
            file.read_exact_at(&mut header, pos).at(&self.log_path())?;
            let view = HeaderView(&header);
            if view.last_offset() >= offset {
                return Ok(Some(Position { position: pos }));
            }
            pos += records::batch_size(&header).map_err(|e| self.corrupt(e.to_string()))? as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting at `from`: as many as fit in `max_bytes`
    /// (at least one when `min_one`), none whose base offset is at or past
    /// `max_offset`.
    pub(crate) fn read(
        &self,
        from: Position,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
    ) -> Result<Vec<u8>, StorageError> {
        let available = (self.ix.size - from.position) as usize;
        let mut want = max_bytes.min(available);
        let mut buf = vec![0u8; want.max(HEADER_LEN.min(available))];
        self.data()?
            .read_exact_at(&mut buf, from.position)
            .at(&self.log_path())?;
        // Walk the batches in what was read, keeping whole ones below the bound.
        let mut end = 0usize;
        loop {
            let rest = &buf[end..];
            let Ok(size) = records::batch_size(rest) else {
                break;
            };
            let head = HeaderView(rest);
            if head.base_offset() >= max_offset {
                break;
            }
            if end + size > buf.len() {
                if end == 0 && min_one && size <= available {
                    // The first batch is larger than the limit: send it whole.
                    want = size;
                    buf.resize(want, 0);
                    self.data()?
                        .read_exact_at(&mut buf, from.position)
                        .at(&self.log_path())?;
                    end = size;
                }
                break;
            }
            if end + size > max_bytes && !(end == 0 && min_one) {
                break;
            }
            end += size;
        }
        buf.truncate(end);
        Ok(buf)
    }

    /// The first record at or after `timestamp` in this segment, if any.
    pub(crate) fn find_by_timestamp(
        &self,
        timestamp: i64,
        from_offset: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        if self.ix.max_timestamp < timestamp {
            return Ok(None);
        }
        let start = index::floor_time(&self.ix.time_index, timestamp)
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            })
            .max(from_offset);
        let Some(mut pos) = self.find(start)?.map(|p| p.position) else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        while pos < self.ix.size {
            let batch = self.read_batch_at(pos, &mut buf)?;
            let b = Batch::parse(batch).map_err(|e| self.corrupt(e.to_string()))?;
            if b.max_timestamp() >= timestamp {
                let found = first_record(&b, |offset, ts| ts >= timestamp && offset >= from_offset)
                    .map_err(|e| self.corrupt(e.to_string()))?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            pos += b.size() as u64;
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first such), as (offset, timestamp).
    pub(crate) fn max_timestamp_record(&self) -> Result<Option<(i64, i64)>, StorageError> {
        if self.ix.max_timestamp < 0 {
            return Ok(None);
        }
        let Some(pos) = self.find(self.ix.max_timestamp_batch)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        let batch = self.read_batch_at(pos.position, &mut buf)?;
        let b = Batch::parse(batch).map_err(|e| self.corrupt(e.to_string()))?;
        let max = self.ix.max_timestamp;
        let found = first_record(&b, |_, ts| ts == max).map_err(|e| self.corrupt(e.to_string()))?;
        Ok(Some(found.map_or((b.last_offset(), max), |(offset, _)| {
            (offset, max)
        })))
    }

    fn read_batch_at<'b>(&self, pos: u64, buf: &'b mut Vec<u8>) -> Result<&'b [u8], StorageError> {
        let mut header = [0u8; HEADER_LEN];
        self.data()?
            .read_exact_at(&mut header, pos)
            .at(&self.log_path())?;
        let size = records::batch_size(&header).map_err(|e| self.corrupt(e.to_string()))?;
        buf.resize(size, 0);
        self.data()?.read_exact_at(buf, pos).at(&self.log_path())?;
        Ok(buf)
    }

    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path(),
            reason,
        }
    }

    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        self.data()?.sync_data().at(&self.log_path())
    }

    /// Flushes the data and writes the index files, fsynced; afterwards the
    /// segment can be opened without a scan.
    pub(crate) fn close(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.write_indexes()
    }

    /// A second handle on the data file, for an fsync done elsewhere.
    pub(crate) fn file_handle(&self) -> Result<File, StorageError> {
        self.data()?.try_clone().at(&self.log_path())
    }

    /// Writes the index files (fsynced). A segment that is no longer
    /// written to keeps them current from then on.
    pub(crate) fn write_indexes(&mut self) -> Result<(), StorageError> {
        let (_, idx, tidx) = Self::paths(&self.dir, self.base_offset);
        let (offsets, times) = self.ix.encode();
        write_synced(&idx, &offsets)?;
        write_synced(&tidx, &times)?;
        self.indexes_current = true;
        Ok(())
    }

    /// Removes the segment's files.
    pub(crate) fn delete(self) -> Result<(), StorageError> {
        let (log, idx, tidx) = Self::paths(&self.dir, self.base_offset);
        self.file.close();
        for p in [idx, tidx] {
            let _ = std::fs::remove_file(p);
        }
        std::fs::remove_file(&log).at(&log)
    }

    /// Renames the segment's files with the `.deleted` suffix (removed
    /// later, after `file.delete.delay.ms`, as Kafka does); returns the new
    /// names. The data file goes first: once it is renamed the segment is no
    /// longer part of the log, even after a crash.
    pub(crate) fn retire(self) -> Result<Vec<PathBuf>, StorageError> {
        let (log, idx, tidx) = Self::paths(&self.dir, self.base_offset);
        self.file.close();
        let mut renamed = Vec::new();
        for (i, p) in [log, idx, tidx].into_iter().enumerate() {
            let to = deleted_name(&p);
            match std::fs::rename(&p, &to) {
                Ok(()) => renamed.push(to),
                // Index files may not exist (an active segment never closed).
                Err(e) if i > 0 && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::Io { path: p, source: e }),
            }
        }
        Ok(renamed)
    }

    /// The largest timestamp retention compares with now: the largest
    /// record timestamp, or the file's modification time when no record
    /// has one (Kafka's `largestTimestamp`).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.ix.max_timestamp >= 0 {
            return self.ix.max_timestamp;
        }
        self.file
            .get()
            .and_then(|f| f.metadata())
            .map_or(self.created_ms, |m| mtime_ms(&m))
    }

    /// How long, by `segment.ms`'s clock, this segment has been rolling
    /// toward a time-based roll when a batch with `incoming_max_ts` (its
    /// largest timestamp) arrives at wall-clock `now_ms`: from the first
    /// batch's timestamp to the incoming one, or, when the first batch had
    /// none, since the segment was created (Kafka's `timeWaitedForRoll`).
    pub(crate) fn time_waited_for_roll(&self, incoming_max_ts: i64, now_ms: i64) -> i64 {
        match self.ix.first_timestamp {
            Some(t) if t >= 0 => incoming_max_ts.saturating_sub(t),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// The max timestamp of the first batch (what `max.compaction.lag.ms`
    /// measures a segment's oldest record by).
    pub(crate) fn first_batch_timestamp(&self) -> Option<i64> {
        self.ix.first_timestamp
    }

    pub(crate) fn roll_jitter_ms(&self) -> i64 {
        self.roll_jitter_ms
    }
    pub(crate) fn set_roll_jitter_ms(&mut self, jitter: i64) {
        self.roll_jitter_ms = jitter;
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// Whether the index files on disk are up to date with the segment.
    pub(crate) fn indexes_current(&self) -> bool {
        self.indexes_current
    }
    pub fn size(&self) -> u64 {
        self.ix.size
    }
    pub fn next_offset(&self) -> i64 {
        self.ix.next_offset
    }
    pub fn max_timestamp(&self) -> i64 {
        self.ix.max_timestamp
    }
    pub(crate) fn index_len(&self) -> usize {
        self.ix.index.len()
    }
}

/// How far a stored batch is inflated to look records up by time. Batches
/// were bounded when produced; this bounds what an older log may hold.
const LOOKUP_INFLATE_LIMIT: u64 = 256 << 20;

/// The first record of `batch` for which `wanted(offset, timestamp)` holds,
/// decompressing as a stream (LogAppendTime batches: every record has the
/// batch's max timestamp).
fn first_record(
    batch: &Batch<'_>,
    mut wanted: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, record_walk::RecordsError> {
    let mut found = None;
    let result = record_walk::walk(batch, LOOKUP_INFLATE_LIMIT, |_, r| {
        let offset = batch.base_offset() + i64::from(r.offset_delta);
        let ts = batch.record_timestamp(r.timestamp_delta);
        if wanted(offset, ts) {
            found = Some((offset, ts));
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    });
    result.map(|()| found)
}

/// `name.log` -> `name.log.deleted`.
pub(crate) fn deleted_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".deleted");
    PathBuf::from(name)
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(wall_clock_ms, |d| d.as_millis() as i64)
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

/// The few header fields needed from a 61-byte header without a whole batch.
pub(crate) struct HeaderView<'a>(pub(crate) &'a [u8]);

impl HeaderView<'_> {
    fn base_offset(&self) -> i64 {
        i64::from_be_bytes(self.0[0..8].try_into().expect("8 bytes"))
    }
    fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(self.0[23..27].try_into().expect("4 bytes"))
    }
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.0[35..43].try_into().expect("8 bytes"))
    }
}
