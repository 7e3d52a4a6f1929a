#!/usr/bin/env python3
"""Helper of scripts/bench; run by it, not by hand.

  bench-report.py oz COMPONENT OUT
      wasm-opt -Oz for a component: binaryen reads core modules only, so the component's
      largest core module (the program; the others are small adapter shims) is optimised and
      spliced back in place. Prints "CORE_BEFORE CORE_AFTER" (bytes).

  bench-report.py burst URL SIM_URL SIM_LOG N TAG OUT
      The bar-close burst: N distinct market alerts (ids TAG-0 ... TAG-N-1, the webhook secret
      from $WEBHOOK_SECRET) sent to URL/webhook at the same instant, one connection each,
      opened beforehand. Writes OUT (JSON): the answers by status and outcome, whether every
      alert was placed at this first delivery (each answer `200 placed`, each `cl_ord_id` booked
      once on the simulator at SIM_URL), the slowest and median answer, and the
      `EAPI:Invalid nonce` refusals the simulator logged (SIM_LOG) meanwhile.

  bench-report.py report DIR
      Reads DIR/results.tsv, DIR/core.md, DIR/wrk/*.json and DIR/burst/*.json (WHO.STORE.N.json:
      WHO the bridge, the I/O floor, or keysK, the bridge with a pool of K keys); writes
      DIR/report.md (and prints it), DIR/bench.png (matplotlib, or gnuplot when matplotlib is
      missing) and the generated part of BENCHMARKS.md.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- scripts/bench: generated from here -->"
END = "<!-- scripts/bench: generated up to here -->"

# What rustc's wasm32 targets enable by default; binaryen 108 detects none of them itself.
WASM_FEATURES = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
]


# --- wasm-opt on a component -------------------------------------------------------------


def read_leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def write_leb(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def oz(component, out):
    data = open(component, "rb").read()
    # A component: magic, version 0x000d, layer 1; then sections (id, LEB size, contents).
    if data[:4] != b"\0asm" or data[6:8] != b"\x01\x00":
        sys.exit(f"{component}: not a WebAssembly component")
    i, best = 8, None
    while i < len(data):
        section, (size, start) = data[i], read_leb(data, i + 1)
        if section == 1 and (best is None or size > best[2] - best[1]):  # a core module
            best = (i, start, start + size)
        i = start + size
    if best is None:
        sys.exit(f"{component}: no core module inside")
    tmp = out + ".tmp"
    with open(tmp + ".in.wasm", "wb") as f:
        f.write(data[best[1] : best[2]])
    result = subprocess.run(
        ["wasm-opt", "-Oz", *WASM_FEATURES, tmp + ".in.wasm", "-o", tmp + ".out.wasm"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"wasm-opt failed on {component}: {result.stderr[-2000:]}")
    core = open(tmp + ".out.wasm", "rb").read()
    with open(out, "wb") as f:
        f.write(data[: best[0]] + b"\x01" + write_leb(len(core)) + core + data[best[2] :])
    os.remove(tmp + ".in.wasm")
    os.remove(tmp + ".out.wasm")
    print(best[2] - best[1], len(core))


# --- the bar-close burst -----------------------------------------------------------------


def sim_orders(sim_url):
    with urllib.request.urlopen(f"{sim_url}/_sim/orders", timeout=10) as r:
        return json.load(r)


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def burst(url, sim_url, sim_log, n, tag, out):
    import http.client

    secret = os.environ["WEBHOOK_SECRET"]
    target = urllib.parse.urlsplit(url)
    bodies = [
        json.dumps(
            {
                "secret": secret,
                "id": f"{tag}-{i}",
                "symbol": "XBTUSD",
                "side": "buy",
                "order_type": "market",
                "volume": "0.001",
            },
            separators=(",", ":"),
        )
        for i in range(n)
    ]
    results = [None] * n
    # Every connection is open before the barrier: the alerts leave together.
    conns = [http.client.HTTPConnection(target.hostname, target.port, timeout=30) for _ in range(n)]
    for c in conns:
        c.connect()
    barrier = threading.Barrier(n)

    def deliver(i):
        barrier.wait()
        t0 = time.perf_counter()
        try:
            conns[i].request(
                "POST", "/webhook", body=bodies[i], headers={"Content-Type": "application/json"}
            )
            r = conns[i].getresponse()
            body = r.read()
            results[i] = (r.status, body, time.perf_counter() - t0)
        except Exception as e:  # a broken connection is an answer too
            results[i] = (0, repr(e).encode(), time.perf_counter() - t0)

    log_before = count_lines(sim_log)
    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    # The simulator logs each request as it answers it: every AddOrder of the burst is in.
    with open(sim_log, "rb") as f:
        new_lines = f.read().decode("utf-8", "replace").splitlines()[log_before:]
    nonce = sum(1 for line in new_lines if "Invalid nonce" in line)
    booked = {}
    for order in sim_orders(sim_url):
        cl = (order.get("params") or {}).get("cl_ord_id")
        if cl:
            booked[cl] = booked.get(cl, 0) + 1
    statuses, outcomes, placed = {}, {}, 0
    for status, body, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        outcome = answer.get("status") or answer.get("error") or "?"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if status == 200 and outcome == "placed" and booked.get(answer.get("cl_ord_id")) == 1:
            placed += 1
    times = sorted(t for _, _, t in results)
    summary = {
        "n": n,
        "statuses": statuses,
        "outcomes": outcomes,
        "placed_first": placed,
        "all_placed_first": placed == n,
        "slowest_ms": round(times[-1] * 1000, 1),
        "median_ms": round(times[len(times) // 2] * 1000, 1),
        "nonce_refusals": nonce,
        "addorder_requests": sum(1 for line in new_lines if "/0/private/AddOrder" in line),
    }
    with open(out, "w") as f:
        json.dump(summary, f)
    print(json.dumps(summary))


# --- the report ---------------------------------------------------------------------------

SCENARIOS = [
    ("rejected", "rejected alert (wrong body secret)"),
    ("accepted", "accepted alert, `validate: true`, on the simulator"),
    ("health", "`GET /health`"),
]
SHORT = {
    "rejected": "rejected alert\n(wrong secret)",
    "accepted": "accepted alert\n(validate: true)",
    "health": "GET /health",
}


def load_results(d):
    results = {}
    with open(os.path.join(d, "results.tsv")) as f:
        for line in f:
            if "\t" in line:
                key, value = line.rstrip("\n").split("\t", 1)
                results[key] = value
    return results


def load_wrk(d, host, scenario, server):
    path = os.path.join(d, "wrk", f"{host}.{scenario}.{server}.json")
    if not os.path.exists(path):
        return None
    w = json.load(open(path))
    w["rps"] = w["requests"] / (w["duration_us"] / 1e6)
    return w


def fmt_int(n):
    return f"{n:,.0f}"


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "–"


def answers(w):
    parts = [f"{code}: {fmt_int(n)}" for code, n in sorted(w["status"].items())]
    errors = sum(w["errors"].values())
    if errors:
        detail = ", ".join(f"{k} {v}" for k, v in w["errors"].items() if v)
        parts.append(f"socket errors: {detail}")
    return ", ".join(parts) or "none"


def served_table(d, host):
    rows = []
    io_seen = False
    for scenario, label in SCENARIOS:
        b, f = load_wrk(d, host, scenario, "bridge"), load_wrk(d, host, scenario, "floor")
        io = load_wrk(d, host, scenario, "iofloor")
        if not b or not f:
            continue
        io_seen = io_seen or bool(io)
        io_cells = (
            f"{fmt_int(io['rps'])} | **{ratio(b['rps'], io['rps'])}** | "
            if io
            else "- | - | "
        )
        rows.append(
            f"| {label} | {answers(b)} | {fmt_int(b['rps'])} | {fmt_int(f['rps'])} | "
            f"**{ratio(b['rps'], f['rps'])}** | {io_cells}{fmt_us(b['p50_us'])} | "
            f"{fmt_us(f['p50_us'])} | {ratio(b['p50_us'], f['p50_us'])} | {fmt_us(b['p99_us'])} | "
            f"{fmt_us(f['p99_us'])} | {ratio(b['p99_us'], f['p99_us'])} |"
        )
    if not rows:
        return None
    head = (
        "| request | bridge's answers (status: count) | bridge req/s | floor req/s | req/s x floor "
        "| I/O floor req/s | req/s x I/O floor "
        "| bridge p50 | floor p50 | p50 x floor | bridge p99 | floor p99 | p99 x floor |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    if not io_seen:
        head = head.replace("| I/O floor req/s | req/s x I/O floor ", "").replace(
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|", "|---:|---:|---:|---:|---:|---:|---:|"
        )
        rows = [r.replace("- | - | ", "", 1) for r in rows]
    return head + "\n" + "\n".join(rows)


def sim_calls(d, r, host):
    """What reached the simulator while the bridge's accepted alerts ran."""
    w = load_wrk(d, host, "accepted", "bridge")
    try:
        pairs, orders, nonce = (int(r[f"sim.{host}.{k}"]) for k in ("assetpairs", "addorder", "nonce"))
        ticker = int(r.get(f"sim.{host}.ticker", 0))
    except (KeyError, ValueError):
        return None
    ok = w["status"].get("200", 0) if w else 0
    if not ok or not orders:
        return None
    text = (
        f"While the bridge's accepted alerts ran, the simulator answered {fmt_int(pairs)} AssetPairs, "
        f"{fmt_int(ticker)} Ticker and {fmt_int(orders)} AddOrder requests: {pairs / ok:.2f}, "
        f"{ticker / ok:.2f} and {orders / ok:.2f} per `200`. "
        f"{fmt_int(nonce)} AddOrder were refused with `EAPI:Invalid nonce` "
        "(concurrent instances sign with the wall clock in microseconds, and their requests reach "
        "Kraken out of order); the bridge waits 10 to 40 ms and sends them again"
    )
    if nonce > ok / 100:
        text += ", so more than 1% of the alerts waited, and the row's p99 is theirs"
    return text + "."


def load_burst(d, store, n, who="bridge"):
    path = os.path.join(d, "burst", f"{who}.{store}.{n}.json")
    return json.load(open(path)) if os.path.exists(path) else None


BURST_SIZES = (16, 32, 64)
BURST_STORES = [("sqlite", "default (SQLite)"), ("redis", "Redis")]


def burst_table(d, r):
    rows = []
    for store, label in BURST_STORES:
        for n in BURST_SIZES:
            b = load_burst(d, store, n)
            io = load_burst(d, store, n, "iofloor")
            if not b:
                continue
            answers_text = ", ".join(
                f"{k}: {v}" for k, v in sorted(b["outcomes"].items(), key=lambda kv: -kv[1])
            )
            io_cells = (
                f"{io['slowest_ms']:.0f} ms | {io['median_ms']:.0f} ms"
                if io and io["statuses"] == {"200": n}
                else "– | –"
            )
            rows.append(
                f"| {label} | {n} | {'**yes**' if b['all_placed_first'] else '**no**'} "
                f"({b['placed_first']} of {n}) | {answers_text} | {b['slowest_ms']:.0f} ms | "
                f"{b['median_ms']:.0f} ms | {io_cells} | {b['nonce_refusals']} | "
                f"{b['addorder_requests']} |"
            )
    if not rows:
        return None
    head = (
        "| store | alerts at once | all placed at the first delivery | answers | slowest answer "
        "| median answer | I/O floor: slowest | I/O floor: median | nonce refusals (retried) "
        "| AddOrder requests |\n"
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(rows)


def keys_table(d, r):
    """The bursts on the default store by key pool: 1 key (the bridge's rows above), 2 and 4."""
    pools = [int(k) for k in r.get("burst.keys", "").split()]
    if not pools:
        return None
    rows = []
    for n in BURST_SIZES:
        for keys in [1] + pools:
            b = load_burst(d, "sqlite", n, "bridge" if keys == 1 else f"keys{keys}")
            if not b:
                continue
            rows.append(
                f"| {keys} | {n} | {'**yes**' if b['all_placed_first'] else '**no**'} "
                f"({b['placed_first']} of {n}) | {b['slowest_ms']:.0f} ms | {b['median_ms']:.0f} ms | "
                f"{b['nonce_refusals']} | {b['addorder_requests']} |"
            )
    if not rows:
        return None
    head = (
        "| keys | alerts at once | all placed at the first delivery | slowest answer "
        "| median answer | nonce refusals (retried) | AddOrder requests |\n"
        "|---:|---:|---|---:|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(rows)


PROBES = [
    ("probe", "base", "nothing (the floor, in the bridge's app)"),
    ("probe", "get1", "1 variable (`spin_sdk::variables::get`)"),
    ("probe", "get2", "2 variables"),
    ("probe", "get3", "3 variables"),
    ("probe", "get7", "7 variables (what the bridge reads before authenticating)"),
    ("probe", "get24", "24 variables (every setting: `/health`, an accepted alert)"),
    ("probe", "all", "every variable in one call (`wasi:config/store` `get-all`)"),
    ("probe", "kv", "1 key-value read, direct (`open` and `get`)"),
    ("probe", "chain", "1 chained request to the store component (which reads 1 key)"),
    ("probe", "log", "1 audit line on stdout"),
    ("probe", "rand", "16 bytes of `wasi:random`"),
    ("probe", "headers", "the contract's 8 response headers instead of 1"),
    ("static", "base", "nothing; every setting but `webhook_secret` from a `static` provider"),
    ("static", "get7", "7 variables, 6 of them from the `static` provider"),
    ("static", "get24", "24 variables, 21 of them from the `static` provider"),
]


def probe_table(d):
    base = load_wrk(d, "spin", "probe-base", "probe")
    if not base:
        return None
    rows = []
    for server, key, label in PROBES:
        w = load_wrk(d, "spin", f"probe-{key}", server)
        if not w:
            continue
        rows.append(
            f"| {label} | {fmt_int(w['rps'])} | **{ratio(w['rps'], base['rps'])}** | "
            f"{fmt_us(w['p50_us'])} | {fmt_us(w['p99_us'])} |"
        )
    head = (
        "| the probe's host calls per request | req/s | x probe alone | p50 | p99 |\n"
        "|---|---:|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(rows)


def static_table(d):
    """The bridge with every setting but the webhook secret from a `static` provider."""
    rows = []
    for scenario, label in [("rejected", "rejected alert"), ("health", "`GET /health`")]:
        w = load_wrk(d, "spin", scenario, "static")
        b = load_wrk(d, "spin", scenario, "bridge")
        f = load_wrk(d, "spin", scenario, "floor")
        io = load_wrk(d, "spin", scenario, "iofloor")
        if not (w and b and f and io):
            continue
        rows.append(
            f"| {label} | {fmt_int(w['rps'])} | **{ratio(w['rps'], f['rps'])}** | "
            f"**{ratio(w['rps'], io['rps'])}** | {fmt_us(w['p99_us'])} | {fmt_int(b['rps'])} | "
            f"{ratio(b['rps'], f['rps'])} | {ratio(b['rps'], io['rps'])} |"
        )
    if not rows:
        return None
    head = (
        "| the bridge, settings but `webhook_secret` from `static` | req/s | x floor (2b) "
        "| x I/O floor (2b) | p99 | req/s, all from the environment (2b) | x floor | "
        "x I/O floor |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(rows)


def goals(d, r):
    """Issue 14, item 5: where the run stands against the goals set for Spin."""
    lines = []
    for scenario, label in [("rejected", "rejected alerts"), ("health", "`GET /health`")]:
        b, f = load_wrk(d, "spin", scenario, "bridge"), load_wrk(d, "spin", scenario, "floor")
        io = load_wrk(d, "spin", scenario, "iofloor")
        if not (b and f and io):
            continue
        to_io, to_floor = b["rps"] / io["rps"], b["rps"] / f["rps"]
        met = to_io >= 0.9 and to_floor >= 0.75
        lines.append(
            f"- {label} on `spin up`: {to_io:.2f} of the I/O floor (goal 0.9) and {to_floor:.2f} "
            f"of the hello-world floor (goal 0.75): **{'met' if met else 'not met'}**."
        )
    b = load_burst(d, "sqlite", 64)
    if b:
        met = b["all_placed_first"] and b["slowest_ms"] < 250
        io = load_burst(d, "sqlite", 64, "iofloor")
        io_text = (
            f" (the I/O floor's slowest: {io['slowest_ms']:.0f} ms)"
            if io and io["statuses"] == {"200": 64}
            else ""
        )
        lines.append(
            f"- 64 alerts at once on the default store: "
            f"{'all' if b['all_placed_first'] else str(b['placed_first']) + ' of 64'} placed at "
            f"the first delivery, slowest {b['slowest_ms']:.0f} ms{io_text} (goal: all, under "
            f"250 ms): **{'met' if met else 'not met'}**."
        )
    return "\n".join(lines) if lines else None


def kib(n):
    return f"{int(n):,} B ({int(n) / 1024:.0f} KiB)"


def size_table(r):
    floor = int(r["size.floor"])
    lines = [
        "| | bridge, portable (served above) | bridge, Spin | floor | portable x floor |",
        "|---|---:|---:|---:|---:|",
        f"| size, release build | {kib(r['size.bridge-wasi'])} | {kib(r['size.bridge-spin'])} | "
        f"{kib(floor)} | **{ratio(int(r['size.bridge-wasi']), floor)}** |",
    ]
    if "oz.floor" in r:
        lines.append(
            f"| size after `wasm-opt -Oz` | {kib(r['oz.bridge-wasi'])} | {kib(r['oz.bridge-spin'])} | "
            f"{kib(r['oz.floor'])} | **{ratio(int(r['oz.bridge-wasi']), int(r['oz.floor']))}** |"
        )
    for key, label in [
        ("cold", "start to first `200`, `wasmtime serve`, nothing cached (compiles)"),
        ("cached", "start to first `200`, `wasmtime serve`, compile cache warm"),
        ("spin", "start to first `200`, `spin up`"),
    ]:
        b, f = r.get(f"start.{key}.bridge"), r.get(f"start.{key}.floor")
        if b and f:
            spin_col = f"{b} ms" if key == "spin" else "–"
            wasi_col = "–" if key == "spin" else f"{b} ms"
            lines.append(
                f"| {label} | {wasi_col} | {spin_col} | {f} ms | **{ratio(float(b), float(f))}** |"
            )
    return "\n".join(lines)


def machine(r):
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "date": r.get("date", datetime.datetime.now(datetime.timezone.utc).isoformat()),
        "cpu": cpu,
        "nproc": r.get("nproc", str(os.cpu_count())),
        "mem": mem,
        "rustc": r.get("rustc", "?"),
        "wasmtime": r.get("wasmtime", "?"),
        "wrk": r.get("wrk", "?"),
        "wasm_opt": r.get("wasm-opt", ""),
        "spin": r.get("spin", ""),
    }


def build_report(d, r, m):
    out = []
    out.append(
        f"Measured {m['date']} on {m['cpu']}, `nproc` {m['nproc']}, {m['mem']} of memory; "
        f"{m['rustc']}; {m['wasmtime']}; {m['wrk']}"
        + (f"; {m['wasm_opt']}" if m["wasm_opt"] else "")
        + (f"; {m['spin']}" if m["spin"] else "")
        + "."
    )
    out.append("")
    out.append(
        f"Command: `{r['command']}` (after `scripts/build.sh`), {r.get('elapsed', '?')} s in all; "
        f"source: commit {r.get('source', 'unknown')}."
    )
    out.append("")
    out.append("### 1. The core alone, per alert (native release build, `examples/bench.rs`)")
    out.append("")
    if r.get("core.note"):
        out.append(f"Note: {r['core.note']}")
        out.append("")
    # A blank line between the example's heading line and its table.
    core = open(os.path.join(d, "core.md")).read().strip()
    out.append(re.sub(r"^([^|\n][^\n]*)\n\|", "\\1\n\n|", core, flags=re.M))
    out.append("")
    duration = r.get("duration", "10")
    for host, title in [("wasmtime", "`wasmtime serve`"), ("spin", "`spin up`")]:
        out.append(
            f"### 2{'a' if host == 'wasmtime' else 'b'}. Served by {title}: wrk on loopback, "
            f"2 threads, 16 connections, {duration} s per row and server"
        )
        out.append("")
        table = served_table(d, host)
        if table:
            if host == "wasmtime":
                out.append(
                    "The bridge is the portable build; the floor, the hello-world component served "
                    "the same way with the same wrk script. The I/O floor (`benches/floor "
                    "--features io`) does the host I/O the contract requires on each path and "
                    "nothing else: it reads the body and the secret, and a wrong secret gets one "
                    "audit line and `401` with the contract's eight headers; a right one makes the "
                    "three Kraken calls of an accepted market alert (AssetPairs, Ticker, AddOrder) "
                    "and answers `200`. Ratios are bridge / floor: under 1 for req/s means slower, "
                    "over 1 for latency means slower."
                )
                out.append("")
            if r.get(f"{host}.note"):
                out.append(f"Note: {r[f'{host}.note']}")
                out.append("")
            out.append(table)
            calls = sim_calls(d, r, host)
            if calls:
                out.append("")
                out.append(calls)
        else:
            out.append(f"Skipped: {r.get(f'{host}.skipped', 'not measured')}.")
        out.append("")
    if "spin" in r:
        out.append("### 2c. The bar-close burst on `spin up`: distinct market alerts at once")
        out.append("")
        table = burst_table(d, r)
        if table:
            out.append(
                "One `spin up` of the bridge (the app of `spin.toml`, its store component "
                "included) per store, fresh, trading on the simulator. One `validate` alert "
                "first caches the pair, as an earlier bar did; then 16, 32 and 64 distinct "
                "market buys (each its own `id`), each on its own connection, opened beforehand "
                "and released at the same instant (`bench-report.py burst`). Placed at the first "
                "delivery: the answer is `200 placed` and its `cl_ord_id` is booked once on the "
                "simulator. An answer's time runs from its request's send to its last byte."
                + (f" Redis: {r['redis']}." if r.get("redis") else "")
            )
            out.append("")
            out.append(table)
            if r.get("burst.redis.skipped"):
                out.append("")
                out.append(f"Redis: skipped, {r['burst.redis.skipped']}.")
            keys = keys_table(d, r)
            if keys:
                out.append("")
                out.append(
                    "Key pools, on the default store: the same bursts on a fresh app whose "
                    "`kraken_api_keys` adds further keys of the simulator's one account "
                    "(`SIM_API_KEYS`, made for the run), so the bridge signs with 2 or 4 keys; "
                    "each alert signs with the key its `cl_ord_id` picks, and each key has its "
                    "own nonces on the simulator. The 1-key rows are the bridge's default-store "
                    "rows above."
                )
                out.append("")
                out.append(keys)
            elif r.get("burst.keys.skipped"):
                out.append("")
                out.append(f"Key pools: skipped, {r['burst.keys.skipped']}.")
        else:
            out.append("Skipped: not measured.")
        out.append("")
        table = probe_table(d)
        if table:
            out.append("### 2d. What Spin's host calls cost: the probe")
            out.append("")
            out.append(
                "`benches/floor --features probe`: the hello-world floor plus the host calls "
                "its query names, in the app of `spin.toml` (same variables, same store "
                f"component), loaded with wrk as above for {r.get('probe.duration', '?')} s per "
                "row; in the last three rows every setting but `webhook_secret` comes from a "
                "`static` variables provider (`--runtime-config-file`). "
                "Spin 4.0.2 resolves every variable read through "
                "its providers, and the environment provider of `spin up` wraps each look-up "
                "in `tokio::task::block_in_place` (`crates/variables-env/src/lib.rs`), as its "
                "SQLite key-value store does every operation (`crates/key-value-spin`): two "
                "such calls in a row hand the runtime's worker to another thread, and requests "
                "stall (p99 about 45 ms). A `static` provider answers without it."
            )
            out.append("")
            out.append(table)
            out.append("")
            table = static_table(d)
            if table:
                out.append(
                    f"The bridge itself with that `static` provider ({r.get('duration', '10')} s "
                    "per row), against the floors of 2b:"
                )
                out.append("")
                out.append(table)
                out.append("")
        met = goals(d, r)
        if met:
            out.append("Goals of issue 14, item 5, in this run:")
            out.append("")
            out.append(met)
            out.append("")
    out.append("### 3. Size and start-up")
    out.append("")
    if r.get("oz.note"):
        out.append(f"Note: {r['oz.note']}")
        out.append("")
    out.append(size_table(r))
    out.append("")
    out.append(
        "Start-up is the time from starting the server process to the first `200` from "
        "`GET /health` (polled every 10 ms with curl), the median of "
        f"{r.get('start.runs', '3')} starts."
    )
    return "\n".join(out) + "\n"


# --- the chart ----------------------------------------------------------------------------


def core_rows(d):
    rows = []
    for line in open(os.path.join(d, "core.md")):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"[0-9]+", cells[1] or ""):
            rows.append((cells[0], float(cells[1]), cells[2]))
    return rows


def chart_data(d, r):
    served = []
    for scenario, label in SCENARIOS:
        b, f = load_wrk(d, "wasmtime", scenario, "bridge"), load_wrk(d, "wasmtime", scenario, "floor")
        if b and f:
            served.append((SHORT[scenario], b, f))
    sizes = [("release", int(r["size.bridge-wasi"]), int(r["size.floor"]))]
    if "oz.floor" in r:
        sizes.append(("wasm-opt -Oz", int(r["oz.bridge-wasi"]), int(r["oz.floor"])))
    starts = [
        (label, float(r[f"start.{k}.bridge"]), float(r[f"start.{k}.floor"]))
        for k, label in [("cold", "nothing cached"), ("cached", "cache warm")]
        if f"start.{k}.bridge" in r
    ]
    return core_rows(d), served, sizes, starts


def chart_matplotlib(d, r, m, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    core, served, sizes, starts = chart_data(d, r)
    bridge_c, floor_c = "#d9534f", "#5b8bd0"
    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    fig.suptitle(
        f"tv-kraken-bridge, scripts/bench ({m['date'][:10]}, {m['cpu']}, {m['nproc']} cores): "
        "bridge against a floor measured in the same run",
        fontsize=13,
    )

    ax = axes[0][0]
    if not core:  # the core benchmark was not measured
        ax.set_axis_off()
    else:
        labels = [re.sub(r"^(alert to signed AddOrder, )", "", name) for name, _, _ in core]
        labels = [re.sub(r" \(.*\)$", "", x) for x in labels]
        values = [ns for _, ns, _ in core]
        y = range(len(core))
        ax.barh(y, values, color=[floor_c] + [bridge_c] * (len(core) - 1))
        ax.set_yticks(list(y), labels, fontsize=9)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ns per alert (log scale)")
        ax.set_title("1. The core alone, per alert (native)")
        for i, (_, ns, x) in enumerate(core):
            ax.text(ns, i, f" {ns:,.0f} ns, x{x}", va="center", fontsize=8)
        ax.set_xlim(min(values) / 2, max(values) * 40)

    def grouped(ax, groups, series, title, ylabel, fmt, log=False, rotation=0):
        width = 0.8 / len(series)
        for k, (name, color, values) in enumerate(series):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
            bars = ax.bar(xs, values, width, label=name, color=color)
            for bar, v in zip(bars, values):
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    v,
                    fmt(v),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    rotation=rotation,
                )
        ax.set_xticks(range(len(groups)), groups, fontsize=9)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(top=max(max(v) for _, _, v in series) * 5)
        else:
            ax.margins(y=0.15)
        ax.legend(fontsize=8)

    if served:
        groups = [f"{label}\nx{b['rps'] / f['rps']:.2f} of floor" for label, b, f in served]
        io = [load_wrk(d, "wasmtime", s, "iofloor") for s, _ in SCENARIOS]
        io_series = []
        if len(io) == len(served) and all(io):
            groups = [
                f"{g}\nx{b['rps'] / i['rps']:.2f} of I/O floor"
                for g, (_, b, _), i in zip(groups, served, io)
            ]
            io_series = [("I/O floor", "#9bc59d", [i["rps"] for i in io])]
        grouped(
            axes[0][1],
            groups,
            [
                ("bridge", bridge_c, [b["rps"] for _, b, _ in served]),
                ("floor", floor_c, [f["rps"] for _, _, f in served]),
            ]
            + io_series,
            "2. wasmtime serve: requests per second (wrk -t2 -c16)",
            "requests / s",
            lambda v: f"{v:,.0f}",
        )
        groups = [label for label, _, _ in served]
        grouped(
            axes[0][2],
            groups,
            [
                ("bridge p50", bridge_c, [b["p50_us"] / 1000 for _, b, _ in served]),
                ("floor p50", floor_c, [f["p50_us"] / 1000 for _, _, f in served]),
                ("bridge p99", "#f0ad4e", [b["p99_us"] / 1000 for _, b, _ in served]),
                ("floor p99", "#8fb8e8", [f["p99_us"] / 1000 for _, _, f in served]),
            ],
            "2. wasmtime serve: latency p50 and p99 (log scale)",
            "ms",
            lambda v: f"{v:.2f}",
            log=True,
            rotation=90,
        )
    else:
        axes[0][1].set_axis_off()
        axes[0][2].set_axis_off()

    grouped(
        axes[1][0],
        [f"{label}\nx{b / f:.2f} of floor" for label, b, f in sizes],
        [
            ("bridge (portable)", bridge_c, [b / 1024 for _, b, _ in sizes]),
            ("floor", floor_c, [f / 1024 for _, _, f in sizes]),
        ],
        "3. Component size",
        "KiB",
        lambda v: f"{v:,.0f}",
    )
    if starts:
        grouped(
            axes[1][1],
            [f"{label}\nx{b / f:.2f} of floor" for label, b, f in starts],
            [
                ("bridge (portable)", bridge_c, [b for _, b, _ in starts]),
                ("floor", floor_c, [f for _, _, f in starts]),
            ],
            "3. wasmtime serve: process start to first 200",
            "ms",
            lambda v: f"{v:,.0f}",
        )
    else:
        axes[1][1].set_axis_off()

    ax = axes[1][2]
    ax.set_axis_off()
    text = [
        f"date: {m['date']}",
        f"CPU: {m['cpu']}",
        f"nproc: {m['nproc']}, memory: {m['mem']}",
        m["rustc"],
        m["wasmtime"],
        m["wrk"],
    ]
    if m["wasm_opt"]:
        text.append(m["wasm_opt"])
    text.append(f"spin up: {m['spin'] or 'skipped (' + r.get('spin.skipped', '') + ')'}")
    text += ["", f"command: {r['command']}"]
    ax.text(0, 1, "\n".join(text), va="top", fontsize=10, family="monospace", wrap=True)

    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(png, dpi=100)


def chart_gnuplot(d, r, m, png):
    core, served, sizes, starts = chart_data(d, r)
    dat = os.path.join(d, "chart.dat")
    with open(dat, "w") as f:
        f.write("# group bridge floor\n")
        for label, b, fl in served:
            f.write(f'"{label} rps" {b["rps"]:.0f} {fl["rps"]:.0f}\n')
        for label, b, fl in sizes:
            f.write(f'"size KiB {label}" {b / 1024:.0f} {fl / 1024:.0f}\n')
        for label, b, fl in starts:
            f.write(f'"start ms {label}" {b:.0f} {fl:.0f}\n')
    script = f"""
set terminal pngcairo size 1400,700
set output '{png}'
set title "scripts/bench {m['date'][:10]} ({m['cpu']}): bridge vs floor (log scale)"
set style data histograms
set style histogram clustered
set style fill solid
set logscale y
set xtics rotate by -20
plot '{dat}' using 2:xtic(1) title 'bridge', '' using 3 title 'floor'
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def update_benchmarks_md(generated):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n\n" + generated + "\n" + END + tail)


def report(d):
    r = load_results(d)
    m = machine(r)
    generated = build_report(d, r, m)
    with open(os.path.join(d, "report.md"), "w") as f:
        f.write(generated)
    print(generated)
    png = os.path.join(d, "bench.png")
    try:
        chart_matplotlib(d, r, m, png)
        print(f"chart: {os.path.relpath(png, ROOT)} (matplotlib)")
    except ImportError:
        if shutil.which("gnuplot"):
            chart_gnuplot(d, r, m, png)
            print(f"chart: {os.path.relpath(png, ROOT)} (gnuplot)")
        else:
            print("chart: skipped, neither matplotlib nor gnuplot is available", file=sys.stderr)
    update_benchmarks_md(generated)
    print("BENCHMARKS.md updated")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "oz":
        oz(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 8 and sys.argv[1] == "burst":
        burst(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7])
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
