//! `API-Sign` computation and verification, exactly as Kraken documents it:
//!
//! ```text
//! API-Sign = base64( HMAC-SHA512( key = base64decode(api_secret),
//!                                 uri_path || SHA256(nonce_decimal || body_bytes) ) )
//! ```
//!
//! `uri_path` is the request path starting at `/0/private/`, including any
//! query string. This is an independent implementation: the simulator must not
//! share code with the client it checks.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

type HmacSha512 = Hmac<Sha512>;

fn mac(secret: &[u8], path: &str, nonce: &str, body: &[u8]) -> HmacSha512 {
    let mut inner = Sha256::new();
    inner.update(nonce.as_bytes());
    inner.update(body);
    let digest = inner.finalize();
    let mut mac = HmacSha512::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(path.as_bytes());
    mac.update(&digest);
    mac
}

/// The `API-Sign` value for a request. `secret` is the decoded API secret.
pub fn sign(secret: &[u8], path: &str, nonce: &str, body: &[u8]) -> String {
    STANDARD.encode(mac(secret, path, nonce, body).finalize().into_bytes())
}

/// Whether `api_sign` (base64, as sent in the header) is the valid signature
/// of the request. The comparison is constant-time.
pub fn verify(secret: &[u8], path: &str, nonce: &str, body: &[u8], api_sign: &str) -> bool {
    match STANDARD.decode(api_sign.trim()) {
        Ok(given) => mac(secret, path, nonce, body).verify_slice(&given).is_ok(),
        Err(_) => false,
    }
}

/// Decodes a base64 API secret into the HMAC key bytes.
pub fn decode_secret(api_secret: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(api_secret.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
    const NONCE: &str = "1616492376594";
    const BODY1: &str =
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
    const PATH1: &str = "/0/private/AddOrder";
    const SIGN1: &str =
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";
    const BODY2: &str = r#"{"nonce":1616492376594}"#;
    const PATH2: &str = "/0/private/GetCustodyTask?id=TGWOJ4JQPOTZT2";
    const SIGN2: &str =
        "2rM09q8HG7LvjivBitQUybwZ/DSeO8+i0U/at/wclH2Jma6gMaE/0Nw9dyLR+ykMd5eWCngSL4K58i6uJzXDCw==";

    fn key() -> Vec<u8> {
        decode_secret(SECRET).unwrap()
    }

    #[test]
    fn official_vector_1_form_body() {
        assert_eq!(sign(&key(), PATH1, NONCE, BODY1.as_bytes()), SIGN1);
        assert!(verify(&key(), PATH1, NONCE, BODY1.as_bytes(), SIGN1));
    }

    #[test]
    fn official_vector_2_json_body_and_query_path() {
        assert_eq!(sign(&key(), PATH2, NONCE, BODY2.as_bytes()), SIGN2);
        assert!(verify(&key(), PATH2, NONCE, BODY2.as_bytes(), SIGN2));
    }

    #[test]
    fn tampering_fails() {
        let tampered_body = BODY1.replace("volume=1.25", "volume=1.26");
        assert!(!verify(
            &key(),
            PATH1,
            NONCE,
            tampered_body.as_bytes(),
            SIGN1
        ));
        assert!(!verify(
            &key(),
            "/0/private/AddOrde",
            NONCE,
            BODY1.as_bytes(),
            SIGN1
        ));
        assert!(!verify(
            &key(),
            PATH1,
            "1616492376595",
            BODY1.as_bytes(),
            SIGN1
        ));
        // The query string is part of the signed path.
        assert!(!verify(
            &key(),
            "/0/private/GetCustodyTask",
            NONCE,
            BODY2.as_bytes(),
            SIGN2
        ));
        let mut other_key = key();
        other_key[0] ^= 1;
        assert!(!verify(&other_key, PATH1, NONCE, BODY1.as_bytes(), SIGN1));
    }

    #[test]
    fn malformed_or_truncated_signature_fails() {
        assert!(!verify(
            &key(),
            PATH1,
            NONCE,
            BODY1.as_bytes(),
            "not base64!"
        ));
        assert!(!verify(&key(), PATH1, NONCE, BODY1.as_bytes(), ""));
        assert!(!verify(
            &key(),
            PATH1,
            NONCE,
            BODY1.as_bytes(),
            &SIGN1[..44]
        ));
    }
}
