//! Channels to the cluster's topology service: plain HTTP/2 (`http://`),
//! or TLS (`https://`) with the agent's own certificate, so the server
//! knows which host this is (mutual TLS).

use std::sync::Arc;
use tls::rustls;
use tonic::transport::{Channel, Endpoint, Uri};
use topology_proto::TopologyClient;

pub type Client = TopologyClient<Channel>;

/// How the agent reaches the cluster: with TLS, the configuration that
/// holds the CA and the agent's certificate.
pub type Tls = Option<Arc<rustls::ClientConfig>>;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cluster URL {0:?}: {1}")]
    Url(String, tonic::transport::Error),
    #[error("cluster URL {0:?} is https:// but the agent has no --ca/--tls-cert/--tls-key")]
    NoTls(String),
    #[error("cluster URL {0:?} is http:// but the agent is configured for TLS: use https://")]
    PlainWithTls(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, tonic::transport::Error),
}

/// TCP, then the TLS handshake, to the host and port of `uri`; the server's
/// certificate must name that host.
async fn tls_connect(
    cfg: Arc<rustls::ClientConfig>,
    uri: Uri,
) -> Result<
    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    std::io::Error,
> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let host = uri
        .host()
        .ok_or_else(|| bad(format!("{uri} has no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| bad(format!("{host}: {e}")))?;
    let io = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await?;
    Ok(hyper_util::rt::TokioIo::new(io))
}

fn endpoint(url: &str, tls: &Tls) -> Result<Endpoint, ChannelError> {
    match (url.starts_with("https://"), tls.is_some()) {
        (true, false) => return Err(ChannelError::NoTls(url.into())),
        (false, true) => return Err(ChannelError::PlainWithTls(url.into())),
        _ => {}
    }
    Endpoint::from_shared(url.to_string()).map_err(|e| ChannelError::Url(url.into(), e))
}

/// The connector of a TLS channel: TCP, then the handshake with `cfg`.
fn connector(
    cfg: &Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Future + Send,
> + Send
+ Clone
+ 'static {
    let cfg = cfg.clone();
    tower::service_fn(move |u| tls_connect(cfg.clone(), u))
}

/// A channel that connects on first use (and again after a failure).
pub fn lazy(url: &str, tls: &Tls) -> Result<Client, ChannelError> {
    let e = endpoint(url, tls)?;
    Ok(TopologyClient::new(match tls {
        None => e.connect_lazy(),
        Some(cfg) => e.connect_with_connector_lazy(connector(cfg)),
    }))
}

/// A connected channel.
pub async fn connect(url: &str, tls: &Tls) -> Result<Client, ChannelError> {
    let e = endpoint(url, tls)?;
    let ch = match tls {
        None => e.connect().await,
        Some(cfg) => e.connect_with_connector(connector(cfg)).await,
    };
    ch.map(TopologyClient::new)
        .map_err(|e| ChannelError::Connect(url.into(), e))
}
