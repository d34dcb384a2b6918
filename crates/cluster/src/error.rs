//! API errors and their Error-v1 bodies.

use model::Violation;
use model::refs::RefError;
use nsdb::StoreError;
use serde_json::json;

pub const ERROR_MEDIA: &str = "application/vnd.org.midonet.Error-v1+json";

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub violations: Vec<Violation>,
    /// Seconds to wait before asking again (a `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            violations: Vec::new(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({"message": self.message, "code": self.status});
        if !self.violations.is_empty() {
            v["violations"] = serde_json::to_value(&self.violations).unwrap_or_default();
        }
        v
    }
}

impl From<model::Invalid> for ApiError {
    fn from(e: model::Invalid) -> Self {
        ApiError {
            status: 400,
            message: format!("Validation error: {e}"),
            violations: e.0,
            retry_after: None,
        }
    }
}

impl From<RefError> for ApiError {
    fn from(e: RefError) -> Self {
        match e {
            RefError::Missing { kind, id, property } => {
                ApiError::not_found(format!("{property}: {kind} {id} does not exist"))
            }
            RefError::Conflict(m) => ApiError::conflict(m),
            RefError::Forbidden(m) => ApiError::new(403, m),
            RefError::Corrupt(..) => ApiError::new(500, e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound { .. } => 404,
            StoreError::AlreadyExists { .. } | StoreError::VersionMismatch { .. } => 409,
            StoreError::Compacted { .. } | StoreError::NoSession(_) => 409,
            // Still refused after redoing it on what the store holds, each
            // time behind other writes: the store is busy or recovering,
            // and the request itself is fine to send again.
            StoreError::Unchained | StoreError::Storage(_) | StoreError::Unavailable(_) => 503,
        };
        ApiError::new(status, e.to_string())
    }
}
