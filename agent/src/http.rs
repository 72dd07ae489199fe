//! `GET /ready` (503 until the first render, then 200: the kubelet's startup probe) and
//! `GET /metrics`, on hyper's bare HTTP/1 server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

pub struct State {
    pub ready: AtomicBool,
    pub metrics: Metrics,
}

impl State {
    pub fn new() -> Arc<State> {
        Arc::new(State {
            ready: AtomicBool::new(false),
            metrics: Metrics::default(),
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(req.method(), req.uri().path(), &state)) }
            });
            let _ = http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(method: &Method, path: &str, state: &State) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/ready") if state.ready.load(Ordering::Acquire) => {
            (StatusCode::OK, "text/plain", "ready\n".to_owned())
        }
        (&Method::GET, "/ready") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the files are not rendered yet\n".to_owned(),
        ),
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn call(state: &State, method: Method, path: &str) -> (StatusCode, String) {
        let response = answer(&method, path, state);
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_only_after_the_first_render() {
        let state = State::new();
        assert_eq!(
            call(&state, Method::GET, "/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready();
        assert_eq!(call(&state, Method::GET, "/ready").await.0, StatusCode::OK);
        assert_eq!(
            call(&state, Method::POST, "/ready").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&state, Method::GET, "/other").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let state = State::new();
        state.metrics.renders.inc();
        state.metrics.stream_connected.set(1);
        let (status, body) = call(&state, Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "scaivault_agent_renders_total 1",
            "scaivault_agent_file_writes_total 0",
            "scaivault_agent_errors_total 0",
            "scaivault_agent_event_stream_connected 1",
            "# EOF",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} in:\n{body}");
        }
    }
}
