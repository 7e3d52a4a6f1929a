#!/usr/bin/env python3
"""Helper of scripts/bench; run by it, not by hand.

  bench-report.py oz COMPONENT OUT
      wasm-opt -Oz for a component: binaryen reads core modules only, so the component's
      largest core module (the program; the others are small adapter shims) is optimised and
      spliced back in place. Prints "CORE_BEFORE CORE_AFTER" (bytes).

  bench-report.py report DIR
      Reads DIR/results.tsv, DIR/core.md and DIR/wrk/*.json; writes DIR/report.md (and prints
      it), DIR/bench.png (matplotlib, or gnuplot when matplotlib is missing) and the generated
      part of BENCHMARKS.md.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys

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
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
