/// Per-partition log settings; names follow Kafka's topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when an incoming batch's timestamp is this far
    /// past the active segment's first batch (by record timestamps).
    pub segment_ms: i64,
    /// `segment.jitter.ms`: each segment rolls up to this much earlier
    /// (a random amount chosen when it is created).
    pub segment_jitter_ms: i64,
    /// `index.interval.bytes`: bytes between offset index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: roll when the offset index would exceed this.
    pub segment_index_bytes: u64,
    /// `flush.messages`: fsync after this many records (Kafka default: never).
    pub flush_messages: u64,
    /// `flush.ms`: fsync data older than this; enforced by the owner's timer.
    pub flush_ms: i64,
    /// `retention.ms`: delete closed segments whose newest record is older (-1: keep).
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest closed segments past this size (-1: keep).
    pub retention_bytes: i64,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `file.delete.delay.ms`: how long a deleted segment's files stay
    /// (renamed `.deleted`) before they are removed.
    pub file_delete_delay_ms: i64,
    /// `cleanup.policy` includes `delete`: records may be deleted by
    /// DeleteRecords (retention follows `retention.*` either way).
    pub delete_policy: bool,
    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest
    /// record of each key.
    pub compact: bool,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (and
    /// an empty transaction's marker) after it first cleaned past it.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of the log not yet cleaned
    /// above which the cleaner takes it.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this stay uncleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest uncleaned record is older
    /// is cleaned whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_jitter_ms: 0,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_messages: i64::MAX as u64,
            flush_ms: i64::MAX,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            log_append_time: false,
            file_delete_delay_ms: 60_000,
            delete_policy: true,
            compact: false,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}
