//! The framing the Raft log shares with the metadata log of Strom's
//! single-node releases, and the reader that carries such a log into the
//! quorum once.

use std::path::Path;

use strom_metadata::{MetadataImage, MetadataRecord};
use tracing::warn;

/// The metadata log that Strom's single-node releases wrote in
/// `__cluster_metadata-0/`, one fsynced entry per decision.
pub(crate) const LEGACY_LOG: &str = "metadata.log";

/// What that log is renamed to once its metadata is in the quorum's log.
pub(crate) const LEGACY_LOG_MIGRATED: &str = "metadata.log.migrated";

/// The image a single-node release's metadata log in `dir` holds, if there
/// is one (a torn tail, which that release cut at its next start, is left
/// out the same way).
pub(crate) fn read_legacy(dir: &Path) -> std::io::Result<Option<MetadataImage>> {
    let path = dir.join(LEGACY_LOG);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (entries, valid) = parse_entries(&bytes);
    if valid < bytes.len() {
        warn!(path = %path.display(), valid, len = bytes.len(), "ignoring the torn tail of the old metadata log");
    }
    let mut image = MetadataImage::empty();
    for (offset, records) in &entries {
        image.apply_mut(*offset, records);
    }
    Ok(Some(image))
}

/// The CRC-checked frames at the start of `bytes` (a 4-byte big-endian
/// length, the CRC32C of the payload, the payload), each with its position,
/// up to the first incomplete or corrupt one. The metadata log and the Raft
/// log share this framing.
pub(crate) fn frames(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(pos..pos + 8)?;
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        let payload = bytes.get(pos + 8..(pos + 8).checked_add(len)?)?;
        if crc32c::crc32c(payload) != crc {
            return None;
        }
        let at = pos;
        pos += 8 + len;
        Some((at, payload))
    })
}

/// One frame of [`frames`] around `payload`.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses entries up to the first incomplete or corrupt one; returns them
/// and the length of the valid prefix.
pub(crate) fn parse_entries(bytes: &[u8]) -> (Vec<(i64, Vec<MetadataRecord>)>, usize) {
    let mut entries = Vec::new();
    let mut valid = 0usize;
    for (pos, payload) in frames(bytes) {
        let Ok(values) = serde_json::from_slice::<Vec<serde_json::Value>>(payload) else {
            break;
        };
        let Ok(records) = values
            .into_iter()
            .map(serde_json::from_value::<MetadataRecord>)
            .collect::<Result<Vec<_>, _>>()
        else {
            break;
        };
        entries.push((entries.len() as i64, records));
        valid = pos + 8 + payload.len();
    }
    (entries, valid)
}

/// One entry as the single-node releases wrote it.
#[cfg(test)]
pub(crate) fn encode_entry(records: &[MetadataRecord]) -> Vec<u8> {
    frame(&serde_json::to_vec(records).expect("records always serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(n: i64) -> MetadataRecord {
        MetadataRecord::ProducerIds {
            node_id: 1,
            next_producer_id: n,
        }
    }

    #[test]
    fn a_legacy_log_reads_to_its_image_without_its_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_legacy(dir.path()).unwrap().is_none());
        let mut bytes = encode_entry(&[rec(1)]);
        bytes.extend(encode_entry(&[rec(2), rec(3)]));
        let torn = encode_entry(&[rec(4)]);
        bytes.extend(&torn[..torn.len() - 2]);
        std::fs::write(dir.path().join(LEGACY_LOG), bytes).unwrap();
        let image = read_legacy(dir.path()).unwrap().unwrap();
        assert_eq!(image.offset, 1);
        assert_eq!(image.next_producer_id, 3);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (_, valid) = parse_entries(&bytes);
            prop_assert!(valid <= bytes.len());
        }

        #[test]
        fn any_prefix_parses_to_a_prefix(n in 1usize..6, cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            for i in 0..n { bytes.extend(encode_entry(&[rec(i as i64)])); }
            let cut = cut.index(bytes.len() + 1);
            let (entries, _) = parse_entries(&bytes[..cut]);
            for (i, (_, r)) in entries.iter().enumerate() {
                prop_assert_eq!(r, &vec![rec(i as i64)]);
            }
        }
    }
}
