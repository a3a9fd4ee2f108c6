//! Accepting connections and serving one.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strom_protocol::frame::split_frame;
use strom_protocol::legacy_produce;
use strom_protocol::request::{self, Body, DecodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use crate::broker::{now_ms, Broker};
use crate::handlers;

/// How long connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often partitions are checked for `flush.ms` and retention.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// How often group timers (sessions, join phases) are checked.
const GROUP_TICK: Duration = Duration::from_millis(100);
/// How often this node's leaderships are checked for ISR changes (a
/// follower out of time, one caught up).
const ISR_CHECK: Duration = Duration::from_millis(250);
/// The read buffer a connection starts with, and shrinks back to after a
/// large frame.
const READ_BUFFER: usize = 64 * 1024;
/// A read buffer larger than this is given back once its frame is handled.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// Connections open per client address (`max.connections.per.ip`).
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, u32>>);

/// Counts one connection of an address while it lives.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(table: &Arc<PerIp>, ip: IpAddr, max: u32) -> Option<IpSlot> {
        let mut map = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// `max.connections`, changeable while connections are open: a semaphore
/// whose permits follow the limit. Lowering it below what is in use leaves
/// a debt that connections pay off as they close (their permits are
/// forgotten instead of given back), as Kafka lets open connections be.
struct ConnectionLimit {
    slots: Arc<Semaphore>,
    /// (the current limit, permits still owed after a lowering)
    state: Mutex<(usize, usize)>,
}

/// One open connection's place under `max.connections`.
struct ConnectionSlot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    limit: Arc<ConnectionLimit>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut state = self.limit.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 > 0 {
            state.1 -= 1;
            permit.forget();
        }
    }
}

impl ConnectionLimit {
    fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max)),
            state: Mutex::new((max, 0)),
        }
    }

    fn set(&self, max: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (current, owed) = *state;
        if max > current {
            let more = max - current;
            let paid = owed.min(more);
            self.slots.add_permits(more - paid);
            *state = (max, owed - paid);
        } else if max < current {
            let fewer = current - max;
            let forgotten = self.slots.forget_permits(fewer);
            *state = (max, owed + fewer - forgotten);
        }
    }

    async fn acquire(self: &Arc<Self>) -> ConnectionSlot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        ConnectionSlot {
            permit: Some(permit),
            limit: self.clone(),
        }
    }
}

/// Kafka's limits on connections and the requests in flight on them.
struct Limits {
    /// `max.connections`: accepting waits for a free slot.
    connections: Arc<ConnectionLimit>,
    /// `max.connections.per.ip`: more are closed at once.
    per_ip_max: std::sync::atomic::AtomicU32,
    per_ip: Arc<PerIp>,
    /// `queued.max.requests`: requests handled at once.
    requests: Arc<Semaphore>,
    /// `connections.max.idle.ms`.
    idle: Duration,
}

fn permits(n: i64) -> usize {
    (n.max(0) as usize).min(Semaphore::MAX_PERMITS)
}

fn per_ip_max(config: &strom_metadata::config::StaticConfig) -> u32 {
    config
        .get_i64("max.connections.per.ip")
        .clamp(0, i64::from(u32::MAX)) as u32
}

impl Limits {
    fn of(broker: &Broker) -> Limits {
        let config = broker.effective_config(&broker.image());
        let get = |name: &str| broker.config.get_i64(name).max(0);
        Limits {
            connections: Arc::new(ConnectionLimit::new(permits(
                config.get_i64("max.connections"),
            ))),
            per_ip_max: std::sync::atomic::AtomicU32::new(per_ip_max(&config)),
            per_ip: Arc::default(),
            requests: Arc::new(Semaphore::new(permits(get("queued.max.requests")).max(1))),
            idle: Duration::from_millis(get("connections.max.idle.ms") as u64),
        }
    }

    /// Takes the dynamic ones (`max.connections`, `max.connections.per.ip`)
    /// from the current metadata.
    fn follow(&self, broker: &Broker) {
        let config = broker.effective_config(&broker.image());
        self.connections
            .set(permits(config.get_i64("max.connections")));
        self.per_ip_max
            .store(per_ip_max(&config), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves `listener` until `shutdown` resolves, then closes the broker.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let maintenance = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.maintain()).await;
            }
        })
    };
    // Transaction ends waiting for markers finish as the markers arrive.
    let marker_deliveries = {
        let broker = broker.clone();
        tokio::spawn(async move {
            loop {
                broker.markers_delivered.notified().await;
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.txns.tick(now_ms())).await;
            }
        })
    };
    let group_timer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(GROUP_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                broker.tick_groups();
            }
        })
    };
    // Heartbeats to the active controller and, while this node is it,
    // fencing of brokers whose heartbeats stopped.
    let heartbeats = tokio::spawn(broker.lifecycle.clone().run());
    let sessions = tokio::spawn(broker.controller.clone().run_sessions());
    let balancing = tokio::spawn(broker.controller.clone().run_leader_balancing());
    // ISR changes of this node's leaderships, as followers fall behind or
    // catch up.
    let isr_changes = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ISR_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                broker.alter_isrs().await;
            }
        })
    };
    tokio::pin!(shutdown);
    let limits = Arc::new(Limits::of(&broker));
    // As metadata is published (decided here or by another node's
    // controller), the replica manager reconciles its partitions with it
    // and dynamic config changes reach the limits.
    let follower = {
        let (broker, limits) = (broker.clone(), limits.clone());
        let mut images = broker.controller.subscribe();
        tokio::spawn(async move {
            while images.changed().await.is_ok() {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.sync_replicas()).await;
                limits.follow(&broker);
            }
        })
    };
    loop {
        // A free connection slot first: at max.connections, accepting waits.
        let slot = tokio::select! {
            slot = limits.connections.acquire() => slot,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let per_ip_max = limits.per_ip_max.load(std::sync::atomic::Ordering::Relaxed);
                    let Some(ip_slot) = PerIp::take(&limits.per_ip, peer.ip(), per_ip_max) else {
                        info!(ip = %peer.ip(), "Rejected connection from {}, address already has the configured maximum of {} connections.", peer.ip(), per_ip_max);
                        continue;
                    };
                    let span = tracing::info_span!("conn", %peer);
                    let conn = serve(stream, peer, broker.clone(), limits.clone(), stop_rx.clone());
                    let open = broker.metrics.connection();
                    connections.spawn(async move {
                        conn.await;
                        drop((slot, ip_slot, open));
                    }.instrument(span));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    info!("shutting down");
    drop(listener);
    // Clients still connected are told where the leaderships went.
    heartbeats.abort();
    isr_changes.abort();
    broker.controlled_shutdown().await;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    maintenance.abort();
    group_timer.abort();
    marker_deliveries.abort();
    follower.abort();
    sessions.abort();
    balancing.abort();
    let controller = broker.controller.clone();
    let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
    controller.shutdown().await;
}

/// What to do after a frame.
enum Reply {
    Send(Bytes),
    Nothing,
    Close(String),
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let max = broker.max_frame_bytes();
    // Room in the broker's memory pool for the frame being read, taken as
    // soon as its size is known (before its body is buffered) and given
    // back once its response is written.
    let mut room: Option<OwnedSemaphorePermit> = None;
    debug!("connected");
    loop {
        if room.is_none() {
            if let Some(size) = frame_size(&buf).filter(|s| *s <= max) {
                room = broker.memory.reserve(4 + size).await;
            }
        }
        let frame = match split_frame(&mut buf, max) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if wr.flush().await.is_err() {
                    return;
                }
                if buf.capacity() - buf.len() < 8 * 1024 {
                    buf.reserve(READ_BUFFER);
                }
                tokio::select! {
                    read = tokio::time::timeout(limits.idle, rd.read_buf(&mut buf)) => match read {
                        Ok(Ok(0)) => { debug!("closed by peer"); return; }
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => { debug!(error = %e, "read failed"); return; }
                        Err(_) => {
                            info!(%peer, idle_ms = limits.idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)");
                            return;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                warn!(%peer, reason = %e, "closing connection");
                return;
            }
        };
        let frame_len = frame.len();
        // Room the response holds (fetched records) until it is written.
        let mut held = None;
        let reply = {
            let _turn = limits.requests.acquire().await.expect("never closed");
            handle_frame(&broker, frame, peer, &mut held).await
        };
        match reply {
            Reply::Send(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    debug!(error = %e, "write failed");
                    return;
                }
            }
            Reply::Nothing => {}
            Reply::Close(reason) => {
                warn!(%peer, %reason, "closing connection");
                let _ = wr.flush().await;
                return;
            }
        }
        drop(held);
        room = None;
        // A large frame's buffer is not kept for the life of the connection:
        // what follows the frame still shares its allocation (and would
        // reuse it), so it moves to a buffer of the usual size.
        if frame_len > SHRINK_ABOVE || buf.capacity() > SHRINK_ABOVE {
            let mut fresh = BytesMut::with_capacity(READ_BUFFER.max(buf.len()));
            fresh.extend_from_slice(&buf);
            buf = fresh;
        }
    }
}

/// The size a frame's length prefix announces, once it is readable.
fn frame_size(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(prefix)).ok()
}

async fn handle_frame(
    broker: &Broker,
    frame: Bytes,
    peer: SocketAddr,
    held: &mut Option<OwnedSemaphorePermit>,
) -> Reply {
    let req = match request::decode_request(frame) {
        Ok(r) => r,
        Err(DecodeError::UnsupportedApiVersions {
            correlation_id,
            version,
        }) => {
            debug!(
                version,
                "ApiVersions version not supported; answering with ours"
            );
            return Reply::Send(request::unsupported_api_versions_frame(correlation_id));
        }
        Err(e) => return Reply::Close(e.to_string()),
    };
    let correlation_id = req.header.correlation_id;
    let span =
        tracing::debug_span!("request", api = ?req.api_key, version = req.version, correlation_id);
    let body = match req.body {
        Body::Served(body) => body,
        Body::Refused(raw) => {
            return match legacy_produce::refuse(raw, req.version) {
                Ok(Some(body)) => Reply::Send(request::encode_raw_response(correlation_id, &body)),
                Ok(None) => Reply::Nothing,
                Err(e) => Reply::Close(e.to_string()),
            }
        }
    };
    let started = std::time::Instant::now();
    let in_flight = broker.metrics.begin();
    let response = handlers::dispatch(broker, &req.header, peer, req.version, *body, held)
        .instrument(span)
        .await;
    drop(in_flight);
    if let Ok(resp) = &response {
        broker
            .metrics
            .request(req.api_key, started.elapsed(), resp.as_ref());
    }
    match response {
        Ok(Some(resp)) => {
            match request::encode_response(req.api_key, req.version, correlation_id, &resp) {
                Ok(bytes) => Reply::Send(bytes),
                Err(e) => Reply::Close(e.to_string()),
            }
        }
        Ok(None) => Reply::Nothing,
        Err(e) => Reply::Close(format!("{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_connection_limit_follows_changes_with_connections_open() {
        let limit = Arc::new(ConnectionLimit::new(2));
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        assert_eq!(limit.slots.available_permits(), 0);
        // Lowered below what is open: the open ones stay, and pay the debt.
        limit.set(1);
        drop(a);
        assert_eq!(
            limit.slots.available_permits(),
            0,
            "one is still open, at the new limit"
        );
        drop(b);
        assert_eq!(limit.slots.available_permits(), 1);
        // Raised: room at once.
        limit.set(3);
        assert_eq!(limit.slots.available_permits(), 3);
        let c = limit.acquire().await;
        limit.set(0);
        assert_eq!(limit.slots.available_permits(), 0);
        drop(c);
        assert_eq!(limit.slots.available_permits(), 0);
        limit.set(1);
        assert_eq!(limit.slots.available_permits(), 1);
    }
}
