//! The sparse indexes of a segment and their file format.
//!
//! Offset index (`.index`): entries of 8 bytes, a big-endian `u32` offset
//! relative to the segment's base offset and a `u32` byte position in the
//! `.log` file where the batch with that base offset starts. An entry is
//! added once at least `index.interval.bytes` were written since the last.
//!
//! Time index (`.timeindex`): entries of 12 bytes, an `i64` timestamp and a
//! `u32` relative offset: every batch before that offset has a max
//! timestamp at most the entry's timestamp (which strictly increases from
//! entry to entry). A lookup for time `t` may thus start scanning at the
//! offset of the last entry whose timestamp is below `t`.
//!
//! Both are kept in memory and written out when a segment is closed (roll
//! or clean shutdown); after a crash they are rebuilt from the log.

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

pub(crate) fn encode_offsets(entries: &[OffsetEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 8);
    for e in entries {
        out.extend_from_slice(&e.relative_offset.to_be_bytes());
        out.extend_from_slice(&e.position.to_be_bytes());
    }
    out
}

pub(crate) fn encode_times(entries: &[TimeEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 12);
    for e in entries {
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.relative_offset.to_be_bytes());
    }
    out
}

/// Decodes an offset index, or `None` when the bytes cannot be one of a
/// segment of `segment_size` bytes (then it is rebuilt).
pub fn decode_offsets(bytes: &[u8], segment_size: u64) -> Option<Vec<OffsetEntry>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    let entries: Vec<OffsetEntry> = bytes
        .chunks_exact(8)
        .map(|c| OffsetEntry {
            relative_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let monotonic = entries
        .windows(2)
        .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
    let in_bounds = entries
        .last()
        .is_none_or(|e| u64::from(e.position) < segment_size);
    (monotonic && in_bounds).then_some(entries)
}

/// Decodes a time index, or `None` when it is not well formed.
pub fn decode_times(bytes: &[u8]) -> Option<Vec<TimeEntry>> {
    if !bytes.len().is_multiple_of(12) {
        return None;
    }
    let entries: Vec<TimeEntry> = bytes
        .chunks_exact(12)
        .map(|c| TimeEntry {
            timestamp: i64::from_be_bytes(c[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
        })
        .collect();
    let monotonic = entries
        .windows(2)
        .all(|w| w[0].timestamp < w[1].timestamp && w[0].relative_offset < w[1].relative_offset);
    monotonic.then_some(entries)
}

/// The last entry at or below `relative_offset`.
pub(crate) fn floor_offset(entries: &[OffsetEntry], relative_offset: u32) -> Option<OffsetEntry> {
    let idx = entries.partition_point(|e| e.relative_offset <= relative_offset);
    idx.checked_sub(1).map(|i| entries[i])
}

/// The last entry whose timestamp is below `timestamp`.
pub(crate) fn floor_time(entries: &[TimeEntry], timestamp: i64) -> Option<TimeEntry> {
    let idx = entries.partition_point(|e| e.timestamp < timestamp);
    idx.checked_sub(1).map(|i| entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floor_lookups() {
        let e = [
            OffsetEntry {
                relative_offset: 10,
                position: 100,
            },
            OffsetEntry {
                relative_offset: 20,
                position: 200,
            },
        ];
        assert_eq!(floor_offset(&e, 5), None);
        assert_eq!(floor_offset(&e, 10).unwrap().position, 100);
        assert_eq!(floor_offset(&e, 19).unwrap().position, 100);
        assert_eq!(floor_offset(&e, 25).unwrap().position, 200);
        let t = [
            TimeEntry {
                timestamp: 5,
                relative_offset: 3,
            },
            TimeEntry {
                timestamp: 9,
                relative_offset: 7,
            },
        ];
        assert_eq!(floor_time(&t, 5), None);
        assert_eq!(floor_time(&t, 6).unwrap().relative_offset, 3);
        assert_eq!(floor_time(&t, 100).unwrap().relative_offset, 7);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_offsets(&[0; 7], 100).is_none());
        // position beyond the segment
        assert!(decode_offsets(
            &encode_offsets(&[OffsetEntry {
                relative_offset: 1,
                position: 500
            }]),
            100
        )
        .is_none());
        // not increasing
        let t = encode_times(&[
            TimeEntry {
                timestamp: 5,
                relative_offset: 3,
            },
            TimeEntry {
                timestamp: 5,
                relative_offset: 4,
            },
        ]);
        assert!(decode_times(&t).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_index_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), size in any::<u64>()) {
            let _ = decode_offsets(&bytes, size);
            let _ = decode_times(&bytes);
        }

        #[test]
        fn round_trip(mut rels in proptest::collection::btree_set(any::<u32>(), 0..50)) {
            let rels: Vec<u32> = std::mem::take(&mut rels).into_iter().collect();
            let entries: Vec<OffsetEntry> = rels.iter().enumerate().map(|(i, r)| OffsetEntry { relative_offset: *r, position: i as u32 }).collect();
            let size = entries.len() as u64 + 1;
            prop_assert_eq!(decode_offsets(&encode_offsets(&entries), size), Some(entries));
        }
    }
}
