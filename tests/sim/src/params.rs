//! Request parameter decoding: form (`application/x-www-form-urlencoded`) and
//! JSON bodies, and query strings, into one flat map.
//!
//! JSON values become strings: numbers keep their textual form, booleans
//! become `true`/`false`, arrays are joined with `,`, and a nested object such
//! as `close` becomes `close[ordertype]`, `close[price]`, … like the form
//! encoding.

use serde_json::Value;
use std::collections::BTreeMap;

/// Flat parameter map, as Kraken sees a request's fields.
pub type Params = BTreeMap<String, String>;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one form component (`+` is a space). Malformed `%`
/// sequences are kept literally.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes fields as a form body (`a=1&b=2`), percent-encoding everything
/// but unreserved characters (so `+` is sent as `%2B`).
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses `a=1&b=2` (a form body or a query string). A repeated key keeps its
/// last value.
pub fn parse_form(s: &str) -> Params {
    let mut out = Params::new();
    for part in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut Params) {
    let text = match value {
        Value::Null => return,
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}[{k}]"), v, out);
            }
            return;
        }
    };
    out.insert(prefix.to_string(), text);
}

/// Parses a JSON object body. Anything but an object is an error.
pub fn parse_json(body: &[u8]) -> Result<Params, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Value::Object(map) = value else {
        return Err("JSON body is not an object".into());
    };
    let mut out = Params::new();
    for (k, v) in &map {
        flatten(k, v, &mut out);
    }
    Ok(out)
}

/// Parses a request body according to its `Content-Type` (JSON when it says
/// `json`, form otherwise). An empty body has no parameters.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Params, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Params::new());
    }
    let is_json = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    if is_json {
        parse_json(body)
    } else {
        let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
        Ok(parse_form(text.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let p = parse_form("a=1&b=x+y&c=%2B5%25&close%5Bordertype%5D=limit&d=%zz&e");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "x y");
        assert_eq!(p["c"], "+5%");
        assert_eq!(p["close[ordertype]"], "limit");
        assert_eq!(p["d"], "%zz");
        assert_eq!(p["e"], "");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("ab%41"), "abA");
    }

    #[test]
    fn form_encoding_round_trips() {
        let body = form_encode(&[("price", "+5%"), ("close[price]", "1 2"), ("x", "a&b=c")]);
        assert_eq!(body, "price=%2B5%25&close%5Bprice%5D=1%202&x=a%26b%3Dc");
        let p = parse_form(&body);
        assert_eq!(p["price"], "+5%");
        assert_eq!(p["close[price]"], "1 2");
        assert_eq!(p["x"], "a&b=c");
    }

    #[test]
    fn json_decoding() {
        let p = parse_body(
            Some("application/json; charset=utf-8"),
            br#"{"nonce":1616492376594,"volume":"1.25","validate":true,"oflags":["post","fciq"],"close":{"ordertype":"limit","price":"3"},"x":null}"#,
        )
        .unwrap();
        assert_eq!(p["nonce"], "1616492376594");
        assert_eq!(p["volume"], "1.25");
        assert_eq!(p["validate"], "true");
        assert_eq!(p["oflags"], "post,fciq");
        assert_eq!(p["close[ordertype]"], "limit");
        assert_eq!(p["close[price]"], "3");
        assert!(!p.contains_key("x"));
        assert!(parse_body(Some("application/json"), b"[1]").is_err());
        assert!(parse_body(Some("application/json"), b"{").is_err());
        assert!(parse_body(None, b"").unwrap().is_empty());
    }
}
