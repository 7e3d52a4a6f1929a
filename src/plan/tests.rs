//! The planning rules, table-driven over the real pair precisions.

use super::*;
use crate::alert::{parse_object, Alert};
use crate::kraken::pairs::tests::pairs;
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn run(body: &str, symbol: &str, last: &str, max: Option<&str>) -> Result<OrderPlan, Reject> {
    let alert = Alert::from_object(&parse_object(body.as_bytes()).unwrap()).unwrap();
    let pairs = pairs();
    let pair = pairs.resolve(symbol, &[]).unwrap();
    let market = Market {
        pair,
        last: Some(d(last)),
        free_base: Some(d("2.5")),
        free_quote: Some(d("10000")),
        whole_base: None,
        whole_quote: None,
    };
    let limits = Limits {
        max_order_value: max.map(d),
        dry_run: false,
        reserve: Decimal::ZERO,
        position_negative: PositionNegative::Refuse,
        max_position_value: None,
    };
    plan(
        &alert,
        &market,
        limits,
        &DedupeKey::new(None, body.as_bytes()),
    )
}

fn params(p: &OrderPlan) -> String {
    p.params()
        .iter()
        .filter(|(k, _)| *k != "cl_ord_id")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn every_order_type_and_sizing_mode() {
    let cases = [
        (r#"{"side":"buy","volume":"0.123456789"}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=market&volume=0.12345678"),
        (r#"{"side":"buy","quote_volume":"100"}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=market&volume=0.00149253"),
        (r#"{"side":"buy","order_type":"limit","quote_volume":"100","price":"50000.07"}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=limit&volume=0.002&price=50000"),
        (r#"{"side":"sell","order_type":"limit","volume":"1","price":"50000.01"}"#, "XBTUSD",
         "pair=XBTUSD&type=sell&ordertype=limit&volume=1&price=50000.1"),
        (r#"{"side":"sell","balance_percent":"50"}"#, "XBTUSD",
         "pair=XBTUSD&type=sell&ordertype=market&volume=1.25"),
        (r#"{"side":"buy","balance_percent":"10"}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=market&volume=0.01492537"),
        (r#"{"side":"sell","order_type":"stop-loss","volume":"0.5","price":"60000.05"}"#, "XBTUSD",
         "pair=XBTUSD&type=sell&ordertype=stop-loss&volume=0.5&price=60000"),
        (r#"{"side":"buy","order_type":"stop-loss","volume":"0.5","price":"70000.01"}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=stop-loss&volume=0.5&price=70000.1"),
        (r#"{"side":"sell","order_type":"take-profit","volume":"0.5","price":"80000.01","trigger":"index"}"#, "XBTUSD",
         "pair=XBTUSD&type=sell&ordertype=take-profit&volume=0.5&price=80000.1&trigger=index"),
        (r#"{"side":"sell","order_type":"stop-loss-limit","volume":"1","price":"3000.005","price2":"2990.001"}"#, "ETHUSD",
         "pair=ETHUSD&type=sell&ordertype=stop-loss-limit&volume=1&price=3000&price2=2990.01"),
        (r#"{"side":"buy","order_type":"take-profit-limit","volume":"1","price":"3000.005","price2":"3001.009"}"#, "ETHUSD",
         "pair=ETHUSD&type=buy&ordertype=take-profit-limit&volume=1&price=3000&price2=3001"),
        (r#"{"side":"sell","order_type":"trailing-stop","volume":"1","price":"+1.5%"}"#, "ETHUSD",
         "pair=ETHUSD&type=sell&ordertype=trailing-stop&volume=1&price=+1.5%"),
        (r#"{"side":"sell","order_type":"trailing-stop-limit","volume":"1","price":"+20.001","price2":"-5"}"#, "ETHUSD",
         "pair=ETHUSD&type=sell&ordertype=trailing-stop-limit&volume=1&price=+20.01&price2=-5"),
        (r#"{"side":"buy","order_type":"limit","volume":"100","price":"-0.5%","post_only":true,"time_in_force":"GTD","expire_time":"+3600"}"#, "DOGEUSD",
         "pair=XDGUSD&type=buy&ordertype=limit&volume=100&price=-0.5%&timeinforce=GTD&expiretm=+3600&oflags=post"),
        (r#"{"side":"buy","volume":"0.01","leverage":"2","reduce_only":true}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=market&volume=0.01&leverage=2&reduce_only=true"),
        (r#"{"side":"buy","order_type":"limit","volume":"0.01","price":"60000","stop_loss":"55000.05"}"#, "XBTUSD",
         "pair=XBTUSD&type=buy&ordertype=limit&volume=0.01&price=60000&close[ordertype]=stop-loss&close[price]=55000"),
        (r#"{"side":"sell","order_type":"limit","volume":"0.01","price":"60000","take_profit":"50000.05"}"#, "XBTUSD",
         "pair=XBTUSD&type=sell&ordertype=limit&volume=0.01&price=60000&close[ordertype]=take-profit&close[price]=50000"),
        (r#"{"side":"buy","volume":"1","time_in_force":"IOC"}"#, "SOLUSD",
         "pair=SOLUSD&type=buy&ordertype=market&volume=1&timeinforce=IOC"),
        (r#"{"action":"close"}"#, "XBTUSD",
         "pair=XBTUSD&type=sell&ordertype=market&volume=2.5"),
    ];
    for (body, symbol, expected) in cases {
        let last = if symbol.starts_with("ETH") {
            "3500"
        } else if symbol == "DOGEUSD" {
            "0.15"
        } else if symbol == "SOLUSD" {
            "150"
        } else {
            "67000"
        };
        let p = run(body, symbol, last, None).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(params(&p), expected, "{body}");
    }
}

#[test]
fn refused_before_kraken_naming_the_field() {
    let cases = [
        (
            r#"{"side":"buy","order_type":"limit","volume":"1"}"#,
            "price",
        ),
        (
            r#"{"side":"buy","order_type":"stop-loss-limit","volume":"1","price":"1"}"#,
            "price2",
        ),
        (r#"{"side":"buy","volume":"1","price2":"1"}"#, "price2"),
        (
            r#"{"side":"sell","order_type":"trailing-stop","volume":"1","price":"50"}"#,
            "price",
        ),
        (
            r#"{"side":"sell","order_type":"trailing-stop","volume":"1","price":"-50"}"#,
            "price",
        ),
        (
            r#"{"side":"sell","order_type":"trailing-stop-limit","volume":"1","price":"+50","price2":"100"}"#,
            "price2",
        ),
        (
            r#"{"side":"buy","volume":"1","post_only":true}"#,
            "post_only",
        ),
        (
            r#"{"side":"buy","volume":"1","trigger":"index"}"#,
            "trigger",
        ),
        (
            r#"{"side":"buy","order_type":"limit","price":"1","volume":"1","time_in_force":"GTD"}"#,
            "expire_time",
        ),
        (
            r#"{"side":"buy","volume":"1","expire_time":"+60"}"#,
            "expire_time",
        ),
        (
            r#"{"side":"buy","volume":"1","reduce_only":true}"#,
            "reduce_only",
        ),
        (r#"{"volume":"1"}"#, "side"),
        (r#"{"side":"buy"}"#, "volume"),
    ];
    for (body, expected) in cases {
        match run(body, "XBTUSD", "67000", None) {
            Err(Reject::InvalidAlert(e)) => assert_eq!(e.field, expected, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn minimums_and_limits_with_the_pair_minimum_in_the_reason() {
    match run(
        r#"{"side":"buy","volume":"0.00004"}"#,
        "XBTUSD",
        "67000",
        None,
    ) {
        Err(Reject::BelowMinimum { field, reason }) => {
            assert_eq!(field, "volume");
            assert!(reason.contains("0.00005"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Rounding down can fall below the minimum.
    assert!(matches!(
        run(
            r#"{"side":"buy","volume":"0.000049999"}"#,
            "XBTUSD",
            "67000",
            None
        ),
        Err(Reject::BelowMinimum { .. })
    ));
    // costmin: 20 DOGE at 0.02 = 0.4 < 0.5.
    match run(r#"{"side":"buy","volume":"20"}"#, "XDGUSD", "0.02", None) {
        Err(Reject::BelowMinimum { reason, .. }) => assert!(reason.contains("0.5"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match run(
        r#"{"side":"buy","quote_volume":"0.3"}"#,
        "XBTUSD",
        "67000",
        None,
    ) {
        Err(Reject::BelowMinimum { field, .. }) => assert_eq!(field, "quote_volume"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run(
            r#"{"side":"buy","volume":"0.1"}"#,
            "XBTUSD",
            "67000",
            Some("5000")
        ),
        Err(Reject::LimitExceeded { .. })
    ));
    // Priced at the limit price, not the last trade.
    assert!(run(
        r#"{"side":"buy","order_type":"limit","price":"40000","volume":"0.1"}"#,
        "XBTUSD",
        "67000",
        Some("5000")
    )
    .is_ok());
}

#[test]
fn close_with_nothing_to_sell() {
    let alert = Alert::from_object(&parse_object(br#"{"action":"close"}"#).unwrap()).unwrap();
    let pairs = pairs();
    let market = Market {
        pair: pairs.resolve("XBTUSD", &[]).unwrap(),
        last: Some(d("67000")),
        free_base: Some(d("0.000000001")),
        free_quote: None,
        whole_base: None,
        whole_quote: None,
    };
    let limits = Limits {
        max_order_value: None,
        dry_run: false,
        reserve: Decimal::ZERO,
        position_negative: PositionNegative::Refuse,
        max_position_value: None,
    };
    match plan(&alert, &market, limits, &DedupeKey::new(None, b"")) {
        Err(Reject::BelowMinimum { reason, .. }) => {
            assert!(reason.contains("nothing to close"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn needs() {
    let alert = |b: &str| Alert::from_object(&parse_object(b.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        super::needs(&alert(r#"{"volume":"1"}"#)),
        Needs {
            ticker: true,
            balance: false
        }
    );
    assert_eq!(
        super::needs(&alert(r#"{"order_type":"limit","price":"1","volume":"1"}"#)),
        Needs {
            ticker: false,
            balance: false
        }
    );
    assert_eq!(
        super::needs(&alert(
            r#"{"order_type":"limit","price":"+1","balance_percent":"5"}"#
        )),
        Needs {
            ticker: true,
            balance: true
        }
    );
    assert_eq!(
        super::needs(&alert(r#"{"action":"close"}"#)),
        Needs {
            ticker: true,
            balance: true
        }
    );
}

/// `position_reserve`: `close` and `balance_percent` sells size from the free balance less
/// the reserve, and never sell into it; buys are not touched.
#[test]
fn a_reserve_is_never_sold() {
    let pairs = pairs();
    let market = |free_base: &str| Market {
        pair: pairs.resolve("XBTUSD", &[]).unwrap(),
        last: Some(d("67000")),
        free_base: Some(d(free_base)),
        free_quote: Some(d("10000")),
        whole_base: None,
        whole_quote: None,
    };
    let with = |reserve: &str| Limits {
        max_order_value: None,
        dry_run: false,
        reserve: d(reserve),
        position_negative: PositionNegative::Refuse,
        max_position_value: None,
    };
    let go = |body: &str, free: &str, reserve: &str| {
        let alert = Alert::from_object(&parse_object(body.as_bytes()).unwrap()).unwrap();
        plan(
            &alert,
            &market(free),
            with(reserve),
            &DedupeKey::new(None, b""),
        )
    };
    let volume =
        |r: Result<OrderPlan, Reject>| r.map(|p| p.volume).unwrap_or_else(|e| format!("{e:?}"));
    // A holding of 1.0 with 0.3 reserved: close sells 0.7, half of it 0.35.
    assert_eq!(volume(go(r#"{"action":"close"}"#, "1.0", "0.3")), "0.7");
    assert_eq!(
        volume(go(
            r#"{"side":"sell","balance_percent":"50"}"#,
            "1.0",
            "0.3"
        )),
        "0.35"
    );
    assert_eq!(
        volume(go(
            r#"{"side":"sell","balance_percent":"100"}"#,
            "1.0",
            "0.3"
        )),
        "0.7"
    );
    // No reserve: the whole free balance, as before.
    assert_eq!(volume(go(r#"{"action":"close"}"#, "1.0", "0")), "1");
    // A buy by balance_percent sizes from the quote balance: the reserve plays no part.
    assert_eq!(
        volume(go(r#"{"side":"buy","balance_percent":"10"}"#, "1.0", "0.3")),
        volume(go(r#"{"side":"buy","balance_percent":"10"}"#, "1.0", "0"))
    );
    // Everything reserved, or more than is held: nothing to close, nothing to sell.
    for (free, reserve) in [("0.3", "0.3"), ("0.2", "5")] {
        match go(r#"{"action":"close"}"#, free, reserve) {
            Err(Reject::BelowMinimum { reason, .. }) => {
                assert!(reason.contains("beyond position_reserve"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            go(r#"{"side":"sell","balance_percent":"100"}"#, free, reserve),
            Err(Reject::BelowMinimum { .. })
        ));
    }
}

/// A position alert against a holding: `whole` base (free and held), `quote` balance.
struct Book {
    last: &'static str,
    whole: &'static str,
    quote: &'static str,
    reserve: &'static str,
    negative: PositionNegative,
    max: Option<&'static str>,
}

const BOOK: Book = Book {
    last: "50000",
    whole: "0",
    quote: "100000",
    reserve: "0",
    negative: PositionNegative::Refuse,
    max: None,
};

fn position_at(book: &Book, body: &str) -> Result<PositionPlan, Reject> {
    let alert = Alert::from_object(&parse_object(body.as_bytes()).unwrap()).unwrap();
    precheck(&alert)?;
    let pairs = pairs();
    let market = Market {
        pair: pairs.resolve("XBTUSD", &[]).unwrap(),
        last: Some(d(book.last)),
        free_base: Some(d(book.whole)),
        free_quote: Some(d(book.quote)),
        whole_base: Some(d(book.whole)),
        whole_quote: Some(d(book.quote)),
    };
    let limits = Limits {
        max_order_value: None,
        dry_run: false,
        reserve: d(book.reserve),
        position_negative: book.negative,
        max_position_value: book.max.map(d),
    };
    position(
        &alert,
        &market,
        limits,
        &DedupeKey::new(None, body.as_bytes()),
    )
}

/// What a position plan trades, as `side volume` (or `in_position`), with the holding and
/// the target.
fn traded(r: Result<PositionPlan, Reject>) -> String {
    match r {
        Ok(p) => {
            let order = p.order.map_or("in_position".to_string(), |o| {
                format!("{} {} {}", o.side.as_str(), o.volume, o.order_type.as_str())
            });
            format!("{order} (at {}, to {})", p.position, p.target)
        }
        Err(e) => format!("{} {}", e.code(), e.detail()),
    }
}

#[test]
fn a_position_trades_the_difference_rounded_toward_zero() {
    let at = |whole: &'static str, body: &str| traded(position_at(&Book { whole, ..BOOK }, body));
    let alert = |t: &str| format!(r#"{{"action":"position","symbol":"XBTUSD","position":"{t}"}}"#);
    assert_eq!(at("0", &alert("0.5")), "buy 0.5 market (at 0, to 0.5)");
    assert_eq!(at("0.5", &alert("0.5")), "in_position (at 0.5, to 0.5)");
    assert_eq!(at("0.5", &alert("0.2")), "sell 0.3 market (at 0.5, to 0.2)");
    assert_eq!(at("0.2", &alert("0")), "sell 0.2 market (at 0.2, to 0)");
    // XBTUSD has 8 lot decimals: a difference past them rounds toward zero, never past
    // the target.
    assert_eq!(
        at("0.1", &alert("0.300000009")),
        "buy 0.2 market (at 0.1, to 0.3)"
    );
    assert_eq!(
        at("0.300000009", &alert("0.1")),
        "sell 0.2 market (at 0.300000009, to 0.1)"
    );
    // A difference below ordermin (0.00005) or costmin (0.5 USD): nothing to trade.
    assert_eq!(
        at("0.5", &alert("0.50004")),
        "in_position (at 0.5, to 0.50004)"
    );
    // As a JSON number, the way a strategy placeholder arrives unquoted.
    assert_eq!(
        at(
            "0",
            r#"{"action":"position","symbol":"XBTUSD","position":0.25}"#
        ),
        "buy 0.25 market (at 0, to 0.25)"
    );
}

#[test]
fn quote_and_percent_targets_are_priced_at_the_last_trade() {
    let go = |book: Book, body: &str| traded(position_at(&book, body));
    // 10,000 USD at 50,000: 0.2 XBT.
    assert_eq!(
        go(
            BOOK,
            r#"{"action":"position","symbol":"XBTUSD","position_quote":"10000"}"#
        ),
        "buy 0.2 market (at 0, to 0.2)"
    );
    // Holdings: 1 XBT (50,000) + 50,000 USD = 100,000; 25 % is 25,000 = 0.5 XBT.
    let book = Book {
        whole: "1",
        quote: "50000",
        ..BOOK
    };
    assert_eq!(
        go(
            book,
            r#"{"action":"position","symbol":"XBTUSD","position_percent":"25"}"#
        ),
        "sell 0.5 market (at 1, to 0.5)"
    );
    let book = Book {
        whole: "1",
        quote: "50000",
        ..BOOK
    };
    assert_eq!(
        go(
            book,
            r#"{"action":"position","symbol":"XBTUSD","position_percent":"100"}"#
        ),
        "buy 1 market (at 1, to 2)"
    );
}

#[test]
fn caps_and_negative_targets() {
    let alert = |t: &str| format!(r#"{{"action":"position","symbol":"XBTUSD","position":"{t}"}}"#);
    let capped = Book {
        max: Some("20000"),
        ..BOOK
    };
    // 0.5 at 50,000 is 25,000: above max_position_value.
    assert!(traded(position_at(&capped, &alert("0.5"))).starts_with("limit_exceeded"));
    assert_eq!(
        traded(position_at(&capped, &alert("0.4"))),
        "buy 0.4 market (at 0, to 0.4)"
    );
    // Negative: refused on the target's field by default, or flat.
    match position_at(&BOOK, &alert("-0.5")) {
        Err(Reject::InvalidAlert(f)) => assert_eq!(f.field, "position"),
        other => panic!("{other:?}"),
    }
    match position_at(
        &BOOK,
        r#"{"action":"position","symbol":"XBTUSD","position_quote":"-10"}"#,
    ) {
        Err(Reject::InvalidAlert(f)) => assert_eq!(f.field, "position_quote"),
        other => panic!("{other:?}"),
    }
    let flat = Book {
        whole: "0.7",
        negative: PositionNegative::Flat,
        ..BOOK
    };
    assert_eq!(
        traded(position_at(&flat, &alert("-0.5"))),
        "sell 0.7 market (at 0.7, to 0)"
    );
    // max_order_value applies to the order that trades the difference.
    let alert_body = alert("1");
    let a = Alert::from_object(&parse_object(alert_body.as_bytes()).unwrap()).unwrap();
    let pairs = pairs();
    let market = Market {
        pair: pairs.resolve("XBTUSD", &[]).unwrap(),
        last: Some(d("50000")),
        free_base: Some(d("0")),
        free_quote: Some(d("100000")),
        whole_base: Some(d("0.9")),
        whole_quote: Some(d("100000")),
    };
    let limits = Limits {
        max_order_value: Some(d("4000")),
        dry_run: false,
        reserve: Decimal::ZERO,
        position_negative: PositionNegative::Refuse,
        max_position_value: None,
    };
    // 0.1 at 50,000 is 5,000: above max_order_value 4,000.
    assert!(matches!(
        position(&a, &market, limits, &DedupeKey::new(None, b"x")),
        Err(Reject::LimitExceeded { .. })
    ));
}

/// The reserve is not part of the position: a target of 0 with 1.0 held and 0.3 reserved
/// sells 0.7, as `close` does; held balance (open orders) counts as held.
#[test]
fn the_reserve_is_not_a_position() {
    let book = Book {
        whole: "1.0",
        reserve: "0.3",
        ..BOOK
    };
    assert_eq!(
        traded(position_at(
            &book,
            r#"{"action":"position","symbol":"XBTUSD","position":"0"}"#
        )),
        "sell 0.7 market (at 0.7, to 0)"
    );
    let book = Book {
        whole: "1.0",
        reserve: "0.3",
        ..BOOK
    };
    assert_eq!(
        traded(position_at(
            &book,
            r#"{"action":"position","symbol":"XBTUSD","position":"0.7"}"#
        )),
        "in_position (at 0.7, to 0.7)"
    );
    let book = Book {
        whole: "0.2",
        reserve: "0.3",
        ..BOOK
    };
    assert_eq!(
        traded(position_at(
            &book,
            r#"{"action":"position","symbol":"XBTUSD","position":"0"}"#
        )),
        "in_position (at 0, to 0)"
    );
}

#[test]
fn a_limit_position_order_is_priced_the_safe_way() {
    let book = Book { whole: "0", ..BOOK };
    let p = position_at(
        &book,
        r#"{"action":"position","symbol":"XBTUSD","position":"0.1","order_type":"limit","price":"49999.99","post_only":true}"#,
    )
    .unwrap();
    let o = p.order.unwrap();
    assert_eq!(
        (o.side, o.order_type, o.price.as_deref()),
        (Side::Buy, OrderType::Limit, Some("49999.9"))
    );
    assert!(o.extra.contains(&("oflags", "post".to_string())));
}
