//! The emulated Spin key-value store, exercised directly (no component)
//! through the same async API the host functions use: atomicity of
//! `increment` and compare-and-swap under concurrent tasks, the differences
//! between the memory (Spin's SQLite) and Redis backends, and the fault
//! switches.
//!
//! The Redis tests start a `redis-server` each; when it is not installed they
//! print a message and pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_host::{
    FAILING_MESSAGE, KEY_LIMIT_MESSAGE, KeyValueStore, KvError, OpCounts, RedisServer, SwapError,
};
use tokio::sync::Barrier;

/// Number of concurrent tasks in the atomicity tests.
const TASKS: usize = 64;

/// A Redis server and a store on it, or `None` (with a message) when
/// `redis-server` is not installed.
fn redis_store(test: &str) -> Option<(RedisServer, KeyValueStore)> {
    if !RedisServer::available() {
        eprintln!("skipped {test}: redis-server is not on PATH (apt-get install redis-server)");
        return None;
    }
    let server = RedisServer::start().expect("start redis-server");
    let store = KeyValueStore::redis(&server.url()).expect("connect to redis-server");
    Some((server, store))
}

/// Run `TASKS` concurrent increments of one key; return their results.
async fn concurrent_increments(store: &KeyValueStore) -> Vec<i64> {
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.increment("counter", 1).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().expect("increment"));
    }
    seen
}

fn assert_increments_atomic(mut seen: Vec<i64>) {
    assert_eq!(seen.iter().filter(|&&v| v == 1).count(), 1, "{seen:?}");
    seen.sort_unstable();
    assert_eq!(seen, (1..=TASKS as i64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_increment_is_atomic() {
    let store = KeyValueStore::new();
    let seen = concurrent_increments(&store).await;
    assert_increments_atomic(seen);
    // Spin's SQLite store keeps the counter as 8 little-endian bytes.
    assert_eq!(store.get("counter"), Some(64i64.to_le_bytes().to_vec()));
    assert_eq!(store.ops().increments, TASKS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_increment_is_atomic() {
    let Some((_server, store)) = redis_store("redis_increment_is_atomic") else {
        return;
    };
    let seen = concurrent_increments(&store).await;
    assert_increments_atomic(seen);
    // INCRBY keeps decimal text.
    assert_eq!(store.get("counter").as_deref(), Some(&b"64"[..]));
}

#[tokio::test]
async fn counter_encoding_differs_between_backends() {
    let memory = KeyValueStore::new();
    assert_eq!(memory.increment("n", 5).await, Ok(5));
    assert_eq!(memory.increment("n", -7).await, Ok(-2));
    assert_eq!(memory.get("n"), Some((-2i64).to_le_bytes().to_vec()));
    // A value that is not 8 bytes is no counter (Spin v4.0.2 panics there).
    memory.set("text", "12");
    let err = memory.increment("text", 1).await.unwrap_err();
    assert!(err.0.contains("incorrect length"), "{err}");
    assert_eq!(memory.get("text").as_deref(), Some(&b"12"[..]));
    // ... while 8 bytes of anything are one.
    memory.set("eight", *b"\x01\0\0\0\0\0\0\0");
    assert_eq!(memory.increment("eight", 1).await, Ok(2));

    let Some((_server, redis)) = redis_store("counter_encoding_differs_between_backends") else {
        return;
    };
    assert_eq!(redis.increment("n", 5).await, Ok(5));
    assert_eq!(redis.increment("n", -7).await, Ok(-2));
    assert_eq!(redis.get("n").as_deref(), Some(&b"-2"[..]));
    redis.set("text", "12");
    assert_eq!(redis.increment("text", 1).await, Ok(13));
    redis.set("word", "abc");
    let err = redis.increment("word", 1).await.unwrap_err();
    assert!(err.0.contains("not an integer"), "{err}");
    // The memory store's counter bytes are no Redis integer.
    redis.set("le", 1i64.to_le_bytes().to_vec());
    assert!(redis.increment("le", 1).await.is_err());
}

/// `TASKS` CASes on `key` all read the same `current`, then all swap;
/// returns how many swaps succeeded and how many failed with `CasFailed`.
async fn racing_swaps(store: &KeyValueStore, key: &str) -> (usize, usize) {
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                let mut cas = store.cas(&key).await.expect("cas");
                let current = cas.current().await.expect("current");
                barrier.wait().await;
                (current, cas.swap(format!("writer-{i}").into_bytes()).await)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    let mut currents = Vec::new();
    for task in tasks {
        let (current, result) = task.await.unwrap();
        currents.push(current);
        match result {
            Ok(()) => ok += 1,
            Err(SwapError::CasFailed(_)) => failed += 1,
            Err(e) => panic!("swap failed with a store error: {e}"),
        }
    }
    currents.dedup();
    assert_eq!(currents.len(), 1, "every task saw the same current value");
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_cas_from_a_value_is_atomic() {
    let store = KeyValueStore::new();
    store.set("k", "v0");
    assert_eq!(racing_swaps(&store, "k").await, (1, TASKS - 1));
    assert!(store.get("k").unwrap().starts_with(b"writer-"));
    assert_eq!(store.ops().cas_swaps, TASKS as u64);
    assert_eq!(store.ops().cas_currents, TASKS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cas_from_a_value_is_atomic() {
    let Some((_server, store)) = redis_store("redis_cas_from_a_value_is_atomic") else {
        return;
    };
    store.set("k", "v0");
    assert_eq!(racing_swaps(&store, "k").await, (1, TASKS - 1));
    assert!(store.get("k").unwrap().starts_with(b"writer-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_cas_from_absent_is_not_atomic() {
    // Spin's SQLite CAS upserts unconditionally when `current` saw nothing:
    // every racer "wins", the last write stays.
    let store = KeyValueStore::new();
    assert_eq!(racing_swaps(&store, "k").await, (TASKS, 0));

    // The plain two-request interleaving, step by step.
    let mut a = store.cas("claim").await.unwrap();
    let mut b = store.cas("claim").await.unwrap();
    assert_eq!(a.current().await, Ok(None));
    assert_eq!(b.current().await, Ok(None));
    assert_eq!(a.swap(b"a".to_vec()).await, Ok(()));
    assert_eq!(b.swap(b"b".to_vec()).await, Ok(()));
    assert_eq!(store.get("claim").as_deref(), Some(&b"b"[..]));

    // A swap without `current` is an upsert too.
    let c = store.cas("claim").await.unwrap();
    assert_eq!(c.swap(b"c".to_vec()).await, Ok(()));
    assert_eq!(store.get("claim").as_deref(), Some(&b"c"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cas_from_absent_is_atomic() {
    let Some((_server, store)) = redis_store("redis_cas_from_absent_is_atomic") else {
        return;
    };
    assert_eq!(racing_swaps(&store, "k").await, (1, TASKS - 1));

    let mut a = store.cas("claim").await.unwrap();
    let mut b = store.cas("claim").await.unwrap();
    assert_eq!(a.current().await, Ok(None));
    assert_eq!(b.current().await, Ok(None));
    assert_eq!(a.swap(b"a".to_vec()).await, Ok(()));
    assert!(matches!(
        b.swap(b"b".to_vec()).await,
        Err(SwapError::CasFailed(_))
    ));
    assert_eq!(store.get("claim").as_deref(), Some(&b"a"[..]));

    // Without `current` there is no WATCH: the swap always succeeds.
    let c = store.cas("claim").await.unwrap();
    assert_eq!(c.swap(b"c".to_vec()).await, Ok(()));
    assert_eq!(store.get("claim").as_deref(), Some(&b"c"[..]));
}

#[tokio::test]
async fn redis_cas_abort_reported_as_success_like_spin_4_0_2() {
    let Some((_server, store)) = redis_store("redis_cas_abort_reported_as_success") else {
        return;
    };
    store.set_cas_abort_reported_as_success(true);
    let mut a = store.cas("claim").await.unwrap();
    let mut b = store.cas("claim").await.unwrap();
    assert_eq!(a.current().await, Ok(None));
    assert_eq!(b.current().await, Ok(None));
    assert_eq!(a.swap(b"a".to_vec()).await, Ok(()));
    // The aborted transaction reads as success; nothing was written.
    assert_eq!(b.swap(b"b".to_vec()).await, Ok(()));
    assert_eq!(store.get("claim").as_deref(), Some(&b"a"[..]));
}

#[tokio::test]
async fn cas_fails_when_the_value_changed_or_vanished() {
    for (name, store, _server) in backends("cas_fails_when_the_value_changed_or_vanished") {
        store.set("k", "old");
        let mut cas = store.cas("k").await.unwrap();
        assert_eq!(cas.current().await, Ok(Some(b"old".to_vec())), "{name}");
        store.set("k", "other");
        assert!(
            matches!(
                cas.swap(b"new".to_vec()).await,
                Err(SwapError::CasFailed(_))
            ),
            "{name}"
        );
        assert_eq!(store.get("k").as_deref(), Some(&b"other"[..]), "{name}");

        let mut cas = store.cas("k").await.unwrap();
        assert_eq!(cas.current().await, Ok(Some(b"other".to_vec())), "{name}");
        store.delete("k");
        assert!(
            matches!(
                cas.swap(b"new".to_vec()).await,
                Err(SwapError::CasFailed(_))
            ),
            "{name}"
        );
        assert_eq!(store.get("k"), None, "{name}");

        let mut cas = store.cas("k2").await.unwrap();
        assert_eq!(cas.current().await, Ok(None), "{name}");
        assert_eq!(cas.swap(b"fresh".to_vec()).await, Ok(()), "{name}");
        assert_eq!(store.get("k2").as_deref(), Some(&b"fresh"[..]), "{name}");
    }
}

/// The memory backend, plus the Redis one when `redis-server` is installed.
fn backends(test: &str) -> Vec<(&'static str, KeyValueStore, Option<RedisServer>)> {
    let mut stores = vec![("memory", KeyValueStore::new(), None)];
    if let Some((server, store)) = redis_store(test) {
        stores.push(("redis", store, Some(server)));
    }
    stores
}

#[tokio::test]
async fn store_operations() {
    for (name, store, _server) in backends("store_operations") {
        assert_eq!(store.get_async("a").await, Ok(None), "{name}");
        assert_eq!(store.exists_async("a").await, Ok(false), "{name}");
        store.set_async("a", b"1").await.unwrap();
        store.set_async("b", b"2").await.unwrap();
        assert_eq!(
            store.get_async("a").await,
            Ok(Some(b"1".to_vec())),
            "{name}"
        );
        assert_eq!(store.exists_async("a").await, Ok(true), "{name}");
        let mut keys = store.list_keys_async().await.unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b"], "{name}");
        store.delete_async("a").await.unwrap();
        store.delete_async("absent").await.unwrap();
        assert_eq!(store.keys(), ["b"], "{name}");
        store
            .set_many_async(vec![
                ("c".into(), b"3".to_vec()),
                ("d".into(), b"4".to_vec()),
            ])
            .await
            .unwrap();
        store
            .delete_many_async(vec!["b".into(), "c".into()])
            .await
            .unwrap();
        assert_eq!(store.keys(), ["d"], "{name}");
        assert_eq!(
            store.snapshot(),
            BTreeMap::from([("d".to_string(), b"4".to_vec())]),
            "{name}"
        );
        assert_eq!(
            store.ops(),
            OpCounts {
                gets: 2,
                sets: 2,
                deletes: 2,
                exists: 2,
                list_keys: 1,
                set_manys: 1,
                delete_manys: 1,
                ..OpCounts::default()
            },
            "{name}"
        );
        store.reset_ops();
        assert_eq!(store.ops(), OpCounts::default(), "{name}");
        store.clear();
        assert!(store.keys().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn memory_get_many_returns_only_present_keys() {
    let store = KeyValueStore::new();
    store.set("b", "2");
    store.set("a", "1");
    let got = store
        .get_many_async(vec!["b".into(), "zz".into(), "a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            ("a".to_string(), Some(b"1".to_vec())),
            ("b".to_string(), Some(b"2".to_vec())),
        ]
    );
}

#[tokio::test]
async fn clones_share_data_faults_and_counters() {
    let store = KeyValueStore::from(BTreeMap::from([("seed".to_string(), b"x".to_vec())]));
    let clone = store.clone();
    clone.set_async("k", b"v").await.unwrap();
    assert_eq!(store.get("k").as_deref(), Some(&b"v"[..]));
    assert_eq!(store.get("seed").as_deref(), Some(&b"x"[..]));
    store.set_failing(true);
    assert!(clone.get_async("k").await.is_err());
    assert_eq!(store.ops().gets, 1);
    assert_eq!(store.ops().sets, 1);
}

#[tokio::test]
async fn key_limit() {
    for (name, store, _server) in backends("key_limit") {
        store.set_key_limit(Some(2));
        let limit = Err(KvError(KEY_LIMIT_MESSAGE.to_string()));
        store.set_async("a", b"1").await.unwrap();
        store.set_async("b", b"1").await.unwrap();
        assert_eq!(store.set_async("c", b"1").await, limit, "{name}");
        assert_eq!(store.increment("c", 1).await.map(drop), limit, "{name}");
        let cas = store.cas("c").await.unwrap();
        assert_eq!(
            cas.swap(b"1".to_vec()).await,
            Err(SwapError::Store(KvError(KEY_LIMIT_MESSAGE.to_string()))),
            "{name}"
        );
        assert_eq!(
            store
                .set_many_async(vec![
                    ("a".into(), b"2".to_vec()),
                    ("c".into(), b"2".to_vec())
                ])
                .await,
            limit,
            "{name}"
        );
        // Overwriting existing keys is fine.
        store.set_async("a", b"2").await.unwrap();
        store
            .set_many_async(vec![
                ("a".into(), b"3".to_vec()),
                ("b".into(), b"3".to_vec()),
            ])
            .await
            .unwrap();
        assert_eq!(store.keys(), ["a", "b"], "{name}");
        // Room again after a delete, or with the limit off.
        store.delete_async("a").await.unwrap();
        store.set_async("c", b"1").await.unwrap();
        store.set_key_limit(None);
        store.set_async("d", b"1").await.unwrap();
        assert_eq!(store.keys(), ["b", "c", "d"], "{name}");
    }
}

#[tokio::test]
async fn failing_switch() {
    for (name, store, _server) in backends("failing_switch") {
        store.set("k", "v");
        store.set_failing(true);
        let failure = KvError(FAILING_MESSAGE.to_string());
        assert_eq!(store.get_async("k").await, Err(failure.clone()), "{name}");
        assert_eq!(store.set_async("k", b"w").await, Err(failure.clone()));
        assert_eq!(store.delete_async("k").await, Err(failure.clone()));
        assert_eq!(store.exists_async("k").await, Err(failure.clone()));
        assert_eq!(store.list_keys_async().await, Err(failure.clone()));
        assert_eq!(store.increment("n", 1).await, Err(failure.clone()));
        assert_eq!(store.cas("k").await.map(drop), Err(failure.clone()));
        // The inspection helpers bypass the fault.
        assert_eq!(store.get("k").as_deref(), Some(&b"v"[..]), "{name}");
        store.set_failing(false);
        assert_eq!(
            store.get_async("k").await,
            Ok(Some(b"v".to_vec())),
            "{name}"
        );
        // A CAS started before the failure fails in `current` and `swap`.
        let mut cas = store.cas("k").await.unwrap();
        store.set_failing(true);
        assert_eq!(cas.current().await, Err(failure.clone()), "{name}");
        assert_eq!(
            cas.swap(b"x".to_vec()).await,
            Err(SwapError::Store(failure)),
            "{name}"
        );
        store.set_failing(false);
        assert_eq!(store.get("k").as_deref(), Some(&b"v"[..]), "{name}");
        assert_eq!(store.ops().gets, 2, "{name}");
    }
}

#[tokio::test]
async fn stall_switch() {
    for (name, store, _server) in backends("stall_switch") {
        store.set("k", "v");
        store.set_stall(Some(Duration::from_millis(300)));
        let started = Instant::now();
        assert_eq!(
            store.get_async("k").await,
            Ok(Some(b"v".to_vec())),
            "{name}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300), "{name}");
        // A caller with a deadline gives up.
        let waited = tokio::time::timeout(Duration::from_millis(50), store.increment("n", 1)).await;
        assert!(waited.is_err(), "{name}");
        store.set_stall(None);
        let started = Instant::now();
        assert_eq!(
            store.get_async("k").await,
            Ok(Some(b"v".to_vec())),
            "{name}"
        );
        assert!(started.elapsed() < Duration::from_millis(200), "{name}");
    }
}

#[tokio::test]
async fn op_delay_is_bounded() {
    let store = KeyValueStore::new();
    store.set_op_delay(Duration::from_millis(5));
    let started = Instant::now();
    for _ in 0..20 {
        store.get_async("k").await.unwrap();
    }
    let elapsed = started.elapsed();
    // 20 delays of at most 5 ms each (plus timer slack).
    assert!(elapsed < Duration::from_millis(20 * 5 + 200), "{elapsed:?}");
    store.set_op_delay(Duration::ZERO);
    let started = Instant::now();
    for _ in 0..1000 {
        store.get_async("k").await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn redis_inspection_helpers_work_inside_a_runtime() {
    let Some((_server, store)) = redis_store("redis_inspection_helpers_work_inside_a_runtime")
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        store.set("k", "v");
        assert_eq!(store.get("k").as_deref(), Some(&b"v"[..]));
        assert_eq!(store.get_async("k").await, Ok(Some(b"v".to_vec())));
        assert_eq!(store.keys(), ["k"]);
        assert!(store.delete("k"));
        assert!(!store.delete("k"));
    });
    drop(runtime);
    // The async connection outlives the runtime that first used it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        store.set_async("k2", b"v2").await.unwrap();
    });
    assert_eq!(store.get("k2").as_deref(), Some(&b"v2"[..]));
}

#[test]
fn redis_server_stops_on_drop() {
    if !RedisServer::available() {
        eprintln!("skipped redis_server_stops_on_drop: redis-server is not on PATH");
        return;
    }
    let server = RedisServer::start().unwrap();
    let url = server.url();
    assert!(url.starts_with("redis://127.0.0.1:"));
    assert!(KeyValueStore::redis(&url).is_ok());
    // Servers started together get ports of their own.
    let other = RedisServer::start().unwrap();
    assert_ne!(other.port(), server.port());
    drop(server);
    assert!(KeyValueStore::redis(&url).is_err());
}

/// Both Spin builds link against the emulated host: `bridge-spin` imports
/// `wasi:keyvalue`, `bridge-spin-noatomics` only `fermyon:spin/key-value`.
/// Skipped (with a message) for a build that `scripts/build.sh` has not made.
#[test]
fn spin_builds_instantiate() {
    for file in ["bridge-spin.wasm", "bridge-spin-noatomics.wasm"] {
        let wasm = bridge_host::workspace_root().join("target/wasm").join(file);
        if !wasm.is_file() {
            eprintln!("skipped {file}: run scripts/build.sh to build it");
            continue;
        }
        if let Err(e) = bridge_host::SpinHost::builder(&wasm).try_build() {
            panic!("{file} does not instantiate on the emulated Spin host: {e:?}");
        }
    }
}
