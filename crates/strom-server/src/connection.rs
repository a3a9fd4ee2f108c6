//! Accepting connections and serving one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strom_protocol::frame::split_frame;
use strom_protocol::legacy_produce;
use strom_protocol::request::{self, Body, DecodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::handlers;

/// How long connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often partitions are checked for `flush.ms` and retention.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// How often group timers (sessions, join phases) are checked.
const GROUP_TICK: Duration = Duration::from_millis(100);

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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = tracing::info_span!("conn", %peer);
                    connections.spawn(serve(stream, peer, broker.clone(), stop_rx.clone()).instrument(span));
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
    let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
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
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let max = broker.max_frame_bytes();
    debug!("connected");
    loop {
        let frame = match split_frame(&mut buf, max) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if wr.flush().await.is_err() {
                    return;
                }
                if buf.capacity() - buf.len() < 8 * 1024 {
                    buf.reserve(64 * 1024);
                }
                tokio::select! {
                    read = rd.read_buf(&mut buf) => match read {
                        Ok(0) => { debug!("closed by peer"); return; }
                        Ok(_) => continue,
                        Err(e) => { debug!(error = %e, "read failed"); return; }
                    },
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                warn!(%peer, reason = %e, "closing connection");
                return;
            }
        };
        match handle_frame(&broker, frame, peer).await {
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
    }
}

async fn handle_frame(broker: &Broker, frame: Bytes, peer: SocketAddr) -> Reply {
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
    let response = handlers::dispatch(broker, &req.header, peer, req.version, *body)
        .instrument(span)
        .await;
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
