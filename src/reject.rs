//! Every way a request can be refused, each with exactly one status code and error code.
//!
//! The mapping is an exhaustive `match` with no wildcard, so a new variant cannot ship
//! without a documented status. Authentication failures stay distinct for the audit log but
//! share one `401 {"error":"unauthorized"}` body.

/// Why authentication failed. Only the audit log sees the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// `X-Signature` present but not the HMAC of the body under any configured secret.
    BadSignature,
    /// `X-Signature` present but not hex (optionally `sha256=`-prefixed) of 32 bytes.
    MalformedSignature,
    /// No `X-Signature` and the body could not be read as a JSON object.
    UnreadableBody,
    /// No `X-Signature` and no string `secret` field in the body.
    MissingSecret,
    /// The body `secret` matches no configured secret.
    WrongSecret,
}

impl AuthFailure {
    /// The reason recorded in the `auth_failed` audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::MalformedSignature => "malformed_signature",
            AuthFailure::UnreadableBody => "unreadable_body",
            AuthFailure::MissingSecret => "missing_secret",
            AuthFailure::WrongSecret => "wrong_secret",
        }
    }
}

/// A field of the alert that is missing, unknown or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the alert spells it.
    pub field: String,
    /// What is wrong, for the trader.
    pub reason: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// No such path.
    NotFound,
    /// A known path with the wrong method; `allow` lists the right ones.
    MethodNotAllowed {
        /// The value of the `Allow` header.
        allow: &'static str,
    },
    /// The body is larger than 16 KiB.
    PayloadTooLarge,
    /// The content type is neither `application/json`, `text/plain` nor absent.
    UnsupportedMediaType,
    /// `allowed_ips` is set and the client's address is not in it, or not known.
    Forbidden,
    /// The request is not authenticated.
    Unauthorized(AuthFailure),
    /// The alert's `timestamp` lies outside `replay_window_seconds` of the host clock.
    Stale,
    /// An authenticated body that is not one JSON object (or repeats a key).
    MalformedJson,
    /// An alert field is missing, unknown or invalid.
    InvalidAlert(FieldError),
    /// `trading_enabled` is false.
    TradingDisabled,
    /// The symbol matches no Kraken pair (or is a perpetual contract).
    UnknownSymbol {
        /// Why, for the trader.
        reason: String,
    },
    /// `allowed_symbols` is set and does not list the pair.
    SymbolNotAllowed {
        /// The resolved pair.
        pair: String,
    },
    /// The pair's Kraken status is not `online`.
    PairUnavailable {
        /// The pair and its status.
        reason: String,
    },
    /// Below the pair's `ordermin` or `costmin` after rounding (or nothing to close).
    BelowMinimum {
        /// The sizing field.
        field: &'static str,
        /// The pair's minimum, in words.
        reason: String,
    },
    /// Above `max_order_value`.
    LimitExceeded {
        /// The value and the limit.
        reason: String,
    },
    /// The configuration is unusable (see `/health`).
    Misconfigured,
    /// More than `rate_limit_per_minute` accepted alerts this minute.
    RateLimited {
        /// Seconds until the next minute, for `retry-after`.
        retry_after: u32,
    },
    /// Kraken refused the order.
    OrderRejected {
        /// Kraken's first error string, e.g. `EOrder:Insufficient funds`.
        kraken_error: String,
    },
    /// Kraken certainly did not place the order and a resend is worthwhile.
    Unavailable {
        /// Seconds for the `retry-after` header.
        retry_after: u32,
        /// What happened, for development detail and the audit log.
        reason: String,
    },
}

impl Reject {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Reject::NotFound => 404,
            Reject::MethodNotAllowed { .. } => 405,
            Reject::PayloadTooLarge => 413,
            Reject::UnsupportedMediaType => 415,
            Reject::Forbidden => 403,
            Reject::Unauthorized(_) => 401,
            Reject::Stale => 401,
            Reject::MalformedJson => 400,
            Reject::InvalidAlert(_) => 422,
            Reject::TradingDisabled => 423,
            Reject::UnknownSymbol { .. }
            | Reject::SymbolNotAllowed { .. }
            | Reject::PairUnavailable { .. }
            | Reject::BelowMinimum { .. }
            | Reject::LimitExceeded { .. } => 422,
            Reject::Misconfigured => 503,
            Reject::RateLimited { .. } => 429,
            Reject::OrderRejected { .. } => 422,
            Reject::Unavailable { .. } => 503,
        }
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::NotFound => "not_found",
            Reject::MethodNotAllowed { .. } => "method_not_allowed",
            Reject::PayloadTooLarge => "payload_too_large",
            Reject::UnsupportedMediaType => "unsupported_media_type",
            Reject::Forbidden => "forbidden",
            Reject::Unauthorized(_) => "unauthorized",
            Reject::Stale => "stale",
            Reject::MalformedJson => "malformed_json",
            Reject::InvalidAlert(_) => "invalid_alert",
            Reject::TradingDisabled => "trading_disabled",
            Reject::UnknownSymbol { .. } => "unknown_symbol",
            Reject::SymbolNotAllowed { .. } => "symbol_not_allowed",
            Reject::PairUnavailable { .. } => "pair_unavailable",
            Reject::BelowMinimum { .. } => "below_minimum",
            Reject::LimitExceeded { .. } => "limit_exceeded",
            Reject::Misconfigured => "misconfigured",
            Reject::RateLimited { .. } => "rate_limited",
            Reject::OrderRejected { .. } => "order_rejected",
            Reject::Unavailable { .. } => "unavailable",
        }
    }

    /// The audit event this refusal writes, if any.
    pub fn event(&self) -> Option<&'static str> {
        match self {
            Reject::NotFound | Reject::MethodNotAllowed { .. } => None,
            Reject::PayloadTooLarge
            | Reject::UnsupportedMediaType
            | Reject::MalformedJson
            | Reject::InvalidAlert(_)
            | Reject::UnknownSymbol { .. }
            | Reject::SymbolNotAllowed { .. }
            | Reject::PairUnavailable { .. }
            | Reject::BelowMinimum { .. }
            | Reject::LimitExceeded { .. } => Some("alert_rejected"),
            Reject::Forbidden => Some("ip_denied"),
            Reject::Unauthorized(_) => Some("auth_failed"),
            Reject::Stale => Some("stale"),
            Reject::TradingDisabled => Some("trading_disabled"),
            Reject::Misconfigured => Some("config_error"),
            Reject::RateLimited { .. } => Some("rate_limited"),
            Reject::OrderRejected { .. } | Reject::Unavailable { .. } => Some("order_rejected"),
        }
    }

    /// A sentence for development bodies; never contains input secrets.
    pub fn detail(&self) -> String {
        match self {
            Reject::NotFound => "no such path".into(),
            Reject::MethodNotAllowed { allow } => format!("use {allow}"),
            Reject::PayloadTooLarge => "the body is larger than 16384 bytes".into(),
            Reject::UnsupportedMediaType => {
                "send application/json or text/plain (or no content type)".into()
            }
            Reject::Forbidden => "the client address is not in allowed_ips".into(),
            Reject::Unauthorized(f) => format!("authentication failed ({})", f.as_str()),
            Reject::Stale => "timestamp outside replay_window_seconds of the host clock".into(),
            Reject::MalformedJson => "the body is not one JSON object with unique keys".into(),
            Reject::InvalidAlert(e) => format!("{}: {}", e.field, e.reason),
            Reject::TradingDisabled => "trading_enabled is false".into(),
            Reject::UnknownSymbol { reason }
            | Reject::PairUnavailable { reason }
            | Reject::BelowMinimum { reason, .. }
            | Reject::LimitExceeded { reason } => reason.clone(),
            Reject::SymbolNotAllowed { pair } => format!("{pair} is not in allowed_symbols"),
            Reject::Misconfigured => "the configuration is unusable; see GET /health".into(),
            Reject::RateLimited { retry_after } => {
                format!("rate_limit_per_minute reached; retry in {retry_after} s")
            }
            Reject::OrderRejected { kraken_error } => format!("Kraken answered {kraken_error}"),
            Reject::Unavailable { reason, .. } => reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_one_documented_status() {
        let cases = [
            (Reject::NotFound, 404, "not_found"),
            (
                Reject::MethodNotAllowed { allow: "POST" },
                405,
                "method_not_allowed",
            ),
            (Reject::PayloadTooLarge, 413, "payload_too_large"),
            (Reject::UnsupportedMediaType, 415, "unsupported_media_type"),
            (
                Reject::Unauthorized(AuthFailure::WrongSecret),
                401,
                "unauthorized",
            ),
            (
                Reject::Unauthorized(AuthFailure::BadSignature),
                401,
                "unauthorized",
            ),
            (Reject::Stale, 401, "stale"),
            (Reject::MalformedJson, 400, "malformed_json"),
            (
                Reject::InvalidAlert(FieldError::new("side", "x")),
                422,
                "invalid_alert",
            ),
            (Reject::TradingDisabled, 423, "trading_disabled"),
            (
                Reject::UnknownSymbol { reason: "x".into() },
                422,
                "unknown_symbol",
            ),
            (
                Reject::SymbolNotAllowed { pair: "x".into() },
                422,
                "symbol_not_allowed",
            ),
            (
                Reject::PairUnavailable { reason: "x".into() },
                422,
                "pair_unavailable",
            ),
            (
                Reject::BelowMinimum {
                    field: "volume",
                    reason: "x".into(),
                },
                422,
                "below_minimum",
            ),
            (
                Reject::LimitExceeded { reason: "x".into() },
                422,
                "limit_exceeded",
            ),
            (Reject::Misconfigured, 503, "misconfigured"),
            (Reject::RateLimited { retry_after: 3 }, 429, "rate_limited"),
            (
                Reject::OrderRejected {
                    kraken_error: "EOrder:Insufficient funds".into(),
                },
                422,
                "order_rejected",
            ),
            (
                Reject::Unavailable {
                    retry_after: 5,
                    reason: "rate limited".into(),
                },
                503,
                "unavailable",
            ),
        ];
        for (reject, status, code) in cases {
            assert_eq!(reject.status(), status, "{reject:?}");
            assert_eq!(reject.code(), code, "{reject:?}");
        }
    }
}
