//! Webhook authentication: the `X-Signature` parser and verifier and the body-secret check,
//! with a fixed 32-byte secret.
//!
//! The input is split at its first newline: the header value before it, the body after it
//! (no newline: all header, empty body). Properties checked on every input:
//! - `verify_signature` agrees with `parse_signature` and with `sign_hex`: it accepts exactly
//!   the headers that decode to the HMAC of the body;
//! - the signature `sign_hex` computes for the body always verifies, in every accepted
//!   spelling, and never under another secret;
//! - `verify_body_secret` accepts exactly the secret itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tv_kraken_bridge::auth::{self, Credential};
use tv_kraken_bridge::reject::AuthFailure;
use tv_kraken_bridge::secret::Secret;

const SECRET: &[u8; 32] = b"fuzz-auth-secret-0123456789abcde";
const OTHER: &[u8; 32] = b"fuzz-auth-secret-0123456789abcdf";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let header = String::from_utf8_lossy(header);
    let secret = Secret::new(SECRET.to_vec());
    let other = Secret::new(OTHER.to_vec());
    let expected = auth::sign_hex(SECRET, body);
    assert_eq!(expected.len(), 64);

    // The fuzzer's header: accepted exactly when it decodes to the body's HMAC.
    let parsed = auth::parse_signature(&header);
    match auth::verify_signature(&header, body, &[&secret]) {
        Ok(c) => {
            assert_eq!(c, Credential::Signature);
            assert_eq!(hex(&parsed.expect("verified but unparsable")), expected);
        }
        Err(AuthFailure::MalformedSignature) => assert!(parsed.is_err()),
        Err(AuthFailure::BadSignature) => {
            assert_ne!(hex(&parsed.expect("bad but unparsable")), expected)
        }
        Err(other) => panic!("verify_signature failed with {other:?}"),
    }
    if let Ok(tag) = parsed {
        // With two secrets, a header verifies when it verifies under either.
        let ours = auth::verify_signature(&header, body, &[&secret]).is_ok();
        let theirs = auth::verify_signature(&header, body, &[&other]).is_ok();
        let both = auth::verify_signature(&header, body, &[&other, &secret]).is_ok();
        assert_eq!(both, ours || theirs);
        assert_eq!(theirs, hex(&tag) == auth::sign_hex(OTHER, body));
    }

    // The body's own signature verifies in every spelling a relay may use.
    let upper = expected.to_uppercase();
    for sig in [
        expected.clone(),
        upper.clone(),
        format!("sha256={expected}"),
        format!("SHA256={upper}"),
        format!(" sha256={expected}\t"),
    ] {
        assert_eq!(
            auth::verify_signature(&sig, body, &[&secret]),
            Ok(Credential::Signature),
            "{sig}"
        );
        assert_eq!(
            auth::verify_signature(&sig, body, &[&other, &secret]),
            Ok(Credential::Signature),
            "{sig}"
        );
        assert_eq!(
            auth::verify_signature(&sig, body, &[&other]),
            Err(AuthFailure::BadSignature),
            "{sig}"
        );
    }
    assert_eq!(
        auth::verify_signature(&expected, body, &[]),
        Err(AuthFailure::BadSignature)
    );

    // The body secret: only the exact bytes of a configured secret.
    for candidate in [header.as_ref(), String::from_utf8_lossy(body).as_ref()] {
        let verdict = auth::verify_body_secret(Some(candidate), &[&secret]);
        if candidate.as_bytes() == SECRET {
            assert_eq!(verdict, Ok(Credential::BodySecret));
        } else {
            assert_eq!(verdict, Err(AuthFailure::WrongSecret), "{candidate:?}");
        }
    }
    let own = std::str::from_utf8(SECRET).expect("ASCII secret");
    assert_eq!(
        auth::verify_body_secret(Some(own), &[&other, &secret]),
        Ok(Credential::BodySecret)
    );
    assert_eq!(
        auth::verify_body_secret(None, &[&secret]),
        Err(AuthFailure::MissingSecret)
    );
});
