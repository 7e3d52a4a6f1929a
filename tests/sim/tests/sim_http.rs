//! End-to-end tests of the simulator over real loopback HTTP, with a tiny
//! HTTP/1.1 client on `std::net::TcpStream`.

use kraken_sim::params::form_encode;
use kraken_sim::{
    realistic_asset_pairs_body, sign, Account, Fault, FaultKind, OrderStatus, Permission, RateTier,
    Sim, SimOptions, KRAKEN_PAIR_COUNT,
};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const VECTOR_NONCE: u64 = 1_616_492_376_594;
const VECTOR_BODY: &str =
    "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
const VECTOR_SIGN: &str =
    "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";

#[derive(Debug)]
struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn errors(&self) -> Vec<String> {
        serde_json::from_value(self.json()["error"].clone()).unwrap()
    }
    fn result(&self) -> Value {
        let v = self.json();
        assert_eq!(v["error"], json!([]), "{}", self.body);
        v["result"].clone()
    }
}

#[derive(Debug)]
enum Got {
    Reply(Resp),
    /// The server closed the connection without a byte of answer.
    Closed,
    /// No answer within the client's timeout.
    TimedOut,
}

impl Got {
    fn reply(self) -> Resp {
        match self {
            Got::Reply(r) => r,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Got {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    http_raw(addr, &raw, timeout)
}

/// Writes `raw` (a whole HTTP/1.1 request, framed by the caller) and reads
/// the answer until the server closes the connection.
fn http_raw(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Got {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Got::TimedOut
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset && buf.is_empty() => {
                return Got::Closed
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    if buf.is_empty() {
        return Got::Closed;
    }
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Got::Reply(Resp {
        status,
        body: body.to_string(),
    })
}

const T: Duration = Duration::from_secs(10);

struct Client {
    addr: SocketAddr,
    key: String,
    secret: Vec<u8>,
    nonce: u64,
}

/// A fully signed request, ready to send (and to resend unchanged).
#[derive(Clone)]
struct Signed {
    path: String,
    body: String,
    sign: String,
    content_type: &'static str,
}

impl Client {
    fn new(sim: &Sim) -> Self {
        let a = sim.account();
        Self {
            addr: sim.addr(),
            key: a.api_key,
            secret: sign::decode_secret(&a.api_secret).unwrap(),
            nonce: VECTOR_NONCE,
        }
    }

    fn signed(&mut self, method: &str, fields: &[(&str, &str)]) -> Signed {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let mut all = vec![("nonce", nonce.as_str())];
        all.extend_from_slice(fields);
        let body = form_encode(&all);
        let path = format!("/0/private/{method}");
        let sign = sign::sign(&self.secret, &path, &nonce, body.as_bytes());
        Signed {
            path,
            body,
            sign,
            content_type: "application/x-www-form-urlencoded",
        }
    }

    fn signed_json(&mut self, method: &str, mut fields: Value) -> Signed {
        self.nonce += 1;
        fields["nonce"] = json!(self.nonce);
        let body = fields.to_string();
        let path = format!("/0/private/{method}");
        let sign = sign::sign(
            &self.secret,
            &path,
            &self.nonce.to_string(),
            body.as_bytes(),
        );
        Signed {
            path,
            body,
            sign,
            content_type: "application/json",
        }
    }

    fn send_with_timeout(&self, s: &Signed, timeout: Duration) -> Got {
        let headers = [
            ("API-Key", self.key.as_str()),
            ("API-Sign", s.sign.as_str()),
            ("Content-Type", s.content_type),
        ];
        http(
            self.addr,
            "POST",
            &s.path,
            &headers,
            s.body.as_bytes(),
            timeout,
        )
    }

    fn send(&self, s: &Signed) -> Got {
        self.send_with_timeout(s, T)
    }

    fn call(&mut self, method: &str, fields: &[(&str, &str)]) -> Resp {
        let s = self.signed(method, fields);
        self.send(&s).reply()
    }

    fn get(&self, path: &str) -> Resp {
        http(self.addr, "GET", path, &[], b"", T).reply()
    }

    fn post_json(&self, path: &str, body: &Value) -> Resp {
        let b = body.to_string();
        http(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            b.as_bytes(),
            T,
        )
        .reply()
    }
}

fn start() -> (Sim, Client) {
    let sim = Sim::start(SimOptions::default());
    let client = Client::new(&sim);
    (sim, client)
}

const LIMIT: [(&str, &str); 5] = [
    ("pair", "XBTUSD"),
    ("type", "buy"),
    ("ordertype", "limit"),
    ("price", "37500"),
    ("volume", "0.1"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = LIMIT
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(ek, _)| ek == k))
        .copied()
        .collect();
    v.extend(extra.iter().filter(|(_, v)| *v != "<omit>").copied());
    v
}

fn vector_request(body: &str) -> Signed {
    Signed {
        path: "/0/private/AddOrder".into(),
        body: body.into(),
        sign: VECTOR_SIGN.into(),
        content_type: "application/x-www-form-urlencoded",
    }
}

// -- authentication ------------------------------------------------------------

#[test]
fn official_vector_tamper_accept_replay() {
    let (sim, client) = start();

    // Tampered body: refused, nothing booked, nonce not consumed.
    let tampered = vector_request(&VECTOR_BODY.replace("price=37500", "price=37600"));
    let r = client.send(&tampered).reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.errors(), vec!["EAPI:Invalid signature"]);
    assert!(sim.orders().is_empty());

    // The genuine vector request: accepted and booked.
    let genuine = vector_request(VECTOR_BODY);
    let r = client.send(&genuine).reply();
    let result = r.result();
    assert_eq!(
        result["descr"]["order"],
        "buy 1.25000000 XBTUSD @ limit 37500.0"
    );
    let orders = sim.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(result["txid"], json!([orders[0].txid]));
    assert_eq!(orders[0].params["nonce"], "1616492376594");
    assert_eq!(orders[0].params["volume"], "1.25");
    assert_eq!(orders[0].status, OrderStatus::Open);

    // Replayed: invalid nonce, nothing more booked.
    let r = client.send(&genuine).reply();
    assert_eq!(r.errors(), vec!["EAPI:Invalid nonce"]);
    assert_eq!(sim.orders().len(), 1);

    let log = sim.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].signature_valid, Some(false));
    assert_eq!(log[1].booked, vec![orders[0].txid.clone()]);
    assert_eq!(log[2].errors, vec!["EAPI:Invalid nonce"]);
}

#[test]
fn unknown_key_missing_sign_unknown_method() {
    let (sim, client) = start();
    let s = vector_request(VECTOR_BODY);
    let r = http(
        client.addr,
        "POST",
        &s.path,
        &[("API-Key", "nobody"), ("API-Sign", VECTOR_SIGN)],
        s.body.as_bytes(),
        T,
    )
    .reply();
    assert_eq!(r.errors(), vec!["EAPI:Invalid key"]);
    let r = http(
        client.addr,
        "POST",
        &s.path,
        &[("API-Key", "sim-api-key-local")],
        s.body.as_bytes(),
        T,
    )
    .reply();
    assert_eq!(r.errors(), vec!["EAPI:Invalid signature"]);
    let mut c = Client::new(&sim);
    assert_eq!(
        c.call("Withdraw", &[]).errors(),
        vec!["EGeneral:Unknown method"]
    );
    assert!(sim.orders().is_empty());
    let r = http(client.addr, "GET", "/nowhere", &[], b"", T).reply();
    assert_eq!(r.status, 404);
    assert_eq!(sim.requests().last().unwrap().scope, "other");
}

#[test]
fn json_body_order_is_booked_with_its_params() {
    let (sim, mut c) = start();
    let s = c.signed_json(
        "AddOrder",
        json!({"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "37500", "volume": "0.1",
               "cl_ord_id": "tv-1", "close": {"ordertype": "stop-loss", "price": "30000"}}),
    );
    let r = c.send(&s).reply().result();
    assert_eq!(r["descr"]["close"], "close position @ stop loss 30000.0");
    let o = &sim.orders()[0];
    assert_eq!(o.params["close[ordertype]"], "stop-loss");
    assert_eq!(o.params["cl_ord_id"], "tv-1");
    assert_eq!(o.params["nonce"], c.nonce.to_string());
}

// -- AddOrder rules ---------------------------------------------------------------

#[test]
fn every_add_order_rule_answers_its_error_and_books_nothing() {
    let (sim, mut c) = start();
    let past = kraken_sim::time::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 5,
    );
    let past: &'static str = past.leak();
    // An open order whose cl_ord_id a later order repeats.
    c.call("AddOrder", &with(&[("cl_ord_id", "dup-1")]))
        .result();
    let booked = sim.orders().len();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            with(&[("pair", "<omit>")]),
            "EGeneral:Invalid arguments:pair",
        ),
        (
            with(&[("type", "<omit>")]),
            "EGeneral:Invalid arguments:type",
        ),
        (
            with(&[("ordertype", "<omit>")]),
            "EGeneral:Invalid arguments:ordertype",
        ),
        (
            with(&[("volume", "<omit>")]),
            "EGeneral:Invalid arguments:volume",
        ),
        (with(&[("pair", "XBTEUR")]), "EQuery:Unknown asset pair"),
        (with(&[("type", "hold")]), "EGeneral:Invalid arguments:type"),
        (
            with(&[("ordertype", "stop")]),
            "EGeneral:Invalid arguments:ordertype",
        ),
        (
            with(&[("volume", "1e-2")]),
            "EGeneral:Invalid arguments:volume",
        ),
        (
            with(&[("volume", "0.123456789")]),
            "EGeneral:Invalid arguments:volume",
        ),
        (
            with(&[("price", "<omit>")]),
            "EGeneral:Invalid arguments:price",
        ),
        (
            with(&[("ordertype", "stop-loss-limit")]),
            "EGeneral:Invalid arguments:price2",
        ),
        (
            with(&[("price", "37500.25")]),
            "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals.",
        ),
        (
            with(&[("volume", "0.00001")]),
            "EOrder:Order minimum not met",
        ),
        (
            with(&[("volume", "0.00005"), ("price", "5000")]),
            "EOrder:Cost minimum not met",
        ),
        (with(&[("cl_ord_id", "dup-1")]), "EOrder:Duplicate order"),
        (with(&[("volume", "100")]), "EOrder:Insufficient funds"),
        (
            with(&[("type", "sell"), ("volume", "3")]),
            "EOrder:Insufficient funds",
        ),
        (
            with(&[("timeinforce", "GTD")]),
            "EGeneral:Invalid arguments:expiretm",
        ),
        (with(&[("deadline", past)]), "EService:Deadline elapsed"),
    ];
    for (fields, want) in cases {
        let r = c.call("AddOrder", &fields);
        assert_eq!(r.status, 200);
        assert_eq!(r.errors(), vec![want.to_string()], "{fields:?}");
        assert!(r.json().get("result").is_none());
        assert_eq!(sim.orders().len(), booked, "nothing booked for {want}");
    }
    // Tick size, with a pair whose tick is coarser than its decimals.
    sim.with_exchange(|ex| ex.pairs[0].tick_size = "0.5".into());
    assert_eq!(
        c.call("AddOrder", &with(&[("price", "37500.2")])).errors(),
        vec!["EOrder:Tick size check failed"]
    );
    // Pair status.
    sim.set_pair_status("XBTUSD", "cancel_only");
    assert_eq!(
        c.call("AddOrder", &LIMIT).errors(),
        vec!["EService:Market in cancel_only mode"]
    );
    assert_eq!(sim.orders().len(), booked);
    sim.set_pair_status("XBTUSD", "online");
    c.call("AddOrder", &LIMIT).result();
    assert_eq!(sim.orders().len(), booked + 1);
}

#[test]
fn validate_true_books_nothing() {
    let (sim, mut c) = start();
    let r = c.call("AddOrder", &with(&[("validate", "true")])).result();
    assert_eq!(
        r,
        json!({"descr": {"order": "buy 0.10000000 XBTUSD @ limit 37500.0"}})
    );
    assert!(sim.orders().is_empty());
    let r = c.call("OpenOrders", &[]).result();
    assert_eq!(r["open"], json!({}));
}

#[test]
fn market_order_fills_and_moves_balances() {
    let (sim, mut c) = start();
    sim.set_last_price("XBTUSD", "50000.0");
    let r = c
        .call(
            "AddOrder",
            &[
                ("pair", "XXBTZUSD"),
                ("type", "buy"),
                ("ordertype", "market"),
                ("volume", "0.01"),
            ],
        )
        .result();
    assert_eq!(r["descr"]["order"], "buy 0.01000000 XBTUSD @ market");
    let txid = r["txid"][0].as_str().unwrap().to_string();
    let o = &sim.orders()[0];
    assert_eq!(o.status, OrderStatus::Closed);
    assert_eq!(o.avg_price.to_string(), "50000.0");
    let bal = c.call("Balance", &[]).result();
    assert_eq!(bal["XXBT"], "2.0100000000");
    assert_eq!(bal["ZUSD"], "99498.0000"); // 100000 − 500 − 2 fee
    let q = c.call("QueryOrders", &[("txid", &txid)]).result();
    assert_eq!(q[&txid]["status"], "closed");
    assert_eq!(q[&txid]["vol_exec"], "0.01000000");
    assert_eq!(q[&txid]["cost"], "500.00000");
    assert_eq!(q[&txid]["price"], "50000.0");
    sim.set_balance("ZUSD", "10");
    let r = c.call(
        "AddOrder",
        &[
            ("pair", "XBTUSD"),
            ("type", "buy"),
            ("ordertype", "market"),
            ("volume", "0.01"),
        ],
    );
    assert_eq!(r.errors(), vec!["EOrder:Insufficient funds"]);
}

#[test]
fn cl_ord_id_duplicate_until_cancelled_and_filters() {
    let (sim, mut c) = start();
    let f = with(&[("cl_ord_id", "alert-42")]);
    let first = c.call("AddOrder", &f).result()["txid"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.call("AddOrder", &f).errors(),
        vec!["EOrder:Duplicate order"]
    );
    assert_eq!(sim.orders().len(), 1);

    let open = c.call("OpenOrders", &[("cl_ord_id", "alert-42")]).result();
    assert_eq!(
        open["open"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&first]
    );
    assert_eq!(open["open"][&first]["cl_ord_id"], "alert-42");
    let none = c.call("OpenOrders", &[("cl_ord_id", "alert-43")]).result();
    assert_eq!(none["open"], json!({}));

    let r = c.call("CancelOrder", &[("txid", &first)]).result();
    assert_eq!(r, json!({"count": 1, "pending": false}));
    let closed = c
        .call("ClosedOrders", &[("cl_ord_id", "alert-42")])
        .result();
    assert_eq!(closed["count"], 1);
    assert_eq!(closed["closed"][&first]["status"], "canceled");
    assert_eq!(
        c.call("OpenOrders", &[("cl_ord_id", "alert-42")]).result()["open"],
        json!({})
    );

    let second = c.call("AddOrder", &f).result()["txid"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    let r = c.call("CancelAll", &[]).result();
    assert_eq!(r, json!({"count": 1, "pending": false}));
    let closed = c
        .call("ClosedOrders", &[("cl_ord_id", "alert-42")])
        .result();
    assert_eq!(closed["count"], 2);
}

// -- faults --------------------------------------------------------------------------

#[test]
fn fault_delay_then_normal() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on("AddOrder", FaultKind::Delay { ms: 400 }));
    let t0 = Instant::now();
    c.call("AddOrder", &LIMIT).result();
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn fault_delay_lands_after_the_client_gave_up() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on("AddOrder", FaultKind::Delay { ms: 600 }));
    let s = c.signed("AddOrder", &LIMIT);
    assert!(matches!(
        c.send_with_timeout(&s, Duration::from_millis(150)),
        Got::TimedOut
    ));
    assert!(sim.orders().is_empty(), "not yet on the exchange");
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(
        sim.orders().len(),
        1,
        "the abandoned request still reached the exchange"
    );
}

#[test]
fn fault_http_status_does_not_consume_the_nonce() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on(
        "AddOrder",
        FaultKind::HttpStatus {
            status: 502,
            body: "<html>502 Bad Gateway</html>".into(),
        },
    ));
    let s = c.signed("AddOrder", &LIMIT);
    let r = c.send(&s).reply();
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "<html>502 Bad Gateway</html>");
    assert!(sim.orders().is_empty());
    // The very same signed request is still acceptable.
    c.send(&s).reply().result();
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn fault_kraken_error_consumes_the_nonce() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on(
        "AddOrder",
        FaultKind::KrakenError {
            error: "EService:Busy".into(),
        },
    ));
    let s = c.signed("AddOrder", &LIMIT);
    assert_eq!(c.send(&s).reply().errors(), vec!["EService:Busy"]);
    assert!(sim.orders().is_empty());
    assert_eq!(c.send(&s).reply().errors(), vec!["EAPI:Invalid nonce"]);
}

#[test]
fn fault_drop_before_book() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on("AddOrder", FaultKind::DropBeforeBook));
    let s = c.signed("AddOrder", &LIMIT);
    assert!(matches!(c.send(&s), Got::Closed));
    assert!(sim.orders().is_empty());
    assert_eq!(sim.requests()[0].status, None);
    c.send(&s).reply().result();
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn fault_drop_after_book() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on("AddOrder", FaultKind::DropAfterBook));
    let s = c.signed("AddOrder", &with(&[("cl_ord_id", "lost-answer")]));
    assert!(matches!(c.send(&s), Got::Closed));
    assert_eq!(sim.orders().len(), 1);
    assert_eq!(c.send(&s).reply().errors(), vec!["EAPI:Invalid nonce"]);
    // The client can find it by cl_ord_id.
    let open = c
        .call("OpenOrders", &[("cl_ord_id", "lost-answer")])
        .result();
    assert_eq!(open["open"].as_object().unwrap().len(), 1);
}

#[test]
fn fault_error_after_book() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on(
        "AddOrder",
        FaultKind::ErrorAfterBook {
            error: "EService:Unavailable".into(),
        },
    ));
    let r = c.call("AddOrder", &LIMIT);
    assert_eq!(r.errors(), vec!["EService:Unavailable"]);
    assert_eq!(sim.orders().len(), 1);
    assert_eq!(sim.requests()[0].booked.len(), 1);
}

#[test]
fn fault_delay_after_book_outlasts_the_client_timeout() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on(
        "AddOrder",
        FaultKind::DelayAfterBook { ms: 1500 },
    ));
    let s = c.signed("AddOrder", &LIMIT);
    let t0 = Instant::now();
    assert!(matches!(
        c.send_with_timeout(&s, Duration::from_millis(300)),
        Got::TimedOut
    ));
    assert!(t0.elapsed() < Duration::from_millis(1400));
    assert_eq!(sim.orders().len(), 1, "booked before the delayed answer");
    assert_eq!(sim.requests()[0].answer_delay_ms, 1500);
    // Waiting long enough gets the normal answer.
    sim.push_fault(Fault::on("AddOrder", FaultKind::DelayAfterBook { ms: 300 }));
    let t0 = Instant::now();
    let r = c.call("AddOrder", &LIMIT).result();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(r["txid"][0].is_string());
}

#[test]
fn fault_consume_nonce_no_answer() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on("AddOrder", FaultKind::ConsumeNonceNoAnswer));
    let s = c.signed("AddOrder", &LIMIT);
    assert!(matches!(c.send(&s), Got::Closed));
    assert!(sim.orders().is_empty());
    assert_eq!(c.send(&s).reply().errors(), vec!["EAPI:Invalid nonce"]);
    assert!(sim.orders().is_empty());
}

#[test]
fn fault_rate_limit() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on("AddOrder", FaultKind::RateLimit));
    let s = c.signed("AddOrder", &LIMIT);
    let r = c.send(&s).reply();
    assert_eq!(r.status, 200);
    assert_eq!(r.errors(), vec!["EAPI:Rate limit exceeded"]);
    assert!(sim.orders().is_empty());
}

#[test]
fn fault_for_another_method_waits_its_turn() {
    let (sim, mut c) = start();
    sim.push_fault(Fault::on(
        "OpenOrders",
        FaultKind::KrakenError {
            error: "EGeneral:Internal error".into(),
        },
    ));
    c.call("AddOrder", &LIMIT).result();
    assert_eq!(
        c.call("OpenOrders", &[]).errors(),
        vec!["EGeneral:Internal error"]
    );
    assert_eq!(
        c.call("OpenOrders", &[]).result()["open"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

// -- body framing -------------------------------------------------------------------------

#[test]
fn body_framing_is_recorded() {
    let (sim, mut c) = start();
    // Content-Length framing (the test client's default).
    let s = c.signed("Balance", &[]);
    c.send(&s).reply().result();
    let first_len = s.body.len();
    let rec = sim.requests().pop().unwrap();
    assert_eq!(rec.content_length, Some(first_len as u64));
    assert!(!rec.chunked);

    // Chunked framing, the body in two chunks and no Content-Length.
    let s = c.signed("Balance", &[]);
    let (a, b) = s.body.split_at(s.body.len() / 2);
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAPI-Key: {}\r\nAPI-Sign: {}\r\n\
         Content-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        s.path,
        c.addr,
        c.key,
        s.sign,
        s.content_type,
        a.len(),
        b.len(),
    );
    let r = http_raw(c.addr, raw.as_bytes(), T).reply();
    assert_eq!(r.status, 200);
    assert!(r.result()["ZUSD"].is_string(), "the whole body was signed");
    let rec = sim.requests().pop().unwrap();
    assert_eq!(rec.method.as_deref(), Some("Balance"));
    assert_eq!(rec.signature_valid, Some(true));
    assert_eq!(rec.content_length, None);
    assert!(rec.chunked);

    // Public and unknown paths are recorded the same way.
    c.get("/0/public/Time").result();
    let rec = sim.requests().pop().unwrap();
    assert_eq!(
        (rec.scope.as_str(), rec.content_length, rec.chunked),
        ("public", Some(0), false)
    );
    let raw = format!(
        "POST /nowhere HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n0\r\n\r\n",
        c.addr
    );
    assert_eq!(http_raw(c.addr, raw.as_bytes(), T).reply().status, 404);
    let rec = sim.requests().pop().unwrap();
    assert_eq!(
        (rec.scope.as_str(), rec.content_length, rec.chunked),
        ("other", None, true)
    );
    // And served by the request log.
    let list = c.get("/_sim/requests").json();
    assert_eq!(list[0]["content_length"], json!(first_len));
    assert_eq!(list[0]["chunked"], false);
    assert_eq!(list[1]["content_length"], Value::Null);
    assert_eq!(list[1]["chunked"], true);
}

// -- REST rate counter ----------------------------------------------------------------------

const RATE_LIMITED: &str = r#"{"error":["EAPI:Rate limit exceeded"],"result":{}}"#;

fn assert_near(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

#[test]
fn starter_rest_counter_over_http() {
    let sim = Sim::start(SimOptions {
        rate_tier: Some(RateTier::Starter),
        ..SimOptions::default()
    });
    sim.freeze_clock();
    let mut c = Client::new(&sim);
    let key = c.key.clone();
    for _ in 0..15 {
        c.call("Balance", &[]).result();
    }
    assert_near(sim.rest_counter(&key), 15.0);
    let r = c.call("Balance", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, RATE_LIMITED));
    assert_eq!(sim.rate_limited_count(), 1);
    assert_near(sim.rest_counter(&key), 15.0);

    // Orders are placed and cancelled whatever the counter says.
    let txid = c.call("AddOrder", &LIMIT).result()["txid"][0]
        .as_str()
        .unwrap()
        .to_string();
    c.call("CancelOrder", &[("txid", &txid)]).result();
    assert_near(sim.rest_counter(&key), 15.0);

    // One refill: one more call, then refused again.
    sim.advance_clock(1.0 / 0.33);
    c.call("Balance", &[]).result();
    assert_eq!(c.call("Balance", &[]).body, RATE_LIMITED);

    // TradesHistory costs 2.
    sim.advance_clock(2.0 / 0.33);
    assert_near(sim.rest_counter(&key), 13.0);
    c.call("TradesHistory", &[]).result();
    assert_near(sim.rest_counter(&key), 15.0);
    assert_eq!(c.call("OpenOrders", &[]).body, RATE_LIMITED);
    assert_eq!(sim.rate_limited_count(), 3);

    let rate = c.get("/_sim/rate").json();
    assert_eq!(rate["tier"], "starter");
    assert_eq!(rate["rate_limited"], 3);
    assert!((rate["counters"][&key].as_f64().unwrap() - 15.0).abs() < 1e-6);
    let log = sim.requests();
    assert_eq!(log.last().unwrap().errors, vec!["EAPI:Rate limit exceeded"]);
    assert!(log.iter().all(|r| r.rest_counter.is_some()));
}

#[test]
fn rate_tier_set_at_run_time() {
    let (sim, mut c) = start();
    let key = c.key.clone();
    assert_eq!(sim.rate_tier(), None);
    for _ in 0..30 {
        c.call("Balance", &[]).result();
    }
    assert_eq!(sim.rest_counter(&key), 0.0);

    sim.set_rate_tier(Some(RateTier::Pro));
    sim.freeze_clock();
    for _ in 0..20 {
        c.call("Balance", &[]).result();
    }
    assert_eq!(c.call("Balance", &[]).body, RATE_LIMITED);
    // Pro decays 1 per second.
    sim.advance_clock(1.0);
    c.call("Balance", &[]).result();
    assert_eq!(c.call("Balance", &[]).body, RATE_LIMITED);

    // Over the control endpoint.
    let r = c.post_json("/_sim/rate-tier", &json!({"tier": "starter"}));
    assert_eq!(r.status, 200);
    assert_eq!(sim.rate_tier(), Some(RateTier::Starter));
    assert_eq!(
        sim.rest_counter(&key),
        0.0,
        "a new tier restarts the counters"
    );
    assert_eq!(
        c.post_json("/_sim/rate-tier", &json!({"tier": "gold"}))
            .status,
        400
    );
    assert_eq!(c.post_json("/_sim/rate-tier", &json!({})).status, 400);
    assert_eq!(
        c.post_json("/_sim/rate-tier", &json!({"tier": null}))
            .status,
        200
    );
    assert_eq!(sim.rate_tier(), None);
    assert_eq!(c.get("/_sim/rate").json()["tier"], Value::Null);

    // Reset returns to the options' tier (none) and the wall clock.
    sim.set_rate_tier(Some(RateTier::Intermediate));
    sim.advance_clock(1_000.0);
    sim.reset();
    assert_eq!(sim.rate_tier(), None);
    assert_eq!(sim.rate_limited_count(), 0);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((sim.now() - wall).abs() < 60.0);
}

// -- control endpoints ------------------------------------------------------------------

#[test]
fn control_endpoints() {
    let (sim, mut c) = start();
    assert_eq!(c.get("/_sim/health").json(), json!({"ok": true}));

    // A fault pushed over HTTP.
    let r = c.post_json(
        "/_sim/faults",
        &json!({"method": "AddOrder", "kind": "KrakenError", "error": "EService:Busy"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(c.call("AddOrder", &LIMIT).errors(), vec!["EService:Busy"]);
    let r = c.post_json("/_sim/faults", &json!({"kind": "Explode"}));
    assert_eq!(r.status, 400);

    c.call("AddOrder", &with(&[("cl_ord_id", "ctl-1")]))
        .result();
    let orders = c.get("/_sim/orders").json();
    assert_eq!(orders.as_array().unwrap().len(), 1);
    assert_eq!(orders[0]["params"]["cl_ord_id"], "ctl-1");
    assert_eq!(orders[0]["status"], "open");

    let requests = c.get("/_sim/requests");
    let list = requests.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["errors"], json!(["EService:Busy"]));
    assert_eq!(list[1]["method"], "AddOrder");
    assert!(!requests.body.contains(Account::TEST_API_SECRET));
    // No signature value anywhere in the log.
    let s = c.signed("Balance", &[]);
    c.send(&s).reply().result();
    assert!(!c.get("/_sim/requests").body.contains(&s.sign));

    // Market settings.
    assert_eq!(
        c.post_json(
            "/_sim/last-price",
            &json!({"pair": "ETHUSD", "price": "4000.5"})
        )
        .status,
        200
    );
    let t = c.get("/0/public/Ticker?pair=ETHUSD").result();
    assert_eq!(t["XETHZUSD"]["c"][0], "4000.50");
    assert_eq!(
        c.post_json(
            "/_sim/pair-status",
            &json!({"pair": "ETHUSD", "status": "post_only"})
        )
        .status,
        200
    );
    assert_eq!(
        c.get("/0/public/AssetPairs?pair=ETH/USD").result()["XETHZUSD"]["status"],
        "post_only"
    );
    assert_eq!(
        c.post_json("/_sim/balance", &json!({"asset": "ZUSD", "value": "12.5"}))
            .status,
        200
    );
    assert_eq!(c.call("Balance", &[]).result()["ZUSD"], "12.5000");
    assert_eq!(
        c.post_json("/_sim/system-status", &json!({"status": "maintenance"}))
            .status,
        200
    );
    assert_eq!(
        c.get("/0/public/SystemStatus").result()["status"],
        "maintenance"
    );
    assert_eq!(
        c.post_json(
            "/_sim/pair-status",
            &json!({"pair": "NOPE", "status": "online"})
        )
        .status,
        400
    );
    assert_eq!(c.get("/_sim/nothing").status, 404);

    // Fill an open order by txid.
    let txid = sim.orders()[0].txid.clone();
    assert_eq!(
        c.post_json("/_sim/fill", &json!({"txid": txid})).status,
        200
    );
    assert_eq!(sim.orders()[0].status, OrderStatus::Closed);

    // Reset: everything back, including nonces.
    assert_eq!(c.post_json("/_sim/reset", &json!({})).status, 200);
    assert!(sim.orders().is_empty());
    assert!(sim.requests().is_empty());
    assert_eq!(sim.balance("ZUSD").to_string(), "100000");
    c.send(&vector_request(VECTOR_BODY)).reply().result();
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn control_lists_and_clears_faults_and_shows_balances() {
    let (sim, mut c) = start();
    assert_eq!(c.get("/_sim/faults").json(), json!([]));
    c.post_json(
        "/_sim/faults",
        &json!({"method": "AddOrder", "kind": "DropAfterBook"}),
    );
    c.post_json("/_sim/faults", &json!({"kind": "Delay", "ms": 5}));
    assert_eq!(
        c.get("/_sim/faults").json(),
        json!([{"method": "AddOrder", "kind": "DropAfterBook"}, {"kind": "Delay", "ms": 5}])
    );
    assert_eq!(sim.faults().len(), 2);
    let r = http(c.addr, "DELETE", "/_sim/faults", &[], b"", T).reply();
    assert_eq!(r.json(), json!({"ok": true, "cleared": 2}));
    assert!(sim.faults().is_empty());
    c.call("AddOrder", &LIMIT).result();

    let balances = c.get("/_sim/balances").json();
    assert_eq!(balances["ZUSD"]["balance"], "100000.0000");
    // The open limit buy holds 0.1 × 37500 (plus the fee).
    assert_ne!(balances["ZUSD"]["hold_trade"], "0.0000");
    assert_eq!(balances["XXBT"]["hold_trade"], "0.0000000000");
    assert_eq!(
        c.get("/_sim/balances?api_key=sim-api-key-local").json(),
        balances
    );
    assert_eq!(c.get("/_sim/balances?api_key=nobody").status, 400);
}

#[test]
fn control_sets_key_permissions() {
    let (sim, mut c) = start();
    let all: Vec<_> = Permission::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        c.get("/_sim/permissions").json(),
        json!({"permissions": all})
    );

    let r = c.post_json(
        "/_sim/permissions",
        &json!({"permissions": ["query_funds", "Query open orders & trades"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        c.get("/_sim/permissions").json(),
        json!({"permissions": ["query_funds", "query_open_orders"]})
    );
    c.call("Balance", &[]).result();
    c.call("OpenOrders", &[]).result();
    assert_eq!(
        c.call("ClosedOrders", &[]).errors(),
        vec!["EGeneral:Permission denied"]
    );
    assert_eq!(
        c.call("AddOrder", &with(&[("validate", "true")])).errors(),
        vec!["EGeneral:Permission denied"]
    );
    assert!(sim.orders().is_empty());

    // A comma list, `none`, `all`; bad input is refused and changes nothing.
    let r = c.post_json(
        "/_sim/permissions",
        &json!({"permissions": "create_orders,cancel_orders"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        sim.permissions(),
        [Permission::CreateOrders, Permission::CancelOrders]
            .into_iter()
            .collect()
    );
    for bad in [
        json!({"permissions": ["withdraw"]}),
        json!({"permissions": 5}),
        json!({}),
    ] {
        assert_eq!(c.post_json("/_sim/permissions", &bad).status, 400, "{bad}");
    }
    let r = c.post_json(
        "/_sim/permissions",
        &json!({"permissions": [], "api_key": "nobody"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(sim.permissions().len(), 2);
    c.post_json("/_sim/permissions", &json!({"permissions": "none"}));
    assert_eq!(
        c.call("Balance", &[]).errors(),
        vec!["EGeneral:Permission denied"]
    );

    // Reset returns to the configured permissions (all, here).
    c.post_json("/_sim/reset", &json!({}));
    assert_eq!(sim.permissions().len(), Permission::ALL.len());
    c.nonce += 1_000;
    c.call("Balance", &[]).result();
    sim.set_permissions([Permission::QueryFunds]);
    assert_eq!(
        c.call("CancelAll", &[]).errors(),
        vec!["EGeneral:Permission denied"]
    );
}

#[test]
fn configured_permissions_survive_reset() {
    let account = Account::test_default().with_permissions([Permission::QueryFunds]);
    let sim = Sim::start(SimOptions {
        accounts: vec![account],
        ..SimOptions::default()
    });
    let mut c = Client::new(&sim);
    sim.set_permissions(Permission::ALL);
    sim.reset();
    assert_eq!(
        sim.permissions(),
        [Permission::QueryFunds].into_iter().collect()
    );
    c.call("Balance", &[]).result();
    assert_eq!(
        c.call("AddOrder", &LIMIT).errors(),
        vec!["EGeneral:Permission denied"]
    );
}

#[test]
fn sim_reset_method() {
    let (sim, mut c) = start();
    c.call("AddOrder", &LIMIT).result();
    sim.set_pair_status("XBTUSD", "cancel_only");
    sim.push_fault(Fault::any(FaultKind::RateLimit));
    sim.reset();
    assert!(sim.orders().is_empty());
    c.call("AddOrder", &LIMIT).result();
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn public_endpoints() {
    let (_sim, c) = start();
    let pairs = c.get("/0/public/AssetPairs").result();
    assert_eq!(pairs.as_object().unwrap().len(), 6);
    assert_eq!(pairs["XDGUSD"]["base"], "XXDG");
    let one = c.get("/0/public/AssetPairs?pair=XBT%2FUSD,ADAEUR").result();
    assert_eq!(one.as_object().unwrap().len(), 2);
    assert_eq!(
        c.get("/0/public/AssetPairs?pair=FOO").errors(),
        vec!["EQuery:Unknown asset pair"]
    );
    let time = c.get("/0/public/Time").result();
    assert!(time["unixtime"].as_i64().unwrap() > 1_700_000_000);
    assert!(time["rfc1123"].as_str().unwrap().ends_with("+0000"));
    assert_eq!(
        c.get("/0/public/Ticker?pair=XBTUSD").result()["XXBTZUSD"]["c"][0],
        "67000.0"
    );
    assert_eq!(
        c.get("/0/public/Depth").errors(),
        vec!["EGeneral:Unknown method"]
    );
}

#[tokio::test]
async fn usable_from_async_tests() {
    let sim = Sim::start(SimOptions::default());
    let addr = sim.addr();
    let body = tokio::task::spawn_blocking(move || {
        http(addr, "GET", "/_sim/health", &[], b"", T).reply().body
    })
    .await
    .unwrap();
    assert_eq!(body, r#"{"ok":true}"#);
    drop(sim);
    assert!(TcpStream::connect(addr).is_err(), "stopped on drop");
}

#[test]
fn two_accounts_and_otp() {
    let other = Account::new("second-key", "c2Vjb25kLXNlY3JldA==")
        .with_balance("ZUSD", "5")
        .with_otp("2fa");
    let sim = Sim::start(SimOptions {
        accounts: vec![Account::test_default(), other],
        ..SimOptions::default()
    });
    let mut c = Client {
        addr: sim.addr(),
        key: "second-key".into(),
        secret: b"second-secret".to_vec(),
        nonce: 1,
    };
    assert_eq!(
        c.call("Balance", &[]).errors(),
        vec!["EAPI:Invalid signature"]
    );
    assert_eq!(
        c.call("Balance", &[("otp", "2fa")]).result(),
        json!({"ZUSD": "5.0000"})
    );
    assert_eq!(
        c.call(
            "AddOrder",
            &[
                ("otp", "2fa"),
                ("pair", "XBTUSD"),
                ("type", "buy"),
                ("ordertype", "limit"),
                ("price", "37500"),
                ("volume", "0.1")
            ]
        )
        .errors(),
        vec!["EOrder:Insufficient funds"]
    );
}

#[test]
fn binary_serves_and_never_logs_secrets() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kraken-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .env("SIM_API_KEY", "bin-key")
        .env("SIM_API_SECRET", Account::TEST_API_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kraken-sim");
    let addr = listening_on(&mut child);
    let headers = [("API-Key", "bin-key"), ("API-Sign", VECTOR_SIGN)];
    let r = http(
        addr,
        "POST",
        "/0/private/AddOrder",
        &headers,
        VECTOR_BODY.as_bytes(),
        T,
    )
    .reply();
    let result = r.result();
    assert!(result["txid"][0].is_string());
    let r = http(
        addr,
        "POST",
        "/0/private/AddOrder",
        &headers,
        VECTOR_BODY.as_bytes(),
        T,
    )
    .reply();
    assert_eq!(r.errors(), vec!["EAPI:Invalid nonce"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("/0/private/AddOrder"))
            .count(),
        2,
        "{stderr}"
    );
    assert!(!stderr.contains(Account::TEST_API_SECRET));
    assert!(!stderr.contains(VECTOR_SIGN));
    assert!(!stderr.contains(&VECTOR_SIGN[..20]));
}

#[test]
fn binary_takes_the_rate_tier() {
    use std::process::{Command, Stdio};
    // The flag wins over the environment.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kraken-sim"))
        .args(["--listen", "127.0.0.1:0", "--rate-tier", "starter"])
        .env("SIM_RATE_TIER", "pro")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kraken-sim");
    let addr = listening_on(&mut child);
    let rate = http(addr, "GET", "/_sim/rate", &[], b"", T).reply().json();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(rate["tier"], "starter");

    let out = Command::new(env!("CARGO_BIN_EXE_kraken-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .env("SIM_RATE_TIER", "gold")
        .output()
        .expect("run kraken-sim");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rate tier"), "{stderr}");
}

#[test]
fn binary_takes_key_permissions() {
    use std::process::Stdio;
    // The flag wins over the environment.
    let mut child = sim_binary()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--permissions",
            "query_funds,query_open_orders",
        ])
        .env("SIM_PERMISSIONS", "all")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kraken-sim");
    let addr = listening_on(&mut child);
    let shown = http(addr, "GET", "/_sim/permissions", &[], b"", T)
        .reply()
        .json();
    let headers = [
        ("API-Key", Account::TEST_API_KEY),
        ("API-Sign", VECTOR_SIGN),
    ];
    let r = http(
        addr,
        "POST",
        "/0/private/AddOrder",
        &headers,
        VECTOR_BODY.as_bytes(),
        T,
    )
    .reply();
    let orders = http(addr, "GET", "/_sim/orders", &[], b"", T)
        .reply()
        .json();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        shown,
        json!({"permissions": ["query_funds", "query_open_orders"]})
    );
    assert_eq!(r.errors(), vec!["EGeneral:Permission denied"]);
    assert_eq!(orders, json!([]));

    let out = sim_binary()
        .args(["--listen", "127.0.0.1:0"])
        .env("SIM_PERMISSIONS", "query_funds,withdraw")
        .output()
        .expect("run kraken-sim");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown permission \"withdraw\""),
        "{stderr}"
    );
}

// -- realistic pair table ------------------------------------------------------------

#[test]
fn realistic_pairs_over_http() {
    let sim = Sim::start(SimOptions {
        realistic_pairs: Some(KRAKEN_PAIR_COUNT),
        ..SimOptions::default()
    });
    let c = Client::new(&sim);
    assert_eq!(sim.pair_count(), KRAKEN_PAIR_COUNT);
    let whole = c.get("/0/public/AssetPairs");
    println!(
        "AssetPairs over HTTP with {KRAKEN_PAIR_COUNT} pairs: {} bytes",
        whole.body.len()
    );
    assert!((600_000..=900_000).contains(&whole.body.len()));
    assert_eq!(whole.body, realistic_asset_pairs_body(KRAKEN_PAIR_COUNT));
    let all = whole.result();
    assert_eq!(all.as_object().unwrap().len(), KRAKEN_PAIR_COUNT);
    // The default pairs answer as in the small table.
    assert_eq!(all["XXBTZUSD"]["ordermin"], "0.00005");
    assert_eq!(all["XDGUSD"]["tick_size"], "0.0000001");

    // `pair`: ids, altnames and wsnames (with `/` escaped or not).
    let some = c
        .get("/0/public/AssetPairs?pair=XLTCZUSD,LINKUSD,DOT%2FEUR,ETH/XBT,XBTUSD")
        .result();
    let ids: Vec<&String> = some.as_object().unwrap().keys().collect();
    assert_eq!(
        ids,
        vec!["DOTEUR", "LINKUSD", "XETHXXBT", "XLTCZUSD", "XXBTZUSD"]
    );
    assert_eq!(some["LINKUSD"], all["LINKUSD"]);
    assert_eq!(
        c.get("/0/public/AssetPairs?pair=LINKUSD,NOPEUSD").body,
        r#"{"error":["EQuery:Unknown asset pair"]}"#
    );

    // Ticker on a generated pair, whole and filtered.
    let last = sim.last_price("LINKUSD").unwrap();
    let p = sim.find_pair("LINK/USD").unwrap();
    let t = c.get("/0/public/Ticker?pair=LINKUSD").result();
    assert_eq!(
        t["LINKUSD"]["c"][0],
        format!("{:.*}", p.pair_decimals as usize, last)
    );
    let t = c.get("/0/public/Ticker").result();
    assert_eq!(t.as_object().unwrap().len(), KRAKEN_PAIR_COUNT);
    assert_eq!(
        c.get("/0/public/Ticker?pair=LINKUSD,NOPE").errors(),
        vec!["EQuery:Unknown asset pair"]
    );

    // A reset keeps the table.
    sim.set_pair_status("LINKUSD", "cancel_only");
    sim.reset();
    assert_eq!(sim.pair_count(), KRAKEN_PAIR_COUNT);
    assert_eq!(sim.find_pair("LINKUSD").unwrap().status, "online");
    assert_eq!(sim.pairs().len(), KRAKEN_PAIR_COUNT);
}

/// The address a `kraken-sim` child announces on its first stdout line.
fn listening_on(child: &mut std::process::Child) -> SocketAddr {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("kraken-sim listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap()
}

fn sim_binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kraken-sim"));
    for var in [
        "SIM_API_KEY",
        "SIM_API_SECRET",
        "SIM_OTP",
        "SIM_RATE_TIER",
        "SIM_PAIRS",
        "SIM_PERMISSIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn binary_prints_the_asset_pairs_fixture() {
    let out = sim_binary()
        .args(["--print-asset-pairs", "808"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        realistic_asset_pairs_body(808)
    );
    let out = sim_binary().arg("--print-asset-pairs=20").output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"].as_object().unwrap().len(), 20);
    for bad in [&["--print-asset-pairs", "0"][..], &["--pairs", "many"]] {
        let out = sim_binary().args(bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
    }
}

/// Starts the binary, reads its listening address, counts the pairs of
/// `AssetPairs`, and kills it.
fn binary_pair_count(cmd: &mut std::process::Command) -> usize {
    let mut child = cmd
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = listening_on(&mut child);
    let r = http(addr, "GET", "/0/public/AssetPairs", &[], b"", T).reply();
    child.kill().unwrap();
    child.wait().unwrap();
    r.result().as_object().unwrap().len()
}

#[test]
fn binary_serves_the_realistic_table_on_request() {
    assert_eq!(binary_pair_count(&mut sim_binary()), 6);
    assert_eq!(
        binary_pair_count(sim_binary().args(["--pairs", "808"])),
        808
    );
    assert_eq!(binary_pair_count(sim_binary().env("SIM_PAIRS", "100")), 100);
    assert_eq!(
        binary_pair_count(
            sim_binary()
                .env("SIM_PAIRS", "100")
                .args(["--pairs", "none"])
        ),
        6
    );
}
