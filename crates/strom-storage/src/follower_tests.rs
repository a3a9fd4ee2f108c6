//! The follower's side of the log: batches appended as the leader wrote
//! them, and truncation where a follower's log diverged, held against the
//! leader's log in a property test.

use proptest::prelude::*;

use crate::tests::batch;
use crate::{Log, LogConfig, StorageError};

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 90,
        ..LogConfig::default()
    }
}

/// The whole log (a read ends at a segment's end: read on from there).
fn everything(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = log.log_start_offset();
    while from < log.log_end_offset() {
        let read = log.read(from, 1 << 24, i64::MAX, true).unwrap().records;
        let Some((base, last)) = split(&read).last().map(|(o, b)| (*o, b.clone())) else {
            break;
        };
        let delta = i32::from_be_bytes(last[23..27].try_into().unwrap());
        from = base + i64::from(delta) + 1;
        out.extend_from_slice(&read);
    }
    out
}

/// The batches of `bytes` as (base offset, bytes).
fn split(bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let size = strom_protocol::records::batch_size(&bytes[pos..]).unwrap();
        let b = &bytes[pos..pos + size];
        out.push((i64::from_be_bytes(b[..8].try_into().unwrap()), b.to_vec()));
        pos += size;
    }
    out
}

/// A leader's log of `sizes.len()` batches, in epochs that change every
/// `epoch_every` batches.
fn leader(dir: &std::path::Path, sizes: &[(usize, usize)], epoch_every: usize) -> Log {
    let mut log = Log::open(dir, small_segments()).unwrap();
    for (i, (n, size)) in sizes.iter().enumerate() {
        let epoch = (i / epoch_every.max(1)) as i32;
        log.append(&mut batch(*n, *size, 1000 + i as i64), epoch, 5)
            .unwrap();
    }
    log
}

#[test]
fn a_follower_keeps_offsets_epochs_and_timestamps() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(ld.path(), &[(3, 40), (1, 300), (5, 10), (2, 200)], 2);
    let mut follower = Log::open(fd.path(), small_segments()).unwrap();
    let bytes = everything(&leader);
    let info = follower.append_as_follower(&bytes, 99).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 10));
    assert_eq!(everything(&follower), bytes, "byte for byte the leader's");
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    // Appending the same batches again does not follow the log end.
    assert!(matches!(
        follower.append_as_follower(&bytes, 99),
        Err(StorageError::UnexpectedAppend(_))
    ));
    // Nor does a damaged batch, which leaves the log as it was.
    let mut next = batch(2, 20, 5000);
    next[..8].copy_from_slice(&11i64.to_be_bytes());
    // (CRC covers from the attributes on: the offset may be set freely.)
    let good = next.clone();
    let last = next.len() - 1;
    next[last] ^= 0xff;
    assert!(follower.append_as_follower(&next, 99).is_err());
    assert_eq!(follower.log_end_offset(), 11);
    follower.append_as_follower(&good, 99).unwrap();
    assert_eq!(follower.log_end_offset(), 13);
}

#[test]
fn a_gap_in_a_compacted_leaders_offsets_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), small_segments()).unwrap();
    let mut b = batch(2, 10, 0);
    b[..8].copy_from_slice(&40i64.to_be_bytes());
    let info = follower.append_as_follower(&b, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (40, 41));
    assert_eq!(follower.log_end_offset(), 42);
    assert_eq!(split(&everything(&follower))[0].0, 40);
}

#[test]
fn truncating_below_the_log_start_starts_again_there() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(ld.path(), &[(3, 40), (3, 40)], 1);
    let mut follower = Log::open(fd.path(), small_segments()).unwrap();
    follower
        .append_as_follower(&everything(&leader), 0)
        .unwrap();
    assert_eq!(follower.truncate_fully_and_start_at(100).unwrap(), 100);
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (100, 100)
    );
    drop(follower);
    let reopened = Log::open(fd.path(), small_segments()).unwrap();
    assert_eq!(
        (reopened.log_start_offset(), reopened.log_end_offset()),
        (100, 100)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// A follower that fetches the leader's log in arbitrary pieces holds
    /// it byte for byte; truncated anywhere it holds the leader's batches
    /// before the cut (the batch holding the cut goes whole), also after
    /// a clean or an unclean reopen, and fetching on from its new end
    /// makes it whole again.
    #[test]
    fn follower_follows_truncates_and_catches_up(
        sizes in proptest::collection::vec((1usize..6, 1usize..260), 1..30),
        cuts in proptest::collection::vec(0usize..4, 0..30),
        epoch_every in 1usize..5,
        truncate_at in 0i64..200,
        clean in any::<bool>(),
    ) {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = leader(ld.path(), &sizes, epoch_every);
        let expected = everything(&leader);
        let batches = split(&expected);
        let mut follower = Log::open(fd.path(), small_segments()).unwrap();
        // Fetched in runs of 1-4 batches.
        let mut i = 0;
        let mut cut = cuts.iter().cycle();
        while i < batches.len() {
            let take = (*cut.next().unwrap_or(&0) + 1).min(batches.len() - i);
            let chunk: Vec<u8> = batches[i..i + take].iter().flat_map(|(_, b)| b.clone()).collect();
            follower.append_as_follower(&chunk, 7).unwrap();
            i += take;
        }
        prop_assert_eq!(&everything(&follower), &expected);
        prop_assert_eq!(follower.log_end_offset(), leader.log_end_offset());

        let end = follower.truncate_to(truncate_at).unwrap();
        let kept: Vec<u8> = batches
            .iter()
            .zip(batches.iter().skip(1).map(|(o, _)| *o).chain([leader.log_end_offset()]))
            .filter(|(_, next)| *next <= truncate_at)
            .flat_map(|((_, b), _)| b.clone())
            .collect();
        let expected_end = batches
            .iter()
            .map(|(o, _)| *o)
            .find(|o| {
                // The first batch whose last offset reaches the cut.
                let next = batches.iter().map(|(n, _)| *n).find(|n| n > o).unwrap_or(leader.log_end_offset());
                next > truncate_at
            })
            .unwrap_or(leader.log_end_offset());
        prop_assert_eq!(end, expected_end);
        prop_assert_eq!(&everything(&follower), &kept);

        if clean {
            follower.close().unwrap();
        }
        drop(follower);
        let mut follower = Log::open(fd.path(), small_segments()).unwrap();
        prop_assert_eq!(follower.log_end_offset(), end);
        prop_assert_eq!(&everything(&follower), &kept);
        // Lookups by offset still find every kept batch.
        for (o, b) in batches.iter().filter(|(o, _)| *o < end) {
            let read = follower.read(*o, 1, i64::MAX, true).unwrap().records;
            prop_assert_eq!(&read[..b.len()], &b[..]);
        }
        let rest: Vec<u8> = batches.iter().filter(|(o, _)| *o >= end).flat_map(|(_, b)| b.clone()).collect();
        follower.append_as_follower(&rest, 8).unwrap();
        prop_assert_eq!(&everything(&follower), &expected);
    }
}

#[test]
fn truncation_drops_the_aborted_transactions_it_cuts_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..30 {
        log.append(&mut batch(1, 100, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    let aborted = |first, last| crate::AbortedTxn {
        producer_id: 1,
        first_offset: first,
        last_offset: last,
        last_stable_offset: last + 1,
    };
    for (first, last) in [(2, 5), (9, 17), (18, 19), (26, 28)] {
        assert!(log.add_aborted(aborted(first, last)));
    }
    let lasts = |log: &Log| {
        log.aborted_txns(0, 30)
            .iter()
            .map(|t| t.last_offset)
            .collect::<Vec<_>>()
    };
    // The marker at 19 is cut off with its batch; the one at 17 stays.
    assert_eq!(log.truncate_to(19).unwrap(), 19);
    assert_eq!(lasts(&log), [5, 17]);
    drop(log); // unclean
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 19);
    assert_eq!(lasts(&log), [5, 17]);
    // Appending on from the cut indexes anew.
    log.append_as_follower(
        &{
            let mut b = batch(1, 100, 40);
            b[..8].copy_from_slice(&19i64.to_be_bytes());
            b
        },
        0,
    )
    .unwrap();
    assert!(log.add_aborted(aborted(18, 19)));
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(lasts(&log), [5, 17, 19]);
}
