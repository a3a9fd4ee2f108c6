//! The controller listener, and the [`Transport`] that reaches it on other
//! nodes. Each message is one frame, `[u32 big-endian length][bytes]`,
//! answered by one frame on the same connection; what the bytes mean is
//! the controller's business ([`Controller::handle_peer`]: Raft's
//! messages and forwarded requests).
//!
//! A caller takes an idle connection to the address or opens one, so calls
//! to one peer run side by side (a vote never waits behind a snapshot); a
//! connection goes back to the idle set only after a whole exchange, so a
//! call dropped half-way (Raft's own timeouts) never leaves a stale answer
//! for the next caller.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strom_controller::{BoxFuture, Controller, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 4;
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

async fn read_frame(stream: &mut (impl AsyncRead + Unpin), max: usize) -> io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is larger than socket.request.max.bytes ({max})"),
        ));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    stream.write_u32(len).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Serves the controller listener: every connection's frames are handed to
/// the controller and its answers written back, until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, controller: Arc<Controller>, max_frame: usize) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "controller listener serving");
    }
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let controller = controller.clone();
                    let span = tracing::debug_span!("controller_conn", %peer);
                    connections.spawn(serve_one(stream, controller, max_frame).instrument(span));
                }
                Err(e) => {
                    warn!(error = %e, "controller listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_one(mut stream: TcpStream, controller: Arc<Controller>, max_frame: usize) {
    loop {
        let message = match read_frame(&mut stream, max_frame).await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                info!(error = %e, "closing a controller connection");
                return;
            }
        };
        let reply = controller.handle_peer(&message).await;
        if let Err(e) = write_frame(&mut stream, &reply).await {
            debug!(error = %e, "controller connection closed before the answer");
            return;
        }
    }
}

/// Reaches other nodes' controller listeners over TCP.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
    max_frame: usize,
}

impl TcpTransport {
    /// A transport whose answers may be at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> TcpTransport {
        TcpTransport {
            inner: Arc::new(Inner {
                idle: Mutex::new(HashMap::new()),
                max_frame,
            }),
        }
    }
}

impl Inner {
    fn take_idle(&self, address: &str) -> Option<TcpStream> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(address)
            .and_then(Vec::pop)
    }

    fn put_idle(&self, address: &str, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let streams = idle.entry(address.to_owned()).or_default();
        if streams.len() < IDLE_PER_PEER {
            streams.push(stream);
        }
    }

    async fn connect(address: &str) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn exchange(&self, stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
        write_frame(stream, message).await?;
        read_frame(stream, self.max_frame).await
    }

    async fn call(&self, address: &str, message: &[u8]) -> io::Result<Vec<u8>> {
        if let Some(mut stream) = self.take_idle(address) {
            match self.exchange(&mut stream, message).await {
                Ok(reply) => {
                    self.put_idle(address, stream);
                    return Ok(reply);
                }
                // An idle connection the peer has closed (it restarted, or
                // dropped it): the message goes again on a new one. Raft's
                // messages may be repeated, and a forwarded request is
                // decided against the image as it is when it arrives.
                Err(e) => debug!(error = %e, address, "idle controller connection failed"),
            }
        }
        let mut stream = Self::connect(address).await?;
        let reply = self.exchange(&mut stream, message).await?;
        self.put_idle(address, stream);
        Ok(reply)
    }
}

impl Transport for TcpTransport {
    fn call(&self, address: &str, message: Vec<u8>) -> BoxFuture<'static, io::Result<Vec<u8>>> {
        let inner = self.inner.clone();
        let address = address.to_owned();
        Box::pin(async move { inner.call(&address, &message).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Every frame in `bytes` as the reader takes them, up to the first
    /// error.
    fn frames(mut bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, io::Result<()>) {
        block_on(async {
            let mut out = Vec::new();
            loop {
                match read_frame(&mut bytes, max).await {
                    Ok(f) => out.push(f),
                    Err(e) => return (out, Err(e)),
                }
            }
        })
    }

    proptest! {
        /// Any bytes a peer sends read as whole frames within the bound, or
        /// end in an error (EOF, or a frame too large, refused before its
        /// body is buffered): never a panic, never a frame above `max`.
        #[test]
        fn arbitrary_bytes_read_as_bounded_frames_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            max in 0usize..64,
        ) {
            let (read, end) = frames(&bytes, max);
            prop_assert!(read.iter().all(|f| f.len() <= max));
            let consumed: usize = read.iter().map(|f| 4 + f.len()).sum();
            prop_assert!(consumed <= bytes.len());
            let e = end.unwrap_err();
            prop_assert!(matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData), "{e}");
        }

        /// What write_frame writes, read_frame reads back whole, in order.
        #[test]
        fn written_frames_read_back(messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..8)) {
            let mut wire = Vec::new();
            block_on(async {
                for m in &messages {
                    write_frame(&mut wire, m).await.unwrap();
                }
            });
            let (read, end) = frames(&wire, 100);
            prop_assert_eq!(read, messages);
            prop_assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn a_frame_above_the_bound_is_refused_before_its_body() {
        let mut wire = 1_000_000u32.to_be_bytes().to_vec();
        wire.extend([0u8; 8]);
        let (read, end) = frames(&wire, 1000);
        assert!(read.is_empty());
        assert_eq!(end.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
