//! Requests, responses and the dispatcher that matches a path against the
//! route table, checks media types and authentication, and renders errors.

use crate::App;
use crate::error::{ApiError, ERROR_MEDIA};
use crate::media;
use crate::routes::{ApiRoute, ROUTES};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use uuid::Uuid;

pub struct Req {
    pub method: Method,
    pub params: Params,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: axum::body::Bytes,
    /// `http://host:port/midonet-api`, from the listener's external URL or
    /// the address the request arrived on (never the client's Host header).
    pub base: String,
}

impl Req {
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A path id; one that is not a UUID names nothing, so 404.
    pub fn id(&self, name: &str) -> Result<Uuid, ApiError> {
        let v = self.param(name);
        Uuid::parse_str(v).map_err(|_| ApiError::not_found(format!("no object with id \"{v}\"")))
    }

    pub fn query_id(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        match self.query.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) => Uuid::parse_str(v).map(Some).map_err(|_| {
                ApiError::bad_request(format!("query parameter {name}: \"{v}\" is not a UUID"))
            }),
        }
    }

    /// The body as JSON; an empty body is `{}` (the client sends `{}` anyway).
    pub fn value(&self) -> Result<serde_json::Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::json!({}));
        }
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        Ok(v)
    }

    /// The body as a typed object; a wrong type names the field.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let v = self.value()?;
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                ApiError::bad_request(format!("invalid body: {inner}"))
            } else {
                ApiError::bad_request(format!("invalid value for {path}: {inner}"))
            }
        })
    }
}

pub struct Resp {
    pub status: u16,
    pub body: Option<serde_json::Value>,
    pub location: Option<String>,
    pub media: Option<String>,
    pub cookie: Option<String>,
}

impl Resp {
    pub fn json(body: serde_json::Value) -> Self {
        Resp {
            status: 200,
            body: Some(body),
            location: None,
            media: None,
            cookie: None,
        }
    }
    pub fn created(location: String) -> Self {
        Resp {
            status: 201,
            body: None,
            location: Some(location),
            media: None,
            cookie: None,
        }
    }
    pub fn no_content() -> Self {
        Resp {
            status: 204,
            body: None,
            location: None,
            media: None,
            cookie: None,
        }
    }
    pub fn ok_empty() -> Self {
        Resp {
            status: 200,
            body: None,
            location: None,
            media: None,
            cookie: None,
        }
    }
}

fn error_response(e: &ApiError) -> Response {
    let mut r = Response::new(Body::from(e.body().to_string()));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ERROR_MEDIA));
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if e.status == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic  realm=\"BASIC_AUTH_REALM\""),
        );
    }
    r
}

/// The route templates split into segments once: matching a request is then
/// a comparison of slices, with no allocation until a route matches.
fn templates() -> &'static [Vec<&'static str>] {
    static T: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        ROUTES
            .iter()
            .map(|r| r.path.split('/').filter(|s| !s.is_empty()).collect())
            .collect()
    })
}

fn is_param(seg: &str) -> Option<&str> {
    seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
}

/// Matches path segments against a template's segments.
fn match_segments(t: &[&str], p: &[&str]) -> Option<Params> {
    if t.len() != p.len()
        || t.iter()
            .zip(p)
            .any(|(ts, ps)| is_param(ts).is_none() && ts != ps)
    {
        return None;
    }
    Some(
        t.iter()
            .zip(p)
            .filter_map(|(ts, ps)| is_param(ts).map(|n| (n.to_string(), percent_decode(ps))))
            .collect(),
    )
}

#[cfg(test)]
fn match_template(template: &str, path: &str) -> Option<Params> {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&t, &p)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Path parameters by name, in path order.
type Params = Vec<(String, String)>;

fn find_route(method: &Method, path: &str) -> Result<(&'static ApiRoute, Params), ApiError> {
    let mut path_matched = false;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (r, t) in ROUTES.iter().zip(templates()) {
        if let Some(params) = match_segments(t, &segs) {
            path_matched = true;
            if r.method == *method {
                return Ok((r, params));
            }
        }
    }
    if path_matched {
        Err(ApiError::new(
            405,
            format!("method {method} is not allowed on /{path}"),
        ))
    } else {
        let first = path.split('/').next().unwrap_or("");
        Err(ApiError::not_found(format!(
            "Root resource {first} not found"
        )))
    }
}

/// The largest request body read; a larger one is answered 413 unread.
pub const MAX_BODY: usize = 16 << 20;

/// Reads a request body of at most [`MAX_BODY`] bytes: refused by its
/// declared length before a byte of it is read, or once it passes the limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || ApiError::new(413, format!("the request body is over {MAX_BODY} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => Ok(b),
        Err(e) if caused_by::<http_body_util::LengthLimitError>(&e) => Err(too_large()),
        Err(e) if caused_by::<crate::listen::BodyTimeout>(&e) => Err(ApiError::new(
            408,
            format!("the request body was not sent in time: {e}"),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// Whether an error of type `T` is in `e`'s chain of sources.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        if e.is::<T>() {
            return true;
        }
        at = e.source();
    }
    false
}

/// Serves one API request. Never panics outward: a handler panic is a 500.
/// The body is read only once the caller is authenticated.
pub async fn serve(
    app: &App,
    method: Method,
    path: &str,
    query: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(rest) = path.strip_prefix(&app.root) else {
        return error_response(&ApiError::not_found(format!(
            "{path} is not under {}",
            app.root
        )));
    };
    let rest = rest.trim_matches('/');
    let (route, params) = match find_route(&method, rest) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let mut resp = serve_route(app, route, rest, params, method, query, headers, body).await;
    resp.extensions_mut().insert(RoutePattern(route.path));
    resp
}

/// The route pattern a response answered (`bridges/{id}`), for the metrics'
/// labels: a bounded set, never the raw path.
#[derive(Clone, Copy, Debug)]
pub struct RoutePattern(pub &'static str);

#[allow(clippy::too_many_arguments)]
async fn serve_route(
    app: &App,
    route: &'static ApiRoute,
    rest: &str,
    params: Params,
    method: Method,
    query: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let base = format!("{}{}", crate::listen::origin(&headers), app.root);
    let mut req = Req {
        method,
        params,
        query: parse_query(query),
        headers,
        body: axum::body::Bytes::new(),
        base,
    };

    let caller = match crate::auth::check(app, route, &req) {
        Err(e) => return error_response(&e),
        Ok(c) => c,
    };
    req.body = match read_body(&req.headers, body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    if let Some(caller) = caller
        && let Err(e) = crate::tenancy::guard(app, &caller, rest, &mut req)
    {
        return error_response(&e);
    }
    let offered = route.ty.map(|t| {
        if route.list {
            media::collection(t)
        } else {
            media::item(t)
        }
    });
    if let Some(offered) = &offered {
        let (hdr, check) = if req.method == Method::POST || req.method == Method::PUT {
            (header::CONTENT_TYPE, route.check_content_type)
        } else {
            (header::ACCEPT, req.method == Method::GET)
        };
        if check
            && let Some(v) = req.headers.get(&hdr).and_then(|v| v.to_str().ok())
            && !v.is_empty()
            && !media::compatible(v, offered, route.strict)
        {
            return error_response(&ApiError::new(
                406,
                format!(
                    "media type \"{v}\" is not acceptable here; use {offered} or application/json"
                ),
            ));
        }
    }
    let handler = route.handler;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(app, &req)));
    let resp = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error_response(&e),
        Err(_) => {
            return error_response(&ApiError::new(
                500,
                "internal error while handling the request",
            ));
        }
    };
    let mut out = Response::new(match &resp.body {
        Some(b) => Body::from(b.to_string()),
        None => Body::empty(),
    });
    *out.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK);
    let h = out.headers_mut();
    if resp.body.is_some() {
        let m = resp
            .media
            .or(offered)
            .unwrap_or_else(|| "application/json".into());
        if let Ok(v) = HeaderValue::from_str(&m) {
            h.insert(header::CONTENT_TYPE, v);
        }
    }
    if let Some(loc) = resp.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, loc);
    }
    if let Some(c) = resp.cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_decoding() {
        let p =
            match_template("bridges/{id}/dhcp/{subnet}", "bridges/abc/dhcp/10.0.0.0_24").unwrap();
        assert_eq!(p[1], ("subnet".to_string(), "10.0.0.0_24".to_string()));
        assert!(match_template("bridges/{id}", "bridges").is_none());
        assert_eq!(percent_decode("fe80%3A%3A1"), "fe80::1");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        let q = parse_query(Some("tenant_id=t%201&x"));
        assert_eq!(q["tenant_id"], "t 1");
    }
}
