//! Request extractors whose failures are ProblemDetails: malformed JSON is a 400, a body of the
//! wrong shape is a 422 naming the field path, bad query strings are 400, too large a body is 413.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use schemas::tagged::{missing_field, split_error_path};
use serde::de::DeserializeOwned;

/// The raw request body, for handlers that must look at its size before parsing it
/// (`POST /events` admission control). Too large is a 413, like every body.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(crate::MAX_BODY_BYTES)
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })
    }
}

/// A JSON request body whose every number is within the request bound (`semantics.md` §1: a
/// number beyond it is a 422 naming its field).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_bounded_json(&bytes).map(Body)
    }
}

/// [`parse_json`], after checking that every number of the document is within the request
/// bound. (`POST /events`, the hot path, checks its events' numbers field by field instead.)
pub fn parse_bounded_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(document) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let mut errors = schemas::problem::ValidationErrors::new();
        schemas::validate::numbers_within_bound(&mut errors, &document);
        errors.into_result()?;
    }
    // Not JSON at all: `parse_json` says why, as a 400.
    parse_json(bytes)
}

/// Parses a JSON document, classifying failures as 400 (not JSON) or 422 (wrong shape).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body of the API is an object; serde would also accept a sequence for a
    // struct, which gives confusing errors.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::BadRequest("the request body is empty; a JSON object is expected".into()))
        }
        Some(_) => return Err(ApiError::BadRequest("the request body must be a JSON object".into())),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

fn classify(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    {
        let inner = err.inner();
        if !inner.is_data() {
            return ApiError::BadRequest(format!("the request body is not valid JSON: {inner}"));
        }
        let (mut path, mut message) =
            split_error_path(&err.path().to_string(), &strip_position(&inner.to_string()));
        if let Some(field) = missing_field(&message).map(str::to_string) {
            path = if path.is_empty() { field } else { format!("{path}.{field}") };
            message = "is required".into();
        }
        if path.is_empty() {
            ApiError::BadRequest(format!("the request body has the wrong shape: {message}"))
        } else {
            ApiError::invalid(path, message)
        }
    }
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Query-string parameters.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_compat(query).map(Params)
    }
}

fn serde_urlencoded_compat<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}").parse().map_err(|_| ApiError::BadRequest("malformed query string".into()))?,
    )
    .map(|q| q.0)
    .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// Path parameters; an undecodable one (invalid percent-encoding or UTF-8) is a 400
/// ProblemDetails like every other malformed request.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}
