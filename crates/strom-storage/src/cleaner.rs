//! The log cleaner: compaction of `cleanup.policy=compact` logs, after
//! Kafka's `LogCleaner`.
//!
//! A cleaning has three steps, and only the first and the last hold the
//! log (the caller's lock):
//!
//! 1. [`Log::plan_cleaning`](crate::Log::plan_cleaning) picks the
//!    cleanable range: every closed segment below the first uncleanable
//!    offset (the active segment, the first unstable offset, and the first
//!    segment younger than `min.compaction.lag.ms`, each rounded down to a
//!    segment start), and opens their files.
//! 2. [`CleanJob::run`] reads them without the lock (closed segments never
//!    change): it maps each key of the dirty part (from the cleaner's
//!    checkpoint on) to its latest offset, then rewrites the range in
//!    groups of segments up to `segment.bytes`, each into
//!    `<base>.log.cleaned` and its indexes, keeping a record unless a later
//!    one has its key, it has no key, it belongs to an aborted transaction,
//!    or it is a tombstone whose delete horizon passed. Offsets never
//!    change; batches are copied as they are unless they lose records.
//! 3. [`Log::install_cleaned`](crate::Log::install_cleaned) swaps the
//!    groups in, unless retention or DeleteRecords removed one of their
//!    segments meanwhile. The swap is crash-safe: see [`recover_swaps`].
//!
//! Tombstones and transaction markers follow KIP-534: the first cleaning
//! that keeps one stamps its batch with a delete horizon (now plus
//! `delete.retention.ms`); the first cleaning after the horizon removes it
//! (a marker only once its transaction has no records left). As in Kafka,
//! a passed horizon alone does not make a log due for cleaning. A data batch
//! that is its producer's last is kept, emptied if need be, so the
//! producer's sequence survives a rebuild of producer state from the log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strom_protocol::record_walk;
use strom_protocol::records::{self, Batch, ControlMarker, HEADER_LEN};
use strom_protocol::retain;
use tracing::warn;

use crate::error::{IoContext, StorageError};
use crate::segment::{file_stem, Indexing};
use crate::txn_index::AbortedTxn;

/// The suffix of a cleaned file being written.
pub(crate) const CLEANED: &str = ".cleaned";
/// The suffix of a cleaned file ready to replace its segment.
pub(crate) const SWAP: &str = ".swap";
/// The file kinds of a segment, the data file last: a `.log.swap` exists
/// only once all four swap files do.
pub(crate) const SEGMENT_FILES: [&str; 4] = ["index", "timeindex", "txnindex", "log"];

/// How far one stored batch is inflated while cleaning.
const INFLATE_LIMIT: u64 = 256 << 20;
/// The read and write buffers of a cleaning (`log.cleaner.io.buffer.size`).
const IO_BUFFER: usize = 512 * 1024;
/// What one key of the map costs besides its bytes (the offset, the box,
/// the table slot).
const MAP_ENTRY_OVERHEAD: u64 = 48;

/// Broker-wide cleaner settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerSettings {
    /// The memory the key map of one cleaning may use
    /// (`log.cleaner.dedupe.buffer.size` over `log.cleaner.threads`).
    pub dedupe_buffer_bytes: u64,
    /// Bytes per second one cleaner reads and writes at most
    /// (`log.cleaner.io.max.bytes.per.second`).
    pub io_max_bytes_per_second: f64,
}

/// How much of a log the cleaner would clean now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirtiness {
    /// Bytes below the cleaner's checkpoint.
    pub clean_bytes: u64,
    /// Bytes from the checkpoint to the first uncleanable offset.
    pub dirty_bytes: u64,
    /// The oldest dirty record is past `max.compaction.lag.ms`.
    pub overdue: bool,
    pub(crate) min_ratio: f64,
}

impl Dirtiness {
    /// Dirty bytes over all bytes of the cleanable range.
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
    /// Whether the log is worth cleaning on its own account (Kafka: past its
    /// `min.cleanable.dirty.ratio`, or overdue).
    pub fn due(&self) -> bool {
        self.dirty_bytes > 0 && (self.overdue || self.ratio() > self.min_ratio)
    }
}

/// What a cleaning did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_read: usize,
    pub segments_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    pub batches_rewritten: u64,
    /// Keys in the map.
    pub keys: usize,
}

/// A throttle on the bytes a cleaner moves.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    since: Instant,
    bytes: f64,
}

impl Throttle {
    pub fn new(bytes_per_second: f64) -> Throttle {
        Throttle {
            rate: bytes_per_second,
            since: Instant::now(),
            bytes: 0.0,
        }
    }

    /// Accounts for `n` bytes, sleeping as long as the rate asks.
    fn spend(&mut self, n: usize) {
        if !(self.rate > 0.0 && self.rate < 1e15) {
            return;
        }
        self.bytes += n as f64;
        let elapsed = self.since.elapsed().as_secs_f64();
        let due = self.bytes / self.rate;
        if due > elapsed {
            std::thread::sleep(Duration::from_secs_f64(due - elapsed));
        }
        // A fresh window every second, so an idle spell earns no burst.
        if self.since.elapsed() > Duration::from_secs(1) {
            self.since = Instant::now();
            self.bytes = 0.0;
        }
    }
}

/// One segment a cleaning reads.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) base: i64,
    pub(crate) size: u64,
    pub(crate) next_offset: i64,
    pub(crate) file: File,
}

/// A cleaning planned under the log's lock, to be run without it.
#[derive(Debug)]
pub struct CleanJob {
    pub(crate) dir: PathBuf,
    /// The cleaner's checkpoint: records from here on are dirty.
    pub(crate) first_dirty: i64,
    /// Every segment below the first uncleanable offset, in order.
    pub(crate) sources: Vec<Source>,
    /// The aborted transactions of those segments, by first offset.
    pub(crate) aborted: Vec<AbortedTxn>,
    pub(crate) delete_retention_ms: i64,
    pub(crate) segment_bytes: u64,
    pub(crate) segment_index_bytes: u64,
    pub(crate) index_interval_bytes: u64,
}

/// One group of segments, cleaned into `<base>.*.cleaned` files.
#[derive(Debug)]
pub(crate) struct CleanedGroup {
    pub(crate) base: i64,
    /// The segments it replaces: base offset and size.
    pub(crate) replaces: Vec<(i64, u64)>,
    pub(crate) aborted: Vec<AbortedTxn>,
}

/// A finished cleaning, to be swapped in with [`crate::Log::install_cleaned`].
#[derive(Debug)]
pub struct Cleaned {
    pub(crate) dir: PathBuf,
    pub(crate) groups: Vec<CleanedGroup>,
    /// The new checkpoint: everything below it is clean.
    pub(crate) end: i64,
    pub stats: CleanStats,
}

impl Cleaned {
    /// Removes the cleaned files (a cleaning that will not be installed).
    pub fn discard(&self) {
        for g in &self.groups {
            for kind in SEGMENT_FILES {
                let _ = std::fs::remove_file(suffixed(&self.dir, g.base, kind, CLEANED));
            }
        }
    }
}

/// `dir/<base>.<kind><suffix>`.
pub(crate) fn suffixed(dir: &Path, base: i64, kind: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}.{kind}{suffix}", file_stem(base)))
}

/// Reads the batches of one segment file in order.
struct BatchReader<'f> {
    file: BufReader<&'f File>,
    path: PathBuf,
    left: u64,
    buf: Vec<u8>,
}

impl<'f> BatchReader<'f> {
    /// Reads `source` from its start (each pass reads it again).
    fn new(dir: &Path, source: &'f Source) -> Result<BatchReader<'f>, StorageError> {
        let path = suffixed(dir, source.base, "log", "");
        let mut file = &source.file;
        file.seek(std::io::SeekFrom::Start(0)).at(&path)?;
        Ok(BatchReader {
            file: BufReader::with_capacity(IO_BUFFER, file),
            path,
            left: source.size,
            buf: Vec::new(),
        })
    }

    /// The next batch; `None` at the end of the segment.
    fn next(&mut self, throttle: &mut Throttle) -> Result<Option<Batch<'_>>, StorageError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.buf.resize(HEADER_LEN, 0);
        self.file.read_exact(&mut self.buf).at(&self.path)?;
        let size = records::batch_size(&self.buf)?;
        if size as u64 > self.left {
            return Err(StorageError::Corrupt {
                path: self.path.clone(),
                reason: format!("a batch of {size} bytes runs past the segment's end"),
            });
        }
        self.buf.resize(size, 0);
        self.file
            .read_exact(&mut self.buf[HEADER_LEN..])
            .at(&self.path)?;
        self.left -= size as u64;
        throttle.spend(size);
        Ok(Some(Batch::parse(&self.buf)?))
    }
}

/// Which transactions batches belong to, read in offset order (Kafka's
/// `CleanedTransactionMetadata`): aborted ones come from the index, the
/// rest are committed (the cleanable range holds no open transaction).
struct Transactions {
    aborted: VecDeque<AbortedTxn>,
    /// Aborted transactions begun and not yet ended, by producer: whether a
    /// batch of theirs was seen in this pass.
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Committed transactions begun and not yet ended in this pass.
    ongoing_committed: HashSet<i64>,
}

impl Transactions {
    /// For a pass from `from` on: transactions that ended before it are
    /// not met.
    fn new(aborted: &[AbortedTxn], from: i64) -> Transactions {
        Transactions {
            aborted: aborted
                .iter()
                .filter(|t| t.last_offset >= from)
                .copied()
                .collect(),
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
        }
    }

    fn begin_up_to(&mut self, offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|t| t.first_offset <= offset)
        {
            let t = self.aborted.pop_front().expect("front");
            self.ongoing_aborted.insert(t.producer_id, (t, false));
        }
    }

    /// A data batch: whether it belongs to an aborted transaction.
    fn aborted_data(&mut self, batch: &Batch<'_>) -> bool {
        self.begin_up_to(batch.last_offset());
        if !batch.is_transactional() {
            return false;
        }
        match self.ongoing_aborted.get_mut(&batch.producer_id()) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.ongoing_committed.insert(batch.producer_id());
                false
            }
        }
    }

    /// A marker: whether it may go (once its delete horizon passed)
    /// because its transaction has no records left in this pass, and the
    /// aborted-index entry that stays with it.
    fn marker(&mut self, batch: &Batch<'_>) -> (bool, Option<AbortedTxn>) {
        self.begin_up_to(batch.last_offset());
        let producer = batch.producer_id();
        match records::control_marker(batch.bytes()) {
            Some(ControlMarker::Abort) => match self.ongoing_aborted.remove(&producer) {
                Some((txn, seen)) => (!seen, Some(txn)),
                None => (true, None),
            },
            Some(ControlMarker::Commit) => (!self.ongoing_committed.remove(&producer), None),
            None => (false, None),
        }
    }
}

/// Each key of the dirty range and its latest offset.
struct KeyMap {
    offsets: HashMap<Box<[u8]>, i64>,
    bytes: u64,
}

impl KeyMap {
    fn insert(&mut self, key: &[u8], offset: i64) {
        if let Some(o) = self.offsets.get_mut(key) {
            *o = offset;
            return;
        }
        self.bytes += key.len() as u64 + MAP_ENTRY_OVERHEAD;
        self.offsets.insert(key.into(), offset);
    }
    /// Whether a record at `offset` with `key` is the latest for it (or
    /// its key was not seen in the dirty range).
    fn latest(&self, key: &[u8], offset: i64) -> bool {
        self.offsets.get(key).is_none_or(|&o| offset >= o)
    }
}

/// The cleaned segment being written.
struct Output {
    base: i64,
    path: PathBuf,
    file: BufWriter<File>,
    ix: Indexing,
    aborted: Vec<AbortedTxn>,
}

impl Output {
    fn create(dir: &Path, base: i64) -> Result<Output, StorageError> {
        let path = suffixed(dir, base, "log", CLEANED);
        let file = File::create(&path).at(&path)?;
        Ok(Output {
            base,
            path,
            file: BufWriter::with_capacity(IO_BUFFER, file),
            ix: Indexing::new(base),
            aborted: Vec::new(),
        })
    }

    fn push(
        &mut self,
        batch: &[u8],
        interval: u64,
        throttle: &mut Throttle,
    ) -> Result<(), StorageError> {
        self.file.write_all(batch).at(&self.path)?;
        let b = Batch::parse(batch)?;
        self.ix.index_batch(
            b.base_offset(),
            b.last_offset(),
            b.max_timestamp(),
            b.size() as u64,
            interval,
        );
        throttle.spend(batch.len());
        Ok(())
    }

    /// Writes the data and index files, fsynced.
    fn finish(mut self, dir: &Path) -> Result<(u64, Vec<AbortedTxn>), StorageError> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .at(&self.path)?;
        file.sync_all().at(&self.path)?;
        let (offsets, times) = self.ix.encode();
        let txns: Vec<u8> = self.aborted.iter().flat_map(|t| t.encode()).collect();
        for (kind, bytes) in [
            ("index", &offsets),
            ("timeindex", &times),
            ("txnindex", &txns),
        ] {
            let path = suffixed(dir, self.base, kind, CLEANED);
            let mut f = File::create(&path).at(&path)?;
            f.write_all(bytes).at(&path)?;
            f.sync_all().at(&path)?;
        }
        Ok((self.ix.size, self.aborted))
    }
}

impl CleanJob {
    /// Cleans the planned range into `.cleaned` files: `last_batches`
    /// maps each live producer to the last offset of its last data batch
    /// (kept, if need be empty); `stop` is asked between segments and ends
    /// the cleaning early (`Ok(None)`, its files removed).
    pub fn run(
        self,
        settings: &CleanerSettings,
        last_batches: &HashMap<i64, i64>,
        now_ms: i64,
        throttle: &mut Throttle,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Cleaned>, StorageError> {
        let (map, end) = self.build_map(settings, throttle, stop)?;
        let Some(end) = end else { return Ok(None) };
        let stats = CleanStats {
            keys: map.offsets.len(),
            ..CleanStats::default()
        };
        let mut cleaned = Cleaned {
            dir: self.dir.clone(),
            groups: Vec::new(),
            end,
            stats,
        };
        let result = self.clean_groups(
            &map,
            end,
            last_batches,
            now_ms,
            throttle,
            stop,
            &mut cleaned,
        );
        match result {
            Ok(true) => Ok(Some(cleaned)),
            Ok(false) => {
                cleaned.discard();
                Ok(None)
            }
            Err(e) => {
                cleaned.discard();
                Err(e)
            }
        }
    }

    /// Maps each key from the checkpoint on to its latest offset, segment by
    /// segment until the map is full (the first dirty segment always goes
    /// in whole). Returns the map and where it ends: the first segment it
    /// does not cover (`None` if stopped).
    fn build_map(
        &self,
        settings: &CleanerSettings,
        throttle: &mut Throttle,
        stop: &dyn Fn() -> bool,
    ) -> Result<(KeyMap, Option<i64>), StorageError> {
        let mut map = KeyMap {
            offsets: HashMap::new(),
            bytes: 0,
        };
        let mut txns = Transactions::new(&self.aborted, self.first_dirty);
        let mut mapped_segments = 0;
        let end = self
            .sources
            .last()
            .map_or(self.first_dirty, |s| s.next_offset);
        for source in self
            .sources
            .iter()
            .filter(|s| s.next_offset > self.first_dirty)
        {
            if stop() {
                return Ok((map, None));
            }
            if mapped_segments > 0 && map.bytes >= settings.dedupe_buffer_bytes {
                return Ok((map, Some(source.base)));
            }
            let mut reader = BatchReader::new(&self.dir, source)?;
            let path = reader.path.clone();
            while let Some(batch) = reader.next(throttle)? {
                if stop() {
                    return Ok((map, None));
                }
                if batch.last_offset() < self.first_dirty {
                    continue;
                }
                if batch.is_control() {
                    txns.marker(&batch);
                    continue;
                }
                if txns.aborted_data(&batch) {
                    continue;
                }
                let inflated = inflate(&batch, &path)?;
                for i in 0..inflated.records.len() {
                    let offset =
                        batch.base_offset() + i64::from(inflated.records[i].meta.offset_delta);
                    if let (Some(key), true) = (inflated.key(i), offset >= self.first_dirty) {
                        map.insert(key, offset);
                    }
                }
            }
            mapped_segments += 1;
            if mapped_segments == 1 && map.bytes > settings.dedupe_buffer_bytes {
                warn!(dir = %self.dir.display(), base = source.base, keys = map.offsets.len(),
                    "one segment's keys fill more than log.cleaner.dedupe.buffer.size; cleaning it anyway");
            }
        }
        Ok((map, Some(end)))
    }

    /// The segments below `end` in groups that fit one segment (Kafka's
    /// `groupSegmentsBySize`): by bytes, index entries and offset range.
    fn groups(&self, end: i64) -> Vec<&[Source]> {
        let below: &[Source] = {
            let n = self.sources.iter().take_while(|s| s.base < end).count();
            &self.sources[..n]
        };
        let mut groups = Vec::new();
        let mut start = 0;
        while start < below.len() {
            let mut size = below[start].size;
            let mut stop = start + 1;
            while let Some(next) = below.get(stop) {
                let fits = size + next.size <= self.segment_bytes
                    && (size + next.size) / self.index_interval_bytes.max(1) * 8
                        <= self.segment_index_bytes
                    && next.next_offset - 1 - below[start].base <= i64::from(i32::MAX);
                if !fits {
                    break;
                }
                size += next.size;
                stop += 1;
            }
            groups.push(&below[start..stop]);
            start = stop;
        }
        groups
    }

    #[allow(clippy::too_many_arguments)]
    fn clean_groups(
        &self,
        map: &KeyMap,
        end: i64,
        last_batches: &HashMap<i64, i64>,
        now_ms: i64,
        throttle: &mut Throttle,
        stop: &dyn Fn() -> bool,
        cleaned: &mut Cleaned,
    ) -> Result<bool, StorageError> {
        let first = self.sources.first().map_or(0, |s| s.base);
        let mut txns = Transactions::new(&self.aborted, first);
        let horizon = now_ms.saturating_add(self.delete_retention_ms);
        for group in self.groups(end) {
            if stop() {
                return Ok(false);
            }
            let mut out = Output::create(&self.dir, group[0].base)?;
            cleaned.groups.push(CleanedGroup {
                base: group[0].base,
                replaces: group.iter().map(|s| (s.base, s.size)).collect(),
                aborted: Vec::new(),
            });
            for source in group {
                let mut reader = BatchReader::new(&self.dir, source)?;
                let path = reader.path.clone();
                while let Some(batch) = reader.next(throttle)? {
                    if stop() {
                        return Ok(false);
                    }
                    let kept = self.clean_batch(
                        &batch,
                        &path,
                        map,
                        &mut txns,
                        last_batches,
                        now_ms,
                        horizon,
                        &mut out,
                        &mut cleaned.stats,
                    )?;
                    if let Some(bytes) = kept {
                        out.push(&bytes, self.index_interval_bytes, throttle)?;
                    }
                }
                cleaned.stats.segments_read += 1;
                cleaned.stats.bytes_read += source.size;
            }
            let (size, aborted) = out.finish(&self.dir)?;
            cleaned.stats.bytes_written += size;
            cleaned.stats.segments_written += 1;
            cleaned.groups.last_mut().expect("pushed").aborted = aborted;
        }
        Ok(true)
    }

    /// What becomes of one batch: `None` when it goes, else the bytes to
    /// write (the batch itself when it keeps every record).
    #[allow(clippy::too_many_arguments)]
    fn clean_batch(
        &self,
        batch: &Batch<'_>,
        path: &Path,
        map: &KeyMap,
        txns: &mut Transactions,
        last_batches: &HashMap<i64, i64>,
        now_ms: i64,
        horizon: i64,
        out: &mut Output,
        stats: &mut CleanStats,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let count = u64::try_from(batch.records_count()).unwrap_or(0);
        stats.records_read += count;
        if batch.is_control() {
            let (may_go, entry) = txns.marker(batch);
            let kept = match batch.delete_horizon() {
                Some(h) if may_go && h <= now_ms => None,
                None if may_go => Some(self.rebuild(batch, path, None, Some(horizon), stats)?),
                _ => Some(batch.bytes().to_vec()),
            };
            match kept {
                Some(bytes) => {
                    out.aborted.extend(entry);
                    return Ok(Some(bytes));
                }
                None => {
                    stats.records_removed += count;
                    return Ok(None);
                }
            }
        }
        let aborted = txns.aborted_data(batch);
        let last_of_producer = batch.has_producer_id()
            && last_batches.get(&batch.producer_id()) == Some(&batch.last_offset());
        let inflated = inflate(batch, path)?;
        let keep_tombstones = batch.delete_horizon().is_none_or(|h| now_ms < h);
        let mut keep = vec![false; inflated.records.len()];
        let mut tombstones = false;
        if !aborted {
            for (i, k) in keep.iter_mut().enumerate() {
                let offset = batch.base_offset() + i64::from(inflated.records[i].meta.offset_delta);
                let tombstone = inflated.records[i].meta.value_len < 0;
                *k = inflated.key(i).is_some_and(|key| map.latest(key, offset))
                    && (!tombstone || keep_tombstones);
                tombstones |= *k && tombstone;
            }
        }
        let kept = keep.iter().filter(|k| **k).count();
        stats.records_removed += (keep.len() - kept) as u64;
        let needs_horizon = tombstones && batch.delete_horizon().is_none();
        if kept == keep.len() && !needs_horizon {
            return Ok(Some(batch.bytes().to_vec()));
        }
        if kept == 0 && !last_of_producer {
            return Ok(None);
        }
        let horizon = if needs_horizon {
            Some(horizon)
        } else {
            batch.delete_horizon()
        };
        Ok(Some(self.rebuild(
            batch,
            path,
            Some((&inflated, &keep)),
            horizon,
            stats,
        )?))
    }

    /// `batch` rebuilt with the records `keep` marks (all of them when
    /// `None`) and `horizon`.
    fn rebuild(
        &self,
        batch: &Batch<'_>,
        path: &Path,
        keep: Option<(&record_walk::Inflated<'_>, &[bool])>,
        horizon: Option<i64>,
        stats: &mut CleanStats,
    ) -> Result<Vec<u8>, StorageError> {
        stats.batches_rewritten += 1;
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let rebuilt = match keep {
            Some((inflated, keep)) => retain::rebuild(batch, inflated, keep, horizon),
            None => {
                let inflated = inflate(batch, path)?;
                let all = vec![true; inflated.records.len()];
                retain::rebuild(batch, &inflated, &all, horizon)
            }
        };
        rebuilt.map_err(|e| corrupt(e.to_string()))
    }
}

fn inflate<'a>(batch: &Batch<'a>, path: &Path) -> Result<record_walk::Inflated<'a>, StorageError> {
    record_walk::inflate(batch, INFLATE_LIMIT).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("batch at offset {}: {e}", batch.base_offset()),
    })
}

/// Finishes or undoes a swap a crash interrupted, before the log is opened
/// (`dir` holds no open segment). The steps of a swap and what a crash
/// after each leaves:
///
/// 1. `<base>.*.cleaned` written and fsynced: removed here; the old
///    segments are whole.
/// 2. each renamed `.swap`, the data file last, then the directory synced:
///    without `<base>.log.swap` the set is incomplete and is removed;
///    with it the cleaned data is complete.
/// 3. the old segments renamed `.deleted`, then the directory synced;
/// 4. each `.swap` renamed to its final name, the data file last.
///
/// From a `<base>.log.swap` on, the swap is finished here: the segments it
/// replaces (those starting in its offset range) are removed, then the
/// swap files take their names. A final-named index file of `base` whose
/// `.swap` is gone is already the new one (step 4 had renamed it).
///
/// `names` lists the files of `dir`; returns whether any was removed or
/// renamed (the listing is then stale).
pub(crate) fn recover_swaps(dir: &Path, names: &[String]) -> Result<bool, StorageError> {
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(CLEANED)) {
        changed = true;
        let _ = std::fs::remove_file(dir.join(name));
    }
    let swapped: Vec<i64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(SWAP))
        .filter_map(crate::segment::parse_log_name)
        .collect();
    for name in names.iter().filter(|n| n.ends_with(SWAP)) {
        let stem = name.split('.').next().unwrap_or_default();
        if !swapped.iter().any(|&b| file_stem(b) == stem) {
            changed = true;
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    let segments: Vec<i64> = names
        .iter()
        .filter_map(|n| crate::segment::parse_log_name(n))
        .collect();
    for &base in &swapped {
        let swap = suffixed(dir, base, "log", SWAP);
        let next = end_offset(&swap)?;
        for &old in segments
            .iter()
            .filter(|&&b| b == base || (b > base && b < next))
        {
            for kind in SEGMENT_FILES {
                let path = suffixed(dir, old, kind, "");
                let replaced_by_swap = suffixed(dir, old, kind, SWAP).exists();
                if old != base || replaced_by_swap {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        for kind in SEGMENT_FILES {
            let from = suffixed(dir, base, kind, SWAP);
            if from.exists() {
                std::fs::rename(&from, suffixed(dir, base, kind, "")).at(&from)?;
            }
        }
        warn!(dir = %dir.display(), base, "finished a cleaned segment's swap interrupted by a crash");
    }
    if !swapped.is_empty() {
        crate::log::sync_dir(dir)?;
    }
    Ok(changed || !swapped.is_empty())
}

/// One past the last offset of the batches in a (fsynced) data file, by
/// their headers; its name's base offset when it holds none.
fn end_offset(path: &Path) -> Result<i64, StorageError> {
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(SWAP))
        .and_then(crate::segment::parse_log_name)
        .unwrap_or(0);
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut reader = BufReader::new(file);
    let (mut pos, mut next) = (0u64, base);
    let mut header = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= len {
        reader.read_exact(&mut header).at(path)?;
        let Ok(size) = records::batch_size(&header) else {
            break;
        };
        let last = crate::segment::HeaderView(&header).last_offset();
        next = next.max(last + 1);
        pos += size as u64;
        if pos > len || reader.seek_relative((size - HEADER_LEN) as i64).is_err() {
            break;
        }
    }
    Ok(next)
}
