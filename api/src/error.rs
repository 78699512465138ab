//! The one place that maps errors to HTTP statuses and ProblemDetails / ValidationProblem bodies.

use crate::stats::OutOfRange;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ingest::IngestError;
use ledger_writer::SubmitError;
use schemas::problem::{ProblemDetails, ValidationErrors};
use std::collections::BTreeMap;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid X-CREDYT-API-KEY header is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("one or more validation errors occurred")]
    Validation(ValidationErrors),
    /// 429 with a `Retry-After` header: over capacity, nothing was accepted.
    #[error("the server is over capacity; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// 503: a dependency (the log, the ledger writer) cannot take the request now.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(kind: &str, id: &str) -> Self {
        ApiError::NotFound(format!("{kind} `{id}` was not found"))
    }

    /// A 422 with one field error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(ValidationErrors::single(field, message))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::Validation(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Unique indexes are named after the request field they protect.
            StoreError::UniqueViolation { index, value, .. } => {
                ApiError::invalid(index, format!("`{value}` is already in use"))
            }
            StoreError::Conflict { .. } => {
                ApiError::Conflict("the resource was changed concurrently; retry the request".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Invalid(errors) => ApiError::Validation(errors),
            IngestError::Overloaded { retry_after_secs } => ApiError::TooManyRequests { retry_after_secs },
            IngestError::Unavailable(reason) => ApiError::Unavailable(reason),
            // The store failing under ingest is the server's fault, not the request's.
            IngestError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SubmitError> for ApiError {
    /// The command may or may not be posted yet; the client retries with the same
    /// `transaction_id`, which is idempotent.
    fn from(err: SubmitError) -> Self {
        ApiError::Unavailable(err.to_string())
    }
}

impl From<OutOfRange> for ApiError {
    /// Stored amounts whose total does not fit a decimal: the server cannot report it.
    fn from(err: OutOfRange) -> Self {
        ApiError::Internal(err.to_string())
    }
}

/// The RFC 9110 section of each status, as ASP.NET-style APIs (Credyt's) put in `type`.
fn type_uri(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        401 => "https://tools.ietf.org/html/rfc9110#section-15.5.2",
        404 => "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        405 => "https://tools.ietf.org/html/rfc9110#section-15.5.6",
        409 => "https://tools.ietf.org/html/rfc9110#section-15.5.10",
        413 => "https://tools.ietf.org/html/rfc9110#section-15.5.14",
        422 => "https://tools.ietf.org/html/rfc9110#section-15.5.21",
        429 => "https://tools.ietf.org/html/rfc6585#section-4",
        503 => "https://tools.ietf.org/html/rfc9110#section-15.6.4",
        _ => "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(message) = &self {
            tracing::error!(%message, "request failed");
        }
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let (title, detail, errors) = match self {
            ApiError::Validation(errors) => {
                ("One or more validation errors occurred.".to_string(), None, errors.into_map())
            }
            ApiError::Internal(_) => (
                "Internal Server Error".to_string(),
                Some("the server failed to handle the request; it has been logged".to_string()),
                BTreeMap::new(),
            ),
            other => (
                status.canonical_reason().unwrap_or("Error").to_string(),
                Some(other.to_string()),
                BTreeMap::new(),
            ),
        };
        let body = ProblemDetails {
            kind: type_uri(status).to_string(),
            title,
            status: status.as_u16(),
            detail,
            instance: None,
            errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, bytes).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_capacity_is_a_429_problem_with_retry_after() {
        let response = ApiError::TooManyRequests { retry_after_secs: 3 }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("3"));
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }

    #[test]
    fn ingest_and_ledger_failures_map_to_their_statuses() {
        let status = |e: ApiError| e.status();
        assert_eq!(
            status(IngestError::Overloaded { retry_after_secs: 1 }.into()),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status(IngestError::Unavailable("log".into()).into()), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status(IngestError::Invalid(ValidationErrors::single("events", "x")).into()),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(IngestError::Store(StoreError::Backend("disk".into())).into()),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let timeout = SubmitError::Timeout(std::time::Duration::from_secs(30));
        assert_eq!(status(timeout.into()), StatusCode::SERVICE_UNAVAILABLE);
    }
}
