//! The log cleaner's rounds over the hosted partitions (Kafka's
//! `LogCleaner` and `LogCleanerManager`); the cleaning itself is
//! `strom_storage::cleaner`.
//!
//! Each round reads the cleaner's settings (they change at run time), ranks
//! the compacted partitions by how dirty they are, and cleans up to
//! `log.cleaner.threads` of those past their `min.cleanable.dirty.ratio`
//! (or overdue by `max.compaction.lag.ms`) side by side; when none is, it
//! sleeps `log.cleaner.backoff.ms`. A partition whose
//! cleaning fails is left alone until the broker restarts, as in Kafka.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strom_storage::{CleanerSettings, Throttle};
use tracing::{error, info};
use uuid::Uuid;

use crate::manager::ReplicaManager;

/// What the cleaner has done, for metrics (Kafka's `LogCleaner` and
/// `LogCleanerManager` gauges, and totals).
#[derive(Debug, Default)]
pub struct CleanerStats {
    cleanings: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    records_removed: AtomicU64,
    /// `f64` bits: written over read bytes of the last round, in percent.
    recopy_percent: AtomicU64,
    /// `f64` bits: the longest cleaning of the last round, in seconds.
    max_clean_secs: AtomicU64,
    /// `f64` bits: the dirtiest compacted log's dirty ratio at the last
    /// round, in percent.
    max_dirty_percent: AtomicU64,
    uncleanable: AtomicU64,
    /// When the last round ran (ms since the epoch; 0: never).
    last_round_ms: AtomicI64,
}

/// A reading of [`CleanerStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CleanerSnapshot {
    pub cleanings: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub recopy_percent: f64,
    pub max_clean_secs: f64,
    pub max_dirty_percent: f64,
    pub uncleanable_partitions: u64,
    pub last_round_ms: i64,
}

impl CleanerStats {
    pub fn snapshot(&self) -> CleanerSnapshot {
        let f = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        CleanerSnapshot {
            cleanings: self.cleanings.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            records_removed: self.records_removed.load(Ordering::Relaxed),
            recopy_percent: f(&self.recopy_percent),
            max_clean_secs: f(&self.max_clean_secs),
            max_dirty_percent: f(&self.max_dirty_percent),
            uncleanable_partitions: self.uncleanable.load(Ordering::Relaxed),
            last_round_ms: self.last_round_ms.load(Ordering::Relaxed),
        }
    }
}

/// The cleaner's thread; stopped (and joined) by [`LogCleaner::stop`] or
/// when dropped.
pub struct LogCleaner {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LogCleaner {
    /// Starts cleaning `replicas`' compacted partitions.
    pub fn start(replicas: Arc<ReplicaManager>) -> std::io::Result<LogCleaner> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-cleaner".into())
            .spawn(move || {
                let stopped = || *flag.0.lock().unwrap_or_else(|p| p.into_inner());
                let mut uncleanable = HashSet::new();
                while !stopped() {
                    let Some(backoff) = round(&replicas, &mut uncleanable, &stopped) else {
                        continue;
                    };
                    let guard = flag.0.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = flag
                        .1
                        .wait_timeout_while(guard, backoff, |stop| !*stop)
                        .unwrap_or_else(|p| p.into_inner());
                }
            })?;
        Ok(LogCleaner {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the cleaner: a cleaning under way ends at its next batch, its
    /// files removed.
    pub fn stop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogCleaner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One round; returns how long to sleep after it (`None`: go on at once,
/// something was cleaned).
fn round(
    replicas: &ReplicaManager,
    uncleanable: &mut HashSet<(Uuid, i32)>,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Duration> {
    let config = replicas.effective_config();
    let backoff = Duration::from_millis(config.get_i64("log.cleaner.backoff.ms").max(0) as u64);
    let threads = config.get_i64("log.cleaner.threads").max(0) as usize;
    if threads == 0 {
        return Some(backoff);
    }
    let settings = CleanerSettings {
        dedupe_buffer_bytes: config.get_i64("log.cleaner.dedupe.buffer.size").max(0) as u64
            / threads as u64,
        io_max_bytes_per_second: config.get_f64("log.cleaner.io.max.bytes.per.second"),
    };
    let now = wall_clock_ms();
    let candidates: Vec<_> = replicas
        .hosted()
        .into_iter()
        .filter(|p| !uncleanable.contains(&(p.topic_id(), p.index())))
        .filter_map(|p| p.dirtiness(now).map(|d| (d, p)))
        .collect();
    let stats = replicas.cleaner_stats();
    stats.last_round_ms.store(now, Ordering::Relaxed);
    let dirtiest = candidates
        .iter()
        .map(|(d, _)| d.ratio())
        .fold(0.0_f64, f64::max);
    stats
        .max_dirty_percent
        .store((dirtiest * 100.0).to_bits(), Ordering::Relaxed);
    let mut chosen: Vec<_> = candidates.iter().filter(|(d, _)| d.due()).collect();
    if chosen.is_empty() {
        return Some(backoff);
    }
    // Overdue logs first, then the dirtiest.
    chosen.sort_by(|(a, _), (b, _)| {
        b.overdue
            .cmp(&a.overdue)
            .then(b.ratio().total_cmp(&a.ratio()))
    });
    chosen.truncate(threads);
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = chosen
            .iter()
            .map(|(_, p)| {
                let settings = &settings;
                scope.spawn(move || {
                    let started = Instant::now();
                    let mut throttle = Throttle::new(settings.io_max_bytes_per_second);
                    (
                        p.clean(settings, now, &mut throttle, stop),
                        started.elapsed(),
                    )
                })
            })
            .collect();
        running.into_iter().map(|t| t.join()).collect()
    });
    let mut cleaned = false;
    let (mut read, mut written, mut longest) = (0u64, 0u64, 0.0_f64);
    for ((_, p), outcome) in chosen.iter().zip(outcomes) {
        match outcome {
            Ok((Ok(Some(done)), took)) => {
                cleaned = true;
                read += done.bytes_read;
                written += done.bytes_written;
                longest = longest.max(took.as_secs_f64());
                stats.cleanings.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_read
                    .fetch_add(done.bytes_read, Ordering::Relaxed);
                stats
                    .bytes_written
                    .fetch_add(done.bytes_written, Ordering::Relaxed);
                stats
                    .records_removed
                    .fetch_add(done.records_removed, Ordering::Relaxed);
                let stats = done;
                let secs = took.as_secs_f64().max(1e-6);
                info!(
                    partition = ?p,
                    segments = stats.segments_read,
                    into = stats.segments_written,
                    read_bytes = stats.bytes_read,
                    written_bytes = stats.bytes_written,
                    records = stats.records_read,
                    removed = stats.records_removed,
                    keys = stats.keys,
                    mb_per_s = format!("{:.1}", stats.bytes_read as f64 / secs / 1e6),
                    "log cleaned"
                );
            }
            Ok((Ok(None), _)) => {}
            Ok((Err(e), _)) => {
                error!(partition = ?p, error = %e, "cannot clean the log; leaving it alone until restart");
                uncleanable.insert((p.topic_id(), p.index()));
            }
            Err(_) => {
                error!(partition = ?p, "the cleaning panicked; leaving the log alone until restart");
                uncleanable.insert((p.topic_id(), p.index()));
            }
        }
    }
    if cleaned {
        let recopy = if read == 0 {
            0.0
        } else {
            written as f64 * 100.0 / read as f64
        };
        stats
            .recopy_percent
            .store(recopy.to_bits(), Ordering::Relaxed);
        stats
            .max_clean_secs
            .store(longest.to_bits(), Ordering::Relaxed);
    }
    stats
        .uncleanable
        .store(uncleanable.len() as u64, Ordering::Relaxed);
    (!cleaned).then_some(backoff)
}
