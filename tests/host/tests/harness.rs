//! Self-tests of the harness itself, run against a throwaway spin-sdk 5.2
//! component (not the bridge). They are `#[ignore]`d; run them with
//! `cargo test -p bridge-host --test harness -- --ignored` and these set:
//!
//! * `BRIDGE_HOST_SELFTEST_WASM`: Spin-flavoured test component (reads a
//!   variable, uses key-value, prints, fetches a URL taken from a variable);
//! * `BRIDGE_HOST_SELFTEST_WASI_WASM` (optional): the same component built to
//!   read `std::env` instead of Spin variables, for the `wasmtime serve` tests.
//!
//! Routes of the test component: `/echo` (request as JSON), `/var?name=N`,
//! `/kv?key=K[&label=L]` (GET/POST/DELETE), `/fetch?var=V[&path=P]` (GET, or
//! POST forwarding the body, to the URL in setting `V`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bridge_host::{
    Exchange, ServeHost, SpinHost, check_world, component_imports, find_wasmtime_cli,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::io::TokioIo;

fn env_wasm(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!("skipped: set {var} to a test component to run the harness self-tests");
            None
        }
    }
}

fn spin_wasm() -> Option<PathBuf> {
    env_wasm("BRIDGE_HOST_SELFTEST_WASM")
}

fn wasi_wasm() -> Option<PathBuf> {
    let wasm = env_wasm("BRIDGE_HOST_SELFTEST_WASI_WASM")?;
    if find_wasmtime_cli().is_none() {
        eprintln!("skipped: wasmtime CLI not installed");
        return None;
    }
    Some(wasm)
}

fn get(uri: &str) -> http::Request<Bytes> {
    http::Request::get(uri).body(Bytes::new()).unwrap()
}

fn post(uri: &str, body: &'static str) -> http::Request<Bytes> {
    http::Request::post(uri)
        .body(Bytes::from_static(body.as_bytes()))
        .unwrap()
}

/// What the loopback upstream saw: (method, path, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A loopback HTTP server answering `pong <path>` and recording requests.
async fn upstream() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            record.lock().unwrap().push((
                                parts.method.to_string(),
                                parts.uri.path().to_string(),
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            let reply = format!("pong {}", parts.uri.path());
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(reply))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn assert_status(ex: &Exchange, status: u16) {
    assert_eq!(ex.status, status, "{ex}");
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn variables_are_read_and_validated() {
    let Some(wasm) = spin_wasm() else { return };
    let host = SpinHost::builder(wasm)
        .variable("greeting", "hello")
        .build();

    let ex = host.handle_blocking(get("/var?name=greeting"));
    assert_status(&ex, 200);
    assert_eq!(ex.text(), "hello");

    let ex = host.handle_blocking(get("/var?name=missing"));
    assert_status(&ex, 404);
    assert_eq!(
        ex.text(),
        r#"Error::Undefined("no variable for \"tv-kraken\".\"missing\"")"#
    );

    let ex = host.handle_blocking(get("/var?name=Bad_Name"));
    assert!(ex.text().starts_with("Error::InvalidName("), "{ex}");
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn invalid_configuration_is_rejected() {
    let Some(wasm) = spin_wasm() else { return };
    let err = SpinHost::builder(&wasm)
        .variable("Not-Valid", "x")
        .try_build()
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("invalid variable name"),
        "{err:?}"
    );
    let err = SpinHost::builder(&wasm)
        .allow_outbound("https://api.kraken.com/0")
        .try_build()
        .unwrap_err();
    assert!(format!("{err:?}").contains("path"), "{err:?}");
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn key_value_persists_across_requests() {
    let Some(wasm) = spin_wasm() else { return };
    let host = SpinHost::builder(&wasm).build();

    assert_status(&host.handle_blocking(get("/kv?key=a")), 404);
    let ex = host.handle_blocking(post("/kv?key=a", "first"));
    assert_status(&ex, 200);
    let ex = host.handle_blocking(get("/kv?key=a"));
    assert_status(&ex, 200);
    assert_eq!(ex.text(), "first");
    assert_eq!(host.kv().get("a").as_deref(), Some(&b"first"[..]));

    // Seeded from the test, visible to the guest; get-keys sees both.
    host.kv().set("b", "seeded");
    assert_eq!(host.handle_blocking(get("/kv?key=b")).text(), "seeded");
    let ex = host.handle_blocking(get("/kv?key=zzz"));
    assert!(ex.text().contains(r#"keys=["a", "b"]"#), "{ex}");

    let ex = host.handle_blocking(
        http::Request::delete("/kv?key=a")
            .body(Bytes::new())
            .unwrap(),
    );
    assert_status(&ex, 200);
    assert_eq!(host.kv().keys(), vec!["b".to_string()]);

    // Labels: not granted -> access-denied; granted but undefined -> no-such-store.
    let ex = host.handle_blocking(get("/kv?key=a&label=other"));
    assert_eq!(ex.text(), "Error::AccessDenied", "{ex}");
    let host = SpinHost::builder(&wasm)
        .key_value_stores(["default", "other"])
        .build();
    let ex = host.handle_blocking(get("/kv?key=a&label=other"));
    assert_eq!(ex.text(), "Error::NoSuchStore", "{ex}");
    let host = SpinHost::builder(&wasm)
        .key_value_stores(Vec::<String>::new())
        .build();
    assert_eq!(
        host.handle_blocking(get("/kv?key=a")).text(),
        "Error::AccessDenied"
    );
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn stdio_is_captured_per_request_and_spin_headers_are_set() {
    let Some(wasm) = spin_wasm() else { return };
    let host = SpinHost::builder(wasm)
        .client_addr(Some("198.51.100.7:41000"))
        .build();
    let req = http::Request::post("/echo?x=1")
        .header("spin-client-addr", "6.6.6.6:1")
        .header("x-custom", "yes")
        .body(Bytes::from_static(b"payload"))
        .unwrap();
    let ex = host.handle_blocking(req);
    assert_status(&ex, 200);
    assert_eq!(ex.stdout, "selftest stdout: POST /echo\n");
    assert_eq!(ex.stderr, "selftest stderr: /echo\n");
    let json = ex.json();
    assert_eq!(json["body"], "payload");
    assert_eq!(json["query"], "x=1");
    let headers = &json["headers"];
    assert_eq!(headers["spin-client-addr"], "198.51.100.7:41000");
    assert_eq!(headers["spin-full-url"], "http://localhost:3000/echo?x=1");
    assert_eq!(headers["spin-path-info"], "/echo");
    assert_eq!(headers["x-custom"], "yes");
    // wasmtime-wasi-http strips `host` (a forbidden header) from incoming
    // requests, as in Spin; the authority reaches the guest via the URI.
    assert_eq!(headers["host"], serde_json::Value::Null);

    // `None`: runtime without the header; the client's value passes through.
    let host = SpinHost::builder(host_wasm())
        .client_addr(None::<String>)
        .build();
    let req = http::Request::get("/echo")
        .header("spin-client-addr", "6.6.6.6:1")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(
        host.handle_blocking(req).json()["headers"]["spin-client-addr"],
        "6.6.6.6:1"
    );
}

fn host_wasm() -> PathBuf {
    spin_wasm().expect("checked by the caller")
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn routes_outside_the_component_get_404_without_running_it() {
    let Some(wasm) = spin_wasm() else { return };
    let host = SpinHost::builder(wasm).route("/hook/...").build();
    let ex = host.handle_blocking(get("/echo"));
    assert_status(&ex, 404);
    assert!(ex.stdout.is_empty());
    // `/hook/...` matches, but the component only knows `/echo`.
    let ex = host.handle_blocking(get("/hook/echo"));
    assert_status(&ex, 404);
    assert_eq!(ex.text(), "no route");
    assert!(ex.stdout.contains("/hook/echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
async fn outbound_allowed_goes_out_and_is_recorded() {
    let Some(wasm) = spin_wasm() else { return };
    let (addr, seen) = upstream().await;
    let origin = format!("http://{addr}");
    let host = SpinHost::builder(wasm)
        .variable("upstream_url", &origin)
        .allow_outbound(&origin)
        .build();

    let ex = host.handle(get("/fetch?path=/ping")).await;
    assert_status(&ex, 200);
    assert_eq!(ex.text(), "upstream 200: pong /ping");
    assert_eq!(ex.outbound.len(), 1, "{ex}");
    let out = &ex.outbound[0];
    assert!(out.allowed);
    assert_eq!(out.method, http::Method::GET);
    assert_eq!(out.uri, format!("{origin}/ping"));
    assert_eq!(out.status, Some(200));

    let ex = host.handle(post("/fetch?path=/order", "a=1&b=2")).await;
    assert_status(&ex, 200);
    let out = &ex.outbound[0];
    assert_eq!(out.method, http::Method::POST);
    assert_eq!(out.body_text(), "a=1&b=2");
    assert_eq!(out.header("x-selftest"), Some("yes"));
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![
            ("GET".into(), "/ping".into(), String::new()),
            ("POST".into(), "/order".into(), "a=1&b=2".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
async fn outbound_to_other_origins_is_denied() {
    let Some(wasm) = spin_wasm() else { return };
    let (allowed, _) = upstream().await;
    let (other, other_seen) = upstream().await;
    let host = SpinHost::builder(wasm)
        .variable("upstream_url", format!("http://{other}"))
        .variable("kraken", "https://api.kraken.com")
        .allow_outbound(format!("http://{allowed}"))
        .build();

    let ex = host.handle(get("/fetch")).await;
    assert_status(&ex, 502);
    assert_eq!(ex.text(), "Http(ErrorCode::HttpRequestDenied)");
    assert_eq!(ex.outbound.len(), 1);
    assert!(!ex.outbound[0].allowed);
    assert_eq!(ex.outbound[0].status, None);
    assert!(other_seen.lock().unwrap().is_empty());

    // No network access needed: denial happens before connecting.
    let ex = host
        .handle(get("/fetch?var=kraken&path=/0/public/Time"))
        .await;
    assert_eq!(ex.text(), "Http(ErrorCode::HttpRequestDenied)", "{ex}");
    assert_eq!(ex.outbound[0].uri, "https://api.kraken.com/0/public/Time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
async fn concurrent_requests_are_isolated() {
    let Some(wasm) = spin_wasm() else { return };
    let (addr, seen) = upstream().await;
    let host = SpinHost::builder(wasm)
        .variable("upstream_url", format!("http://{addr}"))
        .allow_outbound(format!("http://{addr}"))
        .build();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move { (i, host.handle(get(&format!("/fetch?path=/{i}"))).await) })
        })
        .collect();
    for task in tasks {
        let (i, ex) = task.await.unwrap();
        assert_status(&ex, 200);
        assert_eq!(ex.text(), format!("upstream 200: pong /{i}"));
        assert_eq!(ex.outbound.len(), 1);
        assert_eq!(ex.outbound[0].uri, format!("http://{addr}/{i}"));
        assert_eq!(ex.stdout, "selftest stdout: GET /fetch\n");
    }
    assert_eq!(seen.lock().unwrap().len(), 8);
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn world_check_reports_imports() {
    let Some(wasm) = spin_wasm() else { return };
    let imports = component_imports(&wasm);
    eprintln!("imports of {}: {imports:#?}", wasm.display());
    assert!(imports.contains(&"fermyon:spin/variables@2.0.0".to_string()));
    assert!(imports.contains(&"fermyon:spin/key-value@2.0.0".to_string()));
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@0.2."))
    );

    // The portable world has no Spin interfaces.
    let extra = check_world(&wasm, "bridge-wasi").unwrap_err();
    assert!(
        extra.contains(&"fermyon:spin/variables@2.0.0".to_string()),
        "{extra:?}"
    );

    // Against its own world only what Rust's std adds beyond `wasi:http/proxy`
    // (exit, environment, terminal-*, insecure-seed) may be left over.
    only_std_extras(check_world(&wasm, "bridge-spin"));
    if let Some(wasi) = std::env::var_os("BRIDGE_HOST_SELFTEST_WASI_WASM") {
        only_std_extras(check_world(&wasi, "bridge-wasi"));
        let extra = check_world(&wasi, "bridge-spin").unwrap_err();
        assert!(
            !extra.iter().any(|i| i.starts_with("fermyon:")),
            "{extra:?}"
        );
    }
}

fn only_std_extras(result: Result<(), Vec<String>>) {
    if let Err(extra) = result {
        assert!(
            extra
                .iter()
                .all(|i| i.starts_with("wasi:cli/") || i.starts_with("wasi:random/insecure-seed@")),
            "{extra:?}"
        );
    }
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn portable_flavour_also_runs_embedded_with_env() {
    let Some(wasm) = std::env::var_os("BRIDGE_HOST_SELFTEST_WASI_WASM") else {
        eprintln!("skipped: BRIDGE_HOST_SELFTEST_WASI_WASM not set");
        return;
    };
    let host = SpinHost::builder(PathBuf::from(wasm))
        .env("GREETING", "from-env")
        .build();
    assert_eq!(
        host.handle_blocking(get("/var?name=greeting")).text(),
        "from-env"
    );
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn wasmtime_serve_runs_the_portable_flavour() {
    let Some(wasm) = wasi_wasm() else { return };
    let secret = "s3cret-value-not-on-the-command-line";
    let serve = ServeHost::builder(&wasm)
        .env("GREETING", "hello-serve")
        .env("SECRET", secret)
        .start();

    let cmdline = serve.command_line();
    assert!(cmdline.contains("--env SECRET"), "{cmdline}");
    assert!(!cmdline.contains(secret), "{cmdline}");

    let ex = serve.request_blocking(get("/var?name=greeting"));
    assert_status(&ex, 200);
    assert_eq!(ex.text(), "hello-serve");
    assert_eq!(
        serve.request_blocking(get("/var?name=secret")).text(),
        secret
    );
    assert!(
        serve
            .request_blocking(get("/var?name=home"))
            .text()
            .contains("NotPresent"),
        "only --env names reach the guest"
    );

    let ex = serve.request_blocking(post("/echo?q=2", "body"));
    assert_status(&ex, 200);
    assert_eq!(ex.json()["body"], "body");
    assert!(ex.stdout.contains("selftest stdout: POST /echo"), "{ex}");
    assert!(ex.stderr.contains("selftest stderr: /echo"), "{ex}");
    assert!(serve.logs().contains("selftest stdout: GET /var"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
async fn wasmtime_serve_has_no_outbound_allow_list() {
    let Some(wasm) = wasi_wasm() else { return };
    let (addr, seen) = upstream().await;
    let serve = ServeHost::builder(&wasm)
        .env("UPSTREAM_URL", format!("http://{addr}"))
        .start();
    let ex = serve.request(get("/fetch?path=/via-serve")).await;
    assert_status(&ex, 200);
    assert_eq!(ex.text(), "upstream 200: pong /via-serve");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
#[ignore = "harness self-test: needs BRIDGE_HOST_SELFTEST_WASM (see the module docs)"]
fn spin_flavour_does_not_start_under_wasmtime_serve() {
    let (Some(spin), Some(_)) = (spin_wasm(), wasi_wasm()) else {
        return;
    };
    let err = ServeHost::builder(&spin).try_start().unwrap_err();
    let msg = format!("{err:?}");
    assert!(msg.contains("fermyon:spin"), "{msg}");
}
