//! Authentication as MidoNet's API has it: `POST /login` with Basic
//! credentials returns a token (cookie `sessionId`), later calls carry
//! `X-Auth-Token`. Mode `none` accepts everyone (MidoNet's default mock auth);
//! mode `static` checks the users of a users file (`--users-file`, one
//! `name:argon2-hash[:project[:role]]` per line), expires tokens and slows
//! down a name after failed logins. A user's role is `admin`, `member` or
//! `reader` (read-only); a member or reader with a project sees only that
//! project's objects (`tenancy`).

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::routes::ApiRoute;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::Method;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything, in every project.
    Admin,
    /// Reads and changes its project's objects.
    Member,
    /// Reads only (its project's objects, or everything without a project).
    Reader,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "reader" => Ok(Role::Reader),
            _ => Err(format!("role \"{s}\" is not one of admin, member, reader")),
        }
    }
}

/// A configured user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The PHC string of its password's argon2 hash.
    pub password_hash: String,
    /// The project it acts in; `None`: every project (an operator).
    pub project: Option<String>,
    pub role: Role,
}

/// Who a request's token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub project: Option<String>,
    pub role: Role,
}

impl Caller {
    /// The project this caller is confined to (none for an admin).
    pub fn scope(&self) -> Option<&str> {
        match self.role {
            Role::Admin => None,
            _ => self.project.as_deref(),
        }
    }
}

/// The argon2 hash (a PHC string) of `password`, for a users file.
pub fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Parses a users file: one `name:hash[:project[:role]]` per line (`#`
/// starts a comment); `hash` from `midonet user add` (or [`hash_password`]).
/// A user with no project and no role is an admin, one with a project and
/// no role a member.
pub fn parse_users(text: &str) -> Result<HashMap<String, User>, String> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |m: String| format!("line {}: {m}", n + 1);
        let mut it = line.splitn(4, ':');
        let (Some(name), Some(hash)) = (it.next(), it.next()) else {
            return Err(at("not name:hash[:project[:role]]".into()));
        };
        if name.is_empty() {
            return Err(at("an empty user name".into()));
        }
        if PasswordHash::new(hash).is_err() {
            return Err(at(format!(
                "the password of \"{name}\" is not an argon2 hash (make one with `midonet user add`)"
            )));
        }
        let project = it.next().filter(|p| !p.is_empty()).map(str::to_string);
        let role = match it.next() {
            Some(r) => r.parse().map_err(at)?,
            None if project.is_none() => Role::Admin,
            None => Role::Member,
        };
        let user = User {
            password_hash: hash.to_string(),
            project,
            role,
        };
        if users.insert(name.to_string(), user).is_some() {
            return Err(at(format!("\"{name}\" is listed twice")));
        }
    }
    Ok(users)
}

/// Failed logins before a name is slowed down, and the longest wait.
const FREE_FAILURES: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Names whose failures are remembered; past it the oldest are forgotten.
const REMEMBERED: usize = 10_000;

/// Failed logins per user name: after [`FREE_FAILURES`] a name waits 1 s,
/// then twice as long after each further failure, up to [`MAX_WAIT`]; a
/// login while it waits is refused (429) without checking the password.
#[derive(Default)]
struct Throttle {
    names: HashMap<String, (u32, Instant)>,
}

impl Throttle {
    fn wait(&self, name: &str, now: Instant) -> Option<Duration> {
        let (_, until) = self.names.get(name)?;
        (*until > now).then(|| *until - now)
    }

    fn failed(&mut self, name: &str, now: Instant) {
        if self.names.len() >= REMEMBERED && !self.names.contains_key(name) {
            let oldest = self.names.iter().min_by_key(|(_, (_, t))| *t);
            if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                self.names.remove(&k);
            }
        }
        let e = self.names.entry(name.to_string()).or_insert((0, now));
        e.0 += 1;
        if e.0 >= FREE_FAILURES {
            let wait = Duration::from_secs(1 << (e.0 - FREE_FAILURES).min(6)).min(MAX_WAIT);
            e.1 = now + wait;
        }
    }

    fn succeeded(&mut self, name: &str) {
        self.names.remove(name);
    }
}

pub struct Auth {
    pub mode: AuthMode,
    tokens: Mutex<HashMap<String, (Instant, Caller)>>,
    throttle: Mutex<Throttle>,
}

impl Auth {
    pub fn new(mode: AuthMode) -> Self {
        Auth {
            mode,
            tokens: Mutex::new(HashMap::new()),
            throttle: Mutex::default(),
        }
    }

    /// The token's caller, when it is valid.
    fn caller(&self, token: &str) -> Option<Caller> {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        t.retain(|_, (exp, _)| *exp > now);
        t.get(token).map(|(_, c)| c.clone())
    }
}

/// Checks the request's token; returns its caller (none without auth). A
/// reader's token changes nothing.
pub fn check(app: &App, route: &ApiRoute, req: &Req) -> Result<Option<Caller>, ApiError> {
    if route.public {
        return Ok(None);
    }
    let caller = token_caller(app, &req.headers)?;
    if let Some(c) = &caller
        && c.role == Role::Reader
        && !matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS)
    {
        return Err(ApiError::new(
            403,
            "the token's role is reader: it may only read",
        ));
    }
    Ok(caller)
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
                Ok(Some(c))
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
            let throttle = || app.auth.throttle.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(wait) = throttle().wait(&u, Instant::now()) {
                let secs = wait.as_secs() + 1;
                let mut e = ApiError::new(
                    429,
                    format!("too many failed logins as \"{u}\": try again in {secs} s"),
                );
                e.retry_after = Some(secs);
                return Err(e);
            }
            let Some(user) = users.get(&u).filter(|x| verify(&p, &x.password_hash)) else {
                throttle().failed(&u, Instant::now());
                return Err(ApiError::new(
                    401,
                    format!("wrong user name or password for \"{u}\""),
                ));
            };
            throttle().succeeded(&u);
            let caller = Caller {
                project: user.project.clone(),
                role: user.role,
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_slowed_down_after_failures_and_freed_by_success() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("eve", now);
        }
        assert_eq!(t.wait("eve", now), None, "the first failures are free");
        t.failed("eve", now);
        assert_eq!(t.wait("eve", now), Some(Duration::from_secs(1)));
        t.failed("eve", now);
        assert_eq!(t.wait("eve", now), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            t.failed("eve", now);
        }
        assert_eq!(t.wait("eve", now), Some(MAX_WAIT), "the wait is capped");
        assert_eq!(t.wait("eve", now + MAX_WAIT), None);
        assert_eq!(t.wait("alice", now), None, "other names are not slowed");
        t.succeeded("eve");
        assert_eq!(t.wait("eve", now), None);
    }

    #[test]
    fn users_files() {
        let h = hash_password("pw");
        assert!(verify("pw", &h) && !verify("pW", &h));
        let u = parse_users(&format!(
            "# operators\nroot:{h}\nalice:{h}:proj-a\ncarol:{h}:proj-c:admin\nrita:{h}::reader\n"
        ))
        .unwrap();
        assert_eq!(
            (u["root"].role, u["root"].project.as_deref()),
            (Role::Admin, None)
        );
        assert_eq!(u["alice"].role, Role::Member);
        assert_eq!(u["carol"].role, Role::Admin);
        assert_eq!(
            (u["rita"].role, u["rita"].project.as_deref()),
            (Role::Reader, None)
        );
        for bad in [
            "nohash",
            "root:plaintext",
            &format!("x:{h}:p:boss"),
            &format!(":{h}"),
        ] {
            assert!(parse_users(bad).is_err(), "{bad}");
        }
        assert!(
            parse_users(&format!("a:{h}\na:{h}")).is_err(),
            "a name twice"
        );
    }
}
