//! The host adapter: the only code that talks to the host (`spin_sdk`, clock, randomness).
//!
//! It reads the request, builds the [`Config`](crate::config::Config) from the flavour's
//! settings source, runs the core's [`Step`](crate::bridge::Step) loop, sends each Kraken call
//! through the host's outbound HTTP, writes the audit lines and sends the response.
//! `spin.rs` and `wasi.rs` differ only in where settings come from and which state store
//! exists.

#![allow(unsafe_code)] // `#[http_component]` expands to handle conversions.

mod outbound;
#[cfg(all(feature = "host-spin", not(feature = "host-wasi")))]
mod spin;
#[cfg(feature = "host-wasi")]
mod wasi;

#[cfg(all(feature = "host-spin", not(feature = "host-wasi")))]
use spin as flavour;
#[cfg(feature = "host-wasi")]
use wasi as flavour;

use crate::alert::MAX_BODY_BYTES;
use crate::bridge::{self, Host, Input, Step};
use crate::store::STORE_PATH;
use crate::time::Now;
use futures::StreamExt;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use std::sync::atomic::{AtomicU64, Ordering};

#[spin_sdk::http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    if path == STORE_PATH && flavour::store_component(&headers) {
        let body = read_capped(request, MAX_STORE_REQUEST_BYTES).await;
        let reply = flavour::serve_store(&body);
        let response = OutgoingResponse::new(Fields::new());
        let _ = response.set_status_code(200);
        let _ = out.set_with_body(response, reply.encode()).await;
        return;
    }
    let host = Host {
        now: now(),
        request_id: request_id(),
        client_addr: flavour::client_addr(&headers),
        flavour: flavour::NAME,
        state_store: flavour::STATE_STORE,
        store_probe: flavour::STORE_PROBE,
    };
    let request = bridge::Request {
        method: method_name(&request.method()),
        path,
        headers,
        body: read_capped(request, MAX_BODY_BYTES + 1).await,
    };

    let mut out = Some(out);
    let mut step = bridge::handle_with(&flavour::setting, host, request);
    let done = loop {
        step = match step {
            Step::Done(done) => break done,
            Step::Answer(done, pending) => {
                if let Some(out) = out.take() {
                    answer(out, &done).await;
                }
                pending.resume(Input::Answered, now())
            }
            Step::Call(call, pending) => {
                let transport = outbound::send(&call);
                pending.resume(Input::Kraken(transport), now())
            }
            Step::Store(op, pending) => {
                let limit = pending.store_limit();
                let reply = flavour::store(op, &limit);
                pending.resume(Input::Store(reply), now())
            }
            Step::Wait(ms, pending) => {
                outbound::wait(ms);
                pending.resume(Input::Waited, now())
            }
        };
    };
    if let Some(out) = out.take() {
        answer(out, &done).await;
    }

    // The answer has gone: notifications cannot delay or change it. Each is bounded by
    // `notify::NOTIFY_TIMEOUT_MS`; a failure is an audit line, nothing more.
    for notice in &done.notices {
        let transport = outbound::send(&notice.call);
        match crate::notify::delivery_line(notice, &transport, now()) {
            Some(line) if line.stderr => eprintln!("{}", line.text),
            Some(line) => println!("{}", line.text),
            None => {}
        }
    }
}

/// The largest store request the store component reads (a record is a few hundred bytes).
const MAX_STORE_REQUEST_BYTES: usize = 256 * 1024;

/// Writes the audit lines and sends the response.
async fn answer(out: ResponseOutparam, done: &bridge::Done) {
    for line in &done.log {
        if line.stderr {
            eprintln!("{}", line.text);
        } else {
            println!("{}", line.text);
        }
    }
    let fields: Vec<(String, Vec<u8>)> = done
        .response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    let Ok(fields) = Fields::from_list(&fields) else {
        eprintln!("{{\"event\":\"internal\",\"reason\":\"invalid response header\"}}");
        return;
    };
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(done.response.status);
    if out
        .set_with_body(response, done.response.body.clone())
        .await
        .is_err()
    {
        eprintln!("{{\"event\":\"internal\",\"reason\":\"could not write the response body\"}}");
    }
}

/// Reads at most `cap` bytes of the body; what lies beyond is never buffered. A body that
/// breaks off mid-way is treated as empty, so a fragment is never taken for an alert (an
/// empty body fails authentication).
async fn read_capped(request: IncomingRequest, cap: usize) -> Vec<u8> {
    let mut stream = request.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Vec::new();
        };
        body.extend_from_slice(&chunk);
        if body.len() >= cap {
            body.truncate(cap);
            break;
        }
    }
    body
}

fn method_name(method: &Method) -> String {
    method.to_string().to_ascii_uppercase()
}

static LAST_MICROS: AtomicU64 = AtomicU64::new(0);

/// The wall clock in microseconds, strictly increasing within this instance: it is the
/// Kraken nonce's source, and Kraken refuses a nonce that does not increase.
fn now() -> Now {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut last = LAST_MICROS.load(Ordering::Relaxed);
    loop {
        let next = wall.max(last + 1);
        match LAST_MICROS.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Now(next),
            Err(seen) => last = seen,
        }
    }
}

/// 128 random bits from the host (`wasi:random`), as hex.
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without host randomness the id only needs to be unique enough to trace a request.
        bytes[..8].copy_from_slice(&now().0.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
