//! Private Kraken requests as data: a form-encoded body, signed once, sent unchanged.
//!
//! [`Call`] is what the host adapter sends; it holds the `API-Key` header, so it has a
//! redacted `Debug` and is never logged.

use super::sign::{api_sign, BadKey};
use crate::secret::{Secret, Use};

/// The credentials of one Kraken API key.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// Public key, sent as `API-Key`.
    pub api_key: &'a Secret,
    /// Base64 private key as Kraken issues it.
    pub api_secret: &'a Secret,
    /// The key's static 2FA password, sent as `otp`.
    pub otp: Option<&'a Secret>,
}

/// A request for the host to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Call {
    /// Always `POST` for private methods.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes that were signed.
    pub body: Vec<u8>,
    /// The Kraken method, e.g. `AddOrder` (`notify` for a notification to `notify_url`).
    pub kraken_method: &'static str,
    /// The whole call (connect, send, answer) must end within this many milliseconds;
    /// past it the adapter reports [`Transport::Lost`](super::reply::Transport::Lost).
    pub timeout_ms: u64,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("kraken_method", &self.kraken_method)
            .finish_non_exhaustive()
    }
}

/// The time-out of a call until the caller sets one.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;

/// Builds and signs `POST {base_url}/0/private/{method}` with `params` after the nonce.
pub fn private_call(
    base_url: &str,
    method: &'static str,
    params: &[(&str, String)],
    nonce: u64,
    creds: Credentials<'_>,
) -> Result<Call, BadKey> {
    let path = format!("/0/private/{method}");
    let mut body = format!("nonce={nonce}");
    for (name, value) in params {
        body.push('&');
        body.push_str(&form_encode(name));
        body.push('=');
        body.push_str(&form_encode(value));
    }
    if let Some(otp) = creds.otp {
        body.push_str("&otp=");
        body.push_str(&form_encode(&String::from_utf8_lossy(
            otp.expose_for(Use::KrakenCredential),
        )));
    }
    let sign = api_sign(
        creds.api_secret.expose_for(Use::HmacKey),
        &path,
        nonce,
        body.as_bytes(),
    )?;
    let api_key =
        String::from_utf8_lossy(creds.api_key.expose_for(Use::KrakenCredential)).into_owned();
    Ok(Call {
        method: "POST",
        url: format!("{base_url}{path}"),
        headers: vec![
            ("api-key".into(), api_key),
            ("api-sign".into(), sign),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            ),
            (
                "user-agent".into(),
                concat!("tv-kraken-bridge/", env!("CARGO_PKG_VERSION")).into(),
            ),
        ],
        body: body.into_bytes(),
        kraken_method: method,
        timeout_ms: DEFAULT_TIMEOUT_MS,
    })
}

/// `GET {base_url}/0/public/{method}?{query}`: no credentials, nothing signed.
pub fn public_call(base_url: &str, method: &'static str, query: &[(&str, String)]) -> Call {
    let mut url = format!("{base_url}/0/public/{method}");
    for (i, (name, value)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&form_encode(name));
        url.push('=');
        url.push_str(&form_encode(value));
    }
    Call {
        method: "GET",
        url,
        headers: vec![(
            "user-agent".into(),
            concat!("tv-kraken-bridge/", env!("CARGO_PKG_VERSION")).into(),
        )],
        body: Vec::new(),
        kraken_method: method,
        timeout_ms: DEFAULT_TIMEOUT_MS,
    }
}

/// `application/x-www-form-urlencoded` encoding: unreserved bytes stay, all else is `%XX`.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

    #[test]
    fn reproduces_official_vector_1() {
        let key = Secret::new("public-key");
        let secret = Secret::new(KEY);
        let call = private_call(
            "https://api.kraken.com",
            "AddOrder",
            &[
                ("ordertype", "limit".into()),
                ("pair", "XBTUSD".into()),
                ("price", "37500".into()),
                ("type", "buy".into()),
                ("volume", "1.25".into()),
            ],
            1_616_492_376_594,
            Credentials {
                api_key: &key,
                api_secret: &secret,
                otp: None,
            },
        )
        .unwrap();
        assert_eq!(call.url, "https://api.kraken.com/0/private/AddOrder");
        assert_eq!(
            call.body,
            b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
        );
        let header = |n: &str| call.headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(header("api-key"), "public-key");
        assert_eq!(
            header("api-sign"),
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
        assert!(!format!("{call:?}").contains("public-key"));
    }

    #[test]
    fn public_calls_carry_no_credentials() {
        let call = public_call(
            "https://api.kraken.com",
            "Ticker",
            &[("pair", "XXBTZUSD".into())],
        );
        assert_eq!(call.method, "GET");
        assert_eq!(
            call.url,
            "https://api.kraken.com/0/public/Ticker?pair=XXBTZUSD"
        );
        assert!(call
            .headers
            .iter()
            .all(|(k, _)| k != "api-key" && k != "api-sign"));
        assert!(call.body.is_empty());
    }

    #[test]
    fn encodes_values_and_appends_otp() {
        let key = Secret::new("k");
        let secret = Secret::new(KEY);
        let otp = Secret::new("12 34");
        let call = private_call(
            "http://127.0.0.1:1",
            "AddOrder",
            &[("pair", "XBT/USD".into()), ("expiretm", "+60".into())],
            7,
            Credentials {
                api_key: &key,
                api_secret: &secret,
                otp: Some(&otp),
            },
        )
        .unwrap();
        assert_eq!(
            call.body,
            b"nonce=7&pair=XBT%2FUSD&expiretm=%2B60&otp=12%2034"
        );
    }
}
