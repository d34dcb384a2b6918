//! Authentication as MidoNet's API has it: `POST /login` with Basic
//! credentials returns a token (cookie `sessionId`), later calls carry
//! `X-Auth-Token`. Mode `none` accepts everyone (MidoNet's default mock auth);
//! mode `static` checks configured users and expires tokens. A user may
//! belong to a project (`user:password:project[:role]`): unless its role is
//! `admin` it sees and changes only that project's objects (`tenancy`).

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
        users: HashMap<String, User>,
        ttl: Duration,
    },
}

/// A configured user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub password: String,
    /// The project it acts in; `None`: every project (an operator).
    pub project: Option<String>,
    pub admin: bool,
}

/// Who a request's token belongs to, when it is scoped to a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub project: String,
    pub admin: bool,
}

pub struct Auth {
    pub mode: AuthMode,
    tokens: Mutex<HashMap<String, (Instant, Option<Caller>)>>,
}

impl Auth {
    pub fn new(mode: AuthMode) -> Self {
        Auth {
            mode,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The token's caller: `None` when the token is not valid, `Some(None)`
    /// for one not scoped to a project.
    fn caller(&self, token: &str) -> Option<Option<Caller>> {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        t.retain(|_, (exp, _)| *exp > now);
        t.get(token).map(|(_, c)| c.clone())
    }
}

/// Parses a users spec `user:password[:project[:role]][,...]`; a user
/// with a project but no role is a member of it.
pub fn parse_users(spec: &str) -> Result<HashMap<String, User>, String> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let mut it = item.splitn(4, ':');
            let (Some(u), Some(p)) = (it.next(), it.next()) else {
                return Err(format!("\"{item}\" is not user:password[:project[:role]]"));
            };
            if u.is_empty() {
                return Err(format!("\"{item}\" has an empty user name"));
            }
            let project = it.next().filter(|p| !p.is_empty()).map(str::to_string);
            let admin = match it.next() {
                Some(r) => r == "admin",
                None => project.is_none(),
            };
            Ok((
                u.to_string(),
                User {
                    password: p.to_string(),
                    project,
                    admin,
                },
            ))
        })
        .collect()
}

/// Checks the request's token; returns the caller when the token is scoped
/// to a project.
pub fn check(app: &App, route: &ApiRoute, req: &Req) -> Result<Option<Caller>, ApiError> {
    if route.public {
        return Ok(None);
    }
    token_caller(app, &req.headers)
}

/// The caller of a request with `headers` (its `X-Auth-Token`), for the
/// API's own endpoints outside the route table.
pub fn token_caller(
    app: &App,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    match &app.auth.mode {
        AuthMode::None => Ok(None),
        AuthMode::Static { .. } => {
            let token = headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if token.is_empty() {
                Err(ApiError::new(
                    401,
                    "authentication required: log in at /login and send X-Auth-Token",
                ))
            } else if let Some(c) = app.auth.caller(token) {
                Ok(c)
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
            let Some(user) = users.get(&u).filter(|x| x.password == p) else {
                return Err(ApiError::new(
                    401,
                    format!("wrong user name or password for \"{u}\""),
                ));
            };
            let caller = user.project.clone().map(|project| Caller {
                project,
                admin: user.admin,
            });
            let token = format!("{:032x}", rand::rng().random::<u128>());
            app.auth
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), (Instant::now() + *ttl, caller));
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
