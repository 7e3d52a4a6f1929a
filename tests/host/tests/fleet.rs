//! Exactly once on a fleet (contract 2.4): several instances of the Spin flavour, each its
//! own host, sharing one state store, in memory and on a real Redis server, with market
//! orders that the simulator fills at once (so Kraken's open-order `cl_ord_id` check cannot
//! stop a second order: only the claim can).
//!
//! The emulated store interleaves the operations of concurrent requests with a random delay
//! per operation, and implements `wasi:keyvalue` atomics with the semantics of Spin's SQLite
//! (in memory) and Redis backends.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bridge_host::{Exchange, Flavour, KeyValueStore, RedisServer, SpinHost, wasm_path};
use common::*;
use kraken_sim::{RateTier, Sim};

const INSTANCES: usize = 4;
const NO_LIMIT: (&str, &str) = ("rate_limit_per_minute", "100000");

/// `n` instances of the Spin flavour sharing `store`, pointed at `sim`.
fn fleet(sim: &Sim, store: &KeyValueStore, n: usize, extra: &[(&str, &str)]) -> Vec<SpinHost> {
    (0..n).map(|_| spin_host_on(sim, store, extra)).collect()
}

/// The bursts measure the fleet alone: each holds the machine to itself (its figures are
/// not those of two tests sharing two cores); every other test shares it.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

/// The store a test runs on: in memory, or on a fresh Redis server (`None` when
/// `redis-server` is not installed: the test says so and skips).
enum Backend {
    Memory,
    Redis,
}

fn store(backend: Backend) -> Option<(KeyValueStore, Option<RedisServer>)> {
    let store = match backend {
        Backend::Memory => (KeyValueStore::new(), None),
        Backend::Redis => {
            if !RedisServer::available() {
                eprintln!("SKIPPED: redis-server is not installed (scripts/test installs it)");
                return None;
            }
            let server = RedisServer::start().expect("start redis-server");
            let store = KeyValueStore::redis(&server.url()).expect("connect to redis");
            (store, Some(server))
        }
    };
    // Concurrent requests interleave their store operations; an aborted Redis transaction
    // is reported as a successful swap, as Spin 4.0.2 reports it.
    store.0.set_op_delay(Duration::from_micros(500));
    store.0.set_cas_abort_reported_as_success(true);
    Some(store)
}

/// Delivers each `(instance, body)` at the same instant.
async fn at_once(hosts: &[SpinHost], deliveries: Vec<(usize, String)>) -> Vec<Exchange> {
    let jobs = deliveries
        .into_iter()
        .map(|(i, body)| {
            let host = hosts[i].clone();
            async move {
                host.handle(post(body, &[("content-type", "text/plain")]))
                    .await
            }
        })
        .collect();
    at_the_same_instant(jobs).await
}

/// Delivers each `(instance, body)` at the same instant, each resent as TradingView resends
/// a 5xx ([`deliver_like_tradingview`]): each delivery's exchanges, first to last.
async fn at_once_with_resends(
    hosts: &[SpinHost],
    deliveries: Vec<(usize, String)>,
) -> Vec<Vec<Exchange>> {
    let jobs = deliveries
        .into_iter()
        .map(|(i, body)| deliver_like_tradingview(hosts.to_vec(), i, body))
        .collect();
    at_the_same_instant(jobs).await
}

/// One round: `deliveries` copies of one market alert at once, each resent as TradingView
/// resends a 5xx: exactly one order, exactly one `placed`, every other answer a duplicate or
/// a `503` (nothing claimed yet: a slow store, or another delivery still in flight), and no
/// delivery left on a 5xx after its resends. Returns how many deliveries were resent.
async fn round(
    sim: &Sim,
    hosts: &[SpinHost],
    id: &str,
    deliveries: Vec<usize>,
    what: &str,
) -> usize {
    let body = market_alert(id, "0.0001");
    let chains = at_once_with_resends(
        hosts,
        deliveries.into_iter().map(|i| (i, body.clone())).collect(),
    )
    .await;
    check_round(sim, id, &chains, what)
}

/// The checks of [`round`] on the exchanges of each delivery of alert `id`.
fn check_round(sim: &Sim, id: &str, chains: &[Vec<Exchange>], what: &str) -> usize {
    let cl = cl_ord_id_for_id(id);
    let orders = orders_with(sim, &cl);
    assert_eq!(
        orders.len(),
        1,
        "{what}: {} orders for one alert; the answers:\n{}",
        orders.len(),
        chains
            .iter()
            .flatten()
            .map(|ex| ex.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut placed = 0;
    for chain in chains {
        for ex in chain {
            let answer = read_answer(ex, &cl);
            match &answer {
                Answer::Placed(t) => {
                    check_truth(sim, &cl, &answer, ex, what);
                    assert_eq!(*t, orders[0].txid, "{what}");
                    placed += 1;
                }
                Answer::Duplicate { outcome, txid } => {
                    check_truth(sim, &cl, &answer, ex, what);
                    assert!(
                        outcome == "in_flight"
                            || (outcome == "placed"
                                && txid.as_deref() == Some(orders[0].txid.as_str())),
                        "{what}: {answer:?}:\n{ex}"
                    )
                }
                // Another delivery may have placed the order since: the one order and the
                // one `placed` above hold every delivery to the truth.
                Answer::Retryable => {}
                other => panic!("{what}: {other:?}:\n{ex}"),
            }
        }
        let last = chain.last().unwrap();
        assert_ne!(
            last.status, 503,
            "{what}: still 503 after three resends:\n{last}"
        );
    }
    assert_eq!(placed, 1, "{what}: exactly one delivery placed it");
    chains.iter().filter(|c| c.len() > 1).count()
}

async fn same_alert_everywhere(backend: Backend, rounds: usize) {
    let Some((store, _server)) = store(backend) else {
        return;
    };
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let started = Instant::now();
    let mut resent = 0;
    for r in 0..rounds {
        // One delivery to each instance, at once.
        resent += round(
            &sim,
            &hosts,
            &format!("fleet-{r}"),
            (0..INSTANCES).collect(),
            &format!("fleet round {r}"),
        )
        .await;
        // Four deliveries to one instance, at once.
        resent += round(
            &sim,
            &hosts,
            &format!("one-{r}"),
            vec![r % INSTANCES; 4],
            &format!("one-instance round {r}"),
        )
        .await;
    }
    assert_eq!(sim.orders().len(), 2 * rounds);
    eprintln!(
        "{rounds} rounds x 2 ({} deliveries) in {:.1?}: {} orders, no duplicate; {resent} deliveries answered 503 and resent",
        rounds * 2 * INSTANCES,
        started.elapsed(),
        sim.orders().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_delivered_everywhere_at_once_trades_once_in_memory() {
    let _machine = shared().await;
    same_alert_everywhere(Backend::Memory, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_delivered_everywhere_at_once_trades_once_on_redis() {
    let _machine = shared().await;
    same_alert_everywhere(Backend::Redis, 100).await;
}

/// One `id` sent to two accounts at the same instant (contract 2.7: two alerts), each
/// delivered twice, the four deliveries on four instances sharing the store, as TradingView
/// delivers them (a 5xx is resent): every round, exactly one order on each account's Kraken
/// account, under its own `cl_ord_id`, and every chain of deliveries ends in `200`.
async fn one_id_to_two_accounts(backend: Backend, rounds: usize) {
    let Some((store, _server)) = store(backend) else {
        return;
    };
    let sim = accounts_sim();
    let setting = accounts_setting();
    let hosts = fleet(
        &sim,
        &store,
        INSTANCES,
        &[NO_LIMIT, ("kraken_accounts", &setting)],
    );
    let started = Instant::now();
    let mut resent = 0;
    for r in 0..rounds {
        let id = format!("two-accounts-{r}");
        let to = [
            ("/webhook", market_alert(&id, "0.001")),
            (
                "/webhook/swing",
                market_alert_with(SWING_SECRET, &id, "0.001"),
            ),
        ];
        let jobs: Vec<_> = (0..INSTANCES)
            .map(|i| {
                let (path, body) = to[i % 2].clone();
                let hosts = hosts.clone();
                async move { deliver_like_tradingview_to(hosts, i, path, body).await }
            })
            .collect();
        let chains = at_the_same_instant(jobs).await;
        for (cl, key, what) in [
            (cl_ord_id_for_id(&id), API_KEY, "the default account"),
            (cl_ord_id_in("swing", &id), SWING_API_KEY, "swing"),
        ] {
            let orders = orders_with(&sim, &cl);
            assert_eq!(
                orders.len(),
                1,
                "round {r}, {what}: {} orders",
                orders.len()
            );
            assert_eq!(
                orders[0].api_key, key,
                "round {r}: {what} traded on its own account"
            );
        }
        for chain in &chains {
            let last = chain.last().unwrap();
            assert_eq!(last.status, 200, "round {r}: {last}");
            assert_no_secrets(last);
            resent += chain.len() - 1;
        }
    }
    assert_eq!(sim.orders().len(), 2 * rounds);
    eprintln!(
        "{rounds} rounds of one id to two accounts ({} deliveries) in {:.1?}: one order on each account every round; {resent} resends",
        rounds * INSTANCES,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_to_two_accounts_at_once_trades_once_on_each_in_memory() {
    let _machine = shared().await;
    one_id_to_two_accounts(Backend::Memory, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_to_two_accounts_at_once_trades_once_on_each_on_redis() {
    let _machine = shared().await;
    one_id_to_two_accounts(Backend::Redis, 100).await;
}

/// Two different position alerts for XBTUSD at the same instant (contract 2.6), each
/// delivered twice, the four deliveries on four instances sharing the store, as TradingView
/// delivers them (a 5xx is resent 5 s later): every round the holding ends at one of the
/// two targets, never beyond (both trading the difference each read from one balance would
/// end at neither); each alert is placed at most once; every answer before the last of a
/// delivery is a `503` that placed nothing, and every delivery ends in `200`.
async fn two_targets_at_once(backend: Backend, rounds: usize) {
    let Some((store, _server)) = store(backend) else {
        return;
    };
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let started = Instant::now();
    let (mut resent, mut placed, mut waited) = (0, 0, 0);
    for r in 0..rounds {
        sim.set_balance("XXBT", "0.5");
        sim.set_balance("ZUSD", "100000");
        let targets = [format!("0.{}", 1 + r % 3), format!("0.{}", 7 + r % 2)];
        let ids = [format!("pos-{r}-a"), format!("pos-{r}-b")];
        let jobs: Vec<_> = (0..INSTANCES)
            .map(|i| {
                let body = position_alert(&ids[i % 2], &targets[i % 2]);
                deliver_like_tradingview(hosts.clone(), i, body)
            })
            .collect();
        let chains = at_the_same_instant(jobs).await;
        let holding = sim.balance("XXBT").normalize().to_string();
        let answers = || {
            chains
                .iter()
                .flatten()
                .map(|ex| ex.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            targets.contains(&holding),
            "round {r}: holding {holding}, targets {targets:?}; the answers:\n{}",
            answers()
        );
        for id in &ids {
            let orders = orders_with(&sim, &cl_ord_id_for_id(id));
            assert!(orders.len() <= 1, "round {r}: {id} placed twice");
            placed += orders.len();
        }
        for chain in &chains {
            let (last, before) = chain.split_last().unwrap();
            for ex in before {
                assert_eq!(ex.status, 503, "round {r}: {ex}");
                assert!(ex.json().get("txid").is_none(), "round {r}: {ex}");
            }
            assert_eq!(last.status, 200, "round {r}: {last}\n{}", answers());
            assert_no_secrets(last);
            resent += before.len();
            waited = waited.max(chain[0].elapsed.as_millis());
        }
    }
    eprintln!(
        "{rounds} rounds of two targets at once ({} deliveries) in {:.1?}: the holding at a target every round; {placed} orders; {resent} deliveries answered 503 and resent; slowest first answer {waited} ms",
        rounds * INSTANCES,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_position_targets_at_once_never_overshoot_in_memory() {
    let _machine = shared().await;
    two_targets_at_once(Backend::Memory, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_position_targets_at_once_never_overshoot_on_redis() {
    let _machine = shared().await;
    two_targets_at_once(Backend::Redis, 100).await;
}

/// Deliveries a few milliseconds either side of a claim slot's edge, each on its own
/// instance: each side's deliveries increment the two slots' counters, which must still
/// leave exactly one owner (in arrival order they could each win one and lose the other,
/// and nothing traded). Six edges, a minute of wall clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_straddling_a_claim_slot_edge_trade_once() {
    let _machine = shared().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let mut resent = 0;
    for r in 0..6 {
        let id = format!("edge-{r}");
        let body = market_alert(&id, "0.0001");
        let edge = next_claim_slot_edge_ms();
        let jobs = [-6i64, -2, 2, 6]
            .into_iter()
            .enumerate()
            .map(|(i, offset)| {
                let (hosts, body) = (hosts.clone(), body.clone());
                let at = edge.saturating_add_signed(offset);
                async move {
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
                    deliver_like_tradingview(hosts, i, body).await
                }
            })
            .collect();
        let chains = at_the_same_instant(jobs).await;
        resent += check_round(&sim, &id, &chains, &format!("edge {r}"));
    }
    assert_eq!(sim.orders().len(), 6);
    eprintln!("6 slot edges, 4 deliveries straddling each: 6 orders; {resent} resent after a 503");
}

/// A burst of `n` distinct alerts spread over the fleet at once, resent as TradingView
/// resends a 5xx: every one placed once, at its first delivery or after `503`s that placed
/// nothing. Returns the slowest answer, the nonce refusals and the alerts that needed a
/// resend (a claim that missed its 1 s window on a loaded machine).
async fn burst(hosts: &[SpinHost], sim: &Sim, n: usize, tag: &str) -> (Duration, usize, usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let deliveries = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (i % hosts.len(), market_alert(id, "0.0001")))
        .collect();
    let before = nonce_refusals(sim);
    let chains = at_once_with_resends(hosts, deliveries).await;
    let mut slowest = Duration::ZERO;
    let mut resent = 0;
    for (id, chain) in ids.iter().zip(&chains) {
        let cl = cl_ord_id_for_id(id);
        let (last, refused) = chain.split_last().unwrap();
        for ex in refused {
            assert_eq!(read_answer(ex, &cl), Answer::Retryable, "{tag} {id}:\n{ex}");
        }
        resent += usize::from(!refused.is_empty());
        let answer = read_answer(last, &cl);
        assert_eq!(answer.kind(), "placed", "{tag} {id}:\n{last}");
        assert_eq!(orders_with(sim, &cl).len(), 1);
        slowest = slowest.max(chain[0].elapsed);
    }
    (slowest, nonce_refusals(sim) - before, resent)
}

fn nonce_refusals(sim: &Sim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.errors.iter().any(|e| e == "EAPI:Invalid nonce"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_distinct_alerts_over_the_fleet_all_trade_once() {
    let _machine = alone().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let (slowest, refusals, resent) = burst(&hosts, &sim, 16, "burst16").await;
    assert_eq!(sim.orders().len(), 16);
    // Framed as Kraken's clients frame a request: a Content-Length, never chunked.
    for r in private_requests(&sim) {
        assert!(!r.chunked, "{:?} was sent chunked", r.method);
        assert!(r.content_length.is_some_and(|n| n > 0), "{:?}", r.method);
    }
    eprintln!(
        "16 alerts over {INSTANCES} instances: slowest {slowest:.0?}, {refusals} nonce refusals retried, {resent} resent after a 503"
    );
    // And on one instance.
    let (slowest, refusals, resent) = burst(&hosts[..1], &sim, 16, "burst16-one").await;
    assert_eq!(sim.orders().len(), 32);
    eprintln!(
        "16 alerts on 1 instance: slowest {slowest:.0?}, {refusals} nonce refusals retried, {resent} resent after a 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_distinct_alerts_over_a_fleet_on_redis_all_trade() {
    let _machine = alone().await;
    let Some((store, _server)) = store(Backend::Redis) else {
        return;
    };
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let (slowest, refusals, resent) = burst(&hosts, &sim, 16, "redis16").await;
    assert_eq!(sim.orders().len(), 16);
    eprintln!(
        "16 alerts over {INSTANCES} instances on Redis: slowest {slowest:.0?}, {refusals} nonce refusals retried, {resent} resent after a 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bar_close_of_ten_alerts_on_a_starter_key_all_trade() {
    let _machine = alone().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    sim.set_rate_tier(Some(RateTier::Starter));
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let (slowest, _, resent) = burst(&hosts, &sim, 10, "bar-close").await;
    assert_eq!(sim.orders().len(), 10);
    assert_eq!(sim.rate_limited_count(), 0);
    eprintln!(
        "bar close of 10 on a starter key: slowest {slowest:.0?}, {resent} resent after a 503, REST counter {:.1} of 15",
        sim.rest_counter(API_KEY)
    );
}

/// 16, 32 and 64 distinct alerts at once over the fleet, signed with one key, then with a
/// pool of 2 and 4 (`kraken_api_keys`): every alert placed once, the pool's AddOrders spread
/// over every key, and each burst's nonce refusals printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_over_a_key_pool_spread_over_every_key() {
    let _machine = alone().await;
    let mut figures = Vec::new();
    for keys in [1, 2, 4] {
        for n in [16, 32, 64] {
            let (store, _) = store(Backend::Memory).unwrap();
            let sim = pool_sim(3);
            let pool = pool_setting(keys - 1);
            let mut extra = vec![NO_LIMIT];
            if keys > 1 {
                extra.push(("kraken_api_keys", pool.as_str()));
            }
            let hosts = fleet(&sim, &store, INSTANCES, &extra);
            let (slowest, refusals, resent) =
                burst(&hosts, &sim, n, &format!("pool{keys}-{n}")).await;
            assert_eq!(sim.orders().len(), n);
            let mut per_key = BTreeMap::<String, usize>::new();
            for r in private_requests(&sim) {
                if r.method.as_deref() == Some("AddOrder") && r.errors.is_empty() {
                    *per_key
                        .entry(r.api_key.clone().unwrap_or_default())
                        .or_default() += 1;
                }
            }
            assert_eq!(per_key.len(), keys, "{per_key:?}");
            figures.push(format!(
                "{keys} key(s), {n} alerts: slowest {slowest:.0?}, {refusals} nonce refusals retried, {resent} resent, AddOrders per key {:?}",
                per_key.values().collect::<Vec<_>>()
            ));
        }
    }
    eprintln!("bursts over {INSTANCES} instances:\n{}", figures.join("\n"));
}

/// A key of the pool that Kraken refuses (its permissions withdrawn): 32 alerts at once over
/// the fleet on 4 keys, every one placed once, on the other three; the refused key's alerts
/// were each refused once and sent again on the next key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_of_the_pool_loses_no_alert_and_doubles_none() {
    let _machine = alone().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = pool_sim(3);
    // The first key (kraken_api_key) may do nothing any more.
    sim.set_permissions([]);
    let pool = pool_setting(3);
    let hosts = fleet(
        &sim,
        &store,
        INSTANCES,
        &[NO_LIMIT, ("kraken_api_keys", pool.as_str())],
    );
    let (slowest, _, resent) = burst(&hosts, &sim, 32, "refused-key").await;
    assert_eq!(sim.orders().len(), 32);
    let adds: Vec<_> = private_requests(&sim)
        .into_iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .collect();
    let refused = adds
        .iter()
        .filter(|r| r.api_key.as_deref() == Some(API_KEY))
        // Nothing the refused key sends is placed: Kraken checks its nonce (simultaneous
        // requests on one key race for it) and then its permissions.
        .inspect(|r| {
            assert!(
                r.errors == ["EGeneral:Permission denied"] || r.errors == ["EAPI:Invalid nonce"],
                "{:?}",
                r.errors
            )
        })
        .filter(|r| r.errors == ["EGeneral:Permission denied"])
        .count();
    assert!(refused > 0, "no alert chose the refused key");
    let placed_by_pool = adds
        .iter()
        .filter(|r| r.api_key.as_deref() != Some(API_KEY) && r.errors.is_empty())
        .count();
    assert_eq!(placed_by_pool, 32);
    // Every instance's /health names the refused key (1: kraken_api_key), from the store.
    for host in &hosts {
        let ex = host.handle(get("/health")).await;
        assert_eq!(ex.status, 200, "{ex}");
        let refused = &ex.json()["kraken_keys_refused"];
        assert_eq!(refused.as_array().map(Vec::len), Some(1), "{ex}");
        assert_eq!(refused[0]["key"], 1, "{ex}");
    }
    eprintln!(
        "a refused key in a pool of 4: 32 of 32 placed, {refused} AddOrders refused on it and sent again on the next key; slowest {slowest:.0?}, {resent} resent"
    );
}

/// A key revoked while a burst is under way: 64 alerts at once over the fleet on 4 keys, the
/// first key's permissions withdrawn once 16 of them are booked. No alert is lost (each is placed
/// once, at its first delivery or at a resend after a `503` that placed nothing), none is
/// doubled, and when the revoked key was refused, `/health` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_mid_burst_loses_no_alert_and_doubles_none() {
    let _machine = alone().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = std::sync::Arc::new(pool_sim(3));
    let pool = pool_setting(3);
    let hosts = fleet(
        &sim,
        &store,
        INSTANCES,
        &[NO_LIMIT, ("kraken_api_keys", pool.as_str())],
    );
    let revoker = {
        let sim = sim.clone();
        tokio::spawn(async move {
            while sim.orders().len() < 16 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sim.set_permissions([]);
        })
    };
    let (slowest, refusals, resent) = burst(&hosts, &sim, 64, "revoked-mid-burst").await;
    revoker.await.unwrap();
    assert_eq!(sim.orders().len(), 64, "every alert placed, once");
    let adds: Vec<_> = private_requests(&sim)
        .into_iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .collect();
    let denied = adds
        .iter()
        .filter(|r| r.errors.iter().any(|e| e == "EGeneral:Permission denied"))
        .count();
    let on_first_key = adds
        .iter()
        .filter(|r| r.api_key.as_deref() == Some(API_KEY) && r.errors.is_empty())
        .count();
    if denied > 0 {
        let ex = hosts[0].handle(get("/health")).await;
        assert_eq!(ex.json()["kraken_keys_refused"][0]["key"], 1, "{ex}");
    }
    eprintln!(
        "a key revoked once 16 of a burst of 64 were booked over {INSTANCES} instances on 4 keys: 64 of 64 placed once; {on_first_key} placed on it before, {denied} AddOrders refused on it after and sent again on the next key; slowest {slowest:.0?}, {refusals} nonce refusals, {resent} resent"
    );
}

/// Scaling figures: 32 and 64 distinct alerts at once over the fleet (printed; every alert
/// trades once, at its first delivery or at a resend after a 503 that placed nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_32_and_64_alerts_over_the_fleet() {
    let _machine = alone().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    let mut placed = 0;
    for n in [32, 64] {
        let (slowest, refusals, resent) = burst(&hosts, &sim, n, &format!("burst{n}")).await;
        placed += n;
        assert_eq!(sim.orders().len(), placed);
        eprintln!(
            "{n} alerts over {INSTANCES} instances: slowest {slowest:.0?}, {refusals} nonce refusals retried, {resent} resent after a 503"
        );
    }
}

// ---- an owner that dies, a store that fails or stalls ----------------------------------------

/// Writes the alert's record as an owner that claimed it `ago` seconds ago and died before
/// recording anything.
fn orphan_record(store: &KeyValueStore, id: &str, ago: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = tv_kraken_bridge::idempotency::DedupeKey::new(Some(id), b"");
    let record = tv_kraken_bridge::idempotency::Record {
        state: tv_kraken_bridge::idempotency::RecordState::InFlight,
        first_seen: now - ago,
        cl_ord_id: key.cl_ord_id(),
        status: 0,
        body: serde_json::Value::Null,
        owner: "an-instance-that-died".into(),
        claimed_at: now - ago,
    };
    store.set(key.store_keys(now, 60)[0].clone(), record.encode());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_dies_after_its_claim_is_resolved_by_the_look_up() {
    let _machine = shared().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);

    // Died after its AddOrder reached Kraken: the resends find the order.
    let body = market_alert("died-after-send", "0.0001");
    let cl = cl_ord_id_for_id("died-after-send");
    let ex = hosts[0].handle(post(body.clone(), &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "placed");
    // Two seconds after the claim the owner could still be trading: in flight.
    orphan_record(&store, "died-after-send", 2);
    let ex = hosts[1].handle(post(body.clone(), &[])).await;
    assert_eq!(
        read_answer(&ex, &cl),
        Answer::Duplicate {
            outcome: "in_flight".into(),
            txid: None
        }
    );
    // Stale: two instances resend at once; one takes the record over, asks Kraken and
    // finds the order; nothing is sent twice.
    orphan_record(&store, "died-after-send", 11);
    let exchanges = at_once(&hosts, vec![(2, body.clone()), (3, body.clone())]).await;
    for ex in &exchanges {
        let answer = read_answer(ex, &cl);
        assert!(
            matches!(&answer, Answer::Duplicate { outcome, .. } if outcome == "placed" || outcome == "in_flight"),
            "{answer:?}:\n{ex}"
        );
    }
    assert_eq!(orders_with(&sim, &cl).len(), 1);
    let adds = sim
        .requests()
        .iter()
        .filter(|r| r.method.as_deref() == Some("AddOrder"))
        .count();
    assert_eq!(adds, 1, "no second AddOrder");
    let ex = hosts[0].handle(post(body, &[])).await;
    assert_eq!(read_answer(&ex, &cl).as_duplicate().kind(), "duplicate");

    // Died before sending: the resend finds nothing on Kraken and trades, once.
    let body = market_alert("died-before-send", "0.0001");
    let cl = cl_ord_id_for_id("died-before-send");
    orphan_record(&store, "died-before-send", 11);
    let ex = hosts[1].handle(post(body.clone(), &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "placed", "{ex}");
    assert_eq!(orders_with(&sim, &cl).len(), 1);
    let lookups: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method.as_deref() == Some("ClosedOrders"))
        .collect();
    assert!(lookups.len() >= 2, "each takeover asked Kraken first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_places_nothing_and_the_resend_trades_once_it_is_back() {
    let _machine = shared().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    store.set_failing(true);
    let body = market_alert("store-down", "0.0001");
    let cl = cl_ord_id_for_id("store-down");
    // No claim, no order: 503, and TradingView resends.
    for host in &hosts[..2] {
        let ex = host.handle(post(body.clone(), &[])).await;
        assert_eq!(read_answer(&ex, &cl), Answer::Retryable, "{ex}");
    }
    assert!(sim.orders().is_empty());
    store.set_failing(false);
    let ex = hosts[2].handle(post(body.clone(), &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "placed", "{ex}");
    let ex = hosts[3].handle(post(body, &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "duplicate", "{ex}");
    assert_eq!(orders_with(&sim, &cl).len(), 1);
}

/// The hard case of a failing store: the deliveries of one market alert arrive at the same
/// instant on four instances. None can claim it, so none trades (each answers 503); once
/// the store is back, four simultaneous resends place it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_and_simultaneous_deliveries_place_nothing_then_once() {
    let _machine = shared().await;
    const ROUNDS: usize = 10;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, INSTANCES, &[NO_LIMIT]);
    for r in 0..ROUNDS {
        let id = format!("store-down-race-{r}");
        let cl = cl_ord_id_for_id(&id);
        let body = market_alert(&id, "0.0001");
        store.set_failing(true);
        let deliveries = (0..INSTANCES).map(|i| (i, body.clone())).collect();
        for ex in at_once(&hosts, deliveries).await {
            assert_eq!(read_answer(&ex, &cl), Answer::Retryable, "round {r}: {ex}");
        }
        assert!(orders_with(&sim, &cl).is_empty(), "round {r}");
        store.set_failing(false);
        let deliveries = (0..INSTANCES).map(|i| (i, body.clone())).collect();
        let mut placed = 0;
        for ex in at_once(&hosts, deliveries).await {
            placed += usize::from(read_answer(&ex, &cl).kind() == "placed");
        }
        assert_eq!(placed, 1, "round {r}");
        assert_eq!(orders_with(&sim, &cl).len(), 1, "round {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_claims_nothing_and_the_resend_trades() {
    let _machine = shared().await;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let hosts = fleet(&sim, &store, 1, &[NO_LIMIT]);
    let body = market_alert("slow-store", "0.0001");
    let cl = cl_ord_id_for_id("slow-store");
    // Every store operation takes 300 ms: the claim cannot be written within 1 s.
    store.set_stall(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let ex = hosts[0].handle(post(body.clone(), &[])).await;
    let took = started.elapsed();
    assert_eq!(read_answer(&ex, &cl), Answer::Retryable, "{ex}");
    assert!(sim.orders().is_empty());
    store.set_stall(None);
    let ex = hosts[0].handle(post(body, &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "placed", "{ex}");
    eprintln!("a store answering in 300 ms: 503 after {took:.1?}, the resend traded");
}

// ---- memory under volume ---------------------------------------------------------------------

/// 2,000 distinct alerts, then 20 % of them resent in a shuffled order: no second order.
async fn volume(store: KeyValueStore, extra: &[(&str, &str)], what: &str) {
    const ALERTS: usize = 2_000;
    const AT_ONCE: usize = 8;
    let sim = sim();
    let mut vars = vec![NO_LIMIT];
    vars.extend_from_slice(extra);
    let hosts = fleet(&sim, &store, INSTANCES, &vars);
    let capped = extra.iter().any(|(k, _)| *k == "state_max_keys");
    let started = Instant::now();
    let ids: Vec<String> = (0..ALERTS).map(|i| format!("vol-{i:04}")).collect();
    // `AT_ONCE` alerts at a time over the fleet: every one placed, or refused with a `503`
    // (a store whose key cap is full refuses the claim, and a claim that misses its window
    // on a loaded machine is refused too: nothing placed). The refused ones.
    let pass = |ids: Vec<String>| {
        let hosts = &hosts;
        async move {
            let mut refused = Vec::new();
            for (n, chunk) in ids.chunks(AT_ONCE).enumerate() {
                let deliveries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, id)| ((n + i) % INSTANCES, market_alert(id, "0.0001")))
                    .collect();
                for (id, ex) in chunk.iter().zip(at_once(hosts, deliveries).await) {
                    match read_answer(&ex, &cl_ord_id_for_id(id)) {
                        Answer::Retryable => refused.push(id.clone()),
                        answer => assert_eq!(answer.kind(), "placed", "{what} {id}:\n{ex}"),
                    }
                }
            }
            refused
        }
    };
    let mut refused = pass(ids.clone()).await;
    let refused_first = refused.len();
    // TradingView resends a 503 after 5 s, up to three times.
    for _ in 0..3 {
        if refused.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        refused = pass(refused).await;
    }
    // Refused by each of its four deliveries: every answer a 503, nothing placed. Only a
    // store whose key cap is full refuses alerts; the test reports how many.
    for id in &refused {
        assert!(
            orders_with(&sim, &cl_ord_id_for_id(id)).is_empty(),
            "{what} {id}: placed after a 503"
        );
    }
    assert!(
        capped || refused.is_empty(),
        "{what}: {} alerts refused",
        refused.len()
    );
    let lost: std::collections::BTreeSet<String> = refused.into_iter().collect();
    let first_pass = started.elapsed();
    // A fixed shuffle of a fifth of them.
    let mut resent: Vec<usize> = (0..ALERTS).filter(|i| (i * 7919) % 5 == 0).collect();
    let mut x: u64 = 0x5eed;
    for i in (1..resent.len()).rev() {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        resent.swap(i, (x >> 33) as usize % (i + 1));
    }
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for (n, chunk) in resent.chunks(AT_ONCE).enumerate() {
        let deliveries = chunk
            .iter()
            .enumerate()
            .map(|(i, &a)| ((n + i + 1) % INSTANCES, market_alert(&ids[a], "0.0001")))
            .collect();
        for (&a, ex) in chunk.iter().zip(at_once(&hosts, deliveries).await) {
            let answer = read_answer(&ex, &cl_ord_id_for_id(&ids[a]));
            // An alert refused until now may trade on this later resend, or be refused
            // again; under a full key cap, a resend whose record was forgotten early may be
            // refused too (nothing placed: checked below).
            let expected: &[&str] = if lost.contains(&ids[a]) {
                &["placed", "503"]
            } else if capped {
                &["duplicate", "503"]
            } else {
                &["duplicate"]
            };
            assert!(
                expected.contains(&answer.kind()),
                "{what} resend of {}:\n{ex}",
                ids[a]
            );
            *answers
                .entry(format!("{answer:?}").split(' ').take(3).collect())
                .or_default() += 1;
        }
    }
    let orders = sim.orders();
    let mut seen = std::collections::BTreeSet::new();
    for order in &orders {
        let cl = order.cl_ord_id.clone().unwrap_or_default();
        assert!(seen.insert(cl.clone()), "{what}: a second order for {cl}");
    }
    assert!(
        orders.len() + lost.len() >= ALERTS,
        "{what}: an alert lost without a 503"
    );
    let lookups = sim
        .requests()
        .iter()
        .filter(|r| r.method.as_deref() == Some("ClosedOrders"))
        .count();
    eprintln!(
        "{what}: {ALERTS} alerts in {first_pass:.1?}: {refused_first} answered 503 at first, {} still after three resends 5 s apart (nothing placed for them); {} resends, 0 second orders, {lookups} look-ups, {} keys left in the store",
        lost.len(),
        resent.len(),
        store.keys().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_alerts_and_resends_in_memory() {
    let _machine = shared().await;
    let (store, _) = store(Backend::Memory).unwrap();
    volume(store, &[], "in memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_alerts_and_resends_on_redis() {
    let _machine = shared().await;
    let Some((store, _server)) = store(Backend::Redis) else {
        return;
    };
    volume(store, &[], "on Redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_alerts_and_resends_under_a_1024_key_cap() {
    let _machine = shared().await;
    let (store, _) = store(Backend::Memory).unwrap();
    store.set_key_limit(Some(1_024));
    volume(store.clone(), &[("state_max_keys", "900")], "1,024-key cap").await;
    assert!(store.keys().len() <= 1_024);
}

// ---- the build for hosts without atomics ---------------------------------------------------

/// The `host-spin-noatomics` build (Spin before 3.1, Akamai Functions) runs on a store
/// without atomics: it trades, replays resends from the store, and looks every order up
/// on Kraken first. Its limit, measured here: simultaneous deliveries of one market alert
/// can still both trade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_without_atomics_runs_and_its_limit_is_measured() {
    let _machine = shared().await;
    const ROUNDS: usize = 20;
    let (store, _) = store(Backend::Memory).unwrap();
    let sim = sim();
    let host = SpinHost::builder(wasm_path(Flavour::SpinNoAtomics))
        .variables(settings(&sim))
        .variable(NO_LIMIT.0, NO_LIMIT.1)
        .allow_outbound(sim.url())
        .kv_store(store.clone())
        .build();
    // One delivery, then its resend: placed once (after a look-up), then replayed.
    let body = market_alert("noatomics-0", "0.0001");
    let cl = cl_ord_id_for_id("noatomics-0");
    let ex = host.handle(post(body.clone(), &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "placed", "{ex}");
    let ex = host.handle(post(body, &[])).await;
    assert_eq!(read_answer(&ex, &cl).kind(), "duplicate", "{ex}");
    let methods: Vec<_> = private_requests(&sim)
        .into_iter()
        .filter_map(|r| r.method)
        .collect();
    assert_eq!(methods, ["ClosedOrders", "AddOrder"]);
    assert_eq!(store.ops().increments, 0, "no atomic operation was used");

    // Four simultaneous deliveries per round.
    let hosts = vec![host; 1];
    let mut extra = 0;
    for r in 0..ROUNDS {
        let id = format!("noatomics-race-{r}");
        let cl = cl_ord_id_for_id(&id);
        let body = market_alert(&id, "0.0001");
        for ex in at_once(&hosts, vec![(0, body.clone()); 4]).await {
            // Inside the contract's outcomes and the budget, whatever it traded.
            read_answer(&ex, &cl);
        }
        extra += orders_with(&sim, &cl).len().saturating_sub(1);
    }
    eprintln!(
        "without atomics: {extra} extra orders in {ROUNDS} rounds of 4 simultaneous deliveries of one market alert"
    );
}
