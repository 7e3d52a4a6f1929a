//! Position alerts through the whole machine (contract 2.6): what each outcome answers and
//! writes, and the pair's turn in the store. The fixtures hold 2 XBT and 10,000 USD at a
//! last trade of 67,000.

use super::*;

const SELL_TO_HALF: &str = r#"{"secret":"tv-webhook-secret-0123456789abcdef","id":"pos-1","action":"position","symbol":"BTCUSD","position":"0.5"}"#;

fn position_alert(fields: &str) -> String {
    format!(r#"{{"secret":"{WEBHOOK_SECRET}","action":"position","symbol":"XBTUSD",{fields}}}"#)
}

/// The turn counters of the default account's XBTUSD for a request that arrived at NOW.
fn turn_keys() -> Vec<String> {
    let ms = NOW.millis();
    crate::turn::keys(ms, ms + crate::outcome::BUDGET_MS, None, "XXBTZUSD")
}

fn counter(world: &mut World, key: &str) -> i64 {
    match world.store_op(StoreOp::Increment(key.to_string(), 0)) {
        StoreReply::Count(n) => n,
        other => panic!("{other:?}"),
    }
}

fn param(call: &Call, name: &str) -> Option<String> {
    let body = String::from_utf8_lossy(&call.body).into_owned();
    body.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

const SOLD: &str = r#"{"error":[],"result":{"descr":{"order":"sell 1.50000000 XBTUSD @ market"},"txid":["OPOS01-AAAAA-BBBBBB"]}}"#;

#[test]
fn a_position_alert_trades_the_difference_inside_its_pairs_turn() {
    let mut w = World::with_replies([reply(SOLD)]);
    let d = w.run(handle(config(&[]), host(), post(SELL_TO_HALF, &[])));
    assert_eq!(d.response.status, 200, "{}", body(&d));
    let b = body(&d);
    assert_eq!(
        (&b["status"], &b["position"], &b["target"]),
        (&json!("placed"), &json!("2"), &json!("0.5"))
    );
    let add = &w.calls[0];
    assert_eq!(add.kraken_method, "AddOrder");
    assert_eq!(param(add, "type").as_deref(), Some("sell"));
    assert_eq!(param(add, "volume").as_deref(), Some("1.5"));
    assert_eq!(param(add, "ordertype").as_deref(), Some("market"));
    assert_eq!(events(&d), ["order_placed"]);
    let line: Value = serde_json::from_str(&d.log[0].text).unwrap();
    assert_eq!(
        (&line["position"], &line["target"]),
        (&json!("2"), &json!("0.5"))
    );

    // The turn was taken before the balance was read, and given back after the answer,
    // before the outcome record.
    let keys = turn_keys();
    let increments: Vec<&StoreOp> = w
        .ops
        .iter()
        .filter(|op| matches!(op, StoreOp::Increment(k, _) if k.starts_with("pt:")))
        .collect();
    let expected: Vec<StoreOp> = keys
        .iter()
        .map(|k| StoreOp::Increment(k.clone(), 1))
        .chain(keys.iter().map(|k| StoreOp::Increment(k.clone(), -1)))
        .collect();
    assert_eq!(increments, expected.iter().collect::<Vec<_>>());
    for k in &keys {
        assert_eq!(counter(&mut w, k), 0, "{k} given back");
    }
    let balance_read = w
        .public
        .iter()
        .position(|u| u.ends_with("/BalanceEx"))
        .expect("the balance was read");
    assert_eq!(
        balance_read,
        w.public.len() - 1,
        "the balance is the last read"
    );

    // A resend: the first outcome, nothing placed, no turn taken.
    let before = w.ops.len();
    let d = w.run(handle(config(&[]), host(), post(SELL_TO_HALF, &[])));
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["outcome"], "placed");
    assert_eq!(body(&d)["position"], "2");
    assert_eq!(w.calls.len(), 1);
    assert!(!w.ops[before..]
        .iter()
        .any(|op| matches!(op, StoreOp::Increment(k, _) if k.starts_with("pt:"))));
}

#[test]
fn in_position_places_nothing_and_is_recorded() {
    let alert = position_alert(r#""id":"pos-2","position":"2.00004""#);
    let mut w = World::with_replies([]);
    let d = w.run(handle(config(&[]), host(), post(&alert, &[])));
    assert_eq!(
        (d.response.status, body(&d)),
        (
            200,
            json!({"status":"in_position","position":"2","target":"2.00004"})
        )
    );
    assert_eq!(events(&d), ["in_position"]);
    assert!(w.calls.is_empty());
    assert_eq!(d.notices.len(), 0, "no notify_url configured");
    let d = w.run(handle(config(&[]), host(), post(&alert, &[])));
    assert_eq!(body(&d)["status"], "duplicate");
    assert_eq!(body(&d)["outcome"], "in_position");
    for k in &turn_keys() {
        assert_eq!(counter(&mut w, k), 0);
    }
}

#[test]
fn a_held_turn_is_waited_for_and_then_taken() {
    let mut w = World::with_replies([reply(SOLD)]);
    let keys = turn_keys();
    // Another position alert for XBTUSD holds the last slot's counter.
    w.store_op(StoreOp::Increment(keys[keys.len() - 1].clone(), 1));
    let mut step = handle(config(&[]), host(), post(SELL_TO_HALF, &[]));
    let mut waited = 0;
    let d = loop {
        step = match step {
            Step::Done(d) => break documented(d),
            Step::Answer(_, p) => p.resume(Input::Answered, NOW),
            Step::Call(call, p) => {
                let r = match w.market_data(&call) {
                    Some(r) => r,
                    None => {
                        w.calls.push(call);
                        w.replies.pop_front().expect("an answer")
                    }
                };
                let now = w.now();
                p.resume(Input::Kraken(r), now)
            }
            Step::Store(op, p) => {
                let r = w.store_op(op);
                let now = w.now();
                p.resume(Input::Store(r), now)
            }
            Step::Wait(ms, p) => {
                waited += 1;
                assert!((40..=110).contains(&ms), "{ms}");
                if waited == 2 {
                    // The other alert answers and gives its turn back.
                    w.store_op(StoreOp::Increment(keys[keys.len() - 1].clone(), -1));
                }
                w.clock += ms * 1_000;
                let now = w.now();
                p.resume(Input::Waited, now)
            }
        }
    };
    assert_eq!(waited, 2);
    assert_eq!(body(&d)["status"], "placed", "{}", body(&d));
    for k in &keys {
        assert_eq!(counter(&mut w, k), 0, "{k}");
    }
}

#[test]
fn a_turn_that_never_comes_answers_503_and_places_nothing() {
    let mut w = World::with_replies([]);
    let keys = turn_keys();
    w.store_op(StoreOp::Increment(keys[0].clone(), 1));
    let d = w.run(handle(config(&[]), host(), post(SELL_TO_HALF, &[])));
    assert_eq!(d.response.status, 503, "{}", body(&d));
    assert_eq!(d.response.header("retry-after"), Some("5"));
    assert!(w.calls.is_empty(), "nothing placed");
    assert!(!w.public.iter().any(|u| u.ends_with("/BalanceEx")));
    assert!(
        w.waits.len() > 3,
        "it waited while the budget allowed: {:?}",
        w.waits
    );
    // Every counter it took went back; the other alert's is untouched.
    assert_eq!(counter(&mut w, &keys[0]), 1);
    for k in &keys[1..] {
        assert_eq!(counter(&mut w, k), 0);
    }
    // The claim was dropped: the resend trades once the turn is free.
    w.store_op(StoreOp::Increment(keys[0].clone(), -1));
    w.replies.push_back(reply(SOLD));
    let d = w.run(handle(config(&[]), host(), post(SELL_TO_HALF, &[])));
    assert_eq!(body(&d)["status"], "placed", "{}", body(&d));
}

#[test]
fn a_store_that_fails_at_the_turn_places_nothing() {
    for failure in [
        StoreReply::Failed("store down".into()),
        StoreReply::NoAnswer("no answer within 300 ms".into()),
    ] {
        let mut w = World::with_replies([]);
        let mut step = handle(config(&[]), host(), post(SELL_TO_HALF, &[]));
        let d = loop {
            step = match step {
                Step::Done(d) => break documented(d),
                Step::Answer(_, p) => p.resume(Input::Answered, NOW),
                Step::Call(call, p) => {
                    let r = w.market_data(&call).expect("no order call");
                    p.resume(Input::Kraken(r), NOW)
                }
                Step::Store(op, p) => {
                    let turn = matches!(&op, StoreOp::Increment(k, 1) if k.starts_with("pt:"));
                    let r = if turn {
                        if let StoreReply::NoAnswer(_) = failure {
                            // The late increment is undone by the store component.
                            let limit = p.store_limit();
                            assert_eq!(
                                limit.on_late,
                                Some(StoreOp::Increment(turn_keys()[0].clone(), -1))
                            );
                        }
                        failure.clone()
                    } else {
                        w.store_op(op)
                    };
                    p.resume(Input::Store(r), NOW)
                }
                Step::Wait(_, p) => p.resume(Input::Waited, NOW),
            }
        };
        assert_eq!(d.response.status, 503, "{failure:?}");
        assert!(w.calls.is_empty());
        assert!(!w.public.iter().any(|u| u.ends_with("/BalanceEx")));
    }
}

#[test]
fn an_order_whose_fate_is_unknown_keeps_the_turn_until_its_deadline() {
    let mut w = World::with_replies([
        reply(r#"{"error":["EService:Unavailable"]}"#),
        reply(NONE_OPEN),
        reply(NONE_CLOSED),
    ]);
    let d = w.run(handle(config(&[]), host(), post(SELL_TO_HALF, &[])));
    assert_eq!(d.response.status, 202);
    assert_eq!(body(&d)["position"], "2");
    let taken: Vec<String> = w
        .ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Increment(k, 1) if k.starts_with("pt:") => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !w.ops
            .iter()
            .any(|op| matches!(op, StoreOp::Increment(k, -1) if k.starts_with("pt:"))),
        "nothing given back"
    );
    // Every slot up to the AddOrder deadline (5 s after it was sent) is held.
    let last_slot = |k: &String| -> u64 { k[3..].split(':').next().unwrap().parse().unwrap() };
    let deadline_ms = NOW.millis() + crate::outcome::ORDER_DEADLINE_MS;
    let reach = taken.iter().map(last_slot).max().unwrap();
    assert!(reach * crate::turn::SLOT_MS + crate::turn::SLOT_MS > deadline_ms);
    for k in &taken {
        assert_eq!(counter(&mut w, k), 1, "{k}");
    }
}

#[test]
fn without_atomic_counters_no_turn_is_taken() {
    // Without atomics a delivery looks the order up before sending it.
    let mut w = World::with_replies([reply(NONE_CLOSED), reply(SOLD)]);
    w.no_atomics = true;
    let d = w.run(handle(config(&[]), host(), post(SELL_TO_HALF, &[])));
    assert_eq!(body(&d)["status"], "placed", "{}", body(&d));
    assert_eq!(methods(&w), ["ClosedOrders", "AddOrder"]);
    assert!(!w
        .ops
        .iter()
        .any(|op| matches!(op, StoreOp::Increment(k, _) if k.starts_with("pt:"))));
}

#[test]
fn negative_targets_and_caps() {
    // refuse (the default): 422 on the field, nothing placed, the turn given back.
    let alert = position_alert(r#""id":"neg-1","position":"-0.5""#);
    let mut w = World::with_replies([]);
    let d = w.run(handle(config(&[]), host(), post(&alert, &[])));
    assert_eq!(d.response.status, 422);
    assert_eq!(body(&d)["error"], "invalid_alert");
    assert_eq!(body(&d)["field"], "position");
    assert!(w.calls.is_empty());
    for k in &turn_keys() {
        assert_eq!(counter(&mut w, k), 0);
    }
    // flat: sells the whole holding.
    let mut w = World::with_replies([reply(SOLD)]);
    let c = config(&[("position_negative", "flat")]);
    let d = w.run(handle(c, host(), post(&alert, &[])));
    assert_eq!(body(&d)["status"], "placed", "{}", body(&d));
    assert_eq!(body(&d)["target"], "0");
    assert_eq!(param(&w.calls[0], "volume").as_deref(), Some("2"));
    // max_position_value: 1 XBT at 67,000 is above 50,000.
    let alert = position_alert(r#""id":"cap-1","position":"1""#);
    let mut w = World::with_replies([]);
    let c = config(&[("max_position_value", "50000")]);
    let d = w.run(handle(c, host(), post(&alert, &[])));
    assert_eq!(
        (d.response.status, &body(&d)["error"]),
        (422, &json!("limit_exceeded"))
    );
    assert!(w.calls.is_empty());
    // Every 2.3 check: the kill switch, then allowed symbols, then dry run.
    let d = World::default().run(handle(
        config(&[("trading_enabled", "false")]),
        host(),
        post(&alert, &[]),
    ));
    assert_eq!(d.response.status, 423);
    let d = World::default().run(handle(
        config(&[("allowed_symbols", "ETHUSD")]),
        host(),
        post(&alert, &[]),
    ));
    assert_eq!(body(&d)["error"], "symbol_not_allowed");
    let mut w = World::with_replies([reply(
        r#"{"error":[],"result":{"descr":{"order":"sell 1.00000000 XBTUSD @ market"}}}"#,
    )]);
    let d = w.run(handle(
        config(&[("dry_run", "true")]),
        host(),
        post(&alert, &[]),
    ));
    assert_eq!(
        (
            &body(&d)["status"],
            &body(&d)["position"],
            &body(&d)["target"]
        ),
        (&json!("validated"), &json!("2"), &json!("1"))
    );
    assert_eq!(param(&w.calls[0], "validate").as_deref(), Some("true"));
}

#[test]
fn position_fields_are_checked_before_anything_else() {
    for (fields, field) in [
        (r#""position":"1","side":"buy""#, "side"),
        (r#""position":"1","volume":"1""#, "volume"),
        (r#""position":"1","leverage":"2""#, "leverage"),
        (r#""position":"1","stop_loss":"100""#, "stop_loss"),
        (r#""position":"1","position_quote":"5""#, "position_quote"),
        (r#""position_percent":"100.5""#, "position_percent"),
        (r#""position":"1e-3""#, "position"),
        (r#""position":"NaN""#, "position"),
        (r#""position":true"#, "position"),
        (
            r#""position":"1","order_type":"stop-loss","price":"5""#,
            "order_type",
        ),
        (r#""position":"1","order_type":"limit""#, "price"),
        (r#""symbol2":"x""#, "symbol2"),
        (r#""comment":"no target""#, "position"),
    ] {
        let mut w = World::default();
        let d = w.run(handle(
            config(&[]),
            host(),
            post(&position_alert(fields), &[]),
        ));
        assert_eq!(d.response.status, 422, "{fields}");
        assert_eq!(body(&d)["field"], field, "{fields}: {}", body(&d));
        assert!(w.calls.is_empty() && w.public.is_empty(), "{fields}");
    }
    // A target on another action is refused, naming it.
    let alert = format!(
        r#"{{"secret":"{WEBHOOK_SECRET}","symbol":"XBTUSD","side":"buy","volume":"1","position":"1"}}"#
    );
    let d = done(handle(config(&[]), host(), post(&alert, &[])));
    assert_eq!(
        (d.response.status, &body(&d)["field"]),
        (422, &json!("position"))
    );
}

#[test]
fn a_named_accounts_turn_is_its_own() {
    let swing_secret = "swing-webhook-secret-0123456789abcdef";
    let accounts = format!(r#"{{"swing":{{"webhook_secret":"{swing_secret}"}}}}"#);
    let c = config(&[("kraken_accounts", accounts.as_str())]);
    let alert = format!(
        r#"{{"secret":"{swing_secret}","id":"pos-s","action":"position","symbol":"XBTUSD","position":"0.5"}}"#
    );
    let mut w = World::with_replies([reply(SOLD)]);
    // The default account's turn for the pair is held: the account's is free.
    for k in turn_keys() {
        w.store_op(StoreOp::Increment(k, 1));
    }
    let mut req = post(&alert, &[]);
    req.path = "/webhook/swing".into();
    let d = w.run(handle(c, host(), req));
    assert_eq!(body(&d)["status"], "placed", "{}", body(&d));
    assert!(w.ops.iter().any(
        |op| matches!(op, StoreOp::Increment(k, 1) if k.starts_with("pt:") && k.contains(":@swing:XXBTZUSD"))
    ));
}

/// An instance that dies holding a pair's turn never gives its counters back; they free
/// themselves when their slots pass. Measured here for a dead alert at every arrival phase
/// of a slot (250 ms steps), with position alerts for the pair arriving every 250 ms after
/// it: each is refused `503` (nothing placed) until the first arrival whose slots no longer
/// reach the dead alert's, which trades. The README gives the figures.
#[test]
fn a_turn_left_by_a_dead_instance_frees_itself_when_its_slots_pass() {
    const STEP_MS: u64 = 250;
    let slot_start = NOW.millis() / crate::turn::SLOT_MS * crate::turn::SLOT_MS;
    let (mut worst, mut total, mut phases) = (0, 0, 0);
    for phase in (0..crate::turn::SLOT_MS).step_by(STEP_MS as usize) {
        let dead_at = slot_start + phase;
        let mut base = World::default();
        let dead_keys = crate::turn::keys(
            dead_at,
            dead_at + crate::outcome::BUDGET_MS,
            None,
            "XXBTZUSD",
        );
        for k in &dead_keys {
            base.store_op(StoreOp::Increment(k.clone(), 1));
        }
        let mut after = STEP_MS;
        let freed = loop {
            assert!(after <= 20_000, "phase {phase}: still blocked after 20 s");
            let mut w = World::with_replies([reply(SOLD)]);
            w.store = base.store.clone();
            let at = dead_at + after;
            w.clock = (at - NOW.millis()) * 1_000;
            let mut h = host();
            h.now = Now(at * 1_000);
            let alert =
                position_alert(&format!(r#""id":"after-{phase}-{after}","position":"0.5""#));
            let d = w.run(handle(config(&[]), h, post(&alert, &[])));
            match d.response.status {
                200 => {
                    assert_eq!(body(&d)["status"], "placed", "{}", body(&d));
                    break after;
                }
                503 => assert!(w.calls.is_empty(), "placed nothing"),
                other => panic!("{other}: {}", body(&d)),
            }
            after += STEP_MS;
        };
        worst = worst.max(freed);
        total += freed;
        phases += 1;
    }
    let bound = crate::turn::SLOT_MS + crate::outcome::BUDGET_MS + 2 * crate::turn::SKEW_MS;
    assert!(worst <= bound + STEP_MS, "blocked for {worst} ms");
    eprintln!(
        "a turn left by a dead instance: position alerts for the pair refused for at most {worst} ms, {} ms on average over {phases} phases",
        total / phases
    );
}
