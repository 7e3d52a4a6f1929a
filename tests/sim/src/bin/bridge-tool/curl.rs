//! HTTP through the `curl` CLI, configured on its standard input.
//!
//! The workspace's supply-chain policy keeps TLS out of the simulator's crate, and the
//! tools must reach HTTPS (a deployed bridge, Kraken), so they drive `curl`, which every
//! machine with rustup has. Everything about a request (URL, headers, body) goes to
//! `curl -q -K -` as a config file on stdin: no credential ever appears on a command line
//! (`ps`) or in a temporary file. Only `http` and `https` are allowed, `~/.curlrc` is
//! ignored, and loopback targets bypass any configured proxy.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the write-out line starts; the status follows it.
const STATUS_MARK: &str = "\n<<bridge-tool http_code ";

/// One HTTP request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    /// Sent byte for byte (`None`: no body).
    pub body: Option<&'a [u8]>,
    /// The whole exchange, connection included.
    pub timeout: Duration,
    /// The longest wait for the connection.
    pub connect_timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, url: &'a str) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A value for curl's config file: double-quoted, with `\`, `"`, and the line breaks and
/// tabs escaped as curl's parser expects. A NUL byte cannot be carried.
pub fn quote(value: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'"');
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0b => out.extend_from_slice(b"\\v"),
            0 => return Err("a NUL byte cannot be sent".into()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    Ok(out)
}

/// Whether `url` names this machine: `localhost`, a loopback address.
pub fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(inner) = host_port.strip_prefix('[') {
        inner.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The config curl reads for `req`.
pub fn config(req: &Request<'_>) -> Result<Vec<u8>, String> {
    let mut c = Vec::new();
    let mut line = |name: &str, value: &[u8]| -> Result<(), String> {
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(b" = ");
        c.extend_from_slice(&quote(value)?);
        c.push(b'\n');
        Ok(())
    };
    line("url", req.url.as_bytes())?;
    line("request", req.method.as_bytes())?;
    line("proto", b"=http,https")?;
    if is_loopback(req.url) {
        line("noproxy", b"*")?;
    }
    line(
        "max-time",
        format!("{}", req.timeout.as_secs_f64()).as_bytes(),
    )?;
    line(
        "connect-timeout",
        format!("{}", req.connect_timeout.as_secs_f64()).as_bytes(),
    )?;
    // No `Expect: 100-continue` round trip before a larger body.
    line("header", b"Expect:")?;
    for (name, value) in &req.headers {
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(format!("bad header {name:?}"));
        }
        line("header", format!("{name}: {value}").as_bytes())?;
    }
    if let Some(body) = req.body {
        // `data-binary` would read a file for a body starting with `@`; `data-raw` never does.
        line("data-raw", body)?;
    }
    line(
        "write-out",
        format!("{STATUS_MARK}%{{http_code}}").as_bytes(),
    )?;
    Ok(c)
}

/// Sends `req` with curl. An `Err` is a transport failure (nothing answered, or curl is
/// missing), with curl's own message.
pub fn send(req: &Request<'_>) -> Result<Response, String> {
    let config = config(req)?;
    let mut cmd = Command::new("curl");
    // curl needs none of the tools' secrets.
    for var in [
        "WEBHOOK_SECRET",
        "KRAKEN_API_KEY",
        "KRAKEN_API_SECRET",
        "KRAKEN_OTP",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .args(["-q", "--silent", "--show-error", "--config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "curl is not installed (apt-get install curl)".to_string()
            }
            _ => format!("cannot run curl: {e}"),
        })?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(&config)
            .map_err(|e| format!("cannot configure curl: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("curl failed: {e}"))?;
    let stdout = out.stdout;
    let mark = STATUS_MARK.as_bytes();
    let at = stdout.windows(mark.len()).rposition(|w| w == mark);
    let status = at.and_then(|i| {
        std::str::from_utf8(&stdout[i + mark.len()..])
            .ok()?
            .trim()
            .parse::<u16>()
            .ok()
    });
    match (out.status.success(), at, status) {
        (true, Some(i), Some(status)) if status > 0 => Ok(Response {
            status,
            body: stdout[..i].to_vec(),
        }),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(if err.is_empty() {
                format!("no answer from {}", req.url)
            } else {
                err.trim_start_matches("curl: ").to_string()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_quoted_for_curl() {
        assert_eq!(
            quote(b"a\"b\\c\nd\re\tf").unwrap(),
            b"\"a\\\"b\\\\c\\nd\\re\\tf\""
        );
        assert_eq!(quote(b"@file").unwrap(), b"\"@file\"");
        assert!(quote(b"a\0b").is_err());
    }

    #[test]
    fn the_config_carries_everything_and_no_command_line_does() {
        let req = Request::new("POST", "http://127.0.0.1:3000/webhook")
            .header("Content-Type", "application/json")
            .body(b"{\"a\":\"x\\\"y\"}\n");
        let c = String::from_utf8(config(&req).unwrap()).unwrap();
        assert!(
            c.contains("url = \"http://127.0.0.1:3000/webhook\"\n"),
            "{c}"
        );
        assert!(c.contains("request = \"POST\"\n"));
        assert!(c.contains("proto = \"=http,https\"\n"));
        assert!(c.contains("noproxy = \"*\"\n"));
        assert!(c.contains("header = \"Content-Type: application/json\"\n"));
        assert!(
            c.contains("data-raw = \"{\\\"a\\\":\\\"x\\\\\\\"y\\\"}\\n\"\n"),
            "{c}"
        );
        let remote = Request::new("GET", "https://api.kraken.com/0/public/Time");
        let c = String::from_utf8(config(&remote).unwrap()).unwrap();
        assert!(!c.contains("noproxy"));
        assert!(!c.contains("data-raw"));
        let bad = Request::new("GET", "http://x").header("X", "a\r\nInjected: 1");
        assert!(config(&bad).is_err());
    }

    #[test]
    fn loopback_targets() {
        for url in [
            "http://127.0.0.1:3000/webhook",
            "http://localhost/webhook",
            "http://[::1]:3000/",
            "127.0.0.2:18081",
            "http://user@127.0.0.1/x",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://bridge.example.com/webhook",
            "http://10.0.0.5:3000/",
            "http://127.0.0.1.example.com/",
            "http://[2001:db8::1]/",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
