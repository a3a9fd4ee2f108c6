//! How this broker reaches the others over their client listeners (as the
//! metadata names them): the replica fetchers' Fetch to a leader, and a
//! transaction coordinator's WriteTxnMarkers and verifications. One kept
//! connection per broker, opened again after any failure.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strom_controller::Controller;
use strom_protocol::messages::{FetchRequest, FetchResponse};
use strom_protocol::request::{decode_client_response, encode_client_request};
use strom_replica::{BoxFuture, LeaderLink, FETCH_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Connection {
    address: String,
    stream: TcpStream,
}

/// Clones share the connections.
#[derive(Clone)]
pub(crate) struct KafkaLink(Arc<LinkState>);

struct LinkState {
    controller: Arc<Controller>,
    client_id: String,
    /// Past the fetch's own wait: how long an answer may take.
    timeout: Duration,
    /// The largest frame accepted (`socket.request.max.bytes`).
    max_frame: usize,
    correlation: AtomicI32,
    /// One connection per leader, taken while a fetch is in flight.
    connections: Mutex<HashMap<i32, Connection>>,
}

impl KafkaLink {
    pub(crate) fn new(
        controller: Arc<Controller>,
        node_id: i32,
        timeout: Duration,
        max_frame: usize,
    ) -> KafkaLink {
        KafkaLink(Arc::new(LinkState {
            controller,
            client_id: format!("strom-broker-{node_id}"),
            timeout,
            max_frame,
            correlation: AtomicI32::new(0),
            connections: Mutex::new(HashMap::new()),
        }))
    }
}

impl KafkaLink {
    /// Sends `request` to broker `to` at `version` and reads its answer,
    /// over the connection kept for that broker (opened again after any
    /// failure); `wait` is how long the broker may hold the request (a
    /// fetch's max wait) before the answer is overdue.
    pub(crate) fn send<R>(
        &self,
        to: i32,
        version: i16,
        request: R,
        wait: Duration,
    ) -> BoxFuture<'static, io::Result<R::Response>>
    where
        R: strom_protocol::Request + Send + 'static,
        R::Response: Send,
    {
        let link = self.0.clone();
        Box::pin(async move {
            let address = link
                .controller
                .image()
                .broker(to)
                .map(|b| format!("{}:{}", b.host, b.port))
                .ok_or_else(|| io::Error::other(format!("broker {to} is not registered")))?;
            let correlation = link.correlation.fetch_add(1, Ordering::Relaxed);
            let frame = encode_client_request(version, correlation, &link.client_id, &request)
                .map_err(io::Error::other)?;
            let taken = link
                .connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&to)
                .filter(|c| c.address == address);
            let exchange = async {
                let mut conn = match taken {
                    Some(c) => c,
                    None => Connection {
                        stream: TcpStream::connect(&address).await?,
                        address: address.clone(),
                    },
                };
                conn.stream.set_nodelay(true)?;
                conn.stream.write_all(&frame).await?;
                let mut len = [0u8; 4];
                conn.stream.read_exact(&mut len).await?;
                let len = i32::from_be_bytes(len);
                if len < 0 || len as usize > link.max_frame {
                    return Err(io::Error::other(format!("an answer of {len} bytes")));
                }
                let mut body = vec![0u8; len as usize];
                conn.stream.read_exact(&mut body).await?;
                Ok::<_, io::Error>((conn, Bytes::from(body)))
            };
            let (conn, body) = tokio::time::timeout(wait + link.timeout, exchange)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from broker {to}"),
                    )
                })??;
            let response = decode_client_response::<R>(version, correlation, body)
                .map_err(io::Error::other)?;
            link.connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(to, conn);
            Ok(response)
        })
    }
}

impl LeaderLink for KafkaLink {
    fn fetch(
        &self,
        leader: i32,
        request: FetchRequest,
    ) -> BoxFuture<'static, io::Result<FetchResponse>> {
        let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
        self.send(leader, FETCH_VERSION, request, wait)
    }
}
