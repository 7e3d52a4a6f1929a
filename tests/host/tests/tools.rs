//! The operator's tools: `scripts/send` (signed and TradingView modes, against a recording
//! receiver, the portable bridge under `wasmtime serve`, and `scripts/up`), `scripts/sim`
//! (orders, requests, balances, faults, the rate tier, permissions, reset, checked in the
//! simulator's own state) and `scripts/check-key` (permissions judged from the simulator's
//! answers; nothing ever booked). No output of any tool carries a secret.

mod common;

use bridge_host::{Answer as ReceiverAnswer, Flavour, Receiver, find_wasmtime_cli, wasm_path};
use common::*;
use kraken_sim::{Account, Fault, FaultKind, Permission, RateTier, Sim, SimOptions};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---- running the scripts -----------------------------------------------------------------

/// Builds the simulator's binaries once per run (`bridge-tool` for the scripts,
/// `kraken-sim` for `scripts/up`), as the scripts themselves would, so that every script
/// can then run with `SKIP_BUILD=1`. Cargo holds no lock while tests run.
fn built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--locked", "-q", "-p", "kraken-sim", "--bins"])
            .current_dir(bridge_host::workspace_root())
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building the simulator's binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// What a script printed, and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Fails if any of `secrets` appears in what the script printed. Says which output,
    /// never the secret.
    fn assert_no_secret(&self, secrets: &[&str]) -> &Self {
        for secret in secrets.iter().chain(SECRETS) {
            assert!(
                !self.stdout.contains(secret),
                "a secret appeared in the script's stdout"
            );
            assert!(
                !self.stderr.contains(secret),
                "a secret appeared in the script's stderr"
            );
        }
        self
    }

    /// The first pretty-printed JSON value after the line `after` (the bridge's answer
    /// after `HTTP NNN`, the order after `simulator order at ...`).
    fn json_after(&self, after: impl Fn(&str) -> bool) -> Value {
        let mut lines = self.stdout.lines().skip_while(|l| !after(l));
        lines
            .next()
            .unwrap_or_else(|| panic!("no such line:\n{self}"));
        let rest = lines.collect::<Vec<&str>>().join("\n");
        let mut de = serde_json::Deserializer::from_str(&rest).into_iter::<Value>();
        de.next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no JSON after the line:\n{self}"))
    }

    /// The whole stdout as JSON (`scripts/sim` prints one value).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{self}"))
    }

    /// `HTTP NNN` as `scripts/send` printed it.
    fn http_status(&self) -> u16 {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("HTTP "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status line:\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `scripts/<name> args` with `env` (and nothing of the caller's bridge, simulator or
/// Kraken settings), `stdin` as its standard input.
fn script(name: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
    built();
    let root = bridge_host::workspace_root();
    let mut cmd = Command::new(root.join("scripts").join(name));
    cmd.args(args).env("SKIP_BUILD", "1");
    for var in [
        "WEBHOOK_SECRET",
        "BRIDGE_ADDR",
        "SIM_ADDR",
        "KRAKEN_API_KEY",
        "KRAKEN_API_SECRET",
        "KRAKEN_OTP",
        "KRAKEN_API_URL",
        "KRAKEN_API_KEYS",
        "KRAKEN_ACCOUNTS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("scripts/{name}: {e}"));
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    Run::from(child.wait_with_output().unwrap())
}

/// `scripts/send` with the test's webhook secret.
fn send(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec![("WEBHOOK_SECRET", WEBHOOK_SECRET)];
    all.extend_from_slice(env);
    script("send", args, &all, None)
}

/// `scripts/sim --sim URL args`.
fn sim_tool(sim: &str, args: &[&str]) -> Run {
    let mut all = vec!["--sim", sim];
    all.extend_from_slice(args);
    script("sim", &all, &[], None)
}

/// A temporary file holding `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &[u8]) -> TempFile {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("tools-test-{}-{n}.json", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The wasmtime CLI, or a skip message.
fn have_wasmtime(test: &str) -> bool {
    if find_wasmtime_cli().is_none() {
        eprintln!("skipped {test}: no wasmtime CLI (scripts/test installs it)");
        return false;
    }
    true
}

/// `GET path` on the simulator, as JSON: its own state, read without the tools.
fn sim_state(sim: &str, path: &str) -> Value {
    let addr = sim.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("the simulator listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (_, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

// ---- scripts/send against a recording receiver ---------------------------------------------

#[test]
fn send_signs_the_raw_body_and_keeps_the_secret_out_of_it() {
    let rx = Receiver::start(ReceiverAnswer::Status(200));
    let url = rx.url("/webhook");
    let run = send(
        &[
            "--url",
            &url,
            "--symbol",
            "XBTUSD",
            "--side",
            "buy",
            "--volume",
            "0.001",
            "--order-type",
            "limit",
            "--price",
            "30000",
            "--id",
            "tools-1",
            "--validate",
        ],
        &[],
    );
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.http_status(), 200, "{run}");

    // A file goes byte for byte, odd spacing and the final newline included.
    let text = b"{ \"symbol\" : \"XBTUSD\",\"side\":\"sell\",\"volume\":\"0.5\" }\n";
    let file = TempFile::new(text);
    let run = send(&["--url", &url, "--file", file.path()], &[]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");

    let got = rx.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/webhook");
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The signature the bridge computes, over the bytes that arrived.
        let expected = tv_kraken_bridge::auth::sign_hex(WEBHOOK_SECRET.as_bytes(), &r.body);
        assert_eq!(r.header("x-signature"), Some(expected.as_str()));
        assert!(
            !String::from_utf8_lossy(&r.body).contains(WEBHOOK_SECRET),
            "a signed body carries no secret"
        );
        assert!(r.json().get("secret").is_none());
    }
    assert_eq!(
        got[0].json(),
        json!({"id": "tools-1", "symbol": "XBTUSD", "side": "buy", "order_type": "limit",
               "volume": "0.001", "price": "30000", "validate": true})
    );
    assert_eq!(got[1].body, text);
}

#[test]
fn send_addresses_an_account_with_its_own_secret() {
    let rx = Receiver::start(ReceiverAnswer::Status(200));
    let base = rx.url("/webhook");
    for url in [base.clone(), format!("{base}/"), format!("{base}?x=1")] {
        let run = send(
            &[
                "--url",
                &url,
                "--account",
                "swing",
                "--symbol",
                "XBTUSD",
                "--side",
                "buy",
                "--volume",
                "0.001",
            ],
            &[("WEBHOOK_SECRET", SWING_SECRET)],
        );
        run.assert_no_secret(&[]);
        assert_eq!(run.code, 0, "{run}");
    }
    let got = rx.wait_for(3, Duration::from_secs(5));
    let paths: Vec<_> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/webhook/swing", "/webhook/swing", "/webhook/swing?x=1"]
    );
    for r in &got {
        let expected = tv_kraken_bridge::auth::sign_hex(SWING_SECRET.as_bytes(), &r.body);
        assert_eq!(r.header("x-signature"), Some(expected.as_str()));
    }
    // Not an account name: refused before anything is sent.
    let run = send(
        &[
            "--url",
            &base,
            "--account",
            "Swing/x",
            "--symbol",
            "XBTUSD",
            "--side",
            "buy",
            "--volume",
            "0.001",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("an account name is"), "{run}");
}

#[test]
fn send_tradingview_mode_sends_what_tradingview_sends() {
    let rx = Receiver::start(ReceiverAnswer::Status(200));
    let url = rx.url("/webhook");
    // The README's template, placeholder and all.
    let template =
        br#"{"secret":"YOUR_WEBHOOK_SECRET","symbol":"XBTUSD","side":"buy","volume":"0.001"}"#;
    let file = TempFile::new(template);
    let run = send(
        &["--tradingview", "--url", &url, "--file", file.path()],
        &[],
    );
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    // From flags, the secret is added to the alert.
    let run = send(
        &[
            "--tradingview",
            "--url",
            &url,
            "--symbol",
            "XBTUSD",
            "--side",
            "sell",
            "--volume",
            "1",
        ],
        &[],
    );
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");

    let got = rx.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.header("x-signature"), None, "TradingView cannot sign");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["secret"], WEBHOOK_SECRET);
    }
    let expected = String::from_utf8_lossy(template).replace("YOUR_WEBHOOK_SECRET", WEBHOOK_SECRET);
    assert_eq!(String::from_utf8_lossy(&got[0].body), expected);
    assert_eq!(
        got[1].json(),
        json!({"secret": WEBHOOK_SECRET, "symbol": "XBTUSD", "side": "sell", "volume": "1"})
    );
}

#[test]
fn send_a_body_that_is_not_json_as_text_plain() {
    let rx = Receiver::start(ReceiverAnswer::Status(401));
    let url = rx.url("/webhook");
    // An unquoted placeholder that rendered NaN: TradingView switches to text/plain.
    let broken = br#"{"secret":"YOUR_WEBHOOK_SECRET","symbol":"XBTUSD","side":"buy","volume":NaN}"#;
    let run = script(
        "send",
        &["--tradingview", "--url", &url, "--file", "-"],
        &[("WEBHOOK_SECRET", WEBHOOK_SECRET)],
        Some(broken),
    );
    run.assert_no_secret(&[]);
    // The receiver refused: exit 1, its status shown.
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.http_status(), 401);
    let run = send(&["--url", &url, "--file", "-"], &[]);
    assert_eq!(run.code, 1, "{run}");

    let got = rx.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("content-type"), Some("text/plain"));
    assert_eq!(got[0].header("x-signature"), None);
    assert_eq!(
        String::from_utf8_lossy(&got[0].body),
        String::from_utf8_lossy(broken).replace("YOUR_WEBHOOK_SECRET", WEBHOOK_SECRET)
    );
    // Signed mode chooses the content type the same way (an empty body is not JSON).
    assert_eq!(got[1].header("content-type"), Some("text/plain"));
    assert!(got[1].header("x-signature").is_some());
}

#[test]
fn send_refuses_to_run_without_its_secret_or_a_bridge() {
    let run = script(
        "send",
        &["--symbol", "XBTUSD", "--side", "buy", "--volume", "1"],
        &[],
        None,
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("WEBHOOK_SECRET is not set"), "{run}");
    // The secret is never a flag.
    let run = send(&["--secret", WEBHOOK_SECRET], &[]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("unknown option --secret"), "{run}");
    // Nothing listening: exit 2, curl's reason.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = send(
        &["--symbol", "XBTUSD", "--side", "buy", "--volume", "1"],
        &[("BRIDGE_ADDR", &closed.to_string())],
    );
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("no answer from the bridge"), "{run}");
}

// ---- scripts/send against the bridge ----------------------------------------------------------

#[test]
fn send_places_orders_on_the_portable_bridge_signed_and_as_tradingview() {
    if !have_wasmtime("send_places_orders_on_the_portable_bridge_signed_and_as_tradingview") {
        return;
    }
    let sim = sim();
    let srv = serve_host(&sim, &[]);
    let url = format!("{}/webhook", srv.base_url());
    let sim_url = sim.url();
    for (i, mode) in ["signed", "tradingview"].iter().enumerate() {
        let id = format!("tools-bridge-{i}");
        let mut args = vec![
            "--url", &url, "--sim", &sim_url, "--symbol", "XBTUSD", "--side", "buy", "--volume",
            "0.001", "--id", &id,
        ];
        if *mode == "tradingview" {
            args.push("--tradingview");
        }
        let run = send(&args, &[]);
        run.assert_no_secret(&[]);
        assert_eq!(run.code, 0, "{mode}: {run}");
        assert_eq!(run.http_status(), 200, "{mode}: {run}");
        let answer = run.json_after(|l| l.starts_with("HTTP "));
        assert_eq!(answer["status"], "placed", "{mode}: {run}");
        let cl = cl_ord_id_for_id(&id);
        assert_eq!(answer["cl_ord_id"], cl.as_str());
        // The simulator's order for that cl_ord_id, as the script found it.
        let order = run.json_after(|l| l.starts_with("simulator order at"));
        assert_eq!(order["txid"], answer["txid"][0], "{mode}: {run}");
        assert_eq!(order["params"]["volume"], "0.001");
        assert_eq!(orders_with(&sim, &cl).len(), 1, "{mode}");
    }
    assert_eq!(sim.orders().len(), 2);
    // The bridge authenticated one by its signature, the other by its body secret.
    let logs = srv.logs();
    assert!(logs.contains(r#""auth":"signature""#), "{logs}");
    assert!(logs.contains(r#""auth":"body_secret""#), "{logs}");
    for secret in SECRETS {
        assert!(!logs.contains(secret), "a secret reached the bridge's log");
    }
}

fn spin_installed() -> bool {
    Command::new("spin")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The webhook secret `scripts/up` is started with in the test below.
const UP_SECRET: &str = "up-webhook-secret-from-the-environment-7c2e";

/// Required by the issue: `scripts/send --tradingview` against `scripts/up` places an
/// order in the simulator; `scripts/sim` then shows it and steers the simulator.
#[test]
fn send_tradingview_to_scripts_up_places_an_order_that_scripts_sim_shows() {
    if !spin_installed() && !have_wasmtime("send_tradingview_to_scripts_up_places_an_order") {
        return;
    }
    built();
    wasm_path(Flavour::Wasi);
    let root = bridge_host::workspace_root();
    let (bridge, sim) = (free_addr(), free_addr());
    let mut child = Command::new("setsid")
        .arg(root.join("scripts/up"))
        .current_dir(&root)
        .env("BRIDGE_ADDR", &bridge)
        .env("SIM_ADDR", &sim)
        .env("SKIP_BUILD", "1")
        // scripts/up serves with a WEBHOOK_SECRET from its environment when one is set.
        .env("WEBHOOK_SECRET", UP_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scripts/up starts");
    let stdout = child.stdout.take().unwrap();
    let _guard = KillGroup(child);

    // The webhook secret scripts/up made up, from the example alert it prints.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = BufReader::new(stdout).lines();
    let mut secret = None;
    let mut example_next = false;
    while let Some(Ok(line)) = lines.next() {
        if example_next {
            let alert: Value = serde_json::from_str(&line).expect("the example alert is JSON");
            secret = alert["secret"].as_str().map(str::to_string);
        }
        example_next = line.starts_with("Example alert");
        if line.starts_with("curl -sS -X POST") {
            break;
        }
        assert!(Instant::now() < deadline, "scripts/up did not come up");
    }
    let secret = secret.expect("scripts/up printed an example alert");
    assert_eq!(
        secret, UP_SECRET,
        "scripts/up serves the WEBHOOK_SECRET it was given"
    );
    let env = [
        ("WEBHOOK_SECRET", secret.as_str()),
        ("BRIDGE_ADDR", bridge.as_str()),
        ("SIM_ADDR", sim.as_str()),
    ];
    let run = script(
        "send",
        &[
            "--tradingview",
            "--symbol",
            "XBTUSD",
            "--side",
            "buy",
            "--volume",
            "0.001",
        ],
        &env,
        None,
    );
    run.assert_no_secret(&[&secret]);
    assert_eq!(run.code, 0, "{run}");
    let answer = run.json_after(|l| l.starts_with("HTTP "));
    assert_eq!(answer["status"], "placed", "{run}");
    let txid = answer["txid"][0].as_str().expect("a txid").to_string();
    let shown = run.json_after(|l| l.starts_with("simulator order at"));
    assert_eq!(shown["txid"], txid.as_str(), "{run}");

    // The simulator booked exactly that order.
    let sim_url = format!("http://{sim}");
    let orders = sim_state(&sim_url, "/_sim/orders");
    assert_eq!(orders.as_array().map(Vec::len), Some(1), "{orders}");
    assert_eq!(orders[0]["txid"], txid.as_str());
    assert_eq!(orders[0]["cl_ord_id"], answer["cl_ord_id"]);

    // scripts/sim, through SIM_ADDR as scripts/up names it.
    let sim_env = [("SIM_ADDR", sim.as_str())];
    let run = script("sim", &["orders"], &sim_env, None);
    run.assert_no_secret(&[&secret]);
    assert_eq!(run.code, 0, "{run}");
    let listed = run.json();
    assert_eq!(listed[0]["txid"], txid.as_str(), "{run}");
    assert_eq!(listed[0]["api_key"], "***", "the key is masked");

    let run = script(
        "sim",
        &["fault", "DropAfterBook", "--method", "AddOrder"],
        &sim_env,
        None,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        sim_state(&sim_url, "/_sim/faults"),
        json!([{"method": "AddOrder", "kind": "DropAfterBook"}])
    );
    let run = script("sim", &["tier", "starter"], &sim_env, None);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json()["tier"], "starter");
    assert_eq!(sim_state(&sim_url, "/_sim/rate")["tier"], "starter");
    let run = script("sim", &["fault", "clear"], &sim_env, None);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sim_state(&sim_url, "/_sim/faults"), json!([]));
}

// ---- scripts/sim ----------------------------------------------------------------------------

/// Books a resting limit buy on `sim` with a signed AddOrder, as the bridge would.
fn book_an_order(sim: &Sim) -> String {
    let account = sim.account();
    let secret = kraken_sim::sign::decode_secret(&account.api_secret).unwrap();
    let nonce = "1700000000000001";
    let body = kraken_sim::params::form_encode(&[
        ("nonce", nonce),
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "30000"),
        ("volume", "0.01"),
        ("cl_ord_id", "tools-sim-1"),
    ]);
    let path = "/0/private/AddOrder";
    let sign = kraken_sim::sign::sign(&secret, path, nonce, body.as_bytes());
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAPI-Key: {}\r\nAPI-Sign: {sign}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        sim.addr(),
        account.api_key,
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let orders = sim.orders();
    assert_eq!(orders.len(), 1, "{raw}");
    orders[0].txid.clone()
}

#[test]
fn sim_shows_the_simulator_and_steers_it() {
    let sim = sim();
    let url = sim.url();
    let txid = book_an_order(&sim);

    let run = sim_tool(&url, &["orders"]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    let orders = run.json();
    assert_eq!(orders[0]["txid"], txid.as_str());
    assert_eq!(orders[0]["params"]["cl_ord_id"], "tools-sim-1");

    let run = sim_tool(&url, &["requests", "--last", "1"]);
    run.assert_no_secret(&[]);
    let requests = run.json();
    assert_eq!(requests.as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(requests[0]["method"], "AddOrder");
    assert_eq!(requests[0]["signature_valid"], true);

    let run = sim_tool(&url, &["balance", "ZUSD", "12.5"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(sim.balance("ZUSD").to_string(), "12.5");
    assert_eq!(run.json()["ZUSD"]["balance"], "12.5000");
    assert!(sim_tool(&url, &["balance"]).json()["XXBT"]["balance"].is_string());

    let run = sim_tool(&url, &["fault", "drop-after-book", "--method", "AddOrder"]);
    assert_eq!(run.code, 0, "{run}");
    let run = sim_tool(&url, &["fault", "KrakenError", "--error", "EService:Busy"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        sim.faults(),
        [
            Fault::on("AddOrder", FaultKind::DropAfterBook),
            Fault::any(FaultKind::KrakenError {
                error: "EService:Busy".into()
            })
        ]
    );
    assert_eq!(run.json().as_array().map(Vec::len), Some(2));
    let run = sim_tool(&url, &["fault", "Delay"]);
    assert_eq!(run.code, 2, "a Delay needs --ms: {run}");
    assert_eq!(sim.faults().len(), 2);
    let run = sim_tool(&url, &["fault", "clear"]);
    assert_eq!(run.json()["cleared"], 2, "{run}");
    assert!(sim.faults().is_empty());

    for (tier, want) in [
        ("starter", Some(RateTier::Starter)),
        ("pro", Some(RateTier::Pro)),
        ("intermediate", Some(RateTier::Intermediate)),
        ("none", None),
    ] {
        let run = sim_tool(&url, &["tier", tier]);
        run.assert_no_secret(&[]);
        assert_eq!(run.code, 0, "{run}");
        assert_eq!(sim.rate_tier(), want, "{tier}");
    }
    let run = sim_tool(&url, &["tier", "gold"]);
    assert_eq!(run.code, 1, "the simulator refuses: {run}");
    assert_eq!(sim.rate_tier(), None);

    let run = sim_tool(&url, &["permissions", "query_funds,create_orders"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        sim.permissions(),
        [Permission::QueryFunds, Permission::CreateOrders]
            .into_iter()
            .collect()
    );

    let run = sim_tool(&url, &["reset"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(sim.orders().is_empty());
    assert_eq!(sim.permissions().len(), Permission::ALL.len());

    let closed = format!("http://{}", free_addr());
    let run = sim_tool(&closed, &["orders"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("no simulator at"), "{run}");
}

// ---- scripts/check-key ------------------------------------------------------------------------

/// A simulator whose one key ([`API_KEY`]) has exactly `permissions`.
fn sim_with(permissions: &[Permission]) -> Sim {
    let mut account = Account::test_default().with_permissions(permissions.iter().copied());
    account.api_key = API_KEY.to_string();
    Sim::start(SimOptions {
        accounts: vec![account],
        ..SimOptions::default()
    })
}

fn check_key(sim: &Sim, extra: &[(&str, &str)]) -> Run {
    check_key_with(sim, &[], extra)
}

/// `scripts/check-key ARGS` on `sim`'s key, with `extra` in its environment.
fn check_key_with(sim: &Sim, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let url = sim.url();
    let mut env = vec![
        ("KRAKEN_API_KEY", API_KEY),
        ("KRAKEN_API_SECRET", API_SECRET),
        ("KRAKEN_API_URL", url.as_str()),
    ];
    env.extend_from_slice(extra);
    script("check-key", args, &env, None)
}

/// The simulator booked nothing, and every AddOrder it received asked only to validate.
fn assert_nothing_traded(sim: &Sim) {
    assert!(sim.orders().is_empty(), "check-key booked an order");
    for r in private_requests(sim) {
        let method = r.method.as_deref().unwrap_or_default();
        assert!(
            ["Balance", "OpenOrders", "ClosedOrders", "AddOrder"].contains(&method),
            "check-key called {method}"
        );
        if method == "AddOrder" {
            assert_eq!(r.params.get("validate").map(String::as_str), Some("true"));
        }
    }
}

#[test]
fn check_key_with_every_permission_exits_0() {
    let sim = sim_with(&Permission::ALL);
    let run = check_key(&sim, &[]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    for label in [
        "Query funds",
        "Query open orders & trades",
        "Query closed orders & trades",
        "Create & modify orders",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains("present") && l.contains(label)),
            "{label} not reported present:\n{run}"
        );
    }
    assert!(!run.stdout.contains("MISSING"), "{run}");
    assert!(
        run.stdout
            .contains("Every permission the bridge needs is present")
    );
    assert_nothing_traded(&sim);
    let requests = private_requests(&sim);
    let methods: Vec<_> = requests.iter().filter_map(|r| r.method.clone()).collect();
    assert_eq!(
        methods,
        ["Balance", "OpenOrders", "ClosedOrders", "AddOrder"]
    );
    for r in &requests {
        assert_eq!(r.signature_valid, Some(true));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        // Microsecond nonces, as the bridge's: a key shared with it stays usable.
        assert_eq!(r.params["nonce"].len(), 16, "{}", r.params["nonce"]);
    }
}

#[test]
fn check_key_checks_every_key_of_the_pool() {
    let sim = pool_sim(2);
    let pool = pool_setting(2);
    let run = check_key(&sim, &[("KRAKEN_API_KEYS", pool.as_str())]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    for n in 1..=3 {
        assert!(run.stdout.contains(&format!("Key {n} of 3")), "{run}");
    }
    assert_eq!(
        run.stdout
            .matches("Every permission the bridge needs is present")
            .count(),
        3,
        "{run}"
    );
    assert_nothing_traded(&sim);
    // Each key asked its four questions, with its own signature.
    for key in [API_KEY, POOL_KEYS[0].0, POOL_KEYS[1].0] {
        let asked = private_requests(&sim)
            .into_iter()
            .filter(|r| r.api_key.as_deref() == Some(key) && r.signature_valid == Some(true))
            .count();
        assert_eq!(asked, 4, "{run}");
    }
    // One key of the pool without a permission: the whole check fails, naming it.
    sim.set_permissions([Permission::QueryFunds, Permission::QueryOpenOrders]);
    let run = check_key(&sim, &[("KRAKEN_API_KEYS", pool.as_str())]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("MISSING"), "{run}");
    assert_eq!(
        run.stdout
            .matches("Every permission the bridge needs is present")
            .count(),
        2,
        "{run}"
    );
}

#[test]
fn check_key_checks_every_key_of_every_account() {
    let sim = accounts_sim();
    let accounts = accounts_setting();
    let asked = |key: &str| {
        private_requests(&sim)
            .into_iter()
            .filter(|r| r.api_key.as_deref() == Some(key) && r.signature_valid == Some(true))
            .count()
    };
    // Every account: the top level's key, then swing's own (paper and scalp share the top
    // level's keys).
    let run = check_key(&sim, &[("KRAKEN_ACCOUNTS", accounts.as_str())]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("Key 2 of 2 (account swing kraken_api_key)"),
        "{run}"
    );
    assert_eq!((asked(API_KEY), asked(SWING_API_KEY)), (4, 4), "{run}");
    // One account: its own keys only.
    let before = (asked(API_KEY), asked(SWING_API_KEY));
    let run = check_key_with(
        &sim,
        &["--account", "swing"],
        &[("KRAKEN_ACCOUNTS", accounts.as_str())],
    );
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        (asked(API_KEY), asked(SWING_API_KEY)),
        (before.0, before.1 + 4),
        "{run}"
    );
    // An account without keys of its own: the top level's, said so.
    let run = check_key_with(
        &sim,
        &["--account", "paper"],
        &[("KRAKEN_ACCOUNTS", accounts.as_str())],
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("trades with the top level's"), "{run}");
    // An account it does not know, and a KRAKEN_ACCOUNTS that does not parse: no secret in
    // the message.
    let run = check_key_with(
        &sim,
        &["--account", "nosuch"],
        &[("KRAKEN_ACCOUNTS", accounts.as_str())],
    );
    assert_eq!(run.code, 2, "{run}");
    let broken = format!(r#"{{"swing":{{"kraken_api_key":"{SWING_API_KEY}""#);
    let run = check_key(&sim, &[("KRAKEN_ACCOUNTS", broken.as_str())]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("KRAKEN_ACCOUNTS is not a JSON object"),
        "{run}"
    );
    assert_nothing_traded(&sim);
}

#[test]
fn check_key_names_a_missing_permission_and_exits_non_zero() {
    for (lacking, label) in [
        (Permission::CreateOrders, "Create & modify orders"),
        (Permission::QueryFunds, "Query funds"),
    ] {
        let others: Vec<_> = Permission::ALL
            .into_iter()
            .filter(|p| *p != lacking)
            .collect();
        let sim = sim_with(&others);
        let run = check_key(&sim, &[]);
        run.assert_no_secret(&[]);
        assert_eq!(run.code, 1, "{run}");
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains("MISSING") && l.contains(label)),
            "{label} not reported missing:\n{run}"
        );
        assert!(run.stdout.contains(&format!("Missing: {label}.")), "{run}");
        assert_eq!(
            run.stdout.matches("MISSING").count(),
            1,
            "only {label} is missing:\n{run}"
        );
        assert_nothing_traded(&sim);
    }
    // A key that may do nothing: all four named, and a hint at an IP restriction.
    let sim = sim_with(&[]);
    let run = check_key(&sim, &[]);
    run.assert_no_secret(&[]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.stdout.matches("MISSING").count(), 4, "{run}");
    assert!(run.stdout.contains("IP addresses"), "{run}");
    assert_nothing_traded(&sim);
}

#[test]
fn check_key_sends_the_otp_and_explains_a_bad_key() {
    let otp = "tools-otp-2fa-5823";
    let mut account = Account::test_default().with_otp(otp);
    account.api_key = API_KEY.to_string();
    let sim = Sim::start(SimOptions {
        accounts: vec![account],
        ..SimOptions::default()
    });
    let run = check_key(&sim, &[("KRAKEN_OTP", otp)]);
    run.assert_no_secret(&[otp]);
    assert_eq!(run.code, 0, "{run}");
    // Without it Kraken answers Invalid signature: nothing can be judged, one call made.
    let before = private_requests(&sim).len();
    let run = check_key(&sim, &[]);
    run.assert_no_secret(&[otp]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("EAPI:Invalid signature"), "{run}");
    assert!(run.stdout.contains("KRAKEN_OTP"), "{run}");
    assert_eq!(private_requests(&sim).len(), before + 1);
    // An unknown key.
    let run = check_key(&sim, &[("KRAKEN_API_KEY", "not-a-key-of-this-exchange")]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("EAPI:Invalid key"), "{run}");
    // No key at all.
    let run = script("check-key", &[], &[], None);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("KRAKEN_API_KEY is not set"), "{run}");
    assert_nothing_traded(&sim);
}

// ---- the README ---------------------------------------------------------------------------------

/// Every `scripts/...` command in the README's "Operator tools" section runs as written,
/// against a receiver, a simulator and a simulated key, and does what the section says.
#[test]
fn readme_operator_tools_examples_run() {
    let readme = std::fs::read_to_string(bridge_host::workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("\n## Operator tools\n")
        .expect("README has an Operator tools section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let commands: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with("scripts/"))
        .map(|l| l.split(" #").next().unwrap().split_whitespace().collect())
        .collect();
    assert_eq!(
        commands.len(),
        4,
        "one example per tool, and send's position alert: {commands:?}"
    );

    let rx = Receiver::start(ReceiverAnswer::Status(200));
    let rx_addr = rx.origin().trim_start_matches("http://").to_string();
    let sim = sim_with(&Permission::ALL);
    let sim_addr = sim.addr().to_string();
    // check-key gets a simulator of its own: the sim example queues a fault.
    let key_sim = sim_with(&Permission::ALL);
    let url = key_sim.url();
    for command in &commands {
        let (tool, args) = (command[0].trim_start_matches("scripts/"), &command[1..]);
        let run = match tool {
            "send" => script(
                tool,
                args,
                &[
                    ("WEBHOOK_SECRET", WEBHOOK_SECRET),
                    ("BRIDGE_ADDR", &rx_addr),
                ],
                None,
            ),
            "sim" => script(tool, args, &[("SIM_ADDR", &sim_addr)], None),
            "check-key" => script(
                tool,
                args,
                &[
                    ("KRAKEN_API_KEY", API_KEY),
                    ("KRAKEN_API_SECRET", API_SECRET),
                    ("KRAKEN_API_URL", &url),
                ],
                None,
            ),
            other => panic!("an example of an unknown tool {other}"),
        };
        run.assert_no_secret(&[]);
        assert_eq!(run.code, 0, "{command:?}: {run}");
    }
    let got = rx.wait_for(2, Duration::from_secs(5));
    assert_eq!(
        got[0].json()["secret"],
        WEBHOOK_SECRET,
        "the example is --tradingview"
    );
    assert_eq!(
        (&got[1].json()["action"], &got[1].json()["position"]),
        (&json!("position"), &json!("0.5")),
        "the second send example is a position alert"
    );
    assert_eq!(
        sim.faults(),
        [Fault::on("AddOrder", FaultKind::DropAfterBook)]
    );
    assert_nothing_traded(&key_sim);
    assert_eq!(private_requests(&key_sim).len(), 4);
}
