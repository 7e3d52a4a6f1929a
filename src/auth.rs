//! Authentication of an alert (contract 2.1, items 1 to 4).
//!
//! Two ways in: the `X-Signature` header, HMAC-SHA256 of the raw body (for relays and
//! scripts), or the body field `secret` (what TradingView can do). Both accept the current and
//! the previous webhook secret and compare in constant time.

use crate::reject::AuthFailure;
use crate::secret::{Secret, Use};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A valid `X-Signature` header.
    Signature,
    /// A matching body `secret`.
    BodySecret,
}

impl Credential {
    /// The name recorded in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Signature => "signature",
            Credential::BodySecret => "body_secret",
        }
    }
}

/// Decodes an `X-Signature` value: 64 hex digits, either case, optionally `sha256=`-prefixed.
pub fn parse_signature(header: &str) -> Result<[u8; 32], AuthFailure> {
    let hex = header.trim();
    let hex = hex
        .strip_prefix("sha256=")
        .or_else(|| hex.strip_prefix("SHA256="))
        .unwrap_or(hex);
    if hex.len() != 64 {
        return Err(AuthFailure::MalformedSignature);
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(AuthFailure::MalformedSignature)?;
        let lo = hex_value(pair[1]).ok_or(AuthFailure::MalformedSignature)?;
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Checks `X-Signature` against every configured secret; constant-time per secret.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[&Secret],
) -> Result<Credential, AuthFailure> {
    let tag = parse_signature(header)?;
    // Evaluate every secret, not just until the first match, so timing does not reveal which.
    let mut ok = false;
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_for(Use::HmacKey))
            .expect("HMAC accepts any key length");
        mac.update(body);
        ok |= mac.verify_slice(&tag).is_ok();
    }
    if ok {
        Ok(Credential::Signature)
    } else {
        Err(AuthFailure::BadSignature)
    }
}

/// Checks a body `secret` against every configured secret; constant-time per secret.
pub fn verify_body_secret(
    candidate: Option<&str>,
    secrets: &[&Secret],
) -> Result<Credential, AuthFailure> {
    let candidate = candidate.ok_or(AuthFailure::MissingSecret)?;
    let mut ok = false;
    for secret in secrets {
        ok |= secret.matches(candidate.as_bytes());
    }
    if ok {
        Ok(Credential::BodySecret)
    } else {
        Err(AuthFailure::WrongSecret)
    }
}

/// Lowercase hex of HMAC-SHA256(key, body): what a relay puts in `X-Signature`.
pub fn sign_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_TC2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn rfc4231_vector() {
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            RFC4231_TC2
        );
        let secret = Secret::new("Jefe");
        let body = b"what do ya want for nothing?";
        assert_eq!(
            verify_signature(RFC4231_TC2, body, &[&secret]),
            Ok(Credential::Signature)
        );
        let upper = format!("sha256={}", RFC4231_TC2.to_uppercase());
        assert_eq!(
            verify_signature(&upper, body, &[&secret]),
            Ok(Credential::Signature)
        );
    }

    // RFC 4231, test case 1: key 0x0b * 20, data "Hi There".
    #[test]
    fn rfc4231_binary_key() {
        assert_eq!(
            sign_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn previous_secret_is_accepted_too() {
        let current = Secret::new(vec![b'c'; 32]);
        let previous = Secret::new(vec![b'p'; 32]);
        let sig = sign_hex(&[b'p'; 32], b"{}");
        assert!(verify_signature(&sig, b"{}", &[&current, &previous]).is_ok());
        assert_eq!(
            verify_signature(&sig, b"{}", &[&current]),
            Err(AuthFailure::BadSignature)
        );
        let body_secret = "p".repeat(32);
        assert!(verify_body_secret(Some(&body_secret), &[&current, &previous]).is_ok());
    }

    #[test]
    fn wrong_or_malformed_signatures() {
        let s = Secret::new("Jefe");
        let body = b"what do ya want for nothing?";
        let mut flipped = RFC4231_TC2.to_string();
        flipped.replace_range(0..1, "6");
        assert_eq!(
            verify_signature(&flipped, body, &[&s]),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify_signature(RFC4231_TC2, b"what do ya want for nothing!", &[&s]),
            Err(AuthFailure::BadSignature)
        );
        for bad in [
            "",
            "abc",
            &RFC4231_TC2[..62],
            &format!("{RFC4231_TC2}00"),
            &"zz".repeat(32),
        ] {
            assert_eq!(
                verify_signature(bad, body, &[&s]),
                Err(AuthFailure::MalformedSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn body_secret() {
        let s = Secret::new("0123456789abcdef0123456789abcdef");
        assert!(verify_body_secret(Some("0123456789abcdef0123456789abcdef"), &[&s]).is_ok());
        assert_eq!(
            verify_body_secret(Some("0123456789abcdef0123456789abcdeF"), &[&s]),
            Err(AuthFailure::WrongSecret)
        );
        assert_eq!(
            verify_body_secret(None, &[&s]),
            Err(AuthFailure::MissingSecret)
        );
        assert_eq!(
            verify_body_secret(Some(""), &[&s]),
            Err(AuthFailure::WrongSecret)
        );
    }
}
