//! The HTTP surface (contract section 1): three endpoints, `404` elsewhere, `405` with
//! `Allow` for a known path with the wrong method.

use crate::reject::Reject;

/// An endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /webhook`.
    Webhook,
    /// `GET /health`.
    Health,
    /// `GET /config`.
    Config,
}

/// Routes a request by method and path (a query string is ignored).
pub fn route(method: &str, path_and_query: &str) -> Result<Route, Reject> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let (route, allow) = match path {
        "/webhook" => (Route::Webhook, "POST"),
        "/health" => (Route::Health, "GET"),
        "/config" => (Route::Config, "GET"),
        _ => return Err(Reject::NotFound),
    };
    if method == allow {
        Ok(route)
    } else {
        Err(Reject::MethodNotAllowed { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/webhook"), Ok(Route::Webhook));
        assert_eq!(route("POST", "/webhook?x=1"), Ok(Route::Webhook));
        assert_eq!(route("GET", "/health"), Ok(Route::Health));
        assert_eq!(route("GET", "/config"), Ok(Route::Config));
        assert_eq!(
            route("GET", "/webhook"),
            Err(Reject::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("POST", "/health"),
            Err(Reject::MethodNotAllowed { allow: "GET" })
        );
        assert_eq!(
            route("DELETE", "/config"),
            Err(Reject::MethodNotAllowed { allow: "GET" })
        );
        for p in [
            "/",
            "/webhook/",
            "/Webhook",
            "/webhook/x",
            "//webhook",
            "/health/",
            "",
        ] {
            assert_eq!(route("POST", p), Err(Reject::NotFound), "{p}");
        }
    }
}
