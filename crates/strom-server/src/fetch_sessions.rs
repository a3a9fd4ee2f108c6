//! Incremental fetch sessions (KIP-227), as Kafka's `FetchManager` and
//! `FetchSessionCache` serve them.
//!
//! A full fetch (session epoch 0) may open a session: the broker remembers
//! the partitions and their fetch parameters, and the client then sends only
//! what changed (epoch 1, 2, …), plus the partitions to forget. The answer to
//! an incremental fetch lists only partitions with records, a changed high
//! watermark or log start offset, or an error. Epoch -1 closes the session
//! (a sessionless fetch); a full fetch that names a session closes it too.
//!
//! The cache is bounded by `max.incremental.fetch.session.cache.slots`. When
//! it is full a new session may take the place of one that is stale (unused
//! for [`EVICTION_MS`]), or of a smaller one older than that; a follower's
//! session may also take the place of any consumer's. Otherwise the fetch is
//! answered with session id 0, as a sessionless one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strom_protocol::ErrorCode;
use uuid::Uuid;

/// How long a session is protected from eviction after it was created, and
/// after which an unused one is stale (Kafka's fixed 120 s).
pub(crate) const EVICTION_MS: i64 = 120_000;

/// No session (Kafka's `INVALID_SESSION_ID`).
pub(crate) const NO_SESSION: i32 = 0;
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

/// The epoch after `epoch`, as Kafka's `FetchMetadata.nextEpoch`.
fn next_epoch(epoch: i32) -> i32 {
    match epoch {
        e if e < 0 => FINAL_EPOCH,
        i32::MAX => 1,
        e => e + 1,
    }
}

/// How a request names a topic: by id from Fetch v13, by name before.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TopicRef {
    Id(Uuid),
    /// Shared by a request's partitions of the topic, so that cloning a
    /// partition's key costs no allocation.
    Name(Arc<str>),
}

/// The request's session fields, and who sends it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// The Fetch version: from 13 topics are named by id.
    pub version: i16,
    pub session_id: i32,
    pub epoch: i32,
    /// From a follower (a replica id): its sessions rank above consumers'.
    pub privileged: bool,
}

/// What a fetcher asks of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    pub log_start_offset: i64,
    pub last_fetched_epoch: i32,
}

/// One partition to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub topic: TopicRef,
    pub partition: i32,
    pub params: Params,
}

impl Wanted {
    fn key(&self) -> (TopicRef, i32) {
        (self.topic.clone(), self.partition)
    }
}

/// What the answer for a partition held, for the session to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answered {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub has_records: bool,
    pub error: bool,
}

/// How a fetch request stands towards sessions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Context {
    /// Every partition answered; no session (epoch -1, or an incremental
    /// fetch that forgot every partition).
    Sessionless,
    /// Every partition answered; a session is opened if there is room.
    Full { privileged: bool, uses_ids: bool },
    /// The session's partitions are fetched; only changes are answered.
    Incremental { id: i32, epoch: i32 },
    /// The request is answered with this error and nothing else.
    Error(ErrorCode),
}

struct Cached {
    wanted: Wanted,
    high_watermark: i64,
    log_start_offset: i64,
}

impl Cached {
    /// Kafka's `CachedPartition.maybeUpdateResponseData`: whether the
    /// partition must be in the answer; what it remembers is updated.
    fn must_answer(&mut self, a: &Answered) -> bool {
        let mut must = a.has_records;
        if self.high_watermark != a.high_watermark {
            self.high_watermark = a.high_watermark;
            must = true;
        }
        if self.log_start_offset != a.log_start_offset {
            self.log_start_offset = a.log_start_offset;
            must = true;
        }
        if a.error {
            // Sent again once the error is gone.
            self.high_watermark = -1;
            must = true;
        }
        must
    }
}

struct Session {
    privileged: bool,
    uses_ids: bool,
    created_ms: i64,
    last_used_ms: i64,
    /// The epoch the next incremental fetch must carry.
    epoch: i32,
    /// In fetch order: partitions that returned records move to the end.
    parts: Vec<Cached>,
    index: HashMap<(TopicRef, i32), usize>,
    /// Set when last touched, as Kafka's evictable sets.
    evictable_by_all: bool,
    evictable_by_privileged: bool,
    /// Partitions when last touched (the eviction rank).
    cached_size: usize,
}

impl Session {
    fn reindex(&mut self) {
        self.index = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.wanted.key(), i))
            .collect();
    }

    fn update(&mut self, wanted: &[Wanted], forgotten: &[(TopicRef, i32)]) {
        for w in wanted {
            match self.index.get(&w.key()) {
                Some(&i) => self.parts[i].wanted.params = w.params,
                None => {
                    self.index.insert(w.key(), self.parts.len());
                    self.parts.push(Cached {
                        wanted: w.clone(),
                        high_watermark: -1,
                        log_start_offset: -1,
                    });
                }
            }
        }
        // Each forgotten partition looked up once, as Kafka removes them
        // by key: a request forgetting many is no worse than linear.
        let mut gone = vec![false; self.parts.len()];
        let mut any = false;
        for f in forgotten {
            if let Some(&i) = self.index.get(f) {
                gone[i] = true;
                any = true;
            }
        }
        if any {
            let mut i = 0;
            self.parts.retain(|_| {
                i += 1;
                !gone[i - 1]
            });
            self.reindex();
        }
    }

    fn touch(&mut self, now_ms: i64) {
        self.last_used_ms = now_ms;
        self.cached_size = self.parts.len();
        let old = now_ms - self.created_ms > EVICTION_MS;
        self.evictable_by_privileged = !self.privileged || old;
        self.evictable_by_all = old;
    }
}

/// The broker's fetch sessions.
pub(crate) struct FetchSessions {
    max_entries: usize,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessions {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Open sessions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Kafka's `FetchManager.newContext`: what the request is and the
    /// partitions to fetch, in order. `wanted` holds each partition once
    /// (see [`dedup`]).
    pub(crate) fn new_context(
        &self,
        req: Request,
        wanted: Vec<Wanted>,
        forgotten: &[(TopicRef, i32)],
        now_ms: i64,
    ) -> (Context, Vec<Wanted>) {
        let Request {
            version,
            session_id,
            epoch,
            privileged,
        } = req;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if session_id != NO_SESSION {
                sessions.remove(&session_id);
            }
            let ctx = if epoch == FINAL_EPOCH {
                Context::Sessionless
            } else {
                Context::Full {
                    privileged,
                    uses_ids: version >= 13,
                }
            };
            return (ctx, wanted);
        }
        let Some(session) = sessions.get_mut(&session_id) else {
            return (
                Context::Error(ErrorCode::FetchSessionIdNotFound),
                Vec::new(),
            );
        };
        if session.epoch != epoch {
            return (
                Context::Error(ErrorCode::InvalidFetchSessionEpoch),
                Vec::new(),
            );
        }
        if session.uses_ids != (version >= 13) {
            return (
                Context::Error(ErrorCode::FetchSessionTopicIdError),
                Vec::new(),
            );
        }
        session.update(&wanted, forgotten);
        if session.parts.is_empty() {
            sessions.remove(&session_id);
            return (Context::Sessionless, wanted);
        }
        session.touch(now_ms);
        session.epoch = next_epoch(session.epoch);
        let all = session.parts.iter().map(|c| c.wanted.clone()).collect();
        (
            Context::Incremental {
                id: session_id,
                epoch: session.epoch,
            },
            all,
        )
    }

    /// Kafka's `updateAndGenerateResponseData`: the session id to answer
    /// with and which of `fetched` (answered as `answers`) the response
    /// holds, or the error (and session id) to answer instead.
    pub(crate) fn finish(
        &self,
        ctx: &Context,
        fetched: &[Wanted],
        answers: &[Answered],
        now_ms: i64,
    ) -> Result<(i32, Vec<bool>), (ErrorCode, i32)> {
        match *ctx {
            Context::Error(code) => Err((code, NO_SESSION)),
            Context::Sessionless => Ok((NO_SESSION, vec![true; fetched.len()])),
            Context::Full {
                privileged,
                uses_ids,
            } => {
                let id = self.create(privileged, uses_ids, fetched, answers, now_ms);
                Ok((id, vec![true; fetched.len()]))
            }
            Context::Incremental { id, epoch } => {
                let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                let Some(session) = sessions.get_mut(&id) else {
                    // Evicted or closed while the fetch waited: Kafka still
                    // answers from the session it holds. Everything read
                    // is answered; the next incremental fetch is told the
                    // session is gone and the client starts over.
                    return Ok((id, vec![true; fetched.len()]));
                };
                if session.epoch != epoch {
                    // A duplicate request moved the session on.
                    return Err((ErrorCode::InvalidFetchSessionEpoch, id));
                }
                let mut include = Vec::with_capacity(fetched.len());
                let mut moved = Vec::new();
                for (w, a) in fetched.iter().zip(answers) {
                    let must = match session.index.get(&w.key()) {
                        Some(&i) => {
                            let must = session.parts[i].must_answer(a);
                            if a.has_records {
                                moved.push(i);
                            }
                            must
                        }
                        None => false,
                    };
                    include.push(must);
                }
                if !moved.is_empty() {
                    // Partitions that returned records go last next time, so
                    // that the others get their turn at the response's room.
                    let mut is_moved = vec![false; session.parts.len()];
                    for i in moved {
                        is_moved[i] = true;
                    }
                    let parts = std::mem::take(&mut session.parts);
                    let (back, front): (Vec<_>, Vec<_>) = parts
                        .into_iter()
                        .enumerate()
                        .partition(|(i, _)| is_moved[*i]);
                    session.parts = front.into_iter().chain(back).map(|(_, c)| c).collect();
                    session.reindex();
                }
                Ok((id, include))
            }
        }
    }

    /// Kafka's `maybeCreateSession`: a new session's id, or [`NO_SESSION`]
    /// when the cache is full and nothing may be evicted.
    fn create(
        &self,
        privileged: bool,
        uses_ids: bool,
        fetched: &[Wanted],
        answers: &[Answered],
        now_ms: i64,
    ) -> i32 {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= self.max_entries
            && !try_evict(&mut sessions, privileged, fetched.len(), now_ms)
        {
            return NO_SESSION;
        }
        let id = loop {
            let id = (Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            if id != NO_SESSION && !sessions.contains_key(&id) {
                break id;
            }
        };
        let parts = fetched
            .iter()
            .zip(answers)
            .map(|(w, a)| Cached {
                wanted: w.clone(),
                high_watermark: a.high_watermark,
                log_start_offset: a.log_start_offset,
            })
            .collect();
        let mut session = Session {
            privileged,
            uses_ids,
            created_ms: now_ms,
            last_used_ms: now_ms,
            epoch: next_epoch(INITIAL_EPOCH),
            parts,
            index: HashMap::new(),
            evictable_by_all: false,
            evictable_by_privileged: false,
            cached_size: 0,
        };
        session.reindex();
        session.touch(now_ms);
        sessions.insert(id, session);
        id
    }
}

/// Kafka's `tryEvict`: the session unused longest goes if it is stale;
/// otherwise the least valuable evictable one (consumers before followers,
/// then fewer partitions, then lower id) goes if the new one is worth more.
fn try_evict(
    sessions: &mut HashMap<i32, Session>,
    privileged: bool,
    size: usize,
    now_ms: i64,
) -> bool {
    let stale = sessions
        .iter()
        .min_by_key(|(id, s)| (s.last_used_ms, **id))
        .filter(|(_, s)| now_ms - s.last_used_ms > EVICTION_MS)
        .map(|(id, _)| *id);
    if let Some(id) = stale {
        sessions.remove(&id);
        return true;
    }
    let victim = sessions
        .iter()
        .filter(|(_, s)| {
            if privileged {
                s.evictable_by_privileged
            } else {
                s.evictable_by_all
            }
        })
        .map(|(id, s)| (s.privileged, s.cached_size, *id))
        .min();
    match victim {
        // The new session's rank has id 0, below any session's: it must
        // be worth strictly more.
        Some(rank) if (privileged, size, 0) > rank => {
            sessions.remove(&rank.2);
            true
        }
        _ => false,
    }
}

/// Each partition once, at its first place with its last parameters, as
/// Kafka reads a request's partitions into a map.
pub(crate) fn dedup(wanted: Vec<Wanted>) -> Vec<Wanted> {
    let mut seen: HashMap<(TopicRef, i32), usize> = HashMap::with_capacity(wanted.len());
    let mut out: Vec<Wanted> = Vec::with_capacity(wanted.len());
    for w in wanted {
        match seen.get(&w.key()) {
            Some(&i) => out[i].params = w.params,
            None => {
                seen.insert(w.key(), out.len());
                out.push(w);
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "fetch_sessions_tests.rs"]
mod tests;
