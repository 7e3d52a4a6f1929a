//! Result of one request against a host: response, captured guest output and
//! recorded outbound HTTP requests.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

/// One request/response round trip through a host.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Response status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Full response body.
    pub body: Bytes,
    /// Guest stdout. [`SpinHost`](crate::SpinHost): exactly this request's
    /// instance. [`ServeHost`](crate::ServeHost): what the CLI printed on
    /// stdout while the request ran (best effort with concurrent requests).
    pub stdout: String,
    /// Guest stderr, same rules as `stdout`.
    pub stderr: String,
    /// Wall time from sending the request to having the full response body.
    pub elapsed: Duration,
    /// [`SpinHost`](crate::SpinHost) only: wall time from sending the request to the end
    /// of the guest's instance, which may run on after its response (notifications).
    /// `None` for [`ServeHost`](crate::ServeHost), whose client sees only the response.
    pub instance_ended: Option<Duration>,
    /// Outbound HTTP requests the guest made, in the order it made them
    /// (denied ones included). Always empty for [`ServeHost`](crate::ServeHost).
    pub outbound: Vec<OutboundRecord>,
    /// Set when the guest trapped or never produced a response (the host then
    /// reports status 500 with an empty body, as Spin does).
    pub error: Option<String>,
}

impl Exchange {
    /// Body parsed as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not valid JSON (the message includes the whole exchange).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{self}"))
    }

    /// Body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First value of response header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status: {} ({:?})", self.status, self.elapsed)?;
        for (name, value) in &self.headers {
            writeln!(f, "  {name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
        }
        writeln!(f, "body: {}", self.text())?;
        if let Some(error) = &self.error {
            writeln!(f, "host error: {error}")?;
        }
        for record in &self.outbound {
            writeln!(f, "outbound: {record}")?;
        }
        if !self.stdout.is_empty() {
            writeln!(f, "--- guest stdout ---\n{}", self.stdout.trim_end())?;
        }
        if !self.stderr.is_empty() {
            writeln!(f, "--- guest stderr ---\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// An outbound HTTP request made by the guest through
/// `wasi:http/outgoing-handler`.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    /// Request method.
    pub method: http::Method,
    /// Absolute request URI, e.g. `http://127.0.0.1:18081/0/private/AddOrder`.
    pub uri: String,
    /// Request headers as sent (wasmtime adds `host`).
    pub headers: HeaderMap,
    /// Full request body.
    pub body: Bytes,
    /// `false` if the origin is not in `allowed_outbound_hosts`; the guest then
    /// got `error-code::HTTP-request-denied` and nothing was sent.
    pub allowed: bool,
    /// Upstream response status, if a response arrived.
    pub status: Option<u16>,
}

impl OutboundRecord {
    /// Body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First value of request header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl fmt::Display for OutboundRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.uri)?;
        match (self.allowed, self.status) {
            (false, _) => write!(f, " -> denied"),
            (true, Some(status)) => write!(f, " -> {status}"),
            (true, None) => write!(f, " -> no response"),
        }
    }
}
