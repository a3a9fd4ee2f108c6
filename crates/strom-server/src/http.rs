//! The HTTP listener: `/metrics` (Prometheus text format), and the probes
//! a supervisor such as Kubernetes needs, `/health/live` (the process
//! serves) and `/health/ready` (the node takes requests: its data is
//! loaded, and it is not shutting down). It is the listener that later
//! HTTP services (a REST proxy, a schema registry, a console) will share.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::broker::Broker;

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Node {
    broker: Arc<Broker>,
    /// True once shutdown began: no longer ready.
    stopping: watch::Receiver<bool>,
}

/// Serves HTTP on `listener` until the task is dropped. `stopping` turns
/// true when the node begins to shut down, from which `/health/ready`
/// answers 503 while `/health/live` still answers 200.
pub async fn serve_http(
    listener: TcpListener,
    broker: Arc<Broker>,
    stopping: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(Node { broker, stopping });
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "the HTTP listener stopped");
    }
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    // Reading thousands of partitions is work: off the async workers.
    let broker = node.broker.clone();
    match tokio::task::spawn_blocking(move || broker.metrics.render()).await {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn live() -> &'static str {
    "live\n"
}

async fn ready(State(node): State<Node>) -> impl IntoResponse {
    if *node.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
