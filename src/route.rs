//! The HTTP surface (contract section 1): three endpoints, `404` elsewhere, `405` with
//! `Allow` for a known path with the wrong method.

use crate::reject::Reject;

/// An endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /webhook`: the default account.
    Webhook,
    /// `POST /webhook/{account}`: a named account ([`account_in`] gives the name as sent).
    AccountWebhook,
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
        _ if account_in(path).is_some() => (Route::AccountWebhook, "POST"),
        _ => return Err(Reject::NotFound),
    };
    if method == allow {
        Ok(route)
    } else {
        Err(Reject::MethodNotAllowed { allow })
    }
}

/// The account segment of `/webhook/{account}`: one non-empty path segment, as sent (it
/// may not be a valid account name: such a request is answered as an unknown account).
pub fn account_in(path_and_query: &str) -> Option<&str> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    path.strip_prefix("/webhook/")
        .filter(|a| !a.is_empty() && !a.contains('/'))
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
        assert_eq!(route("POST", "/webhook/swing"), Ok(Route::AccountWebhook));
        assert_eq!(route("POST", "/webhook/x?y=1"), Ok(Route::AccountWebhook));
        assert_eq!(
            route("POST", "/webhook/NOT%20A%20NAME"),
            Ok(Route::AccountWebhook)
        );
        assert_eq!(
            route("GET", "/webhook/swing"),
            Err(Reject::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(account_in("/webhook/swing?x=1"), Some("swing"));
        assert_eq!(account_in("/webhook"), None);
        for p in [
            "/",
            "/webhook/",
            "/webhook/a/b",
            "/webhook//",
            "/Webhook",
            "/Webhook/x",
            "//webhook",
            "/health/",
            "",
        ] {
            assert_eq!(route("POST", p), Err(Reject::NotFound), "{p}");
        }
    }
}
