//! Segment data files, opened on use and closed when too many are open.
//!
//! Every segment of every log has a data file; a node with many partitions
//! (or long logs) has more of them than the process may keep open. Each
//! segment holds a [`PooledFile`]: the file is open while it is used, and
//! once more than the pool's capacity are open, the one least recently used
//! is closed (a clock: each file has a "used" bit, cleared as the hand
//! passes it, and a file whose bit is clear when the hand comes round is
//! closed). A closed file is reopened by its next use. Closing never loses
//! data: writes are in the page cache whatever the descriptor, and an fsync
//! through a new descriptor flushes the file's pages all the same.
//!
//! The capacity is process-wide ([`set_capacity`]); until it is set, files
//! are never closed. An operation holds its file (an `Arc`) while it runs,
//! so a file closed by the pool meanwhile stays open until it is done.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

struct Slot {
    file: Mutex<Option<Arc<File>>>,
    used: AtomicBool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = match self.file.get_mut() {
            Ok(f) => f.is_some(),
            Err(poisoned) => poisoned.into_inner().is_some(),
        };
        if open {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Files the pool may keep open (`usize::MAX`: all).
static CAPACITY: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Files open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// The clock's ring of open files, oldest first.
static RING: Mutex<VecDeque<Weak<Slot>>> = Mutex::new(VecDeque::new());

/// Lets at most `files` segment files be open at once (at least 16).
pub fn set_capacity(files: usize) {
    CAPACITY.store(files.max(16), Ordering::Relaxed);
    close_over_capacity();
}

/// How many segment data files are open now.
pub fn open_files() -> usize {
    OPEN.load(Ordering::Relaxed)
}

fn ring() -> MutexGuard<'static, VecDeque<Weak<Slot>>> {
    RING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Files are tracked only once a capacity is set.
fn pooled() -> bool {
    CAPACITY.load(Ordering::Relaxed) != usize::MAX
}

fn close_over_capacity() {
    if !pooled() {
        return;
    }
    let mut ring = ring();
    let mut passes = 0;
    while OPEN.load(Ordering::Relaxed) > CAPACITY.load(Ordering::Relaxed) {
        let Some(weak) = ring.pop_front() else {
            return;
        };
        let Some(slot) = weak.upgrade() else {
            continue; // its segment is gone
        };
        // Recently used: a second chance (each pass clears the bits, so a
        // second pass always finds one to close).
        if slot.used.swap(false, Ordering::Relaxed) && passes < 2 * ring.len() + 2 {
            passes += 1;
            ring.push_back(weak);
            continue;
        }
        if slot.lock().take().is_some() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
    // Entries of segments that are gone are dropped as the hand meets them;
    // when they pile up (segments deleted while few files are opened), the
    // ring is swept.
    if ring.len() > 2 * OPEN.load(Ordering::Relaxed) + 1024 {
        ring.retain(|w| w.strong_count() > 0);
    }
}

/// A segment's data file, open while in use (see the module docs).
pub(crate) struct PooledFile {
    path: PathBuf,
    slot: Arc<Slot>,
}

impl PooledFile {
    /// Takes `file`, open, as the file at `path`.
    pub(crate) fn new(path: &Path, file: File) -> PooledFile {
        OPEN.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            file: Mutex::new(Some(Arc::new(file))),
            used: AtomicBool::new(true),
        });
        if pooled() {
            ring().push_back(Arc::downgrade(&slot));
        }
        let f = PooledFile {
            path: path.to_path_buf(),
            slot,
        };
        close_over_capacity();
        f
    }

    /// The open file, reopened if the pool closed it.
    pub(crate) fn get(&self) -> std::io::Result<Arc<File>> {
        let mut guard = self.slot.lock();
        self.slot.used.store(true, Ordering::Relaxed);
        if let Some(f) = guard.as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(OpenOptions::new().read(true).write(true).open(&self.path)?);
        *guard = Some(f.clone());
        drop(guard);
        OPEN.fetch_add(1, Ordering::Relaxed);
        if pooled() {
            ring().push_back(Arc::downgrade(&self.slot));
        }
        close_over_capacity();
        Ok(f)
    }

    /// Closes the file now (before it is renamed or removed).
    pub(crate) fn close(&self) {
        if self.slot.lock().take().is_some() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
