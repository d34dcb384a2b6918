//! Errors as Neutron sends them:
//! `{"NeutronError": {"type", "message", "detail"}}` with 400, 404 or 409.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster::error::ApiError;
use serde_json::json;

#[derive(Debug)]
pub struct NeutronError {
    pub status: StatusCode,
    /// Neutron's exception class name (`NetworkNotFound`, `NetworkInUse`).
    pub kind: &'static str,
    pub message: String,
}

impl NeutronError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        NeutronError {
            status,
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message)
    }
    /// A 400 with Neutron's own class for it.
    pub fn bad_request_kind(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, message)
    }
    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }
    pub fn conflict(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, message)
    }
}

/// The model's verdicts, as Neutron's classes.
impl From<ApiError> for NeutronError {
    fn from(e: ApiError) -> Self {
        let (status, kind) = match e.status {
            400 => (StatusCode::BAD_REQUEST, "BadRequest"),
            404 => (StatusCode::NOT_FOUND, "NotFound"),
            409 => (StatusCode::CONFLICT, "Conflict"),
            401 => (StatusCode::UNAUTHORIZED, "HTTPUnauthorized"),
            403 => (StatusCode::FORBIDDEN, "PolicyNotAuthorized"),
            // The NSDB not answering (no quorum): a clean, retryable 503.
            503 => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            s @ 405..=499 => (
                StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
                "BadRequest",
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "HTTPInternalServerError"),
        };
        NeutronError::new(status, kind, e.message)
    }
}

impl From<model::refs::RefError> for NeutronError {
    fn from(e: model::refs::RefError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for NeutronError {
    fn into_response(self) -> Response {
        crate::reply(
            self.status,
            json!({"NeutronError": {"type": self.kind, "message": self.message, "detail": ""}}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_unavailable_is_a_503_and_refusals_keep_their_status() {
        let e = NeutronError::from(ApiError::from(nsdb::StoreError::Unavailable(
            "ZooKeeper: session expired".into(),
        )));
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
        );
        assert_eq!(
            NeutronError::from(ApiError::new(403, "no")).status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            NeutronError::from(ApiError::new(413, "big")).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            NeutronError::from(ApiError::new(500, "bug")).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
