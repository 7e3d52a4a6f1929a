//! The dedupe key of an alert and the Kraken `cl_ord_id` derived from it (contract 2.4).
//!
//! The key is the alert's `id`, or else the SHA-256 of the raw body, so TradingView's resend
//! of the same alert maps to the same key and the same `cl_ord_id`.

use sha2::{Digest, Sha256};

/// Where a dedupe key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeKey {
    /// The alert's `id`.
    Id(String),
    /// Lower-case hex SHA-256 of the raw body.
    BodyHash(String),
}

impl DedupeKey {
    /// The key for an alert with an optional `id` and the given raw body.
    pub fn new(id: Option<&str>, body: &[u8]) -> DedupeKey {
        match id {
            Some(id) => DedupeKey::Id(id.to_string()),
            None => DedupeKey::BodyHash(hex(&Sha256::digest(body))),
        }
    }

    /// The key as stored, prefixed by its kind so an `id` can never collide with a hash.
    pub fn as_store_key(&self) -> String {
        match self {
            DedupeKey::Id(id) => format!("id:{id}"),
            DedupeKey::BodyHash(h) => format!("body:{h}"),
        }
    }

    /// Kraken's short-UUID form of `cl_ord_id`: 32 lower-case hex digits derived from the key.
    pub fn cl_ord_id(&self) -> String {
        let digest = Sha256::digest(format!(
            "tv-kraken-bridge/cl_ord_id/{}",
            self.as_store_key()
        ));
        hex(&digest[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_wins_over_body() {
        let a = DedupeKey::new(Some("s1-2025"), b"{\"a\":1}");
        let b = DedupeKey::new(Some("s1-2025"), b"{\"a\":2}");
        assert_eq!(a, b);
        assert_eq!(a.cl_ord_id(), b.cl_ord_id());
    }

    #[test]
    fn body_hash_key() {
        let k = DedupeKey::new(None, b"abc");
        assert_eq!(
            k,
            DedupeKey::BodyHash(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
        assert_ne!(k.cl_ord_id(), DedupeKey::new(None, b"abd").cl_ord_id());
    }

    #[test]
    fn cl_ord_id_is_kraken_short_uuid_form() {
        let id = DedupeKey::new(Some("x"), b"").cl_ord_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // An id that looks like a body hash still differs from that body's key.
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_ne!(
            DedupeKey::new(Some(h), b"").cl_ord_id(),
            DedupeKey::new(None, b"abc").cl_ord_id()
        );
    }
}
