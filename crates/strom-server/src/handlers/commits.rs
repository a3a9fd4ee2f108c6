//! What OffsetCommit and TxnOffsetCommit share: partitions of unknown
//! topics are refused one by one and the rest go to the group coordinator;
//! the answer lists every requested partition in request order.

use strom_coordinator::group::OffsetCommit;
use strom_metadata::MetadataImage;
use strom_protocol::ErrorCode;

/// The requested commits, split.
pub(super) struct Planned {
    /// The commits of known partitions, for the coordinator.
    pub(super) commits: Vec<OffsetCommit>,
    /// Per requested partition: refused here, or `None` if sent on.
    verdicts: Vec<Option<ErrorCode>>,
}

pub(super) fn plan(
    image: &MetadataImage,
    requested: impl IntoIterator<Item = OffsetCommit>,
) -> Planned {
    let mut commits = Vec::new();
    let verdicts = requested
        .into_iter()
        .map(|c| {
            let known = image
                .topic(&c.topic)
                .is_some_and(|ti| ti.partitions.contains_key(&c.partition));
            if !known {
                return Some(ErrorCode::UnknownTopicOrPartition);
            }
            commits.push(c);
            None
        })
        .collect();
    Planned { commits, verdicts }
}

impl Planned {
    /// The error code of each requested partition, in request order: its
    /// own refusal, else the whole request's error, else the coordinator's
    /// answer for it.
    pub(super) fn codes(
        self,
        outcome: &Result<Vec<Option<ErrorCode>>, ErrorCode>,
    ) -> impl Iterator<Item = i16> + '_ {
        let mut committed = outcome.clone().unwrap_or_default().into_iter();
        self.verdicts.into_iter().map(move |verdict| {
            let code = match (verdict, outcome) {
                (Some(code), _) => Some(code),
                (None, Err(code)) => Some(*code),
                (None, Ok(_)) => committed.next().flatten(),
            };
            code.map_or(0, |c| c.code())
        })
    }
}
