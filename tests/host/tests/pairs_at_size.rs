//! Kraken's pair list at its real size (808 pairs, every field Kraken sends): an alert asks
//! `AssetPairs` for its own pair only, the Spin flavour caches that one pair, and neither
//! flavour reads the whole list for a symbol Kraken knows.

mod common;

use bridge_host::ServeHost;
use common::*;
use kraken_sim::{Account, KRAKEN_PAIR_COUNT, Sim, SimOptions};

fn big_sim() -> Sim {
    let mut account = Account::test_default();
    account.api_key = API_KEY.to_string();
    Sim::start(SimOptions {
        accounts: vec![account],
        realistic_pairs: Some(KRAKEN_PAIR_COUNT),
        ..SimOptions::default()
    })
}

/// The `pair` parameter of every AssetPairs call (`None`: the whole list).
fn asset_pairs_asked(sim: &Sim) -> Vec<Option<String>> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method.as_deref() == Some("AssetPairs"))
        .map(|r| r.params.get("pair").cloned())
        .collect()
}

#[test]
fn the_spin_flavour_asks_for_one_pair_and_caches_it() {
    let sim = big_sim();
    assert_eq!(sim.pair_count(), KRAKEN_PAIR_COUNT);
    let host = spin_host(&sim, &[("rate_limit_per_minute", "1000")]);
    // TradingView's spelling: Kraken knows XBTUSD, not BTCUSD.
    let body = market_alert("size-1", "0.0001").replace("XBTUSD", "KRAKEN:BTCUSD");
    let ex = send(&host, post(body, &[]));
    assert_eq!(
        read_answer(&ex, &cl_ord_id_for_id("size-1")).kind(),
        "placed"
    );
    assert_eq!(
        asset_pairs_asked(&sim),
        [Some("BTCUSD".to_string()), Some("XBTUSD".to_string())]
    );
    let cached = host
        .kv()
        .get("kraken:pair:BTCUSD")
        .expect("the pair is cached");
    assert!(cached.len() < 512, "{} bytes cached", cached.len());
    // The next alerts for it ask Kraken for nothing but their orders.
    for i in 2..5 {
        let id = format!("size-{i}");
        let body = market_alert(&id, "0.0001").replace("XBTUSD", "KRAKEN:BTCUSD");
        let ex = send(&host, post(body, &[]));
        assert_eq!(read_answer(&ex, &cl_ord_id_for_id(&id)).kind(), "placed");
    }
    assert_eq!(asset_pairs_asked(&sim).len(), 2);
    // A pair far down the list is found the same way.
    let last = sim.pairs().last().cloned().expect("pairs");
    let body = market_alert("size-last", "1").replace("XBTUSD", &last.altname);
    let ex = send(&host, post(body, &[]));
    let answer = ex.json();
    assert!(
        ex.status == 200
            || answer["error"] == "pair_unavailable"
            || answer["error"] == "below_minimum",
        "{ex}"
    );
    assert_eq!(
        asset_pairs_asked(&sim).last(),
        Some(&Some(last.altname.clone()))
    );
    // The whole list was never read.
    assert!(asset_pairs_asked(&sim).iter().all(Option::is_some));
}

#[test]
fn the_portable_flavour_asks_for_one_pair_per_alert() {
    let sim = big_sim();
    let srv: ServeHost = serve_host(&sim, &[]);
    for i in 0..3 {
        let id = format!("size-serve-{i}");
        let ex = srv.request_blocking(post(market_alert(&id, "0.0001"), &[]));
        assert_eq!(
            read_answer(&ex, &cl_ord_id_for_id(&id)).kind(),
            "placed",
            "{ex}"
        );
    }
    assert_eq!(asset_pairs_asked(&sim), vec![Some("XBTUSD".to_string()); 3]);
}
