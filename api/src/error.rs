//! The one place that maps errors to HTTP statuses and ProblemDetails / ValidationProblem bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
        _ => "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(message) = &self {
            tracing::error!(%message, "request failed");
        }
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
        response
    }
}
