//! Answers in each API's shape: JSON bodies, and the errors as Exchange,
//! Advanced Trade and the App API word them.

use serde_json::{json, Value};
use syncoord_server::Response;

use crate::app;
use crate::table::Api;

pub(crate) fn json(status: u16, value: Value) -> Response {
    Response::json(status, value.to_string())
}

/// Exchange's error shape: `{"message": ...}`.
pub(super) fn ex_error(status: u16, message: &str) -> Response {
    json(status, json!({ "message": message }))
}

/// Advanced Trade's error shape.
pub(super) fn at_error(status: u16, error: &str, message: &str) -> Response {
    json(
        status,
        json!({ "error": error, "error_details": message, "message": message }),
    )
}

pub(super) fn error(api: Api, status: u16, code: &str, message: &str) -> Response {
    match api {
        Api::Exchange => ex_error(status, message),
        Api::Advanced => at_error(status, code, message),
        Api::App => app_error(status, &code.to_ascii_lowercase(), message),
    }
}

/// The App API's error shape.
pub(super) fn app_error(status: u16, id: &str, message: &str) -> Response {
    json(status, app::error_body(id, message))
}

/// Advanced Trade answers a missing or bad JWT with a bare text body.
pub(super) fn at_unauthorized() -> Response {
    Response::new(401, "Unauthorized\n").with_header("Content-Type", "text/plain; charset=utf-8")
}

pub(crate) fn bad_at(message: String) -> Response {
    at_error(400, "INVALID_ARGUMENT", &message)
}

pub(crate) fn bad_ex(message: String) -> Response {
    ex_error(400, &message)
}
