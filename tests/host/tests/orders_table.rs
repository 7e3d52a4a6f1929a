//! Orders as traders write them (contract 2.2, 2.3): real alert bodies through the real
//! Spin-flavour component to the simulator, asserting the exact AddOrder parameters Kraken
//! receives, or the exact refusal and that no signed request reached the exchange.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What one alert must produce.
enum Expect {
    /// The AddOrder parameters (besides nonce, cl_ord_id and deadline).
    Order(&'static str),
    /// `422` with this error code and field (`""`: no field).
    Refused(&'static str, &'static str),
}

use Expect::*;

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    tv_kraken_bridge::time::Now(secs).rfc3339()
}

/// Fills the template's placeholders the way TradingView renders them.
fn render(template: &str) -> String {
    template
        .replace("YOUR_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .replace("{{timenow}}", &now_rfc3339())
}

fn check(
    body: &str,
    expect: &Expect,
    settings: &[(&str, &str)],
    prepare: impl Fn(&kraken_sim::Sim),
) {
    let sim = sim();
    prepare(&sim);
    let mut extra = vec![("rate_limit_per_minute", "100000")];
    extra.extend_from_slice(settings);
    let host = spin_host(&sim, &extra);
    let ex = send(
        &host,
        post(render(body), &[("content-type", "application/json")]),
    );
    match expect {
        Order(expected) => {
            assert_eq!(ex.status, 200, "{body}\n{ex}");
            assert_eq!(ex.json()["status"], "placed", "{body}");
            let orders = sim.orders();
            assert_eq!(orders.len(), 1, "{body}");
            let mut got: BTreeMap<String, String> = orders[0].params.clone();
            assert_eq!(got.remove("nonce").map(|n| n.len()), Some(16), "{body}");
            let cl = got.remove("cl_ord_id").unwrap_or_default();
            assert!(
                cl.len() == 32 && cl.bytes().all(|b| b.is_ascii_hexdigit()),
                "{body}"
            );
            assert!(
                got.remove("deadline").is_some_and(|d| d.ends_with('Z')),
                "{body}"
            );
            let want: BTreeMap<String, String> = expected
                .split('&')
                .map(|kv| kv.split_once('=').unwrap())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{body}");
        }
        Refused(code, field) => {
            assert_eq!(ex.status, 422, "{body}\n{ex}");
            let answer = ex.json();
            assert_eq!(answer["error"], *code, "{body}\n{answer}");
            if !field.is_empty() {
                assert_eq!(answer["field"], *field, "{body}\n{answer}");
            }
            // Reads (pairs, ticker, balances) may happen; no order request may.
            assert!(
                private_requests(&sim)
                    .iter()
                    .all(|r| r.method.as_deref() == Some("BalanceEx")),
                "{body}: an order request reached Kraken"
            );
            assert!(sim.orders().is_empty());
        }
    }
}

const S: &str = r#""secret":"YOUR_WEBHOOK_SECRET""#;

#[test]
fn forty_alerts_as_traders_write_them() {
    let cases: Vec<(String, Expect)> = vec![
        // Symbol spellings.
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"BTCUSD","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"btcusd","side":"Buy","volume":0.01}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"BTC/USD","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBT/USD","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"KRAKEN:XBTUSD","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"KRAKEN:BTCUSD","side":"sell","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=sell&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"XXBTZUSD","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"BTCUSDT","side":"buy","volume":"0.01"}}"#),
            Order("pair=XBTUSDT&type=buy&ordertype=market&volume=0.01"),
        ),
        (
            format!(r#"{{{S},"symbol":"KRAKEN:ETHUSD","side":"buy","volume":"0.5"}}"#),
            Order("pair=ETHUSD&type=buy&ordertype=market&volume=0.5"),
        ),
        (
            format!(r#"{{{S},"symbol":"DOGEUSD","side":"buy","volume":"100"}}"#),
            Order("pair=XDGUSD&type=buy&ordertype=market&volume=100"),
        ),
        (
            format!(r#"{{{S},"symbol":"SOLUSD","side":"sell","volume":"1.123456789"}}"#),
            Order("pair=SOLUSD&type=sell&ordertype=market&volume=1.12345678"),
        ),
        (
            format!(r#"{{{S},"symbol":"ADAEUR","side":"buy","volume":"50"}}"#),
            Order("pair=ADAEUR&type=buy&ordertype=market&volume=50"),
        ),
        (
            format!(r#"{{{S},"symbol":"BTCUSDT.P","side":"buy","volume":"0.01"}}"#),
            Refused("unknown_symbol", "symbol"),
        ),
        (
            format!(r#"{{{S},"symbol":"ETHUSDT","side":"buy","volume":"0.01"}}"#),
            Refused("unknown_symbol", "symbol"),
        ),
        (
            format!(r#"{{{S},"symbol":"NASDAQ:AAPL","side":"buy","volume":"1"}}"#),
            Refused("unknown_symbol", "symbol"),
        ),
        // Sizing modes (XBTUSD last trade 67000.0; ZUSD 100000, XXBT 2).
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","quote_volume":"100"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.00149253"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","quote_volume":"100","price":"50000.07"}}"#
            ),
            Order("pair=XBTUSD&type=buy&ordertype=limit&volume=0.002&price=50000"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","balance_percent":"10"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.14925373"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"sell","balance_percent":"50"}}"#),
            Order("pair=XBTUSD&type=sell&ordertype=market&volume=1"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.00001"}}"#),
            Refused("below_minimum", "volume"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","quote_volume":"1"}}"#),
            Refused("below_minimum", "quote_volume"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","price":"1000","volume":"0.0001"}}"#
            ),
            Refused("below_minimum", "volume"),
        ),
        // Every order type, prices rounded the safe way.
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.01","price":"60000.09"}}"#
            ),
            Order("pair=XBTUSD&type=buy&ordertype=limit&volume=0.01&price=60000"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"sell","order_type":"limit","volume":"0.01","price":"70000.01"}}"#
            ),
            Order("pair=XBTUSD&type=sell&ordertype=limit&volume=0.01&price=70000.1"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"sell","order_type":"stop-loss","volume":"0.01","price":"60000.05"}}"#
            ),
            Order("pair=XBTUSD&type=sell&ordertype=stop-loss&volume=0.01&price=60000"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"sell","order_type":"take-profit","volume":"0.01","price":"80000.01","trigger":"index"}}"#
            ),
            Order(
                "pair=XBTUSD&type=sell&ordertype=take-profit&volume=0.01&price=80000.1&trigger=index",
            ),
        ),
        (
            format!(
                r#"{{{S},"symbol":"ETHUSD","side":"sell","order_type":"stop-loss-limit","volume":"1","price":"3000.005","price2":"2990.001"}}"#
            ),
            Order(
                "pair=ETHUSD&type=sell&ordertype=stop-loss-limit&volume=1&price=3000&price2=2990.01",
            ),
        ),
        (
            format!(
                r#"{{{S},"symbol":"ETHUSD","side":"buy","order_type":"take-profit-limit","volume":"1","price":"3000.005","price2":"3001.009"}}"#
            ),
            Order(
                "pair=ETHUSD&type=buy&ordertype=take-profit-limit&volume=1&price=3000&price2=3001",
            ),
        ),
        (
            format!(
                r#"{{{S},"symbol":"ETHUSD","side":"sell","order_type":"trailing-stop","volume":"1","price":"+1.5%"}}"#
            ),
            Order("pair=ETHUSD&type=sell&ordertype=trailing-stop&volume=1&price=+1.5%"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"ETHUSD","side":"sell","order_type":"trailing-stop-limit","volume":"1","price":"+20","price2":"-5"}}"#
            ),
            Order(
                "pair=ETHUSD&type=sell&ordertype=trailing-stop-limit&volume=1&price=+20&price2=-5",
            ),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.01","price":"60000","post_only":true}}"#
            ),
            Order("pair=XBTUSD&type=buy&ordertype=limit&volume=0.01&price=60000&oflags=post"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.01","price":"60000","time_in_force":"GTD","expire_time":"+3600"}}"#
            ),
            Order(
                "pair=XBTUSD&type=buy&ordertype=limit&volume=0.01&price=60000&timeinforce=GTD&expiretm=+3600",
            ),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01","time_in_force":"IOC"}}"#
            ),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01&timeinforce=IOC"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.01","price":"60000","stop_loss":"55000.05"}}"#
            ),
            Order(
                "pair=XBTUSD&type=buy&ordertype=limit&volume=0.01&price=60000&close[ordertype]=stop-loss&close[price]=55000",
            ),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"sell","order_type":"limit","volume":"0.01","price":"70000","take_profit":"60000.05"}}"#
            ),
            Order(
                "pair=XBTUSD&type=sell&ordertype=limit&volume=0.01&price=70000&close[ordertype]=take-profit&close[price]=60000",
            ),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01","leverage":"2"}}"#),
            Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01&leverage=2"),
        ),
        // Combinations Kraken would refuse, refused first.
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.01"}}"#
            ),
            Refused("invalid_alert", "price"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"ETHUSD","side":"sell","order_type":"trailing-stop","volume":"1","price":"20"}}"#
            ),
            Refused("invalid_alert", "price"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"ETHUSD","side":"sell","order_type":"stop-loss-limit","volume":"1","price":"3000"}}"#
            ),
            Refused("invalid_alert", "price2"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01","post_only":true}}"#),
            Refused("invalid_alert", "post_only"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01","reduce_only":true}}"#),
            Refused("invalid_alert", "reduce_only"),
        ),
        (
            format!(
                r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01","quote_volume":"100"}}"#
            ),
            Refused("invalid_alert", "quote_volume"),
        ),
        (
            format!(r#"{{{S},"symbol":"XBTUSD","side":"long","volume":"0.01"}}"#),
            Refused("invalid_alert", "side"),
        ),
        // Close.
        (
            format!(r#"{{{S},"action":"close","symbol":"BTCUSD"}}"#),
            Order("pair=XBTUSD&type=sell&ordertype=market&volume=2"),
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (body, expect) in &cases {
        check(body, expect, &[], |_| {});
    }
}

#[test]
fn risk_settings() {
    let body = format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.1"}}"#);
    check(
        &body,
        &Refused("limit_exceeded", ""),
        &[("max_order_value", "5000")],
        |_| {},
    );
    check(
        &body,
        &Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.1"),
        &[("max_order_value", "7000")],
        |_| {},
    );
    check(
        &body,
        &Refused("symbol_not_allowed", "symbol"),
        &[("allowed_symbols", "ETHUSD,SOLUSD")],
        |_| {},
    );
    check(
        &body,
        &Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.1"),
        &[("allowed_symbols", "ETHUSD, XBTUSD")],
        |_| {},
    );
    check(&body, &Refused("pair_unavailable", "symbol"), &[], |sim| {
        sim.set_pair_status("XXBTZUSD", "cancel_only")
    });
    let eth = format!(r#"{{{S},"symbol":"ETHUSDT","side":"buy","volume":"0.1"}}"#);
    check(
        &eth,
        &Order("pair=ETHUSD&type=buy&ordertype=market&volume=0.1"),
        &[("symbol_map", "ETHUSDT=ETHUSD")],
        |_| {},
    );
}

#[test]
fn close_with_nothing_to_sell_and_cancel_all() {
    let body = format!(r#"{{{S},"action":"close","symbol":"SOLUSD"}}"#);
    check(&body, &Refused("below_minimum", "symbol"), &[], |sim| {
        sim.set_balance("SOL", "0")
    });

    let sim = sim();
    let host = spin_host(&sim, &[]);
    for i in 0..3 {
        let limit = format!(
            r#"{{{S},"id":"rest-{i}","symbol":"XBTUSD","side":"buy","order_type":"limit","volume":"0.01","price":"30000"}}"#
        );
        assert_eq!(send(&host, post(render(&limit), &[])).status, 200);
    }
    let ex = send(
        &host,
        post(render(&format!(r#"{{{S},"action":"cancel_all"}}"#)), &[]),
    );
    assert_eq!(
        (ex.status, ex.json()),
        (200, json!({"status":"cancelled","count":3})),
        "{ex}"
    );
    assert_eq!(events(&ex), ["orders_cancelled"]);
    assert!(
        sim.orders()
            .iter()
            .all(|o| format!("{:?}", o.status).to_lowercase().contains("cancel"))
    );
}

/// `position_reserve` (contract 2.6): a holding of 1.0 XBT with 0.3 reserved. `close` sells
/// 0.7, a `balance_percent` sell takes its share of 0.7, and once only the reserve is left,
/// nothing more is sold; buys are not touched.
#[test]
fn a_reserved_holding_is_never_sold() {
    let reserve = [("position_reserve", "BTC=0.3")];
    let hold = |sim: &kraken_sim::Sim| sim.set_balance("XXBT", "1.0");
    let close = format!(r#"{{{S},"action":"close","symbol":"XBTUSD"}}"#);
    check(
        &close,
        &Order("pair=XBTUSD&type=sell&ordertype=market&volume=0.7"),
        &reserve,
        hold,
    );
    let half = format!(r#"{{{S},"symbol":"XBTUSD","side":"sell","balance_percent":"50"}}"#);
    check(
        &half,
        &Order("pair=XBTUSD&type=sell&ordertype=market&volume=0.35"),
        &reserve,
        hold,
    );
    let buy = format!(r#"{{{S},"symbol":"XBTUSD","side":"buy","volume":"0.01"}}"#);
    check(
        &buy,
        &Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.01"),
        &reserve,
        hold,
    );
    // On one account, in turn: the close fills at once and leaves the reserve; a second
    // close and a sell of all of it find nothing to sell.
    let sim = sim();
    hold(&sim);
    let host = spin_host(&sim, &reserve);
    let ex = send(&host, post(render(&close), &[]));
    assert_eq!(ex.json()["status"], "placed", "{ex}");
    assert_eq!(sim.balance("XXBT").to_string(), "0.3");
    let again = close.replace(r#""action""#, r#""id":"close-2","action""#);
    let ex = send(&host, post(render(&again), &[]));
    assert_eq!(ex.status, 422, "{ex}");
    assert_eq!(ex.json()["error"], "below_minimum", "{ex}");
    let all = format!(r#"{{{S},"symbol":"XBTUSD","side":"sell","balance_percent":"100"}}"#);
    let ex = send(&host, post(render(&all), &[]));
    assert_eq!(ex.status, 422, "{ex}");
    assert_eq!(sim.orders().len(), 1);
    assert_eq!(sim.balance("XXBT").to_string(), "0.3");
}

/// The README's TradingView templates, rendered as TradingView renders them.
#[test]
fn readme_templates_trade() {
    let readme = std::fs::read_to_string(bridge_host::workspace_root().join("README.md")).unwrap();
    let template = |marker: &str| -> String {
        let start = readme
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} not in README"));
        let json_start = readme[start..].find("```json").unwrap() + start + 7;
        let end = readme[json_start..].find("```").unwrap() + json_start;
        readme[json_start..end].trim().to_string()
    };
    let strategy = template("Strategy alert template")
        .replace("{{strategy.order.id}}", "Long")
        .replace("{{ticker}}", "BTCUSD")
        .replace("{{strategy.order.action}}", "buy")
        .replace("{{strategy.order.contracts}}", "0.015")
        .replace("{{strategy.order.comment}}", "Long entry");
    check(
        &strategy,
        &Order("pair=XBTUSD&type=buy&ordertype=market&volume=0.015"),
        &[],
        |_| {},
    );
    let indicator = template("Indicator alert template")
        .replace("{{ticker}}", "ETHUSD")
        .replace("{{close}}", "3456.789");
    check(
        &indicator,
        &Order("pair=ETHUSD&type=buy&ordertype=limit&volume=0.07232164&price=3456.78&oflags=post"),
        &[],
        |_| {},
    );
    // Both are valid JSON once rendered.
    for t in [strategy, indicator] {
        serde_json::from_str::<Value>(&render(&t)).unwrap();
    }
}
