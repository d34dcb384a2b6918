//! Authentication as MidoNet's API has it: `POST /login` with Basic
//! credentials returns a token (cookie `sessionId`), later calls carry
//! `X-Auth-Token`. Mode `none` accepts everyone (MidoNet's default mock auth);
//! mode `static` checks configured users and expires tokens.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::routes::ApiRoute;
use base64::Engine;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Debug)]
pub enum AuthMode {
    /// Any credentials, any token or none: the all-in-one default.
    None,
    /// Configured users; tokens valid for `ttl`.
    Static {
        users: HashMap<String, String>,
        ttl: Duration,
    },
}

pub struct Auth {
    pub mode: AuthMode,
    tokens: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    pub fn new(mode: AuthMode) -> Self {
        Auth {
            mode,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn valid(&self, token: &str) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        t.retain(|_, exp| *exp > now);
        t.contains_key(token)
    }
}

/// Parses a users spec `user:password[,user:password...]`.
pub fn parse_users(spec: &str) -> Result<HashMap<String, String>, String> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (u, p) = pair
                .split_once(':')
                .ok_or_else(|| format!("\"{pair}\" is not user:password"))?;
            if u.is_empty() {
                return Err(format!("\"{pair}\" has an empty user name"));
            }
            Ok((u.to_string(), p.to_string()))
        })
        .collect()
}

pub fn check(app: &App, route: &ApiRoute, req: &Req) -> Result<(), ApiError> {
    if route.public {
        return Ok(());
    }
    match &app.auth.mode {
        AuthMode::None => Ok(()),
        AuthMode::Static { .. } => {
            let token = req
                .headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if token.is_empty() {
                Err(ApiError::new(
                    401,
                    "authentication required: log in at /login and send X-Auth-Token",
                ))
            } else if app.auth.valid(token) {
                Ok(())
            } else {
                Err(ApiError::new(401, "invalid or expired token; log in again"))
            }
        }
    }
}

fn basic_credentials(req: &Req) -> Option<(String, String)> {
    let h = req.headers.get("authorization")?.to_str().ok()?;
    let b64 = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn login(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let creds = basic_credentials(req);
    let (token, expires) = match &app.auth.mode {
        AuthMode::None => ("00000000".to_string(), None),
        AuthMode::Static { users, ttl } => {
            let Some((u, p)) = creds else {
                return Err(ApiError::new(401, "login needs HTTP Basic credentials"));
            };
            if users.get(&u) != Some(&p) {
                return Err(ApiError::new(
                    401,
                    format!("wrong user name or password for \"{u}\""),
                ));
            }
            let token = format!("{:032x}", rand::rng().random::<u128>());
            app.auth
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), Instant::now() + *ttl);
            (
                token,
                Some(httpdate::fmt_http_date(SystemTime::now() + *ttl)),
            )
        }
    };
    let mut r = Resp::json(serde_json::json!({"key": token, "expires": expires}));
    r.media = Some("application/vnd.org.midonet.Token-v1+json".into());
    r.cookie = Some(match &expires {
        Some(e) => format!("sessionId={token}; Expires={e}"),
        None => format!("sessionId={token}"),
    });
    Ok(r)
}
