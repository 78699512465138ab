//! The OpenAPI 3.1 description of every implemented route, kept beside the types it describes.
//! The api crate serves it at `GET /openapi.json` and a test checks it against the router.

/// The document, as JSON text.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");
