//! Responses as data (contract section 1): always JSON, always the security headers and
//! `x-request-id`.

use crate::config::Environment;
use crate::reject::Reject;
use serde_json::{json, Value};

/// Headers every response carries.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("strict-transport-security", "max-age=31536000"),
];

/// A response for the host to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response with the standard headers.
    pub fn json(status: u16, body: &Value, request_id: &str) -> Response {
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-request-id".to_string(), request_id.to_string()),
        ];
        headers.extend(
            SECURITY_HEADERS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Response {
            status,
            headers,
            body: body.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The refusal's documented status and body; `development` adds a `detail` string.
    pub fn reject(reject: &Reject, environment: Environment, request_id: &str) -> Response {
        let mut body = json!({ "error": reject.code() });
        match reject {
            Reject::InvalidAlert(e) => {
                body["field"] = e.field.clone().into();
                body["reason"] = e.reason.clone().into();
            }
            Reject::OrderRejected { kraken_error } => {
                body["kraken_error"] = kraken_error.clone().into();
            }
            Reject::UnknownSymbol { reason } | Reject::PairUnavailable { reason } => {
                body["field"] = "symbol".into();
                body["reason"] = reason.clone().into();
            }
            Reject::SymbolNotAllowed { .. } => {
                body["field"] = "symbol".into();
                body["reason"] = reject.detail().into();
            }
            Reject::BelowMinimum { field, reason } => {
                body["field"] = (*field).into();
                body["reason"] = reason.clone().into();
            }
            Reject::LimitExceeded { reason } => {
                body["reason"] = reason.clone().into();
            }
            _ => {}
        }
        if environment == Environment::Development {
            body["detail"] = reject.detail().into();
        }
        let response = Response::json(reject.status(), &body, request_id);
        match reject {
            Reject::MethodNotAllowed { allow } => response.with_header("allow", *allow),
            Reject::Unavailable { retry_after, .. } | Reject::RateLimited { retry_after } => {
                response.with_header("retry-after", retry_after.to_string())
            }
            Reject::Misconfigured => response.with_header("retry-after", "60"),
            _ => response,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The benchmark's I/O floor (`benches/floor`, its own workspace, so it cannot import
    /// this list) must send the same headers, or it measures less than the contract asks.
    #[test]
    fn the_io_floor_sends_the_same_headers() {
        let floor = include_str!("../benches/floor/src/lib.rs");
        for (name, value) in SECURITY_HEADERS {
            assert!(floor.contains(&format!("\"{name}\"")), "{name}");
            assert!(floor.contains(&format!("\"{value}\"")), "{value}");
        }
    }

    use super::*;
    use crate::reject::FieldError;

    #[test]
    fn carries_security_headers_and_request_id() {
        let r = Response::json(200, &json!({"status":"ok"}), "req-1");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-request-id"), Some("req-1"));
        for (k, v) in SECURITY_HEADERS {
            assert_eq!(r.header(k), Some(*v));
        }
    }

    #[test]
    fn production_bodies_carry_codes_only() {
        let reject = Reject::InvalidAlert(FieldError::new("volume", "must be positive"));
        let prod = Response::reject(&reject, Environment::Production, "r");
        let body: Value = serde_json::from_slice(&prod.body).unwrap();
        assert_eq!(
            body,
            json!({"error":"invalid_alert","field":"volume","reason":"must be positive"})
        );
        let dev = Response::reject(&reject, Environment::Development, "r");
        let body: Value = serde_json::from_slice(&dev.body).unwrap();
        assert_eq!(body["detail"], "volume: must be positive");
    }

    #[test]
    fn allow_and_retry_after() {
        let r = Response::reject(
            &Reject::MethodNotAllowed { allow: "POST" },
            Environment::Production,
            "r",
        );
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
        let r = Response::reject(
            &Reject::Unavailable {
                retry_after: 7,
                reason: "x".into(),
            },
            Environment::Production,
            "r",
        );
        assert_eq!((r.status, r.header("retry-after")), (503, Some("7")));
    }
}
