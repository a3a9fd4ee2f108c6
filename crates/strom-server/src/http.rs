//! The HTTP listener: `/metrics` (Prometheus text format), and the probes
//! a supervisor such as Kubernetes needs, `/health/live` (the process
//! serves) and `/health/ready` (the node takes requests: its data is
//! loaded, and it is not shutting down). It is the listener that later
//! HTTP services (a REST proxy, a schema registry, a console) will share.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use strom_controller::Controller;

use crate::broker::Broker;

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP listener answers from: the node, once it is open, and
/// whether it is shutting down. Serving starts before the node opens, so
/// that liveness answers while a large data directory recovers.
#[derive(Clone)]
pub struct HttpState {
    broker: Arc<OnceLock<Arc<Broker>>>,
    /// A controller-only node, once open: ready while its quorum has a
    /// leader; no metrics yet.
    controller: Arc<OnceLock<Arc<Controller>>>,
    /// True once shutdown began: no longer ready.
    stopping: watch::Receiver<bool>,
}

impl HttpState {
    /// `stopping` turns true when the node begins to shut down.
    pub fn new(stopping: watch::Receiver<bool>) -> HttpState {
        HttpState {
            broker: Arc::new(OnceLock::new()),
            controller: Arc::new(OnceLock::new()),
            stopping,
        }
    }

    /// The node is open: metrics and readiness answer from now on.
    pub fn opened(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// A controller-only node is open.
    pub fn opened_controller(&self, controller: Arc<Controller>) {
        let _ = self.controller.set(controller);
    }
}

/// Serves HTTP on `listener` until the task is dropped: `/health/live`
/// answers 200 from the start, `/health/ready` 200 while the node is open
/// (registered, unfenced once caught up with the metadata), an active
/// controller is known, it is not fenced and not shutting down (503
/// otherwise), `/metrics` once the node is open.
pub async fn serve_http(listener: TcpListener, state: HttpState) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "the HTTP listener stopped");
    }
}

async fn metrics(State(node): State<HttpState>) -> Response {
    let Some(broker) = node.broker.get().cloned() else {
        if node.controller.get().is_some() {
            // Nothing is measured on a controller-only node yet.
            return (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], "").into_response();
        }
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    };
    // Reading thousands of partitions is work: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || {
        let image = broker.image();
        broker.metrics.render(|topic| image.topic(topic).is_some())
    })
    .await;
    match rendered {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn live() -> &'static str {
    "live\n"
}

async fn ready(State(node): State<HttpState>) -> (StatusCode, &'static str) {
    let controller_waits = node
        .controller
        .get()
        .is_some_and(|c| c.quorum().leader().is_none());
    if node.broker.get().is_none() && node.controller.get().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    } else if controller_waits {
        (StatusCode::SERVICE_UNAVAILABLE, "no active controller\n")
    } else if *node.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if node.broker.get().is_some_and(|b| b.is_fenced()) {
        // The controller stopped counting on it (a lost session): clients
        // are not offered it until its heartbeats unfence it again.
        (StatusCode::SERVICE_UNAVAILABLE, "fenced\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
