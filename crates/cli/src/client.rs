//! A small blocking client for the MidoNet REST API.

use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the MidoNet API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "cannot reach this host's agent at {socket}: {reason} (is `midonet agent` running on this host? its socket is <state-dir>/agent.sock; --socket or MIDONET_AGENT_SOCKET name another)"
    )]
    AgentUnreachable { socket: String, reason: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Usage(String),
}

pub struct Client {
    agent: ureq::Agent,
    pub base: String,
    token: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: Value,
}

fn media(name: &str) -> String {
    format!("application/vnd.org.midonet.{name}+json")
}

impl Client {
    /// A client of the API at `base`; `ca`: the PEM file of the CA its
    /// https:// certificate chains to (default: the web's public roots).
    pub fn new(base: &str, ca: Option<&std::path::Path>) -> Result<Self, CliError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)));
        if let Some(ca) = ca {
            let bad = |e: String| CliError::Usage(format!("--ca {}: {e}", ca.display()));
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Client {
            agent: config.build().into(),
            base: base.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    /// Uses `token` (`X-Auth-Token`) for later calls.
    pub fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    /// Logs in with Basic credentials and keeps the token for later calls.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), CliError> {
        use base64::Engine;
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let url = format!("{}/login", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Basic {cred}"))
            .send("{}")
            .map_err(|e| CliError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_body(resp);
        if status != 200 {
            return Err(api_error(status, &body));
        }
        let token = cookie
            .and_then(|c| {
                c.split(';')
                    .next()
                    .and_then(|kv| kv.split_once('='))
                    .map(|(_, v)| v.to_string())
            })
            .ok_or_else(|| CliError::Api {
                status,
                message: "login returned no token".into(),
            })?;
        self.token = Some(token);
        Ok(())
    }

    /// One request; `ty` is the vendor type name used for Content-Type.
    pub fn call(
        &self,
        method: &str,
        url: &str,
        ty: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, CliError> {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}/{}", self.base, url)
        };
        let unreachable = |e: ureq::Error| CliError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let token = self.token.clone().unwrap_or_default();
        let resp = match method {
            "GET" | "DELETE" => {
                let b = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                let b = b.header("Accept", "*/*");
                let b = if token.is_empty() {
                    b
                } else {
                    b.header("X-Auth-Token", &token)
                };
                b.call().map_err(unreachable)?
            }
            _ => {
                let b = if method == "POST" {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                let ct = ty.map(media).unwrap_or_else(|| "application/json".into());
                let b = b.header("Content-Type", &ct);
                let b = if token.is_empty() {
                    b
                } else {
                    b.header("X-Auth-Token", &token)
                };
                let text = body.map(Value::to_string).unwrap_or_else(|| "{}".into());
                b.send(text.as_str()).map_err(unreachable)?
            }
        };
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = read_body(resp);
        if status >= 300 {
            return Err(api_error(status, &text));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply {
            status,
            location,
            body,
        })
    }

    pub fn get(&self, url: &str) -> Result<Value, CliError> {
        Ok(self.call("GET", url, None, None)?.body)
    }

    /// POST, then GET of the new object's Location.
    pub fn create(&self, url: &str, ty: &str, body: &Value) -> Result<Value, CliError> {
        let r = self.call("POST", url, Some(ty), Some(body))?;
        match r.location {
            Some(loc) => self.get(&loc),
            None => Ok(r.body),
        }
    }
}

fn read_body(mut resp: ureq::http::Response<ureq::Body>) -> String {
    resp.body_mut().read_to_string().unwrap_or_default()
}

fn api_error(status: u16, body: &str) -> CliError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or(body)
        .to_string();
    if message.is_empty() {
        message = "request failed".into();
    }
    CliError::Api { status, message }
}
