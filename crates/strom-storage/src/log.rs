//! The log of one partition: segments, offsets, roll, flush, retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strom_protocol::records::{self, Batch};
use tracing::{info, warn};

use crate::cleaner::{self, CleanJob, Cleaned, Dirtiness, Source};
use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::segment::{self, ScanOutcome, Segment};
use crate::txn_index::{self, AbortedTxn};

/// Marks a log directory as cleanly closed: its index files are current.
const CLEAN_SHUTDOWN: &str = ".clean_shutdown";

/// The log start offset, when DeleteRecords moved it past the first
/// segment's base: its decimal digits. (Kafka keeps these for a whole log
/// directory in `log-start-offset-checkpoint`; one file per log lets a
/// partition move or go without rewriting the others'.)
const LOG_START_OFFSET: &str = "log-start-offset";

/// The cleaner's checkpoint: the offset below which the log is clean, in
/// the same format. (Kafka's `cleaner-offset-checkpoint`, per log.)
const CLEANER_OFFSET: &str = "cleaner-offset";

/// The log start offset `dir` records, if it holds a readable one.
pub fn read_log_start_offset(dir: &Path) -> Option<i64> {
    read_offset_file(&dir.join(LOG_START_OFFSET))
}

fn read_offset_file(path: &Path) -> Option<i64> {
    parse_log_start_offset(&std::fs::read(path).ok()?)
}

/// Parses the contents of a `log-start-offset` (or `cleaner-offset`)
/// file: a non-negative decimal, optionally followed by a newline.
pub fn parse_log_start_offset(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn oldest_size(segments: &BTreeMap<i64, Segment>) -> i64 {
    segments.values().next().map_or(0, |s| s.size() as i64)
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The timestamp written for LogAppendTime topics.
    pub log_append_time: Option<i64>,
    /// The base offset of a segment this append rolled to, if it rolled.
    pub rolled_to: Option<i64>,
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchData {
    /// Whole batches, as stored.
    pub records: Vec<u8>,
}

/// An offset found by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    /// The aborted-transaction index of each segment, by base offset. The
    /// memory copy is what reads use; the files follow it.
    aborted: BTreeMap<i64, Vec<AbortedTxn>>,
    /// Set when an index entry could not be written to its file: the files
    /// are rewritten from memory at the next roll, flush or close, which
    /// fail (and so stop the producer snapshot that would make replay skip
    /// the marker) until that succeeds.
    txn_index_dirty: bool,
    log_start_offset: i64,
    unflushed_records: u64,
    /// Wall-clock ms of the oldest write not yet fsynced.
    unflushed_since: Option<i64>,
    /// Data files of rolled segments still to be fsynced. Like Kafka, the
    /// roll does not wait for that fsync: the owner runs it off the append
    /// path (see [`Log::take_pending_flushes`]).
    pending_flushes: Vec<(PathBuf, std::fs::File)>,
    /// Files of segments deleted by retention (renamed `.deleted`), with
    /// the wall-clock ms after which they are removed.
    pending_deletes: Vec<(i64, Vec<PathBuf>)>,
    /// The cleaner's checkpoint: the log below it is clean.
    first_dirty_offset: i64,
}

/// A random jitter in `[0, min(jitter, segment_ms))`, drawn per segment.
fn roll_jitter(config: &LogConfig) -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let bound = config.segment_jitter_ms.min(config.segment_ms);
    if bound <= 0 {
        return 0;
    }
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (random % bound as u64) as i64
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering from an
    /// unclean shutdown: the last segment, and any segment whose index files
    /// are missing, is checked batch by batch; everything from the first
    /// torn or corrupt batch on is removed.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, StorageError> {
        std::fs::create_dir_all(dir).at(dir)?;
        let mut names = file_names(dir)?;
        if cleaner::recover_swaps(dir, &names)? {
            names = file_names(dir)?;
        }
        // Segments deleted before a restart are gone for good now.
        for name in names.iter().filter(|n| n.ends_with(".deleted")) {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| segment::parse_log_name(n))
            .collect();
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut cut = false;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            if cut {
                warn!(dir = %dir.display(), base, "removing segment after a corrupt one");
                let _ = std::fs::remove_file(dir.join(format!("{}.log", segment::file_stem(base))));
                let _ = std::fs::remove_file(txn_index::path(dir, base));
                continue;
            }
            let trusted = if clean || !last {
                Segment::open_indexed(dir, base)?
            } else {
                None
            };
            let seg = match trusted {
                Some(s) => s,
                None => {
                    let (s, outcome) = Segment::recover(dir, base, config.index_interval_bytes)?;
                    if let ScanOutcome::Truncated { valid_size, reason } = outcome {
                        warn!(dir = %dir.display(), base, valid_size, %reason, "truncated log segment during recovery");
                        cut = true;
                    }
                    s
                }
            };
            // Offsets must go on from the previous segment (not always at
            // its end: the cleaner may have removed its last records).
            if let Some(prev) = segments
                .values()
                .next_back()
                .map(|p: &Segment| p.next_offset())
            {
                // (A segment recovery just cut must go on from it too.)
                if seg.base_offset() < prev {
                    warn!(dir = %dir.display(), base, expected = prev, "segment does not continue the log; removing the rest");
                    cut = true;
                    seg.delete()?;
                    let _ = std::fs::remove_file(txn_index::path(dir, base));
                    continue;
                }
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            let _ = std::fs::remove_file(txn_index::path(dir, 0));
            segments.insert(0, Segment::create(dir, 0)?);
        }
        let mut aborted = BTreeMap::new();
        for (&base, seg) in &segments {
            aborted.insert(base, txn_index::load(dir, base, seg.next_offset())?);
        }
        let first_base = *segments.keys().next().expect("one segment");
        let end = segments
            .values()
            .next_back()
            .expect("one segment")
            .next_offset();
        // A recorded start beyond what recovery kept is the log end: the
        // records it names were deleted and must not come back.
        let log_start_offset = match read_log_start_offset(dir) {
            Some(recorded) => recorded.clamp(first_base, end.max(first_base)),
            None => first_base,
        };
        if clean {
            std::fs::remove_file(&marker).at(&marker)?;
        }
        for seg in segments.values_mut() {
            seg.set_roll_jitter_ms(roll_jitter(&config));
        }
        let first_dirty_offset = read_offset_file(&dir.join(CLEANER_OFFSET))
            .unwrap_or(log_start_offset)
            .clamp(log_start_offset, end.max(log_start_offset));
        let log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            aborted,
            txn_index_dirty: false,
            log_start_offset,
            unflushed_records: 0,
            unflushed_since: None,
            pending_flushes: Vec::new(),
            pending_deletes: Vec::new(),
            first_dirty_offset,
        };
        info!(dir = %dir.display(), start = log.log_start_offset, end = log.log_end_offset(), segments = log.segments.len(), clean, "log opened");
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Appends validated batches as the leader: assigns offsets from the log
    /// end, stamps the leader epoch and, for LogAppendTime, the time.
    pub fn append(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let first_offset = self.log_end_offset();
        let mut next = first_offset;
        let mut pos = 0;
        let mut count = 0u64;
        let mut max_timestamp = -1i64;
        while pos < records.len() {
            let size = records::batch_size(&records[pos..])?;
            let batch = &mut records[pos..pos + size];
            records::set_base_offset(batch, next);
            records::set_partition_leader_epoch(batch, leader_epoch);
            if self.config.log_append_time {
                records::set_log_append_time(batch, now_ms);
            }
            let view = Batch::parse(batch)?;
            max_timestamp = max_timestamp.max(view.max_timestamp());
            next = view.last_offset() + 1;
            count += view.records_count().max(0) as u64;
            pos += size;
        }
        let rolled_to = self.write_batches(records, next - 1, max_timestamp, count, now_ms)?;
        Ok(AppendInfo {
            first_offset,
            last_offset: next - 1,
            log_append_time: self.config.log_append_time.then_some(now_ms),
            rolled_to,
        })
    }

    /// Writes checked batches ending at `last_offset` to the active segment
    /// (rolled first if due) and counts them towards `flush.messages`:
    /// where the log rolled to, if it did.
    fn write_batches(
        &mut self,
        records: &[u8],
        last_offset: i64,
        max_timestamp: i64,
        count: u64,
        now_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        let rolled_to =
            self.maybe_roll(records.len() as u64, last_offset, max_timestamp, now_ms)?;
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(records, interval)?;
        self.unflushed_records += count;
        self.unflushed_since.get_or_insert(now_ms);
        if self.unflushed_records >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(rolled_to)
    }

    /// Appends batches as a follower: as the leader wrote them, offsets,
    /// leader epochs and timestamps kept. Each batch must be whole and
    /// intact (CRC) and its offsets must go on from the log end (forward
    /// gaps are allowed: a compacted leader's log has them); anything else
    /// is refused before a byte is written.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let first_offset = self.log_end_offset();
        let mut next = first_offset;
        let mut pos = 0;
        let mut count = 0u64;
        let mut max_timestamp = -1i64;
        let mut first = None;
        while pos < records.len() {
            let size = records::batch_size(&records[pos..])?;
            if pos + size > records.len() {
                return Err(StorageError::UnexpectedAppend(format!(
                    "a batch of {size} bytes runs past the {} bytes fetched",
                    records.len()
                )));
            }
            let view = Batch::parse(&records[pos..pos + size])?;
            view.verify()?;
            if view.base_offset() < next || view.last_offset() < view.base_offset() {
                return Err(StorageError::UnexpectedAppend(format!(
                    "a replicated batch at offsets {}..={} does not follow the log end {next}",
                    view.base_offset(),
                    view.last_offset()
                )));
            }
            first.get_or_insert(view.base_offset());
            max_timestamp = max_timestamp.max(view.max_timestamp());
            next = view.last_offset() + 1;
            count += view.records_count().max(0) as u64;
            pos += size;
        }
        let Some(first) = first else {
            return Ok(AppendInfo {
                first_offset,
                last_offset: first_offset - 1,
                log_append_time: None,
                rolled_to: None,
            });
        };
        // (A gap before `first` is kept: the segment's relative offsets
        // reach it, and the roll starts a new segment where they would not.)
        let rolled_to = self.write_batches(records, next - 1, max_timestamp, count, now_ms)?;
        Ok(AppendInfo {
            first_offset: first,
            last_offset: next - 1,
            log_append_time: None,
            rolled_to,
        })
    }

    /// Removes everything at and after `offset` (a batch that holds it goes
    /// whole), as a follower does where its log diverged from the leader's:
    /// later segments are deleted newest first, the one holding `offset` is
    /// cut, and the aborted-transaction index drops what it no longer
    /// holds. Returns the new log end. Below the log start, the log is
    /// emptied and starts again at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, StorageError> {
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        self.sync_txn_indexes()?;
        while let Some((&base, _)) = self.segments.iter().next_back() {
            if base < offset || self.segments.len() == 1 {
                break;
            }
            let seg = self.segments.remove(&base).expect("present");
            seg.delete()?;
            self.aborted.remove(&base);
            let _ = std::fs::remove_file(txn_index::path(&self.dir, base));
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().truncate_to(offset, interval)?;
        let end = self.log_end_offset();
        let base = self.active().base_offset();
        if let Some(entries) = self.aborted.get_mut(&base) {
            let before = entries.len();
            entries.retain(|t| t.last_offset < end);
            if entries.len() != before {
                txn_index::rewrite(&self.dir, base, entries)?;
            }
        }
        // Rolled segments still waiting for their fsync may be gone.
        self.pending_flushes.retain(|(path, _)| path.exists());
        self.first_dirty_offset = self.first_dirty_offset.min(end);
        sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), offset, end, "log truncated");
        Ok(end)
    }

    /// Deletes every segment and starts the log empty at `offset`: a
    /// follower whose log is out of the leader's range (below its log
    /// start, say) starts again at the leader's log start.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<i64, StorageError> {
        while let Some((&base, _)) = self.segments.iter().next_back() {
            let seg = self.segments.remove(&base).expect("present");
            seg.delete()?;
            let _ = std::fs::remove_file(txn_index::path(&self.dir, base));
        }
        self.aborted.clear();
        self.pending_flushes.clear();
        self.segments
            .insert(offset, Segment::create(&self.dir, offset)?);
        self.aborted.insert(offset, Vec::new());
        let path = self.dir.join(LOG_START_OFFSET);
        segment::write_synced(&path, format!("{offset}\n").as_bytes())?;
        sync_dir(&self.dir)?;
        self.log_start_offset = offset;
        self.first_dirty_offset = offset;
        info!(dir = %self.dir.display(), offset, "log emptied, to start again");
        Ok(offset)
    }

    /// Kafka's `shouldRoll`: the active segment rolls before an append that
    /// would overfill it (or its offset index), whose offsets it could not
    /// index, or whose largest timestamp is `segment.ms` (less the
    /// segment's jitter) past the segment's first batch. Time is judged by
    /// record timestamps, so records stamped in the past do not each get a
    /// segment of their own.
    fn maybe_roll(
        &mut self,
        incoming: u64,
        last_offset: i64,
        incoming_max_ts: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        let c = &self.config;
        let seg = self.active();
        if seg.size() == 0 {
            return Ok(None);
        }
        let full = seg.size() + incoming > c.segment_bytes;
        let old = seg.time_waited_for_roll(incoming_max_ts, now_ms)
            > c.segment_ms.saturating_sub(seg.roll_jitter_ms());
        let offset_overflow = last_offset - seg.base_offset() > i64::from(u32::MAX >> 1);
        let index_full = (seg.index_len() as u64 + 1) * 8 > c.segment_index_bytes;
        if !(full || old || offset_overflow || index_full) {
            return Ok(None);
        }
        Ok(Some(self.roll()?))
    }

    /// Closes the active segment (indexes written; its data fsync queued,
    /// see [`Log::take_pending_flushes`]) and starts a new one at the log end
    /// offset. Returns the new segment's base offset.
    pub fn roll(&mut self) -> Result<i64, StorageError> {
        self.sync_txn_indexes()?;
        let base = self.log_end_offset();
        let active = self.active_mut();
        active.write_indexes()?;
        let pending = (active.log_path(), active.file_handle()?);
        let active_base = active.base_offset();
        self.pending_flushes.push(pending);
        self.pending_flushes
            .extend(txn_index::handle(&self.dir, active_base));
        let _ = std::fs::remove_file(txn_index::path(&self.dir, base));
        let mut seg = Segment::create(&self.dir, base)?;
        seg.set_roll_jitter_ms(roll_jitter(&self.config));
        self.segments.insert(base, seg);
        self.aborted.insert(base, Vec::new());
        Ok(base)
    }

    /// Reads whole batches from `offset`: up to `max_bytes` (but at least one
    /// batch when `min_one`), never a batch whose base offset is at or past
    /// `max_offset` (the high watermark or last stable offset).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
    ) -> Result<FetchData, StorageError> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end,
            });
        }
        for (_, seg) in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
        {
            if let Some(pos) = seg.find(offset)? {
                let records = seg.read(pos, max_bytes, max_offset, min_one)?;
                return Ok(FetchData { records });
            }
        }
        Ok(FetchData {
            records: Vec::new(),
        })
    }

    /// The first record whose timestamp is at least `timestamp`, at or after
    /// `from_offset`.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        for seg in self.segments.values() {
            if let Some((offset, ts)) = seg.find_by_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(TimestampOffset {
                    offset,
                    timestamp: ts,
                }));
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp in the log (the earliest such).
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>, StorageError> {
        let Some(seg) = self
            .segments
            .values()
            .filter(|s| s.max_timestamp() >= 0)
            .fold(None::<&Segment>, |best, s| match best {
                Some(b) if b.max_timestamp() >= s.max_timestamp() => Some(b),
                _ => Some(s),
            })
        else {
            return Ok(None);
        };
        Ok(seg
            .max_timestamp_record()?
            .map(|(offset, timestamp)| TimestampOffset { offset, timestamp }))
    }

    /// Takes the data files of rolled segments that still need an fsync;
    /// the caller syncs them without holding the log.
    pub fn take_pending_flushes(&mut self) -> Vec<(PathBuf, std::fs::File)> {
        std::mem::take(&mut self.pending_flushes)
    }

    /// Fsyncs everything written: rolled segments and the active one.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.sync_txn_indexes()?;
        for (path, file) in self.take_pending_flushes() {
            file.sync_data().at(&path)?;
        }
        self.active().flush()?;
        if let Some((path, file)) = txn_index::handle(&self.dir, self.active().base_offset()) {
            file.sync_data().at(&path)?;
        }
        self.unflushed_records = 0;
        self.unflushed_since = None;
        Ok(())
    }

    /// Fsyncs if unflushed data is older than `flush.ms`.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if self
            .unflushed_since
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_ms)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Deletes the oldest segments while they are past `retention.ms` (their
    /// largest timestamp older than that) or beyond `retention.bytes`,
    /// advancing the log start offset, as Kafka's retention check does. An
    /// expired active segment is rolled first, so a log whose every record
    /// expired ends empty at its log end offset. The files are renamed
    /// `.deleted` and removed `file.delete.delay.ms` later (see
    /// [`Log::remove_deleted_files`]). Only segments wholly below
    /// `committed` (a replicated partition's high watermark) go, as in
    /// Kafka: a record the followers may not have yet is never deleted, so
    /// a leader never loses what it may still have to acknowledge. Returns
    /// how many segments went.
    pub fn enforce_retention(
        &mut self,
        now_ms: i64,
        committed: i64,
    ) -> Result<usize, StorageError> {
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        loop {
            let (&base, oldest) = self.segments.iter().next().expect("non-empty");
            let active = self.segments.len() == 1;
            let end = self
                .segments
                .keys()
                .nth(1)
                .copied()
                .unwrap_or_else(|| self.log_end_offset());
            if end > committed {
                break;
            }
            // (A closed segment the cleaner emptied holds nothing to keep.)
            let expired = self.config.retention_ms >= 0
                && (oldest.size() > 0
                    && now_ms.saturating_sub(oldest.largest_timestamp())
                        > self.config.retention_ms
                    || oldest.size() == 0 && !active);
            let too_big = !active
                && self.config.retention_bytes >= 0
                && total - oldest.size() as i64 >= self.config.retention_bytes;
            if !(expired || too_big) {
                break;
            }
            if active {
                self.roll()?;
            }
            total -= oldest_size(&self.segments);
            info!(dir = %self.dir.display(), base, expired, "deleting segment past retention");
            self.retire_segment(base, now_ms)?;
            deleted += 1;
        }
        self.log_start_offset = self
            .log_start_offset
            .max(*self.segments.keys().next().expect("one segment"));
        Ok(deleted)
    }

    /// Moves the log start offset up to `offset` (no further than the log
    /// end), as DeleteRecords does: reads below it fail with
    /// OffsetOutOfRange from then on, also after a restart, since the new
    /// start is written and fsynced before this returns. Closed segments
    /// wholly below it are deleted (renamed `.deleted`, removed
    /// `file.delete.delay.ms` later); the active one stays. An offset at or
    /// below the current start changes nothing. Returns the start offset.
    pub fn advance_log_start(&mut self, offset: i64, now_ms: i64) -> Result<i64, StorageError> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        let path = self.dir.join(LOG_START_OFFSET);
        segment::write_synced(&path, format!("{offset}\n").as_bytes())?;
        sync_dir(&self.dir)?;
        self.log_start_offset = offset;
        // A segment goes when the next one starts at or below the new start.
        loop {
            let mut bases = self.segments.keys();
            let (Some(&base), Some(&next)) = (bases.next(), bases.next()) else {
                break;
            };
            if next > offset {
                break;
            }
            self.retire_segment(base, now_ms)?;
            info!(dir = %self.dir.display(), base, start = offset, "deleted segment below the log start offset");
        }
        Ok(offset)
    }

    /// Removes the oldest segment `base` from the log: its files are renamed
    /// `.deleted` and removed `file.delete.delay.ms` after `now_ms`.
    fn retire_segment(&mut self, base: i64, now_ms: i64) -> Result<(), StorageError> {
        let seg = self.segments.remove(&base).expect("present");
        let mut files = seg.retire()?;
        self.aborted.remove(&base);
        let txn = txn_index::path(&self.dir, base);
        if txn.exists() {
            let to = segment::deleted_name(&txn);
            std::fs::rename(&txn, &to).at(&txn)?;
            files.push(to);
        }
        self.pending_deletes.push((
            now_ms.saturating_add(self.config.file_delete_delay_ms),
            files,
        ));
        Ok(())
    }

    /// Removes the files of deleted segments whose `file.delete.delay.ms`
    /// has passed.
    pub fn remove_deleted_files(&mut self, now_ms: i64) {
        self.pending_deletes.retain(|(due, files)| {
            if *due > now_ms {
                return true;
            }
            for f in files {
                // (A later deletion of a segment with the same base, the
                // cleaner's, may have removed the file already.)
                if let Err(e) = std::fs::remove_file(f).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }) {
                    warn!(file = %f.display(), error = %e, "cannot remove a deleted segment's file");
                }
            }
            false
        });
    }

    /// Whether closing the log would write anything but its clean marker:
    /// something was written since it opened (or its indexes were rebuilt
    /// by recovery).
    pub fn has_unsaved_changes(&self) -> bool {
        self.unflushed_since.is_some()
            || !self.pending_flushes.is_empty()
            || self.txn_index_dirty
            || !self.active().indexes_current()
    }

    /// Flushes and writes the index files, and marks the log clean. The log
    /// must not be written after this. A log with nothing new since it was
    /// opened only gets its marker: its files are already what they must
    /// be, so a node with many idle partitions stops quickly.
    pub fn close(&mut self) -> Result<(), StorageError> {
        if !self.has_unsaved_changes() {
            let marker = self.dir.join(CLEAN_SHUTDOWN);
            std::fs::write(&marker, b"").at(&marker)?;
            return Ok(());
        }
        self.flush()?;
        self.active_mut().close()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN);
        std::fs::write(&marker, b"").at(&marker)?;
        Ok(())
    }

    /// Removes the log and its directory.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).at(&dir)
    }

    /// Records an aborted transaction in the index of the segment holding
    /// its marker. Idempotent: returns false if it was already there. It
    /// cannot fail: should the file write fail, memory (what reads use)
    /// has the entry and the file is rewritten later.
    pub fn add_aborted(&mut self, txn: AbortedTxn) -> bool {
        let Some((&base, _)) = self.segments.range(..=txn.last_offset).next_back() else {
            return false;
        };
        let entries = self.aborted.entry(base).or_default();
        if entries
            .iter()
            .any(|t| t.producer_id == txn.producer_id && t.last_offset == txn.last_offset)
        {
            return false;
        }
        entries.push(txn);
        if let Err(e) = txn_index::append(&self.dir, base, &txn) {
            warn!(dir = %self.dir.display(), error = %e, "cannot append to the aborted-transaction index; rewriting it later");
            self.txn_index_dirty = true;
        }
        true
    }

    /// Rewrites the index files from memory if an append to them failed.
    fn sync_txn_indexes(&mut self) -> Result<(), StorageError> {
        if !self.txn_index_dirty {
            return Ok(());
        }
        for (&base, entries) in &self.aborted {
            txn_index::rewrite(&self.dir, base, entries)?;
        }
        self.txn_index_dirty = false;
        Ok(())
    }

    /// The aborted transactions that overlap `[from, upper)`: those whose
    /// marker is at or after `from` and that began before `upper`. A marker
    /// can lie past `upper` (a transaction aborted after an older one that is
    /// still open began), so every segment from `from` on is searched.
    pub fn aborted_txns(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        self.aborted
            .range(first..)
            .flat_map(|(_, v)| v.iter())
            .filter(|t| t.last_offset >= from && t.first_offset < upper)
            .copied()
            .collect()
    }

    /// The first offset the cleaner may not touch, rounded down to a
    /// segment start: the active segment, the segment holding
    /// `first_unstable` (the last stable offset), and the first dirty
    /// segment younger than `min.compaction.lag.ms`.
    fn first_uncleanable(&self, now_ms: i64, first_unstable: i64) -> i64 {
        let mut bound = self.active().base_offset().min(first_unstable);
        if self.config.min_compaction_lag_ms > 0 {
            let young = self
                .segments
                .range(self.first_dirty_offset..)
                .find(|(_, s)| {
                    now_ms.saturating_sub(s.largest_timestamp()) < self.config.min_compaction_lag_ms
                })
                .map(|(&b, _)| b);
            bound = bound.min(young.unwrap_or(i64::MAX));
        }
        self.segments
            .range(..=bound)
            .next_back()
            .map_or(self.log_start_offset, |(&b, _)| b)
    }

    /// How much the cleaner would clean now (`None` unless the log is
    /// compacted), with `first_unstable` the last stable offset.
    pub fn dirtiness(&self, now_ms: i64, first_unstable: i64) -> Option<Dirtiness> {
        if !self.config.compact {
            return None;
        }
        let end = self.first_uncleanable(now_ms, first_unstable);
        let (mut clean_bytes, mut dirty_bytes) = (0, 0);
        let mut oldest_dirty = None;
        for (&base, seg) in self.segments.range(..end) {
            if base < self.first_dirty_offset {
                clean_bytes += seg.size();
            } else {
                dirty_bytes += seg.size();
                oldest_dirty = oldest_dirty.or(seg.first_batch_timestamp());
            }
        }
        let overdue = oldest_dirty.is_some_and(|t| {
            t >= 0 && now_ms.saturating_sub(t) > self.config.max_compaction_lag_ms
        });
        Some(Dirtiness {
            clean_bytes,
            dirty_bytes,
            overdue,
            min_ratio: self.config.min_cleanable_dirty_ratio,
        })
    }

    /// Plans a cleaning of every closed segment below the first uncleanable
    /// offset (see [`Log::dirtiness`]), opening their files so that it can
    /// run without the log (see [`CleanJob::run`]); `None` if there is
    /// nothing to clean.
    pub fn plan_cleaning(
        &self,
        now_ms: i64,
        first_unstable: i64,
    ) -> Result<Option<CleanJob>, StorageError> {
        if !self.config.compact {
            return Ok(None);
        }
        let end = self.first_uncleanable(now_ms, first_unstable);
        let mut sources = Vec::new();
        for (&base, seg) in self.segments.range(..end) {
            let path = seg.log_path();
            sources.push(Source {
                base,
                size: seg.size(),
                next_offset: seg.next_offset(),
                file: std::fs::File::open(&path).at(&path)?,
            });
        }
        if sources.is_empty() {
            return Ok(None);
        }
        // Those that began in the range, whatever segment holds their marker
        // (it may lie past the range).
        let mut aborted = self.aborted_txns(i64::MIN, end);
        aborted.sort_by_key(|t| t.first_offset);
        Ok(Some(CleanJob {
            dir: self.dir.clone(),
            first_dirty: self.first_dirty_offset,
            sources,
            aborted,
            delete_retention_ms: self.config.delete_retention_ms,
            segment_bytes: self.config.segment_bytes,
            segment_index_bytes: self.config.segment_index_bytes,
            index_interval_bytes: self.config.index_interval_bytes,
        }))
    }

    /// Swaps a finished cleaning in (see `cleaner::recover_swaps` for the
    /// steps and why a crash at any of them loses nothing). Returns false,
    /// removing its files, when one of the segments it replaces went
    /// meanwhile (retention, DeleteRecords) or changed.
    pub fn install_cleaned(&mut self, cleaned: Cleaned, now_ms: i64) -> Result<bool, StorageError> {
        self.install_cleaned_until(cleaned, now_ms, None)
    }

    /// [`Log::install_cleaned`], stopped after `crash_at` of its file
    /// operations when given (as a crash would stop it; the log must then
    /// be dropped and reopened): how the crash tests interrupt a swap.
    pub(crate) fn install_cleaned_until(
        &mut self,
        cleaned: Cleaned,
        now_ms: i64,
        crash_at: Option<usize>,
    ) -> Result<bool, StorageError> {
        let current = cleaned
            .groups
            .iter()
            .flat_map(|g| &g.replaces)
            .all(|(base, size)| {
                self.segments.get(base).is_some_and(|s| s.size() == *size)
                    && *base != self.active().base_offset()
            });
        if !current || cleaned.dir != self.dir {
            cleaned.discard();
            return Ok(false);
        }
        use cleaner::{suffixed, CLEANED, SEGMENT_FILES, SWAP};
        let mut steps = 0;
        let mut crashed = || {
            steps += 1;
            crash_at == Some(steps)
        };
        for g in &cleaned.groups {
            for kind in SEGMENT_FILES {
                let from = suffixed(&self.dir, g.base, kind, CLEANED);
                std::fs::rename(&from, suffixed(&self.dir, g.base, kind, SWAP)).at(&from)?;
                if crashed() {
                    return Ok(false);
                }
            }
            sync_dir(&self.dir)?;
            for &(base, _) in &g.replaces {
                self.retire_segment(base, now_ms)?;
                if crashed() {
                    return Ok(false);
                }
            }
            sync_dir(&self.dir)?;
            for kind in SEGMENT_FILES {
                let from = suffixed(&self.dir, g.base, kind, SWAP);
                std::fs::rename(&from, suffixed(&self.dir, g.base, kind, "")).at(&from)?;
                if crashed() {
                    return Ok(false);
                }
            }
            sync_dir(&self.dir)?;
            let mut seg = match Segment::open_indexed(&self.dir, g.base)? {
                Some(seg) => seg,
                None => Segment::recover(&self.dir, g.base, self.config.index_interval_bytes)?.0,
            };
            seg.set_roll_jitter_ms(roll_jitter(&self.config));
            self.segments.insert(g.base, seg);
            self.aborted.insert(g.base, g.aborted.clone());
        }
        let path = self.dir.join(CLEANER_OFFSET);
        segment::write_synced(&path, format!("{}\n", cleaned.end).as_bytes())?;
        self.first_dirty_offset = cleaned.end;
        Ok(true)
    }

    /// The cleaner's checkpoint: the log below it is clean.
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset.max(self.log_start_offset)
    }

    /// Calls `f` with each batch from `from_offset` to the end, in order:
    /// how state kept beside the log (producer state) is rebuilt.
    pub fn scan_batches(
        &self,
        from_offset: i64,
        mut f: impl FnMut(Batch<'_>),
    ) -> Result<(), StorageError> {
        let mut offset = from_offset.max(self.log_start_offset);
        let end = self.log_end_offset();
        while offset < end {
            let data = self.read(offset, 1024 * 1024, i64::MAX, true)?;
            if data.records.is_empty() {
                break;
            }
            for b in records::batches(&data.records) {
                let b = b?;
                offset = b.last_offset() + 1;
                f(b);
            }
        }
        Ok(())
    }
}

/// The names of the files in `dir` (those that are UTF-8, as Strom's are).
fn file_names(dir: &Path) -> Result<Vec<String>, StorageError> {
    Ok(std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
