//! Secrets: values that must never reach a log line, a response or a `Debug` dump.
//!
//! A [`Secret`] has a redacted `Debug`, no `Display` and no `Serialize`; its bytes are
//! zeroised on drop. Reading them is a named call ([`Secret::expose_for`]) whose caller says
//! why, so every use is easy to find and review.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Why a secret's bytes are being read. Only these uses exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The key of an HMAC (webhook signature, Kraken `API-Sign`).
    HmacKey,
    /// A request header or form field sent to Kraken (`API-Key`, `otp`).
    KrakenCredential,
    /// Redacting the secret's value from outgoing text (audit lines, responses).
    Redaction,
    /// The URL a notification is posted to (`notify_url`).
    Notify,
}

/// A secret value from the settings.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(Zeroizing::new(bytes.into()))
    }

    /// The secret's bytes, for the stated use only.
    pub fn expose_for(&self, _why: Use) -> &[u8] {
        &self.0
    }

    /// Whether the secret has at least `n` bytes (the 32-byte rule for the webhook secret).
    pub fn has_at_least(&self, n: usize) -> bool {
        self.0.len() >= n
    }

    /// Constant-time equality with a candidate value.
    ///
    /// Both sides are hashed first so that neither the comparison's time nor an early exit on
    /// different lengths reveals anything about the secret.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = Sha256::digest(&self.0[..]);
        let theirs = Sha256::digest(candidate);
        bool::from(ours.ct_eq(&theirs))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-hunter2-hunter2-hunter2-x");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
        assert!(!s.matches(b"abcd"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn length_rule() {
        assert!(Secret::new(vec![b'a'; 32]).has_at_least(32));
        assert!(!Secret::new(vec![b'a'; 31]).has_at_least(32));
    }
}
