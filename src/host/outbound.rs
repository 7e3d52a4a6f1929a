//! Outbound HTTP with a hard time limit, over `wasi:http/outgoing-handler` directly: the
//! SDK's `send` takes no request options, and a Kraken call must end inside the budget
//! whatever Kraken does.

use crate::kraken::reply::Transport;
use crate::kraken::request::Call;
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::poll;
use wasi::io::streams::StreamError;

/// The largest Kraken answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Sends `call` and reads the whole answer, giving up after `call.timeout_ms`.
pub fn send(call: &Call) -> Transport {
    let deadline = monotonic_clock::now() + call.timeout_ms.max(1) * 1_000_000;
    let Some((https, authority, path)) = crate::network::split_url(&call.url) else {
        return Transport::NotSent("not an http(s) URL with a path".into());
    };
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    let mut entries: Vec<(String, Vec<u8>)> = call
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    // Framed as Kraken's own clients frame a request: a known length, never chunked.
    if call.method != "GET" {
        entries.push((
            "content-length".into(),
            call.body.len().to_string().into_bytes(),
        ));
    }
    let Ok(headers) = Fields::from_list(&entries) else {
        return Transport::NotSent("invalid request header".into());
    };
    let request = OutgoingRequest::new(headers);
    let method = if call.method == "GET" {
        Method::Get
    } else {
        Method::Post
    };
    let _ = request.set_method(&method);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let Ok(body) = request.body() else {
        return Transport::NotSent("request body unavailable".into());
    };
    let options = RequestOptions::new();
    let limit = Some(call.timeout_ms.max(1) * 1_000_000);
    let _ = options.set_connect_timeout(limit);
    let _ = options.set_first_byte_timeout(limit);
    let _ = options.set_between_bytes_timeout(limit);

    let future = match outgoing_handler::handle(request, Some(options)) {
        Ok(f) => f,
        Err(code) => return failed(code),
    };
    // A write that fails means the host dropped the request: its answer says why (a
    // refused origin is certainly not sent), so that is read before giving up.
    let mut written = true;
    if !call.body.is_empty() {
        match body.write() {
            Ok(stream) => {
                for chunk in call.body.chunks(4096) {
                    if stream.blocking_write_and_flush(chunk).is_err() {
                        written = false;
                        break;
                    }
                }
            }
            Err(()) => written = false,
        }
    }
    if !written {
        // Unfinished: the host ends the request with an error.
        drop(body);
    } else if OutgoingBody::finish(body, None).is_err() {
        written = false;
    }

    let timer = monotonic_clock::subscribe_instant(deadline);
    {
        let ready = future.subscribe();
        poll::poll(&[&ready, &timer]);
    }
    let response = match future.get() {
        Some(Ok(Err(code))) => return failed(code),
        _ if !written => return Transport::Lost("writing the request body failed".into()),
        None => return Transport::Lost(format!("no answer within {} ms", call.timeout_ms)),
        Some(Err(())) => return Transport::Lost("answer already taken".into()),
        Some(Ok(Ok(response))) => response,
    };
    let status = response.status();
    let Ok(incoming) = response.consume() else {
        return Transport::Lost("answer body unavailable".into());
    };
    let Ok(stream) = incoming.stream() else {
        return Transport::Lost("answer body stream unavailable".into());
    };
    let mut answer = Vec::new();
    loop {
        {
            let ready = stream.subscribe();
            poll::poll(&[&ready, &timer]);
        }
        match stream.read(64 * 1024) {
            Ok(chunk) if chunk.is_empty() => {
                if monotonic_clock::now() >= deadline {
                    return Transport::Lost("answer not complete within the time limit".into());
                }
            }
            Ok(chunk) => {
                answer.extend_from_slice(&chunk);
                if answer.len() > MAX_ANSWER_BYTES {
                    return Transport::Lost("answer too large".into());
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => {
                return Transport::Lost("reading the answer failed".into());
            }
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(incoming);
    Transport::Reply {
        status,
        body: answer,
    }
}

/// Waits `ms` milliseconds.
pub fn wait(ms: u64) {
    monotonic_clock::subscribe_duration(ms * 1_000_000).block();
}

fn failed(code: ErrorCode) -> Transport {
    if certainly_not_sent(&code) {
        Transport::NotSent(format!("{code:?}"))
    } else {
        Transport::Lost(format!("{code:?}"))
    }
}

/// Failures that happen before any byte of the request can have reached Kraken.
fn certainly_not_sent(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpProhibited
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTimeout
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_)
            | ErrorCode::HttpRequestDenied
            | ErrorCode::HttpRequestUriInvalid
    )
}
