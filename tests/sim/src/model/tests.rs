//! Unit tests of the exchange model: authentication, every `AddOrder` rule,
//! order queries, cancels, balances, faults, the REST rate counter (driven by
//! the harness's `now`), `TradesHistory` and public endpoints.

use super::*;
use crate::params::form_encode;
use std::collections::BTreeSet;

const NOW: f64 = 1_700_000_000.0;
const KEY: &str = Account::TEST_API_KEY;

struct Harness {
    ex: Exchange,
    nonce: u64,
    now: f64,
}

impl Harness {
    fn new() -> Self {
        Self::with(Account::test_default())
    }

    fn with(account: Account) -> Self {
        Self {
            ex: Exchange::new(&[account]).unwrap(),
            nonce: 1_000,
            now: NOW,
        }
    }

    fn secret() -> Vec<u8> {
        sign::decode_secret(Account::TEST_API_SECRET).unwrap()
    }

    /// A correctly signed form request with a fresh nonce.
    fn call(&mut self, method: &str, fields: &[(&str, &str)]) -> Outcome {
        self.nonce += 1;
        let nonce = self.nonce;
        call_with(self, KEY, nonce, method, fields)
    }

    fn raw(
        &mut self,
        path: &str,
        key: Option<&str>,
        sig: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Outcome {
        let req = PrivateRequest {
            http_method: "POST",
            path,
            api_key: key,
            api_sign: sig,
            content_type,
            content_length: Some(body.len() as u64),
            chunked: false,
            body,
        };
        self.ex.handle_private(&req, self.now)
    }

    fn ok(&mut self, method: &str, fields: &[(&str, &str)]) -> Value {
        let out = self.call(method, fields);
        let reply = out.reply().expect("answered");
        assert_eq!(reply.errors(), Vec::<String>::new(), "{method} {fields:?}");
        reply.result().expect("result")
    }

    fn err(&mut self, method: &str, fields: &[(&str, &str)]) -> String {
        let out = self.call(method, fields);
        let reply = out.reply().expect("answered");
        let errors = reply.errors();
        // Kraken adds an empty `result` to its rate-limit refusal only.
        if errors == [e::RATE_LIMIT] {
            assert_eq!(reply.result(), Some(json!({})), "{}", reply.body);
        } else {
            assert!(reply.result().is_none(), "no result with an error");
        }
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors[0].clone()
    }

    /// An AddOrder that must fail: returns the error and checks nothing was
    /// booked and no balance moved.
    fn add_err(&mut self, fields: &[(&str, &str)]) -> String {
        let booked = self.ex.orders.len();
        let balances = self.ex.accounts[KEY].balances.clone();
        let err = self.err("AddOrder", fields);
        assert_eq!(self.ex.orders.len(), booked, "nothing booked on {err}");
        assert_eq!(
            self.ex.accounts[KEY].balances, balances,
            "balances unchanged on {err}"
        );
        assert!(self.ex.requests.last().unwrap().booked.is_empty());
        err
    }

    fn add(&mut self, fields: &[(&str, &str)]) -> String {
        let r = self.ok("AddOrder", fields);
        r["txid"][0].as_str().expect("txid").to_string()
    }
}

fn limit_buy() -> Vec<(&'static str, &'static str)> {
    vec![
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "37500"),
        ("volume", "1.25"),
    ]
}

fn with(
    base: &[(&'static str, &'static str)],
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = base
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(ek, _)| ek == k))
        .copied()
        .collect();
    v.extend_from_slice(extra);
    v
}

fn without(base: &[(&'static str, &'static str)], name: &str) -> Vec<(&'static str, &'static str)> {
    base.iter().filter(|(k, _)| *k != name).copied().collect()
}

// -- authentication --------------------------------------------------------

const VECTOR_BODY: &str =
    "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
const VECTOR_SIGN: &str =
    "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";

#[test]
fn official_vector_request_is_accepted_and_booked() {
    let mut h = Harness::new();
    let out = h.raw(
        "/0/private/AddOrder",
        Some(KEY),
        Some(VECTOR_SIGN),
        None,
        VECTOR_BODY.as_bytes(),
    );
    let r = out.reply().unwrap().result().unwrap();
    assert_eq!(r["descr"]["order"], "buy 1.25000000 XBTUSD @ limit 37500.0");
    assert_eq!(h.ex.orders.len(), 1);
    let o = &h.ex.orders[0];
    assert_eq!(r["txid"][0], o.txid);
    assert_eq!(o.params["price"], "37500");
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(h.ex.accounts[KEY].last_nonce, 1_616_492_376_594);
    assert_eq!(h.ex.requests[0].signature_valid, Some(true));

    // The same signed request again: replay.
    let out = h.raw(
        "/0/private/AddOrder",
        Some(KEY),
        Some(VECTOR_SIGN),
        None,
        VECTOR_BODY.as_bytes(),
    );
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_NONCE]);
    assert_eq!(h.ex.orders.len(), 1);
}

#[test]
fn tampered_body_is_refused_and_nothing_booked() {
    let mut h = Harness::new();
    let body = VECTOR_BODY.replace("volume=1.25", "volume=2.25");
    let out = h.raw(
        "/0/private/AddOrder",
        Some(KEY),
        Some(VECTOR_SIGN),
        None,
        body.as_bytes(),
    );
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_SIGNATURE]);
    assert!(h.ex.orders.is_empty());
    assert_eq!(
        h.ex.accounts[KEY].last_nonce, 0,
        "a bad signature consumes no nonce"
    );
    assert_eq!(h.ex.requests[0].signature_valid, Some(false));
}

#[test]
fn key_is_checked_before_signature() {
    let mut h = Harness::new();
    let b = VECTOR_BODY.as_bytes();
    let p = "/0/private/AddOrder";
    let errs = |o: Outcome| o.reply().unwrap().errors();
    assert_eq!(
        errs(h.raw(p, None, Some(VECTOR_SIGN), None, b)),
        vec![e::INVALID_KEY]
    );
    assert_eq!(
        errs(h.raw(p, Some("other"), Some("garbage"), None, b)),
        vec![e::INVALID_KEY]
    );
    assert_eq!(
        errs(h.raw(p, Some(KEY), None, None, b)),
        vec![e::INVALID_SIGNATURE]
    );
    assert_eq!(
        errs(h.raw(p, Some(KEY), Some("garbage"), None, b)),
        vec![e::INVALID_SIGNATURE]
    );
    // Signed for another path.
    assert_eq!(
        errs(h.raw("/0/private/Balance", Some(KEY), Some(VECTOR_SIGN), None, b)),
        vec![e::INVALID_SIGNATURE]
    );
    assert!(h.ex.orders.is_empty());
}

#[test]
fn nonce_rules() {
    let mut h = Harness::new();
    h.ok("Balance", &[]);
    let used = h.nonce;
    // Lower nonce, correctly signed.
    h.nonce = used - 2;
    assert_eq!(h.err("Balance", &[]), e::INVALID_NONCE);
    // Equal nonce.
    h.nonce = used - 1;
    assert_eq!(h.err("Balance", &[]), e::INVALID_NONCE);
    assert_eq!(h.ex.accounts[KEY].last_nonce, used);
    // Missing nonce, correctly signed with an empty nonce string.
    let sig = sign::sign(&Harness::secret(), "/0/private/Balance", "", b"");
    let out = h.raw("/0/private/Balance", Some(KEY), Some(&sig), None, b"");
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_NONCE]);
    // Non-numeric nonce.
    let body = "nonce=%2B5";
    let sig = sign::sign(
        &Harness::secret(),
        "/0/private/Balance",
        "+5",
        body.as_bytes(),
    );
    let out = h.raw(
        "/0/private/Balance",
        Some(KEY),
        Some(&sig),
        None,
        body.as_bytes(),
    );
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_NONCE]);
    // Higher nonce works again.
    h.nonce = used;
    h.ok("Balance", &[]);
    assert_eq!(h.ex.accounts[KEY].last_nonce, used + 1);
}

#[test]
fn failed_order_still_consumes_nonce() {
    let mut h = Harness::new();
    h.add_err(&with(&limit_buy(), &[("pair", "NOPE")]));
    assert_eq!(h.ex.accounts[KEY].last_nonce, h.nonce);
}

#[test]
fn json_body_with_query_path_verifies() {
    // Official vector #2 body and path on a served method.
    let mut h = Harness::new();
    let body = br#"{"nonce":1616492376594}"#;
    let path = "/0/private/Balance?id=TGWOJ4JQPOTZT2";
    let sig = sign::sign(&Harness::secret(), path, "1616492376594", body);
    let out = h.raw(path, Some(KEY), Some(&sig), Some("application/json"), body);
    let r = out.reply().unwrap().result().unwrap();
    assert_eq!(r["ZUSD"], "100000.0000");
    // Without the query string in the signed path it fails.
    let sig = sign::sign(
        &Harness::secret(),
        "/0/private/Balance",
        "1616492376594",
        body,
    );
    let out = h.raw(path, Some(KEY), Some(&sig), Some("application/json"), body);
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_SIGNATURE]);
}

#[test]
fn derived_json_vector_books_an_order() {
    let mut h = Harness::new();
    let body = br#"{"nonce":"1616492376594","ordertype":"limit","pair":"XBTUSD","price":"37500","type":"buy","volume":"1.25"}"#;
    let sig =
        "r/o+GpKxXjV/mls/r5CKLu5R+yzK5psqvQ4hXxMX1nzdxTBhV+ui82QGgPZMMitpFwCOAdPEZMmXgZxD2chJEg==";
    let out = h.raw(
        "/0/private/AddOrder",
        Some(KEY),
        Some(sig),
        Some("application/json"),
        body,
    );
    assert_eq!(out.reply().unwrap().errors(), Vec::<String>::new());
    assert_eq!(h.ex.orders.len(), 1);
    assert_eq!(h.ex.orders[0].params["volume"], "1.25");
}

#[test]
fn otp_is_required_when_configured() {
    let mut h = Harness::with(Account::test_default().with_otp("123456"));
    assert_eq!(h.err("Balance", &[]), e::INVALID_SIGNATURE);
    assert_eq!(h.err("Balance", &[("otp", "654321")]), e::INVALID_SIGNATURE);
    assert_eq!(h.ex.accounts[KEY].last_nonce, 0);
    h.ok("Balance", &[("otp", "123456")]);
}

// -- key permissions ---------------------------------------------------------

#[test]
fn a_new_account_has_every_permission() {
    let account = Account::test_default();
    assert_eq!(account.permissions.len(), Permission::ALL.len());
    let mut h = Harness::new();
    h.ok("Balance", &[]);
    h.ok("OpenOrders", &[]);
    h.ok("ClosedOrders", &[]);
    h.ok("AddOrder", &with(&limit_buy(), &[("validate", "true")]));
    h.ok("CancelAll", &[]);
}

#[test]
fn each_method_needs_its_permission() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Permission);
    let cases: [Case; 8] = [
        ("Balance", &[], Permission::QueryFunds),
        ("BalanceEx", &[], Permission::QueryFunds),
        ("OpenOrders", &[], Permission::QueryOpenOrders),
        ("ClosedOrders", &[], Permission::QueryClosedOrders),
        ("TradesHistory", &[], Permission::QueryClosedOrders),
        ("CancelAll", &[], Permission::CancelOrders),
        (
            "CancelOrder",
            &[("txid", "OAAAAA-BBBBB-CCCCCC")],
            Permission::CancelOrders,
        ),
        (
            "AddOrder",
            &[
                ("pair", "XBTUSD"),
                ("type", "buy"),
                ("ordertype", "market"),
                ("volume", "0.001"),
                ("validate", "true"),
            ],
            Permission::CreateOrders,
        ),
    ];
    for (method, fields, needed) in cases {
        let others = Permission::ALL.into_iter().filter(|p| *p != needed);
        let mut h = Harness::with(Account::test_default().with_permissions(others));
        assert_eq!(h.err(method, fields), e::PERMISSION_DENIED, "{method}");
        let rec = h.ex.requests.last().unwrap();
        assert_eq!(rec.errors, vec![e::PERMISSION_DENIED]);
        assert_eq!(rec.signature_valid, Some(true));
        // With only that permission, the method is served.
        let mut h = Harness::with(Account::test_default().with_permissions([needed]));
        let out = h.call(method, fields);
        let errors = out.reply().unwrap().errors();
        assert!(
            !errors.contains(&e::PERMISSION_DENIED.to_string()),
            "{method}: {errors:?}"
        );
    }
}

#[test]
fn query_orders_needs_either_query_permission() {
    let txid = [("txid", "OAAAAA-BBBBB-CCCCCC")];
    for only in [Permission::QueryOpenOrders, Permission::QueryClosedOrders] {
        let mut h = Harness::with(Account::test_default().with_permissions([only]));
        // Served: an unknown txid is Kraken's answer, not a refusal of the key.
        assert_eq!(h.err("QueryOrders", &txid), e::UNKNOWN_ORDER, "{only}");
    }
    let mut h = Harness::with(
        Account::test_default()
            .with_permissions([Permission::QueryFunds, Permission::CreateOrders]),
    );
    assert_eq!(h.err("QueryOrders", &txid), e::PERMISSION_DENIED);
}

#[test]
fn a_key_without_create_books_nothing_even_to_validate() {
    let mut h = Harness::with(Account::test_default().with_permissions([
        Permission::QueryFunds,
        Permission::QueryOpenOrders,
        Permission::QueryClosedOrders,
    ]));
    assert_eq!(h.add_err(&limit_buy()), e::PERMISSION_DENIED);
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("validate", "true")])),
        e::PERMISSION_DENIED
    );
    assert!(h.ex.orders.is_empty());
    h.ok("Balance", &[]);
}

#[test]
fn permission_is_judged_after_key_signature_and_nonce() {
    let mut h = Harness::with(Account::test_default().with_permissions([]));
    // An unknown key and a bad signature answer as for any key.
    let body = b"nonce=5";
    let out = h.raw(
        "/0/private/Balance",
        Some("nobody"),
        Some("c2ln"),
        None,
        body,
    );
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_KEY]);
    let out = h.raw("/0/private/Balance", Some(KEY), Some("c2ln"), None, body);
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_SIGNATURE]);
    // An authenticated call without the permission spends its nonce.
    assert_eq!(h.err("Balance", &[]), e::PERMISSION_DENIED);
    assert_eq!(h.ex.accounts[KEY].last_nonce, h.nonce);
    h.nonce -= 1;
    assert_eq!(h.err("Balance", &[]), e::INVALID_NONCE);
}

#[test]
fn permissions_change_at_run_time() {
    let mut h = Harness::new();
    assert!(h
        .ex
        .set_permissions(KEY, [Permission::CreateOrders].into_iter().collect()));
    assert!(!h.ex.set_permissions("nobody", BTreeSet::new()));
    assert_eq!(h.err("Balance", &[]), e::PERMISSION_DENIED);
    assert_eq!(
        h.ex.permissions(KEY)
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [Permission::CreateOrders]
    );
    assert!(h
        .ex
        .set_permissions(KEY, Permission::ALL.into_iter().collect()));
    h.ok("Balance", &[]);
}

#[test]
fn permission_names_and_lists() {
    for p in Permission::ALL {
        assert_eq!(p.name().parse::<Permission>(), Ok(p));
        assert_eq!(p.label().to_uppercase().parse::<Permission>(), Ok(p));
        assert_eq!(serde_json::to_value(p).unwrap(), json!(p.name()));
    }
    assert_eq!(
        "Create & modify orders".parse::<Permission>(),
        Ok(Permission::CreateOrders)
    );
    assert!("withdraw"
        .parse::<Permission>()
        .unwrap_err()
        .contains("query_funds"));
    assert_eq!(Permission::parse_list("all").unwrap().len(), 5);
    assert!(Permission::parse_list("none").unwrap().is_empty());
    assert!(Permission::parse_list(" ").unwrap().is_empty());
    assert_eq!(
        Permission::parse_list("query_funds, create_orders").unwrap(),
        [Permission::QueryFunds, Permission::CreateOrders]
            .into_iter()
            .collect()
    );
    assert!(Permission::parse_list("query_funds,bogus").is_err());
    assert_eq!(Permission::for_method("Balance"), [Permission::QueryFunds]);
    assert!(Permission::for_method("Nothing").is_empty());
}

#[test]
fn unknown_method_and_get() {
    let mut h = Harness::new();
    assert_eq!(h.err("AddOrderBatchX", &[]), e::UNKNOWN_METHOD);
    let req = PrivateRequest {
        http_method: "GET",
        path: "/0/private/Balance",
        api_key: Some(KEY),
        api_sign: None,
        content_type: None,
        content_length: None,
        chunked: false,
        body: b"",
    };
    let out = h.ex.handle_private(&req, NOW);
    assert_eq!(out.reply().unwrap().errors(), vec![e::UNKNOWN_METHOD]);
}

// -- AddOrder rules ----------------------------------------------------------

#[test]
fn required_parameters() {
    let mut h = Harness::new();
    for name in ["pair", "type", "ordertype", "volume"] {
        assert_eq!(
            h.add_err(&without(&limit_buy(), name)),
            format!("EGeneral:Invalid arguments:{name}")
        );
        assert_eq!(
            h.add_err(&with(&limit_buy(), &[(name, "")])),
            format!("EGeneral:Invalid arguments:{name}")
        );
    }
}

#[test]
fn unknown_pair() {
    let mut h = Harness::new();
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("pair", "BTCUSDX")])),
        e::UNKNOWN_PAIR
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("pair", "XBTUSDC")])),
        e::UNKNOWN_PAIR
    );
}

#[test]
fn pair_names_accepted() {
    let mut h = Harness::new();
    for name in ["XBTUSD", "XXBTZUSD", "XBT/USD", "BTC/USD", "xbtusd"] {
        let r = h.ok(
            "AddOrder",
            &with(&limit_buy(), &[("pair", name), ("validate", "true")]),
        );
        assert_eq!(
            r["descr"]["order"], "buy 1.25000000 XBTUSD @ limit 37500.0",
            "{name}"
        );
    }
}

#[test]
fn pair_status_rules() {
    let mut h = Harness::new();
    h.ex.set_pair_status("XBTUSD", "cancel_only");
    assert_eq!(
        h.add_err(&limit_buy()),
        "EService:Market in cancel_only mode"
    );
    // Checked before the order type.
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("ordertype", "bogus")])),
        "EService:Market in cancel_only mode"
    );

    h.ex.set_pair_status("XBTUSD", "post_only");
    assert_eq!(h.add_err(&limit_buy()), "EService:Market in post_only mode");
    h.add(&with(
        &limit_buy(),
        &[("oflags", "post"), ("volume", "0.1")],
    ));

    h.ex.set_pair_status("XBTUSD", "limit_only");
    let market = [
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "0.01"),
    ];
    assert_eq!(h.add_err(&market), "EService:Market in limit_only mode");
    h.add(&with(&limit_buy(), &[("volume", "0.1")]));

    h.ex.set_pair_status("XBTUSD", "reduce_only");
    assert_eq!(
        h.add_err(&limit_buy()),
        "EService:Market in reduce_only mode"
    );

    h.ex.set_pair_status("XBTUSD", "online");
    h.ex.system_status = "maintenance".into();
    assert_eq!(h.add_err(&limit_buy()), e::UNAVAILABLE);
    h.ex.system_status = "cancel_only".into();
    assert_eq!(
        h.add_err(&limit_buy()),
        "EService:Market in cancel_only mode"
    );
    // Other pairs are unaffected by a pair status.
    h.ex.system_status = "online".into();
    h.ex.set_pair_status("XBTUSD", "cancel_only");
    h.add(&[
        ("pair", "ETHUSD"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "3000"),
        ("volume", "0.01"),
    ]);
}

#[test]
fn type_and_ordertype() {
    let mut h = Harness::new();
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("type", "long")])),
        "EGeneral:Invalid arguments:type"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("type", "BUY")])),
        "EGeneral:Invalid arguments:type"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("ordertype", "stop")])),
        "EGeneral:Invalid arguments:ordertype"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("ordertype", "settle-position")])),
        e::UNKNOWN_POSITION
    );
}

#[test]
fn volume_format_and_precision() {
    let mut h = Harness::new();
    for bad in [
        "abc",
        "-1",
        "+1",
        "0",
        "0.0",
        "1e-3",
        "1.2.3",
        "1,5",
        "0.000000001",
    ] {
        assert_eq!(
            h.add_err(&with(&limit_buy(), &[("volume", bad)])),
            "EGeneral:Invalid arguments:volume",
            "{bad}"
        );
    }
    // Eight decimals are fine on an 8-decimal pair; trailing zeros do not count.
    h.add(&with(&limit_buy(), &[("volume", "0.12345678")]));
    h.add(&with(&limit_buy(), &[("volume", "0.1234567800")]));
}

#[test]
fn price_required_for_priced_types() {
    let mut h = Harness::new();
    for ot in [
        "limit",
        "iceberg",
        "stop-loss",
        "take-profit",
        "stop-loss-limit",
        "take-profit-limit",
        "trailing-stop",
        "trailing-stop-limit",
    ] {
        let f = without(&with(&limit_buy(), &[("ordertype", ot)]), "price");
        assert_eq!(h.add_err(&f), "EGeneral:Invalid arguments:price", "{ot}");
    }
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("price", "abc")])),
        "EGeneral:Invalid arguments:price"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("price", "0")])),
        "EGeneral:Invalid arguments:price"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("price", "5%")])),
        "EGeneral:Invalid arguments:price"
    );
    // Trailing stops need a `+` price.
    let f = with(
        &limit_buy(),
        &[("ordertype", "trailing-stop"), ("price", "500")],
    );
    assert_eq!(h.add_err(&f), "EGeneral:Invalid arguments:price");
}

#[test]
fn price2_required_for_limit_variants() {
    let mut h = Harness::new();
    let base = with(&limit_buy(), &[("volume", "0.1")]);
    for ot in ["stop-loss-limit", "take-profit-limit"] {
        let f = with(&base, &[("ordertype", ot), ("price", "37000")]);
        assert_eq!(h.add_err(&f), "EGeneral:Invalid arguments:price2", "{ot}");
        h.add(&with(&f, &[("price2", "37100")]));
    }
    let f = with(
        &base,
        &[("ordertype", "trailing-stop-limit"), ("price", "+100")],
    );
    assert_eq!(h.add_err(&f), "EGeneral:Invalid arguments:price2");
    assert_eq!(
        h.add_err(&with(&f, &[("price2", "37000")])),
        "EGeneral:Invalid arguments:price2"
    );
    let txid = h.add(&with(&f, &[("price2", "+10")]));
    assert_eq!(
        h.ex.order(&txid).unwrap().descr_order,
        "buy 0.10000000 XBTUSD @ trailing stop +100 -> limit +10"
    );
}

#[test]
fn price_decimals() {
    let mut h = Harness::new();
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("price", "37500.05")])),
        "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals."
    );
    let eth = [
        ("pair", "XETHZUSD"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "3000.123"),
        ("volume", "0.01"),
    ];
    assert_eq!(
        h.add_err(&eth),
        "EOrder:Invalid price:ETHUSD price can only be specified up to 2 decimals."
    );
    // price2 is checked too.
    let f = with(
        &limit_buy(),
        &[
            ("ordertype", "stop-loss-limit"),
            ("price", "37000"),
            ("price2", "36999.99"),
        ],
    );
    assert_eq!(
        h.add_err(&f),
        "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals."
    );
    // Trailing zeros are not extra decimals.
    h.add(&with(&limit_buy(), &[("price", "37500.100")]));
}

#[test]
fn tick_size() {
    let mut h = Harness::new();
    h.ex.pairs
        .iter_mut()
        .find(|p| p.altname == "XBTUSD")
        .unwrap()
        .tick_size = "0.5".into();
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("price", "37500.3")])),
        e::TICK_SIZE
    );
    h.add(&with(
        &limit_buy(),
        &[("price", "37500.5"), ("volume", "0.1")],
    ));
    // Relative prices skip the tick check.
    h.add(&with(
        &limit_buy(),
        &[("price", "-100.3"), ("volume", "0.1")],
    ));
}

#[test]
fn order_minimum() {
    let mut h = Harness::new();
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("volume", "0.00004")])),
        e::ORDER_MINIMUM
    );
    h.add(&with(
        &limit_buy(),
        &[("volume", "0.00005"), ("price", "20000")],
    ));
    let doge = [
        ("pair", "XDGUSD"),
        ("type", "sell"),
        ("ordertype", "limit"),
        ("price", "0.15"),
        ("volume", "19.99999999"),
    ];
    assert_eq!(h.add_err(&doge), e::ORDER_MINIMUM);
}

#[test]
fn cost_minimum() {
    let mut h = Harness::new();
    // 0.00005 × 9000 = 0.45 < 0.5
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("volume", "0.00005"), ("price", "9000")]
        )),
        e::COST_MINIMUM
    );
    // Market orders use the last price: 0.00005 × 67000 = 3.35 fine; at 9000 it is not.
    h.ex.set_last_price("XBTUSD", dec("9000"));
    let market = [
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "0.00005"),
    ];
    assert_eq!(h.add_err(&market), e::COST_MINIMUM);
    h.ex.set_last_price("XBTUSD", dec("67000"));
    h.add(&market);
}

#[test]
fn duplicate_cl_ord_id_among_open_orders() {
    let mut h = Harness::new();
    let cl = "0123456789abcdef0123456789abcdef";
    let f = with(&limit_buy(), &[("cl_ord_id", cl), ("volume", "0.1")]);
    let first = h.add(&f);
    assert_eq!(h.add_err(&f), e::DUPLICATE_ORDER);
    assert_eq!(
        h.add_err(&with(&f, &[("validate", "true")])),
        e::DUPLICATE_ORDER
    );
    // Cancel the first: the id is free again.
    let r = h.ok("CancelOrder", &[("txid", &first)]);
    assert_eq!(r["count"], 1);
    let second = h.add(&f);
    assert_ne!(first, second);
    // A filled order frees it too.
    assert!(h.ex.fill_order(&second, NOW));
    h.add(&f);
    assert_eq!(
        h.ex.orders
            .iter()
            .filter(|o| o.cl_ord_id.as_deref() == Some(cl))
            .count(),
        3
    );
}

#[test]
fn duplicate_cl_ord_id_after_market_fill_is_allowed() {
    let mut h = Harness::new();
    let f = [
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "0.01"),
        ("cl_ord_id", "alert-1"),
    ];
    h.add(&f);
    h.add(&f);
    assert_eq!(h.ex.orders.len(), 2);
}

#[test]
fn cl_ord_id_format_and_userref() {
    let mut h = Harness::new();
    for bad in [
        "this-is-longer-than-18",
        "0123456789abcdef0123456789abcdeg",
        "has space",
    ] {
        assert_eq!(
            h.add_err(&with(&limit_buy(), &[("cl_ord_id", bad)])),
            "EGeneral:Invalid arguments:cl_ord_id",
            "{bad}"
        );
    }
    h.add(&with(
        &limit_buy(),
        &[
            ("cl_ord_id", "d15708c1-dbb6-465d-b77d-47258319cc90"),
            ("volume", "0.1"),
        ],
    ));
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("userref", "x")])),
        "EGeneral:Invalid arguments:userref"
    );
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("userref", "1"), ("cl_ord_id", "abc")]
        )),
        "EGeneral:Invalid arguments:cl_ord_id"
    );
}

#[test]
fn insufficient_funds() {
    let mut h = Harness::new();
    // Buy: 1.25 × 37500 = 46875 (+0.4 % fee) of 100000 ZUSD; twice fits, a third does not.
    h.add(&limit_buy());
    h.add(&limit_buy());
    assert_eq!(h.add_err(&limit_buy()), e::INSUFFICIENT_FUNDS);
    // Sell: 2 XXBT.
    let sell = [
        ("pair", "XBTUSD"),
        ("type", "sell"),
        ("ordertype", "limit"),
        ("price", "90000"),
        ("volume", "2.00000001"),
    ];
    assert_eq!(h.add_err(&sell), e::INSUFFICIENT_FUNDS);
    h.add(&with(&sell, &[("volume", "1.5")]));
    assert_eq!(
        h.add_err(&with(&sell, &[("volume", "0.6")])),
        e::INSUFFICIENT_FUNDS
    );
    // Fee is included for buys: exactly the balance without the fee is not enough.
    h.ex.set_balance(KEY, "ZEUR", dec("100"));
    let ada = [
        ("pair", "ADAEUR"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "0.5"),
        ("volume", "200"),
    ];
    assert_eq!(h.add_err(&ada), e::INSUFFICIENT_FUNDS);
    h.ex.set_balance(KEY, "ZEUR", dec("100.4"));
    h.add(&ada);
}

#[test]
fn gtd_needs_expiretm() {
    let mut h = Harness::new();
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("timeinforce", "GTD")])),
        "EGeneral:Invalid arguments:expiretm"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("timeinforce", "FOK")])),
        "EGeneral:Invalid arguments:timeinforce"
    );
    let txid = h.add(&with(
        &limit_buy(),
        &[("timeinforce", "GTD"), ("expiretm", "+60")],
    ));
    assert_eq!(h.ex.order(&txid).unwrap().expiretm, NOW + 60.0);
    // It expires once its time has passed.
    h.now = NOW + 61.0;
    let r = h.ok("ClosedOrders", &[]);
    assert_eq!(r["closed"][&txid]["status"], "expired");
}

#[test]
fn deadline() {
    let mut h = Harness::new();
    let past = time::rfc3339(NOW as i64 - 1);
    let soon = time::rfc3339(NOW as i64 + 10);
    let far = time::rfc3339(NOW as i64 + 120);
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("deadline", past.leak())])),
        e::DEADLINE_ELAPSED
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("deadline", far.leak())])),
        "EGeneral:Invalid arguments:deadline"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("deadline", "tomorrow")])),
        "EGeneral:Invalid arguments:deadline"
    );
    h.add(&with(&limit_buy(), &[("deadline", soon.leak())]));
}

#[test]
fn check_order_matches_kraken() {
    // An order failing several rules reports the first in Kraken's order.
    let mut h = Harness::new();
    // Unknown pair beats bad type.
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("pair", "NOPE"), ("type", "x")])),
        e::UNKNOWN_PAIR
    );
    // Bad volume beats missing price.
    assert_eq!(
        h.add_err(&without(&with(&limit_buy(), &[("volume", "x")]), "price")),
        "EGeneral:Invalid arguments:volume"
    );
    // Decimals beat minimum.
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("price", "1.25"), ("volume", "0.00001")]
        )),
        "EOrder:Invalid price:XBTUSD price can only be specified up to 1 decimals."
    );
    // Order minimum beats cost minimum.
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("price", "1"), ("volume", "0.00001")]
        )),
        e::ORDER_MINIMUM
    );
    // Funds beat deadline.
    let past = time::rfc3339(NOW as i64 - 1);
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("volume", "10"), ("deadline", past.leak())]
        )),
        e::INSUFFICIENT_FUNDS
    );
}

#[test]
fn validate_books_nothing() {
    let mut h = Harness::new();
    for v in ["true", "1"] {
        let r = h.ok("AddOrder", &with(&limit_buy(), &[("validate", v)]));
        assert_eq!(
            r,
            json!({"descr": {"order": "buy 1.25000000 XBTUSD @ limit 37500.0"}})
        );
    }
    assert!(h.ex.orders.is_empty());
    assert_eq!(h.ex.free(KEY, "ZUSD"), dec("100000"));
    // Checks still run.
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("validate", "true"), ("volume", "0.00001")]
        )),
        e::ORDER_MINIMUM
    );
    assert_eq!(
        h.add_err(&with(
            &limit_buy(),
            &[("validate", "true"), ("volume", "10")]
        )),
        e::INSUFFICIENT_FUNDS
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("validate", "yes")])),
        "EGeneral:Invalid arguments:validate"
    );
    // validate=false books.
    h.add(&with(&limit_buy(), &[("validate", "false")]));
    assert_eq!(h.ex.orders.len(), 1);
    // Funds checks can be switched off for validate.
    h.ex.validate_checks_funds = false;
    h.ok(
        "AddOrder",
        &with(&limit_buy(), &[("validate", "true"), ("volume", "10")]),
    );
}

#[test]
fn market_order_fills_and_moves_balances() {
    let mut h = Harness::new();
    let r = h.ok(
        "AddOrder",
        &[
            ("pair", "XBTUSD"),
            ("type", "buy"),
            ("ordertype", "market"),
            ("volume", "0.01"),
        ],
    );
    assert_eq!(r["descr"]["order"], "buy 0.01000000 XBTUSD @ market");
    let txid = r["txid"][0].as_str().unwrap().to_string();
    let o = h.ex.order(&txid).unwrap().clone();
    assert_eq!(o.status, OrderStatus::Closed);
    assert_eq!(o.vol_exec, dec("0.01"));
    assert_eq!(o.cost, dec("670"));
    assert_eq!(o.fee, dec("2.68"));
    assert_eq!(o.avg_price, dec("67000"));
    assert_eq!(h.ex.balance(KEY, "ZUSD"), dec("100000") - dec("672.68"));
    assert_eq!(h.ex.balance(KEY, "XXBT"), dec("2.01"));

    // Sell side: base leaves, quote arrives less fee.
    h.ok(
        "AddOrder",
        &[
            ("pair", "SOLUSD"),
            ("type", "sell"),
            ("ordertype", "market"),
            ("volume", "10"),
        ],
    );
    assert_eq!(h.ex.balance(KEY, "SOL"), dec("490"));
    assert_eq!(
        h.ex.balance(KEY, "ZUSD"),
        dec("100000") - dec("672.68") + dec("1500") - dec("6")
    );

    // The closed order as Kraken shows it.
    let r = h.ok("ClosedOrders", &[]);
    let j = &r["closed"][&txid];
    assert_eq!(j["status"], "closed");
    assert_eq!(j["vol"], "0.01000000");
    assert_eq!(j["vol_exec"], "0.01000000");
    assert_eq!(j["cost"], "670.00000");
    assert_eq!(j["fee"], "2.68000");
    assert_eq!(j["price"], "67000.0");
    assert_eq!(j["descr"]["ordertype"], "market");
    assert_eq!(j["descr"]["pair"], "XBTUSD");
    assert_eq!(r["count"], 2);
}

#[test]
fn market_viqc_buy_spends_quote_volume() {
    let mut h = Harness::new();
    let txid = h.add(&[
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "670"),
        ("oflags", "viqc"),
    ]);
    let o = h.ex.order(&txid).unwrap();
    assert_eq!(o.vol_exec, dec("0.01"));
    assert_eq!(h.ex.balance(KEY, "XXBT"), dec("2.01"));
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("oflags", "viqc")])),
        "EGeneral:Invalid arguments:oflags"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("oflags", "fcib,fciq")])),
        "EGeneral:Invalid arguments:oflags"
    );
    assert_eq!(
        h.add_err(&with(&limit_buy(), &[("oflags", "bogus")])),
        "EGeneral:Invalid arguments:oflags"
    );
}

#[test]
fn limit_order_holds_funds_until_cancelled() {
    let mut h = Harness::new();
    let txid = h.add(&limit_buy());
    let hold = dec("46875") * dec("1.004");
    assert_eq!(h.ex.held(KEY, "ZUSD"), hold);
    assert_eq!(h.ex.balance(KEY, "ZUSD"), dec("100000"));
    let r = h.ok("BalanceEx", &[]);
    assert_eq!(r["ZUSD"]["balance"], "100000.0000");
    assert_eq!(r["ZUSD"]["hold_trade"], "47062.5000");
    let r = h.ok("Balance", &[]);
    assert_eq!(r["ZUSD"], "100000.0000");
    assert_eq!(r["XXBT"], "2.0000000000");
    h.ok("CancelOrder", &[("txid", &txid)]);
    assert_eq!(h.ex.held(KEY, "ZUSD"), Decimal::ZERO);
    assert_eq!(h.err("CancelOrder", &[("txid", &txid)]), e::UNKNOWN_ORDER);
}

#[test]
fn fill_order_executes_at_limit_with_maker_fee() {
    let mut h = Harness::new();
    let txid = h.add(&limit_buy());
    assert!(h.ex.fill_order(&txid, NOW + 5.0));
    assert!(!h.ex.fill_order(&txid, NOW + 6.0));
    let o = h.ex.order(&txid).unwrap();
    assert_eq!(o.status, OrderStatus::Closed);
    assert_eq!(o.fee, dec("117.1875"));
    assert_eq!(h.ex.balance(KEY, "XXBT"), dec("3.25"));
    assert_eq!(
        h.ex.balance(KEY, "ZUSD"),
        dec("100000") - dec("46875") - dec("117.1875")
    );
}

#[test]
fn a_price_move_fills_the_limit_orders_it_crosses_and_moves_balances() {
    let mut h = Harness::new();
    let usd = h.ex.balance(KEY, "ZUSD");
    let xbt = h.ex.balance(KEY, "XXBT");
    // Two resting buys (37,500 and 36,000) and a resting sell (70,000), each holding its funds.
    let high = h.add(&limit_buy());
    let low = h.add(&with(&limit_buy(), &[("price", "36000")]));
    let sell = h.add(&with(
        &limit_buy(),
        &[("type", "sell"), ("price", "70000"), ("volume", "0.5")],
    ));
    // (A buy holds its cost and the most fee it could pay.)
    assert!(h.ex.free(KEY, "ZUSD") <= usd - dec("46875") - dec("45000"));
    assert_eq!(h.ex.free(KEY, "XXBT"), xbt - dec("0.5"));
    // Down to 37,000: the 37,500 buy fills at its own price, the 36,000 buy rests.
    assert_eq!(
        h.ex.move_price("XBTUSD", dec("37000"), NOW + 1.0),
        Some(vec![high.clone()])
    );
    assert_eq!(h.ex.order(&high).unwrap().status, OrderStatus::Closed);
    assert_eq!(h.ex.order(&low).unwrap().status, OrderStatus::Open);
    assert_eq!(h.ex.balance(KEY, "XXBT"), xbt + dec("1.25"));
    assert_eq!(
        h.ex.balance(KEY, "ZUSD"),
        usd - dec("46875") - dec("117.1875")
    );
    assert_eq!(h.ex.last_price("XBTUSD"), Some(dec("37000")));
    // Up to 70,000: the sell fills; the buy below stays.
    assert_eq!(
        h.ex.move_price("XBTUSD", dec("70000"), NOW + 2.0),
        Some(vec![sell.clone()])
    );
    assert_eq!(h.ex.balance(KEY, "XXBT"), xbt + dec("1.25") - dec("0.5"));
    assert_eq!(h.ex.order(&low).unwrap().status, OrderStatus::Open);
    // A move that crosses nothing fills nothing; an unknown pair or a bad price is refused.
    assert_eq!(
        h.ex.move_price("XBTUSD", dec("65000"), NOW + 3.0),
        Some(vec![])
    );
    assert_eq!(h.ex.move_price("NOSUCH", dec("1"), NOW), None);
    assert_eq!(h.ex.move_price("XBTUSD", dec("0"), NOW), None);
}

#[test]
fn descr_strings() {
    let mut h = Harness::new();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("ordertype", "stop-loss"),
                ("price", "30000"),
                ("type", "sell"),
                ("volume", "0.5"),
            ],
            "sell 0.50000000 XBTUSD @ stop loss 30000.0",
        ),
        (
            &[
                ("ordertype", "take-profit-limit"),
                ("price", "40000"),
                ("price2", "39900.5"),
                ("type", "sell"),
                ("volume", "0.5"),
            ],
            "sell 0.50000000 XBTUSD @ take profit 40000.0 -> limit 39900.5",
        ),
        (
            &[
                ("ordertype", "limit"),
                ("price", "+1.5%"),
                ("volume", "0.1"),
            ],
            "buy 0.10000000 XBTUSD @ limit +1.5%",
        ),
        (
            &[
                ("ordertype", "limit"),
                ("price", "37500"),
                ("leverage", "2"),
                ("volume", "0.1"),
            ],
            "buy 0.10000000 XBTUSD @ limit 37500.0 with 2:1 leverage",
        ),
    ];
    for (fields, want) in cases {
        let f = with(&limit_buy(), fields);
        let r = h.ok("AddOrder", &with(&f, &[("validate", "true")]));
        assert_eq!(r["descr"]["order"], *want);
    }
    let f = with(
        &limit_buy(),
        &[
            ("close[ordertype]", "stop-loss-limit"),
            ("close[price]", "22000"),
            ("close[price2]", "21000"),
        ],
    );
    let r = h.ok("AddOrder", &f);
    assert_eq!(
        r["descr"]["close"],
        "close position @ stop loss 22000.0 -> limit 21000.0"
    );
    assert_eq!(
        h.add_err(&with(&f, &[("close[price]", "x")])),
        "EGeneral:Invalid arguments:close[price]"
    );
    let doge = [
        ("pair", "XDGUSD"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "0.15"),
        ("volume", "5000"),
    ];
    assert_eq!(
        h.ok("AddOrder", &doge)["descr"]["order"],
        "buy 5000.00000000 XDGUSD @ limit 0.1500000"
    );
}

#[test]
fn txid_format() {
    let mut h = Harness::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let t = h.add(&with(&limit_buy(), &[("volume", "0.01")]));
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![6, 5, 6],
            "{t}"
        );
        assert!(t.starts_with('O'));
        assert!(
            t.chars()
                .all(|c| c == '-' || c.is_ascii_uppercase() || c.is_ascii_digit()),
            "{t}"
        );
        assert!(seen.insert(t));
    }
}

// -- queries -------------------------------------------------------------------

#[test]
fn open_and_closed_orders_filters() {
    let mut h = Harness::new();
    let a = h.add(&with(
        &limit_buy(),
        &[("cl_ord_id", "alpha"), ("volume", "0.1")],
    ));
    let b = h.add(&with(&limit_buy(), &[("userref", "42"), ("volume", "0.1")]));
    let c = h.add(&with(
        &limit_buy(),
        &[("cl_ord_id", "gamma"), ("volume", "0.1")],
    ));
    h.ok("CancelOrder", &[("cl_ord_id", "gamma")]);

    let r = h.ok("OpenOrders", &[]);
    let open = r["open"].as_object().unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[&a]["cl_ord_id"], "alpha");
    assert_eq!(open[&a]["status"], "open");
    assert_eq!(open[&a]["descr"]["price"], "37500.0");
    assert_eq!(open[&b]["userref"], 42);
    assert!(open[&b].get("cl_ord_id").is_none());
    assert!(open[&a].get("closetm").is_none());

    let r = h.ok("OpenOrders", &[("cl_ord_id", "alpha")]);
    assert_eq!(
        r["open"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&a]
    );
    let r = h.ok("OpenOrders", &[("cl_ord_id", "gamma")]);
    assert!(r["open"].as_object().unwrap().is_empty());
    let r = h.ok("OpenOrders", &[("userref", "42")]);
    assert_eq!(
        r["open"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&b]
    );

    let r = h.ok("ClosedOrders", &[("cl_ord_id", "gamma")]);
    assert_eq!(r["count"], 1);
    assert_eq!(r["closed"][&c]["status"], "canceled");
    assert_eq!(r["closed"][&c]["reason"], "User requested");
    let r = h.ok("ClosedOrders", &[("cl_ord_id", "alpha")]);
    assert_eq!(r["count"], 0);
    assert_eq!(
        h.err("OpenOrders", &[("userref", "x")]),
        "EGeneral:Invalid arguments:userref"
    );
}

#[test]
fn closed_orders_time_window_and_paging() {
    let mut h = Harness::new();
    let mut txids = Vec::new();
    for i in 0..60 {
        h.now = NOW + f64::from(i);
        txids.push(h.add(&[
            ("pair", "XDGUSD"),
            ("type", "buy"),
            ("ordertype", "market"),
            ("volume", "20"),
        ]));
    }
    let r = h.ok("ClosedOrders", &[]);
    assert_eq!(r["count"], 60);
    assert_eq!(r["closed"].as_object().unwrap().len(), 50);
    assert!(r["closed"].get(&txids[59]).is_some(), "newest first");
    assert!(r["closed"].get(&txids[0]).is_none());
    let r = h.ok("ClosedOrders", &[("ofs", "50")]);
    assert_eq!(r["closed"].as_object().unwrap().len(), 10);
    assert!(r["closed"].get(&txids[0]).is_some());
    let start = (NOW + 55.0).to_string();
    let r = h.ok("ClosedOrders", &[("start", &start)]);
    assert_eq!(r["count"], 4);
    let r = h.ok("ClosedOrders", &[("start", &txids[57])]);
    assert_eq!(r["count"], 2);
    assert_eq!(
        h.err("ClosedOrders", &[("closetime", "never")]),
        "EGeneral:Invalid arguments:closetime"
    );
}

#[test]
fn query_orders() {
    let mut h = Harness::new();
    let a = h.add(&with(&limit_buy(), &[("volume", "0.1")]));
    let b = h.add(&[
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "0.01"),
    ]);
    let list = format!("{a},{b}");
    let r = h.ok("QueryOrders", &[("txid", &list)]);
    assert_eq!(r[&a]["status"], "open");
    assert_eq!(r[&b]["status"], "closed");
    assert_eq!(h.err("QueryOrders", &[]), "EGeneral:Invalid arguments:txid");
    assert_eq!(
        h.err("QueryOrders", &[("txid", "OAAAAA-BBBBB-CCCCCC")]),
        e::UNKNOWN_ORDER
    );
}

#[test]
fn cancel_all_and_cancel_by_userref() {
    let mut h = Harness::new();
    for _ in 0..2 {
        h.add(&with(&limit_buy(), &[("userref", "7"), ("volume", "0.1")]));
    }
    h.add(&with(&limit_buy(), &[("volume", "0.1")]));
    let r = h.ok("CancelOrder", &[("txid", "7")]);
    assert_eq!(r, json!({"count": 2, "pending": false}));
    let r = h.ok("CancelAll", &[]);
    assert_eq!(r, json!({"count": 1, "pending": false}));
    let r = h.ok("CancelAll", &[]);
    assert_eq!(r["count"], 0);
    assert!(h
        .ex
        .orders
        .iter()
        .all(|o| o.status == OrderStatus::Canceled));
    assert_eq!(h.err("CancelOrder", &[]), "EGeneral:Invalid arguments:txid");
}

// -- faults ----------------------------------------------------------------------

#[test]
fn fault_serialisation_round_trips() {
    let faults = vec![
        Fault::on("AddOrder", FaultKind::Delay { ms: 10 }),
        Fault::any(FaultKind::HttpStatus {
            status: 502,
            body: "bad gateway".into(),
        }),
        Fault::on(
            "AddOrder",
            FaultKind::KrakenError {
                error: "EService:Busy".into(),
            },
        ),
        Fault::on("AddOrder", FaultKind::DropBeforeBook),
        Fault::on("AddOrder", FaultKind::DropAfterBook),
        Fault::on(
            "AddOrder",
            FaultKind::ErrorAfterBook {
                error: "EService:Unavailable".into(),
            },
        ),
        Fault::on("AddOrder", FaultKind::DelayAfterBook { ms: 3000 }),
        Fault::on("AddOrder", FaultKind::ConsumeNonceNoAnswer),
        Fault::any(FaultKind::RateLimit),
    ];
    for f in faults {
        let text = serde_json::to_string(&f).unwrap();
        let back: Fault = serde_json::from_str(&text).unwrap();
        assert_eq!(back, f, "{text}");
    }
    let f: Fault =
        serde_json::from_str(r#"{"method":"AddOrder","kind":"DelayAfterBook","ms":3000}"#).unwrap();
    assert_eq!(
        f,
        Fault::on("AddOrder", FaultKind::DelayAfterBook { ms: 3000 })
    );
    let f: Fault = serde_json::from_str(r#"{"kind":"HttpStatus","status":503}"#).unwrap();
    assert_eq!(
        f,
        Fault::any(FaultKind::HttpStatus {
            status: 503,
            body: String::new()
        })
    );
    assert!(serde_json::from_str::<Fault>(r#"{"kind":"Explode"}"#).is_err());
}

#[test]
fn faults_apply_to_their_method_in_order() {
    let mut h = Harness::new();
    h.ex.push_fault(Fault::on("AddOrder", FaultKind::RateLimit));
    h.ex.push_fault(Fault::any(FaultKind::KrakenError {
        error: "EService:Busy".into(),
    }));
    // Balance skips the AddOrder fault and takes the "any" one.
    assert_eq!(h.err("Balance", &[]), "EService:Busy");
    assert_eq!(h.add_err(&limit_buy()), e::RATE_LIMIT);
    assert!(h.ex.faults.is_empty());
    h.add(&limit_buy());
}

#[test]
fn fault_http_status_and_drop_before_book_keep_the_nonce() {
    let mut h = Harness::new();
    h.ex.push_fault(Fault::on(
        "AddOrder",
        FaultKind::HttpStatus {
            status: 502,
            body: "Bad Gateway".into(),
        },
    ));
    let out = h.call("AddOrder", &limit_buy());
    let r = out.reply().unwrap();
    assert_eq!((r.status, r.body.as_str()), (502, "Bad Gateway"));
    assert_eq!(h.ex.accounts[KEY].last_nonce, 0);
    h.ex.push_fault(Fault::on("AddOrder", FaultKind::DropBeforeBook));
    assert_eq!(h.call("AddOrder", &limit_buy()).answer, Answer::Drop);
    assert_eq!(h.ex.accounts[KEY].last_nonce, 0);
    assert!(h.ex.orders.is_empty());
    assert_eq!(h.ex.requests[1].status, None);
}

#[test]
fn fault_kraken_error_and_consume_nonce_consume_the_nonce() {
    let mut h = Harness::new();
    h.ex.push_fault(Fault::on(
        "AddOrder",
        FaultKind::KrakenError {
            error: "EGeneral:Internal error".into(),
        },
    ));
    assert_eq!(h.add_err(&limit_buy()), "EGeneral:Internal error");
    assert_eq!(h.ex.accounts[KEY].last_nonce, h.nonce);
    h.ex.push_fault(Fault::on("AddOrder", FaultKind::ConsumeNonceNoAnswer));
    assert_eq!(h.call("AddOrder", &limit_buy()).answer, Answer::Drop);
    assert_eq!(h.ex.accounts[KEY].last_nonce, h.nonce);
    assert!(h.ex.orders.is_empty());
    // A bad signature does not let a nonce-consuming fault act.
    h.ex.push_fault(Fault::on("Balance", FaultKind::ConsumeNonceNoAnswer));
    let out = h.raw(
        "/0/private/Balance",
        Some(KEY),
        Some("bad"),
        None,
        b"nonce=99999999",
    );
    assert_eq!(out.reply().unwrap().errors(), vec![e::INVALID_SIGNATURE]);
}

#[test]
fn fault_rate_limit_keeps_the_nonce() {
    let mut h = Harness::new();
    h.ex.push_fault(Fault::on("AddOrder", FaultKind::RateLimit));
    assert_eq!(h.add_err(&limit_buy()), e::RATE_LIMIT);
    assert_eq!(h.ex.accounts[KEY].last_nonce, 0);
}

#[test]
fn faults_after_book_book_the_order() {
    let mut h = Harness::new();
    h.ex.push_fault(Fault::on("AddOrder", FaultKind::DropAfterBook));
    assert_eq!(h.call("AddOrder", &limit_buy()).answer, Answer::Drop);
    assert_eq!(h.ex.orders.len(), 1);
    assert_eq!(h.ex.requests[0].booked, vec![h.ex.orders[0].txid.clone()]);

    h.ex.push_fault(Fault::on(
        "AddOrder",
        FaultKind::ErrorAfterBook {
            error: "EService:Unavailable".into(),
        },
    ));
    let out = h.call("AddOrder", &with(&limit_buy(), &[("volume", "0.1")]));
    assert_eq!(out.reply().unwrap().errors(), vec!["EService:Unavailable"]);
    assert_eq!(h.ex.orders.len(), 2);

    h.ex.push_fault(Fault::on(
        "AddOrder",
        FaultKind::DelayAfterBook { ms: 1500 },
    ));
    let out = h.call("AddOrder", &with(&limit_buy(), &[("volume", "0.1")]));
    assert_eq!(out.delay_after_ms, 1500);
    assert!(out.reply().unwrap().result().unwrap()["txid"][0].is_string());
    assert_eq!(h.ex.orders.len(), 3);
    assert_eq!(h.ex.accounts[KEY].last_nonce, h.nonce);
}

#[test]
fn request_log_records_everything_but_the_signature() {
    let mut h = Harness::new();
    h.add(&with(&limit_buy(), &[("cl_ord_id", "abc")]));
    h.err(
        "AddOrder",
        &[
            ("pair", "NOPE"),
            ("type", "buy"),
            ("ordertype", "market"),
            ("volume", "1"),
        ],
    );
    let r = &h.ex.requests;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].method.as_deref(), Some("AddOrder"));
    assert_eq!(r[0].params["cl_ord_id"], "abc");
    assert_eq!(r[0].booked.len(), 1);
    assert_eq!(r[0].status, Some(200));
    assert_eq!(r[1].errors, vec![e::UNKNOWN_PAIR]);
    assert!(r[1].booked.is_empty());
    let text = serde_json::to_string(r).unwrap();
    assert!(!text.contains(Account::TEST_API_SECRET));
    assert!(!text.to_ascii_lowercase().contains("api-sign"));
}

// -- REST rate counter -------------------------------------------------------------

/// One refill of a starter counter: the seconds it takes to decay by 1.
const STARTER_ONE: f64 = 1.0 / 0.33;

fn counter(h: &Harness) -> f64 {
    h.ex.rest_counter(KEY, h.now)
}

fn assert_near(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
}

#[test]
fn rate_tiers_and_costs() {
    assert_eq!(
        (RateTier::Starter.max(), RateTier::Starter.decay_per_sec()),
        (15.0, 0.33)
    );
    assert_eq!(
        (
            RateTier::Intermediate.max(),
            RateTier::Intermediate.decay_per_sec()
        ),
        (20.0, 0.5)
    );
    assert_eq!(
        (RateTier::Pro.max(), RateTier::Pro.decay_per_sec()),
        (20.0, 1.0)
    );
    for t in [RateTier::Starter, RateTier::Intermediate, RateTier::Pro] {
        assert_eq!(t.to_string().parse::<RateTier>(), Ok(t));
        assert_eq!(serde_json::to_value(t).unwrap(), json!(t.name()));
    }
    assert_eq!("PRO".parse::<RateTier>(), Ok(RateTier::Pro));
    assert!("gold".parse::<RateTier>().is_err());
    for m in ["Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"] {
        assert_eq!(rest_cost(m), 2, "{m}");
    }
    for m in [
        "AddOrder",
        "AddOrderBatch",
        "CancelOrder",
        "CancelOrderBatch",
        "CancelAll",
        "CancelAllOrdersAfter",
        "EditOrder",
        "AmendOrder",
    ] {
        assert_eq!(rest_cost(m), 0, "{m}");
    }
    for m in [
        "Balance",
        "BalanceEx",
        "OpenOrders",
        "ClosedOrders",
        "QueryOrders",
    ] {
        assert_eq!(rest_cost(m), 1, "{m}");
    }
}

#[test]
fn no_tier_by_default_never_limits() {
    let mut h = Harness::new();
    assert_eq!(h.ex.rate_tier(), None);
    for _ in 0..50 {
        h.ok("Balance", &[]);
        h.ok("TradesHistory", &[]);
    }
    assert_eq!(counter(&h), 0.0);
    assert_eq!(h.ex.rate_limited_count(), 0);
    assert_eq!(h.ex.requests.last().unwrap().rest_counter, None);
}

#[test]
fn starter_allows_a_burst_of_15_then_one_per_refill() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    for i in 1..=15 {
        h.ok("Balance", &[]);
        assert_near(counter(&h), f64::from(i));
    }
    let nonce = h.ex.accounts[KEY].last_nonce;
    let out = h.call("Balance", &[]);
    let reply = out.reply().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        r#"{"error":["EAPI:Rate limit exceeded"],"result":{}}"#
    );
    assert_eq!(h.ex.accounts[KEY].last_nonce, nonce, "nonce not consumed");
    assert_eq!(h.ex.rate_limited_count(), 1);
    let rec = h.ex.requests.last().unwrap();
    assert_eq!(rec.errors, vec![e::RATE_LIMIT]);
    assert_near(rec.rest_counter.unwrap(), 15.0);
    assert_near(counter(&h), 15.0);

    // Not quite one refill later: 14.01 + 1 is still above 15.
    h.now = NOW + 3.0;
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
    // One refill after the burst: exactly one more call.
    h.now = NOW + STARTER_ONE;
    assert_near(counter(&h), 14.0);
    h.ok("Balance", &[]);
    assert_near(counter(&h), 15.0);
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
    assert_eq!(h.ex.rate_limited_count(), 3);
}

#[test]
fn refused_calls_add_nothing() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    for _ in 0..15 {
        h.ok("Balance", &[]);
    }
    for _ in 0..10 {
        assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
        assert_eq!(h.err("TradesHistory", &[]), e::RATE_LIMIT);
    }
    assert_near(counter(&h), 15.0);
    assert_eq!(h.ex.rate_limited_count(), 20);
    // Had the refusals counted, one refill would not be enough.
    h.now = NOW + STARTER_ONE;
    h.ok("Balance", &[]);
}

#[test]
fn trades_history_costs_two() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    for _ in 0..13 {
        h.ok("Balance", &[]);
    }
    h.ok("TradesHistory", &[]);
    assert_near(counter(&h), 15.0);
    assert_eq!(h.ex.requests.last().unwrap().rest_counter, Some(15.0));
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);

    // At 14, a 1-point call fits and a 2-point one does not.
    h.ex.set_rate_tier(Some(RateTier::Starter));
    assert_eq!(counter(&h), 0.0, "a new tier restarts the counters");
    for _ in 0..14 {
        h.ok("Balance", &[]);
    }
    assert_eq!(h.err("TradesHistory", &[]), e::RATE_LIMIT);
    assert_near(counter(&h), 14.0);
    h.ok("OpenOrders", &[]);
    assert_near(counter(&h), 15.0);
}

#[test]
fn order_calls_are_never_counted_nor_refused() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    for _ in 0..15 {
        h.ok("Balance", &[]);
    }
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
    for _ in 0..20 {
        let txid = h.add(&limit_buy());
        h.ok("CancelOrder", &[("txid", &txid)]);
    }
    h.ok("CancelAll", &[]);
    assert_near(counter(&h), 15.0);
    assert_eq!(h.ex.rate_limited_count(), 1);
    let rec = h.ex.requests.last().unwrap();
    assert_near(rec.rest_counter.unwrap(), 15.0);
}

#[test]
fn pro_decays_faster_than_intermediate_and_starter() {
    for (tier, burst, wait_for_one) in [
        (RateTier::Starter, 15, STARTER_ONE),
        (RateTier::Intermediate, 20, 2.0),
        (RateTier::Pro, 20, 1.0),
    ] {
        let mut h = Harness::new();
        h.ex.set_rate_tier(Some(tier));
        for _ in 0..burst {
            h.ok("Balance", &[]);
        }
        assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT, "{tier}");
        // One second frees a call on pro only.
        h.now = NOW + 1.0;
        assert_near(counter(&h), f64::from(burst) - tier.decay_per_sec());
        if tier == RateTier::Pro {
            h.ok("Balance", &[]);
        } else {
            assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT, "{tier}");
            h.now = NOW + wait_for_one;
            assert_near(counter(&h), f64::from(burst) - 1.0);
            h.ok("Balance", &[]);
        }
        assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT, "{tier}");
    }
}

#[test]
fn counter_decays_to_zero_and_no_further() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    for _ in 0..5 {
        h.ok("Balance", &[]);
    }
    h.now = NOW + 1_000.0;
    assert_eq!(counter(&h), 0.0);
    for _ in 0..15 {
        h.ok("Balance", &[]);
    }
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
    // A clock that steps back decays nothing and charges as usual.
    h.now = NOW;
    assert_near(counter(&h), 15.0);
}

#[test]
fn only_authenticated_calls_are_charged() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    let body = b"nonce=5";
    let bad_sig = h.raw("/0/private/Balance", Some(KEY), Some("AAAA"), None, body);
    assert_eq!(
        bad_sig.reply().unwrap().errors(),
        vec![e::INVALID_SIGNATURE]
    );
    let no_key = h.raw("/0/private/Balance", Some("nope"), Some("AAAA"), None, body);
    assert_eq!(no_key.reply().unwrap().errors(), vec![e::INVALID_KEY]);
    assert_eq!(h.err("Nope", &[]), e::UNKNOWN_METHOD);
    assert_eq!(counter(&h), 0.0);
    assert_eq!(h.ex.requests.last().unwrap().rest_counter, None);

    for _ in 0..15 {
        h.ok("Balance", &[]);
    }
    // At the limit, a replayed nonce is still answered as a bad nonce.
    h.nonce -= 1;
    assert_eq!(h.err("Balance", &[]), e::INVALID_NONCE);
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
    assert_eq!(h.ex.rate_limited_count(), 1);
}

#[test]
fn counters_are_per_key() {
    let other = Account::new("second-key", Account::TEST_API_SECRET);
    let mut h = Harness::new();
    h.ex = Exchange::new(&[Account::test_default(), other]).unwrap();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    for _ in 0..15 {
        h.ok("Balance", &[]);
    }
    assert_eq!(h.err("Balance", &[]), e::RATE_LIMIT);
    let nonce = "1";
    let body = form_encode(&[("nonce", nonce)]);
    let sig = sign::sign(
        &Harness::secret(),
        "/0/private/Balance",
        nonce,
        body.as_bytes(),
    );
    let out = h.raw(
        "/0/private/Balance",
        Some("second-key"),
        Some(&sig),
        None,
        body.as_bytes(),
    );
    assert_eq!(out.reply().unwrap().errors(), Vec::<String>::new());
    assert_near(h.ex.rest_counter("second-key", h.now), 1.0);
    assert_near(counter(&h), 15.0);
    assert_eq!(h.ex.rest_counter("unknown", h.now), 0.0);
}

#[test]
fn injected_rate_limit_fault_still_works_with_a_tier() {
    let mut h = Harness::new();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    h.ex.push_fault(Fault::on("Balance", FaultKind::RateLimit));
    let out = h.call("Balance", &[]);
    assert_eq!(
        out.reply().unwrap().body,
        r#"{"error":["EAPI:Rate limit exceeded"],"result":{}}"#
    );
    assert_eq!(h.ex.accounts[KEY].last_nonce, 0);
    assert_eq!(counter(&h), 0.0, "an injected refusal adds nothing");
    assert_eq!(h.ex.rate_limited_count(), 0, "only counter refusals count");
    h.ok("Balance", &[]);
    assert_near(counter(&h), 1.0);
}

#[test]
fn trades_history_lists_fills() {
    let mut h = Harness::new();
    let r = h.ok("TradesHistory", &[]);
    assert_eq!(r, json!({"trades": {}, "count": 0}));
    let market = h.add(&[
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "0.01"),
    ]);
    let limit = h.add(&limit_buy());
    h.add(&limit_buy()); // stays open: no trade
    assert!(h.ex.fill_order(&limit, NOW + 5.0));
    let r = h.ok("TradesHistory", &[]);
    assert_eq!(r["count"], 2);
    let trades: Vec<&Value> = r["trades"].as_object().unwrap().values().collect();
    let by_order = |txid: &str| {
        *trades
            .iter()
            .find(|t| t["ordertxid"] == txid)
            .expect("trade of the order")
    };
    let t = by_order(&market);
    assert_eq!(t["pair"], "XXBTZUSD");
    assert_eq!(t["type"], "buy");
    assert_eq!(t["ordertype"], "market");
    assert_eq!(t["price"], "67000.0");
    assert_eq!(t["vol"], "0.01000000");
    assert_eq!(t["cost"], "670.00000");
    assert_eq!(t["fee"], "2.68000");
    assert_eq!(t["maker"], false);
    let t = by_order(&limit);
    assert_eq!(t["maker"], true);
    assert_eq!(t["time"], NOW + 5.0);
    for id in r["trades"].as_object().unwrap().keys() {
        assert!(id.starts_with('T') && id.len() == 19, "{id}");
    }
    let start = (NOW + 1.0).to_string();
    assert_eq!(h.ok("TradesHistory", &[("start", &start)])["count"], 1);
    assert_eq!(
        h.ok("TradesHistory", &[("ofs", "1")])["trades"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.err("TradesHistory", &[("start", "yesterday")]),
        "EGeneral:Invalid arguments:start"
    );
}

#[test]
fn request_log_records_framing() {
    let mut h = Harness::new();
    h.ok("Balance", &[]);
    let rec = h.ex.requests.last().unwrap();
    assert_eq!(rec.content_length, Some(10));
    assert!(!rec.chunked);
    let req = PrivateRequest {
        http_method: "POST",
        path: "/0/private/Balance",
        api_key: Some(KEY),
        api_sign: None,
        content_type: None,
        content_length: None,
        chunked: true,
        body: b"",
    };
    h.ex.handle_private(&req, NOW);
    let rec = h.ex.requests.last().unwrap();
    assert_eq!((rec.content_length, rec.chunked), (None, true));
}

// -- public ------------------------------------------------------------------------

#[test]
fn public_asset_pairs() {
    let mut ex = Exchange::new(&[Account::test_default()]).unwrap();
    let r = ex
        .public("GET", "/0/public/AssetPairs", NOW)
        .result()
        .unwrap();
    let ids: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(ids.len(), 6);
    let xbt = &r["XXBTZUSD"];
    assert_eq!(xbt["altname"], "XBTUSD");
    assert_eq!(xbt["wsname"], "XBT/USD");
    assert_eq!(xbt["base"], "XXBT");
    assert_eq!(xbt["quote"], "ZUSD");
    assert_eq!(xbt["pair_decimals"], 1);
    assert_eq!(xbt["lot_decimals"], 8);
    assert_eq!(xbt["cost_decimals"], 5);
    assert_eq!(xbt["ordermin"], "0.00005");
    assert_eq!(xbt["costmin"], "0.5");
    assert_eq!(xbt["tick_size"], "0.1");
    assert_eq!(xbt["status"], "online");
    assert_eq!(xbt["fees"][0], json!([0, 0.4]));
    assert_eq!(xbt["leverage_buy"], json!([2, 3, 4, 5]));
    assert!(xbt.get("id").is_none());
    assert_eq!(r["XDGUSD"]["tick_size"], "0.0000001");
    assert_eq!(r["ADAEUR"]["quote"], "ZEUR");

    let r = ex
        .public(
            "GET",
            "/0/public/AssetPairs?pair=XBTUSD,ETH/USD,SOLUSD,XBT%2FUSDT",
            NOW,
        )
        .result()
        .unwrap();
    let mut ids: Vec<&String> = r.as_object().unwrap().keys().collect();
    ids.sort();
    assert_eq!(ids, vec!["SOLUSD", "XBTUSDT", "XETHZUSD", "XXBTZUSD"]);
    let reply = ex.public("GET", "/0/public/AssetPairs?pair=XBTUSD,NOPE", NOW);
    assert_eq!(reply.errors(), vec![e::UNKNOWN_PAIR]);
    assert!(reply.result().is_none());

    ex.set_pair_status("XBTUSD", "cancel_only");
    let r = ex
        .public("GET", "/0/public/AssetPairs?pair=XBTUSD", NOW)
        .result()
        .unwrap();
    assert_eq!(r["XXBTZUSD"]["status"], "cancel_only");
}

#[test]
fn public_ticker_time_status() {
    let mut ex = Exchange::new(&[Account::test_default()]).unwrap();
    let r = ex
        .public("GET", "/0/public/Ticker?pair=XBTUSD", NOW)
        .result()
        .unwrap();
    assert_eq!(r["XXBTZUSD"]["c"][0], "67000.0");
    assert_eq!(r["XXBTZUSD"]["a"][0], "67000.1");
    ex.set_last_price("XBTUSD", dec("70000.5"));
    let r = ex
        .public("GET", "/0/public/Ticker?pair=XXBTZUSD", NOW)
        .result()
        .unwrap();
    assert_eq!(r["XXBTZUSD"]["c"][0], "70000.5");
    assert_eq!(
        ex.public("GET", "/0/public/Ticker?pair=FOO", NOW).errors(),
        vec![e::UNKNOWN_PAIR]
    );
    let all = ex.public("GET", "/0/public/Ticker", NOW).result().unwrap();
    assert_eq!(all.as_object().unwrap().len(), 6);
    assert_eq!(all["XDGUSD"]["c"][0], "0.1500000");

    let r = ex.public("GET", "/0/public/Time", NOW).result().unwrap();
    assert_eq!(r["unixtime"], 1_700_000_000);
    assert_eq!(r["rfc1123"], "Tue, 14 Nov 23 22:13:20 +0000");
    let r = ex
        .public("GET", "/0/public/SystemStatus", NOW)
        .result()
        .unwrap();
    assert_eq!(
        r,
        json!({"status": "online", "timestamp": "2023-11-14T22:13:20Z"})
    );
    assert_eq!(
        ex.public("GET", "/0/public/Nope", NOW).errors(),
        vec![e::UNKNOWN_METHOD]
    );
    assert_eq!(
        ex.public("POST", "/0/public/Time", NOW).errors(),
        vec![e::UNKNOWN_METHOD]
    );
    assert!(!ex.set_last_price("XBTUSD", dec("0")));
    assert!(!ex.set_last_price("NOPE", dec("1")));
    assert_eq!(ex.requests.len(), 8);
}

#[test]
fn account_debug_hides_secret() {
    let a = Account::test_default().with_otp("otp-secret-value");
    let text = format!("{a:?}");
    assert!(!text.contains(Account::TEST_API_SECRET));
    assert!(!text.contains("otp-secret-value"));
    let ex = Exchange::new(&[a]).unwrap();
    assert!(!format!("{ex:?}").contains("otp-secret-value"));
    assert!(Exchange::new(&[Account::new("k", "not base64!")]).is_err());
}

// -- realistic pair table ------------------------------------------------------------

/// Every field of a Kraken `AssetPairs` pair object, with its JSON type.
const PAIR_FIELDS: [(&str, &str); 24] = [
    ("altname", "string"),
    ("wsname", "string"),
    ("aclass_base", "string"),
    ("base", "string"),
    ("aclass_quote", "string"),
    ("quote", "string"),
    ("lot", "string"),
    ("cost_decimals", "number"),
    ("pair_decimals", "number"),
    ("lot_decimals", "number"),
    ("lot_multiplier", "number"),
    ("leverage_buy", "array"),
    ("leverage_sell", "array"),
    ("fees", "array"),
    ("fees_maker", "array"),
    ("fee_volume_currency", "string"),
    ("margin_call", "number"),
    ("margin_stop", "number"),
    ("ordermin", "string"),
    ("costmin", "string"),
    ("tick_size", "string"),
    ("status", "string"),
    ("long_position_limit", "number"),
    ("short_position_limit", "number"),
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Bool(_) => "bool",
        Value::Null => "null",
    }
}

fn realistic_exchange(n: usize) -> Exchange {
    let mut ex = Exchange::new(&[Account::test_default()]).unwrap();
    ex.use_realistic_pairs(n);
    ex
}

#[test]
fn realistic_table_keeps_the_defaults_and_is_deterministic() {
    let (pairs, prices) = realistic_market(KRAKEN_PAIR_COUNT);
    assert_eq!(pairs.len(), KRAKEN_PAIR_COUNT);
    assert_eq!(pairs[..6], default_pairs()[..], "defaults first, unchanged");
    for (id, price) in default_last_prices() {
        assert_eq!(prices[&id], price, "{id}");
        assert_eq!(prices[&id].to_string(), price.to_string(), "{id}");
    }
    assert_eq!(realistic_market(KRAKEN_PAIR_COUNT), (pairs.clone(), prices));
    // A smaller table is a prefix of a larger one; never fewer than the defaults.
    assert_eq!(realistic_pairs(100)[..], pairs[..100]);
    assert_eq!(realistic_pairs(0), default_pairs());
    assert_eq!(realistic_pairs(3000).len(), 3000);
}

#[test]
fn realistic_pairs_are_consistent() {
    let (pairs, prices) = realistic_market(KRAKEN_PAIR_COUNT);
    // No name designates two pairs, even with BTC and DOGE for XBT and XDG
    // and without the slash (how the bridge resolves a symbol).
    fn synonyms(a: &str) -> Vec<&str> {
        match a {
            "XBT" => vec!["XBT", "BTC"],
            "XDG" => vec!["XDG", "DOGE"],
            _ => vec![a],
        }
    }
    let mut names = BTreeMap::new();
    for p in &pairs {
        let (b, q) = p.wsname.split_once('/').expect("BASE/QUOTE");
        let mut spellings = vec![p.id.clone(), p.altname.clone(), p.wsname.clone()];
        for b in synonyms(b) {
            for q in synonyms(q) {
                spellings.extend([format!("{b}{q}"), format!("{b}/{q}")]);
            }
        }
        for n in spellings {
            if let Some(other) = names.insert(n.clone(), p.id.clone()) {
                assert_eq!(other, p.id, "{n} names two pairs");
            }
        }
    }
    let legacy = |a: &str| a.len() == 4 && (a.starts_with('X') || a.starts_with('Z'));
    let mut statuses = BTreeMap::new();
    for p in &pairs {
        let (b, q) = p.wsname.split_once('/').expect("BASE/QUOTE");
        assert_eq!(p.altname, format!("{b}{q}"));
        assert!(p.base.ends_with(b) && p.quote.ends_with(q), "{p:?}");
        assert!(b
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert!(!matches!(b, "BTC" | "DOGE"), "Kraken says XBT and XDG");
        if p.id != p.altname {
            assert!(legacy(&p.base) && legacy(&p.quote), "legacy id {}", p.id);
            assert_eq!(p.id, format!("{}{}", p.base, p.quote));
        }
        assert_eq!(p.tick_size(), Decimal::new(1, p.pair_decimals), "{}", p.id);
        assert!(p.pair_decimals <= 10 && p.lot_decimals <= 8, "{}", p.id);
        assert!(p.ordermin() > Decimal::ZERO && decimals(p.ordermin()) <= p.lot_decimals);
        assert!(p.costmin() > Decimal::ZERO && decimals(p.costmin()) <= p.cost_decimals);
        assert_eq!(p.leverage_buy, p.leverage_sell);
        assert!(p.fees.len() >= 6 && p.fees.len() == p.fees_maker.len());
        assert!(p.taker_fee() >= p.maker_fee());
        assert!(p.long_position_limit >= p.short_position_limit && p.short_position_limit > 0);
        let price = prices[&p.id];
        assert!(price > Decimal::ZERO, "{}", p.id);
        assert!(decimals(price) <= p.pair_decimals, "{} {price}", p.id);
        // An order of the minimum volume at the last price meets the cost minimum.
        assert!(p.ordermin() * price >= p.costmin(), "{}", p.id);
        *statuses.entry(p.status.as_str()).or_insert(0) += 1;
    }
    assert!(statuses["online"] > 750, "{statuses:?}");
    for s in ["cancel_only", "post_only", "limit_only"] {
        assert!(statuses.get(s).is_some_and(|n| *n > 0), "{s}: {statuses:?}");
    }
    let quotes: BTreeSet<&str> = pairs.iter().map(|p| p.quote.as_str()).collect();
    for q in [
        "ZUSD", "ZEUR", "USDT", "USDC", "XXBT", "XETH", "ZGBP", "ZCAD",
    ] {
        assert!(quotes.contains(q), "{q}");
    }
    for id in [
        "XLTCZUSD", "XETHXXBT", "ZEURZUSD", "USDTUSD", "LINKUSD", "DOTEUR",
    ] {
        assert!(names.contains_key(id), "{id}");
    }
}

#[test]
fn realistic_asset_pairs_answer_has_krakens_size_and_shape() {
    let body = realistic_asset_pairs_body(KRAKEN_PAIR_COUNT);
    println!(
        "AssetPairs with {KRAKEN_PAIR_COUNT} pairs: {} bytes ({:.1} KB)",
        body.len(),
        body.len() as f64 / 1000.0
    );
    assert!(
        (600_000..=900_000).contains(&body.len()),
        "{} bytes",
        body.len()
    );
    // The table is deterministic; KRAKEN_PAIR_COUNT's doc states this size.
    assert_eq!(body.len(), 601_702);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], json!([]));
    let result = v["result"].as_object().unwrap();
    assert!(result.len() >= 800);
    assert_eq!(result.len(), KRAKEN_PAIR_COUNT);
    for (id, p) in result {
        let obj = p.as_object().unwrap();
        for (field, kind) in PAIR_FIELDS {
            let got = obj.get(field).map(json_type);
            assert_eq!(got, Some(kind), "{id}.{field}");
        }
        assert_eq!(obj.len(), PAIR_FIELDS.len(), "{id}: no other field");
        for tier in p["fees"].as_array().unwrap() {
            assert!(tier[0].is_u64() && tier[1].is_f64(), "{id} {tier}");
        }
    }
    // The default pairs answer exactly as in the small table.
    let mut small = Exchange::new(&[]).unwrap();
    let small = small
        .public("GET", "/0/public/AssetPairs", NOW)
        .result()
        .unwrap();
    for (id, p) in small.as_object().unwrap() {
        assert_eq!(&result[id], p, "{id}");
    }
}

#[test]
fn realistic_pair_filter_by_id_altname_wsname() {
    let mut ex = realistic_exchange(KRAKEN_PAIR_COUNT);
    let r = ex
        .public(
            "GET",
            "/0/public/AssetPairs?pair=XLTCZUSD,LINKUSD,DOT%2FEUR,ETH/XBT,btc/usd",
            NOW,
        )
        .result()
        .unwrap();
    let ids: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(
        ids,
        vec!["DOTEUR", "LINKUSD", "XETHXXBT", "XLTCZUSD", "XXBTZUSD"]
    );
    assert_eq!(r["XLTCZUSD"]["altname"], "LTCUSD");
    assert_eq!(r["XETHXXBT"]["wsname"], "ETH/XBT");
    for bad in ["LINKUSD,NOPEUSD", "NOPE", "LINKUSD,", "BTCUSD"] {
        let reply = ex.public("GET", &format!("/0/public/AssetPairs?pair={bad}"), NOW);
        assert_eq!(reply.errors(), vec![e::UNKNOWN_PAIR], "{bad}");
        assert!(reply.result().is_none());
    }
    let all = ex
        .public("GET", "/0/public/AssetPairs", NOW)
        .result()
        .unwrap();
    assert_eq!(all.as_object().unwrap().len(), KRAKEN_PAIR_COUNT);
}

#[test]
fn realistic_ticker_and_orders_on_generated_pairs() {
    let mut h = Harness::new();
    h.ex.use_realistic_pairs(KRAKEN_PAIR_COUNT);
    let r =
        h.ex.public("GET", "/0/public/Ticker?pair=LINKUSD,XLTCZEUR", NOW)
            .result()
            .unwrap();
    for id in ["LINKUSD", "XLTCZEUR"] {
        let p = h.ex.find_pair(id).unwrap().clone();
        let last = fixed(h.ex.last_price(id).unwrap(), p.pair_decimals);
        assert_eq!(r[id]["c"][0], last.as_str(), "{id}");
        assert_eq!(r[id]["b"][0], last.as_str(), "{id}");
    }
    assert_eq!(
        h.ex.public("GET", "/0/public/Ticker?pair=LINKUSD,NOPE", NOW)
            .errors(),
        vec![e::UNKNOWN_PAIR]
    );
    let all =
        h.ex.public("GET", "/0/public/Ticker", NOW)
            .result()
            .unwrap();
    assert_eq!(all.as_object().unwrap().len(), KRAKEN_PAIR_COUNT);

    // Every online pair accepts a limit buy of its minimum volume at its last
    // price: the generated rules agree with each other and with AddOrder.
    let quotes: BTreeSet<String> = h.ex.pairs.iter().map(|p| p.quote.clone()).collect();
    for q in &quotes {
        assert!(h.ex.set_balance(KEY, q, dec("1000000000")));
    }
    let online: Vec<Pair> =
        h.ex.pairs
            .iter()
            .filter(|p| p.status == "online")
            .cloned()
            .collect();
    for p in &online {
        let price = fixed(h.ex.last_price(&p.id).unwrap(), p.pair_decimals);
        let r = h.ok(
            "AddOrder",
            &[
                ("pair", p.altname.as_str()),
                ("type", "buy"),
                ("ordertype", "limit"),
                ("price", price.as_str()),
                ("volume", p.ordermin.as_str()),
                ("validate", "true"),
            ],
        );
        assert!(r["descr"]["order"].as_str().unwrap().contains(&p.altname));
    }
    // And a market buy fills at the last price on a generated pair.
    let txid = h.add(&[
        ("pair", "DOT/EUR"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "10"),
    ]);
    assert_eq!(h.ex.order(&txid).unwrap().status, OrderStatus::Closed);
}

// ---- several keys per account, several accounts ------------------------------------------

const KEY2: &str = "sim-api-key-second";
const OTHER: &str = "sim-api-key-other-account";

/// A correctly signed call with `key` (every key here shares the test secret) and its own
/// `nonce`.
fn call_with(
    h: &mut Harness,
    key: &str,
    nonce: u64,
    method: &str,
    fields: &[(&str, &str)],
) -> Outcome {
    let nonce = nonce.to_string();
    let mut all = vec![("nonce", nonce.as_str())];
    all.extend_from_slice(fields);
    let body = form_encode(&all);
    let path = format!("/0/private/{method}");
    let sig = sign::sign(&Harness::secret(), &path, &nonce, body.as_bytes());
    h.raw(&path, Some(key), Some(&sig), None, body.as_bytes())
}

fn two_keys_and_another_account() -> Harness {
    let first = Account::test_default().with_key(KEY2, Account::TEST_API_SECRET);
    let other = Account::new(OTHER, Account::TEST_API_SECRET).with_balance("ZUSD", "1000");
    Harness {
        ex: Exchange::new(&[first, other]).unwrap(),
        nonce: 1_000,
        now: NOW,
    }
}

#[test]
fn each_key_of_an_account_has_its_own_nonces_and_rest_counter() {
    let mut h = two_keys_and_another_account();
    h.ex.set_rate_tier(Some(RateTier::Starter));
    // The second key's nonces start afresh, below the first key's.
    let r = call_with(&mut h, KEY, 5_000, "Balance", &[]);
    assert!(r.reply().unwrap().errors().is_empty());
    let r = call_with(&mut h, KEY2, 10, "Balance", &[]);
    assert!(
        r.reply().unwrap().errors().is_empty(),
        "{:?}",
        r.reply().unwrap().body
    );
    // And each key refuses its own replays only.
    let r = call_with(&mut h, KEY2, 10, "Balance", &[]);
    assert_eq!(r.reply().unwrap().errors(), [e::INVALID_NONCE]);
    let r = call_with(&mut h, KEY, 11, "Balance", &[]);
    assert_eq!(r.reply().unwrap().errors(), [e::INVALID_NONCE]);
    assert_eq!(h.ex.rest_counter(KEY, NOW), 1.0);
    assert_eq!(h.ex.rest_counter(KEY2, NOW), 1.0);
    assert_eq!(h.ex.owner(KEY2), KEY);
}

#[test]
fn the_keys_of_an_account_share_its_orders_and_balances() {
    let mut h = two_keys_and_another_account();
    let usd = h.ex.balance(KEY, "ZUSD");
    let order = [
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "market"),
        ("volume", "0.01"),
        ("cl_ord_id", "shared-cl-ord-id"),
    ];
    let r = call_with(&mut h, KEY2, 1, "AddOrder", &order);
    let txid = r.reply().unwrap().result().unwrap()["txid"][0]
        .as_str()
        .unwrap()
        .to_string();
    // Filled at once; the account's balance moved, seen through either key.
    assert!(h.ex.balance(KEY, "ZUSD") < usd);
    assert_eq!(h.ex.balance(KEY2, "ZUSD"), h.ex.balance(KEY, "ZUSD"));
    // A look-up by cl_ord_id works with the other key.
    let r = call_with(
        &mut h,
        KEY,
        1,
        "ClosedOrders",
        &[("cl_ord_id", "shared-cl-ord-id")],
    );
    let closed = r.reply().unwrap().result().unwrap();
    assert!(closed["closed"].get(&txid).is_some(), "{closed}");
    let r = call_with(&mut h, KEY, 2, "QueryOrders", &[("txid", &txid)]);
    assert!(r.reply().unwrap().errors().is_empty());
    // The other account sees none of it, and its own cl_ord_id space is its own.
    let r = call_with(&mut h, OTHER, 1, "QueryOrders", &[("txid", &txid)]);
    assert_eq!(r.reply().unwrap().errors(), [e::UNKNOWN_ORDER]);
    assert_eq!(h.ex.balance(OTHER, "ZUSD"), Decimal::from(1000));
}

#[test]
fn an_open_cl_ord_id_is_unique_across_the_keys_of_an_account_not_across_accounts() {
    let mut h = two_keys_and_another_account();
    let resting = [
        ("pair", "XBTUSD"),
        ("type", "buy"),
        ("ordertype", "limit"),
        ("price", "1000"),
        ("volume", "0.01"),
        ("cl_ord_id", "resting-one"),
    ];
    let r = call_with(&mut h, KEY, 1, "AddOrder", &resting);
    assert!(r.reply().unwrap().errors().is_empty());
    let r = call_with(&mut h, KEY2, 1, "AddOrder", &resting);
    assert_eq!(r.reply().unwrap().errors(), [e::DUPLICATE_ORDER]);
    let r = call_with(&mut h, OTHER, 1, "AddOrder", &resting);
    assert!(
        r.reply().unwrap().errors().is_empty(),
        "{:?}",
        r.reply().unwrap().body
    );
    assert_eq!(h.ex.orders.len(), 2);
}

#[test]
fn a_key_configured_twice_is_refused() {
    let a = Account::test_default().with_key(KEY, Account::TEST_API_SECRET);
    assert!(Exchange::new(&[a]).is_err());
}
