//! The HTTP listener of the REST and Neutron APIs: at most `max_connections`
//! connections at once (one past the cap is closed unanswered), a request's
//! head read within `header_timeout` and its body within `body_timeout`
//! (a slowloris client is cut off), TLS when configured. Every request
//! carries its origin (the `--external-url`, or the scheme and the local
//! address it arrived on) for the links of the answer: never the client's
//! `Host` header.

use axum::body::Body;
use axum::extract::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one listener allows.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// From a connection's first byte (or the end of its last request) to
    /// the end of the next request's head; also bounds the TLS handshake.
    pub header_timeout: Duration,
    /// From the handler's first read of the body to its end.
    pub body_timeout: Duration,
}

/// One listener: its limits, TLS, and the URL clients reach it by.
#[derive(Clone, Default)]
pub struct Listener {
    pub limits: Limits,
    pub tls: Option<tls::Acceptor>,
    /// `scheme://host[:port]` for links; default: how the connection
    /// arrived (the listener's scheme and the local address).
    pub external_url: Option<String>,
}

/// The request header the listener sets to the request's origin (any the
/// client sent is replaced).
pub const ORIGIN: &str = "x-midonet-origin";

/// The origin (`scheme://host:port`) of a request with `headers`.
pub fn origin(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http://localhost")
        .to_string()
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; connections
/// still open then are closed once their current request is answered.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    cfg: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listener {
        limits,
        tls,
        external_url,
    } = cfg;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                // Out of descriptors and the like: the listener stays.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, refused, cap = limits.max_connections, "connection cap reached: connection closed");
            }
            drop(stream);
            continue;
        };
        let origin = external_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", stream.local_addr().unwrap_or(peer)));
        let Ok(origin) = axum::http::HeaderValue::from_str(origin.trim_end_matches('/')) else {
            continue;
        };
        let router = router.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req: Request =
                        req.map(|b| Body::new(Deadline::new(b, limits.body_timeout)));
                    req.headers_mut().insert(ORIGIN, origin.clone());
                    router.clone().oneshot(req)
                });
            let r = match tls {
                None => connection(TokioIo::new(stream), service, &limits, &mut stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => connection(TokioIo::new(s), service, &limits, &mut stop).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// Serves one connection's requests until it closes, or until `stop`
/// (then after its current request).
async fn connection<I, S>(
    io: I,
    service: S,
    limits: &Limits,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = async { stop.wait_for(|v| *v).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// A request body that fails once its deadline passes.
struct Deadline<B> {
    inner: B,
    limit: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Deadline<B> {
    fn new(inner: B, limit: Duration) -> Self {
        Deadline {
            inner,
            limit,
            sleep: None,
        }
    }
}

/// The error of a body not read in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        // The clock starts when the handler first reads the body.
        let limit = this.limit;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(limit)))));
        }
        Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
