#!/usr/bin/python3
"""report.py: turns a benchmark run's CSV files into report.md and SVG charts, and compares runs.

    report.py report RESULTS_DIR          report.md and charts (bench/run.sh calls it at the end)
    report.py summary RESULTS_DIR         a short table on stdout
    report.py readme RESULTS_DIR          the top README's "Measured" tables, as Markdown
    report.py compare RESULTS_A RESULTS_B B against A, cell by cell, with the spread

Every number printed comes from the CSV files in the same folder. A cell (layer, workload,
clients or rate) was measured once per round; it is reported as the median of its clean rounds
with their minimum and maximum (the spread). A round with a failed request, check or warm-up is
never averaged in: the cell says how many rounds failed. Standard library only (Debian's
/usr/bin/python3); the overview chart across layers is written as SVG here, the per-workload
charts are drawn by gnuplot when installed.
"""
import csv
import os
import shutil
import statistics
import subprocess
import sys

WORKLOADS = {
    "read-hit": "`GET /read/{key}` of existing keys, uniform over the preloaded keys.",
    "read-zipf": "`GET /read/{key}` of existing keys, Zipf-distributed (s = 0.99): a few keys are "
                 "hot, the case caches are built for.",
    "read-miss": "`GET /read/{key}` of keys that do not exist (200 with `\"success\":false`).",
    "write": "`POST /write` upserts of random existing keys (100-byte values).",
    "mixed": "90% reads, 10% writes, both Zipf-distributed.",
    "polyglot": "Layer 8 only: 40% `GET /read/{key}` (a MongoDB document through the cache), 30% "
                "`GET /read/transaction/{user_id}`, 10% `POST /write` (a document), 15% "
                "`POST /write/transaction`, 5% `GET /users/{user_id}/summary`; 1,000 users.",
    "txn-read": "Layer 8 only: `GET /read/transaction/{user_id}` over 1,000 users (PostgreSQL "
                "through the cache).",
    "txn-write": "Layer 8 only: `POST /write/transaction` (a deposit of 12.34 into PostgreSQL) over "
                 "1,000 users.",
}
# Layer 6's write queue (bench/run.sh measure_drain): its own section, not a column per client
# count. Its rows: concurrency 1 and rate 0 for the backlog's drain (rps = rows/s with one
# worker), rate > 0 for the commit delay under a steady load (p50/p99/max = the delay).
DRAIN = "drain"
# Layer 7's projection lag (bench/run.sh measure_lag): its own section too. Its row: the steady
# load's connections and rate; rps = the writes/s sustained, p50/p99/max = the lag.
LAG = "lag"
OWN_SECTIONS = (DRAIN, LAG)
CEILINGS = {
    "http-only": "HTTP layer alone (GET /ping on layer 0's server, bench/loadgen), req/s",
    "pg-select": "PostgreSQL primary-key select (pgbench -S -M prepared), transactions/s",
    "pg-pipelined": "PostgreSQL, ten selects per pipeline (pgbench -M prepared), queries/s",
    "pg-write": "PostgreSQL upsert of a 100-byte value into records (pgbench -M prepared), "
                "transactions/s",
    "pg-connect": "PostgreSQL, a new connection per select (pgbench -C -S), transactions/s",
    "redis": "Redis GET of 100-byte values (redis-benchmark), req/s",
}


def read_csv(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def ordered(values):
    return list(dict.fromkeys(values))


def level(row):
    """The column a row belongs to: (rate, clients); rate 0 is the closed loop."""
    return (int(number(row.get("rate")) or 0), int(row["concurrency"]))


def level_name(lv):
    rate, clients = lv
    if rate:
        return f"{rate:,} req/s ({clients} conn)"
    return f"{clients} client{'s' if clients > 1 else ''}"


def clean(row):
    return number(row.get("rps")) is not None and not row.get("flag")


class Cell:
    """The rounds of one (layer, workload, level): medians and spread of the clean ones."""

    def __init__(self, rows):
        self.rows = rows
        self.good = [r for r in rows if clean(r)]
        self.failed = [r for r in rows if not clean(r)]

    def stat(self, column):
        values = [number(r[column]) for r in self.good if number(r.get(column)) is not None]
        if not values:
            return None
        return statistics.median(values), min(values), max(values)

    def flag(self):
        if not self.failed:
            return ""
        kinds = ordered(r["flag"].split(":")[0] or "ERRORS" for r in self.failed)
        if kinds == ["not served"]:
            return self.failed[0]["flag"]
        return f"**{'/'.join(kinds)} in {len(self.failed)} of {len(self.rows)} rounds**"


def spread(stat, scale=1.0, digits=0):
    median, low, high = (v / scale for v in stat)
    fmt = f"{{:,.{digits}f}}"
    text = fmt.format(median)
    if high > low:
        text += f" ({fmt.format(low)}–{fmt.format(high)})"
    return text


def load(directory, drain=False):
    """The cells of results.csv: the drain's and the lag's alone (drain=True), or all the
    others."""
    rows = [r for r in read_csv(directory, "results.csv")
            if (r["workload"] in OWN_SECTIONS) == drain]
    cells = {}
    for r in rows:
        cells.setdefault((r["layer"], r["workload"], level(r)), []).append(r)
    ceilings = {}
    for r in read_csv(directory, "ceilings.csv"):
        ceilings.setdefault((r["kind"], int(r["concurrency"])), []).append(r)
    return rows, {k: Cell(v) for k, v in cells.items()}, ceilings


def ceiling_stat(ceilings, kind, clients):
    rows = [r for r in ceilings.get((kind, clients), [])
            if number(r["rps"]) and not int(r.get("errors") or 0)]
    values = [number(r["rps"]) for r in rows]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def describe(directory):
    path = os.path.join(directory, "machine.txt")
    return open(path).read().strip() if os.path.exists(path) else "(no machine.txt)"


def drain_section(directory):
    """Layer 6's drain: rows/s with one worker, and the commit delay under a steady load."""
    rows, cells, _ = load(directory, drain=True)
    rows = [r for r in rows if r["workload"] == DRAIN]
    cells = {k: c for k, c in cells.items() if k[1] == DRAIN}
    if not rows:
        return [], []
    out = ["## drain", "",
           "A layer with a write queue (layer 6), its worker stopped: a backlog written through "
           "`POST /write` (every reply checked; `checks.csv`), then ONE worker started; **rows/s "
           "mid-drain, between the first and the last poll of `/stats` that saw it under way** "
           "(`writes_processed`, `queue_length`; polled every 50 ms, bench/drain.py). Then, with the worker running, a "
           "steady open-loop write load, and the **acknowledgement-to-commit delay** its writes "
           "saw (`commit_delay_ms` in `/stats`: the worker's commit time minus the stream id's "
           "time, on Redis's clock; 1 ms resolution below 16 ms, 12.5% above). Median of the "
           "clean rounds (min–max).", "",
           "| layer | backlog rows | drain rows/s, one worker | steady load | writes/s sustained "
           "| delay p50 ms | delay p99 ms | delay max ms | delays counted |",
           "|---|---|---|---|---|---|---|---|---|"]
    problems = []

    def show(stat, scale=1.0, digits=0):
        return spread(stat, scale, digits) if stat else "–"

    def with_flag(text, cell):
        return " ".join(filter(None, [text, cell.flag() if cell else ""]))

    for layer in ordered(r["layer"] for r in rows):
        drain = cells.get((layer, DRAIN, (0, 1)))
        delays = [(lv, c) for (lr, _, lv), c in cells.items() if lr == layer and lv[0]]
        rate = drain.stat("rps") if drain else None
        backlog = drain.stat("requests") if drain else None
        for lv, cell in delays or [((0, 0), None)]:
            def stat(column):
                return cell.stat(column) if cell else None
            out.append(
                f"| {layer} | {show(backlog)} | {with_flag(show(rate), drain)} | "
                f"{level_name(lv) if cell else '–'} | {with_flag(show(stat('rps')), cell)} | "
                f"{show(stat('p50_us'), 1000)} | {show(stat('p99_us'), 1000)} | "
                f"{show(stat('max_us'), 1000)} | {show(stat('requests'))} |")
        for cell in [drain] + [c for _, c in delays]:
            for r in (cell.failed if cell else []):
                what = level_name(level(r)) if level(r)[0] else "one worker"
                problems.append(f"- {layer}, drain, {what}, round {r['round']}: "
                                f"{r['flag'] or 'no result'} (raw.log, logs/{layer}.log)")
    out.append("")
    return out, problems


def lag_section(directory):
    """Layer 7's projection lag under a steady write load."""
    rows, cells, _ = load(directory, drain=True)
    rows = [r for r in rows if r["workload"] == LAG]
    if not rows:
        return [], []
    out = ["## lag", "",
           "A layer with a read model fed by a projector (layer 7), caught up, then a steady "
           "open-loop write load; the **projection lag** of its events, measured in the "
           "projector: after each read-model COMMIT, the wall clock minus each event's `at` "
           "(the command transaction's `now()`), one sample per event (the Redis list "
           "`l7:lag`, bench/lag.py). Median of the clean rounds (min–max).", "",
           "| layer | steady load | writes/s sustained | lag p50 ms | lag p99 ms | lag max ms "
           "| samples |", "|---|---|---|---|---|---|---|"]
    problems = []
    for (layer, w, lv), cell in sorted(cells.items(), key=lambda kv: kv[0]):
        if w != LAG:
            continue

        def show(column, scale=1.0, digits=0):
            stat = cell.stat(column)
            return spread(stat, scale, digits) if stat else "–"
        out.append(f"| {layer} | {level_name(lv)} | "
                   f"{' '.join(filter(None, [show('rps'), cell.flag()]))} | "
                   f"{show('p50_us', 1000, 1)} | {show('p99_us', 1000, 1)} | "
                   f"{show('max_us', 1000, 1)} | {show('requests')} |")
        for r in cell.failed:
            problems.append(f"- {layer}, lag, {level_name(lv)}, round {r['round']}: "
                            f"{r['flag'] or 'no result'} (raw.log, logs/{layer}.log)")
    out.append("")
    return out, problems


def report(directory):
    rows, cells, ceilings = load(directory)
    bounds = {(r["layer"], r["workload"]): r["ceiling"] for r in read_csv(directory, "bounds.csv")}
    checks = read_csv(directory, "checks.csv")
    layers = ordered(r["layer"] for r in rows)
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    levels = sorted({level(r) for r in rows})
    clients = sorted({c for _, c in levels} | {c for _, c in ceilings})
    rounds = len({r["round"] for r in rows + load(directory, drain=True)[0]} |
                 {r["round"] for v in ceilings.values() for r in v})
    machine = describe(directory)
    header = " | ".join(level_name(lv) for lv in levels)
    out = ["# Benchmark report", "", "```", machine, "```", "",
           f"Every figure below comes from the CSV files in this folder (raw tool output in "
           f"`raw.log`). Each cell was measured once in each of {rounds} round(s), the rounds "
           "interleaved across layers and ceilings; a figure is the **median of the clean "
           "rounds (minimum–maximum)**. Latencies are those of the measured requests, no "
           "synthetic ones (bench/loadgen), in milliseconds. Every reply was checked (status "
           "and body); a round with any failed request, check or warm-up request is not "
           "averaged in, and the cell says in how many rounds that happened. The **bound** "
           "column is the share of the ceiling that bounds the layer on that workload "
           "(`bounds.csv`), median over median.", ""]

    problems = []
    for key, cell in cells.items():
        for r in cell.failed:
            if r["flag"].startswith("not served"):
                continue
            problems.append(f"- {key[0]}, {key[1]}, {level_name(key[2])}, round {r['round']}: "
                            f"{r['flag'] or 'no result'} (bad status {r.get('bad_status') or 0}, "
                            f"bad body {r.get('bad_body') or 0}, socket {r.get('socket_errors') or 0}, "
                            f"warm-up {r.get('warmup_errors') or 0}, unfinished "
                            f"{r.get('unfinished') or 0}; raw.log, logs/{key[0]}.log)")
    problems += [f"- {r['layer']}, round {r['round']}: {r['step']}: {r['failed']} of "
                 f"{r['requests'] or '?'} requests failed their check" for r in checks
                 if int(r.get("failed") or 0)]
    problems += [f"- ceiling {kind} at {c} clients, round {r['round']}: failed (raw.log)"
                 for (kind, c), rs in ceilings.items() for r in rs if int(r.get("errors") or 0)]
    drain_out, drain_problems = drain_section(directory)
    problems += drain_problems
    lag_out, lag_problems = lag_section(directory)
    problems += lag_problems
    if problems:
        out += ["## Problems in this run", ""] + ordered(problems) + [""]

    if checks:
        out += ["## The data set", "",
                "Written through each layer's API (layer 0's with one SQL INSERT of the same "
                "rows, step `preload (SQL)`: it opens a connection per request), then read back "
                "through the API and checked (every key on layers with a cache, which leaves the "
                "cache warm; an evenly spaced sample on the others):", "", "| layer | round | step | requests | failed | seconds |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['layer']} | {r['round']} | {r['step']} | {r['requests']} | {r['failed']} | "
                f"{r['seconds']} |" for r in checks]
        out.append("")

    if ceilings:
        ch = " | ".join(f"{c} client{'s' if c > 1 else ''}" for c in clients)
        out += ["## Ceilings", "", f"| what | {ch} |", "|---|" + "---|" * len(clients)]
        for kind, label in CEILINGS.items():
            if not any(k == kind for k, _ in ceilings):
                continue
            cellsx = []
            for c in clients:
                s = ceiling_stat(ceilings, kind, c)
                cellsx.append(spread(s) if s else "–")
            out.append(f"| {label} | " + " | ".join(cellsx) + " |")
        out.append("")

    for w in workloads:
        out += [f"## {w}", "", WORKLOADS[w], "",
                "Throughput, req/s: median (min–max) · share of the bounding ceiling:", "",
                f"| layer | bound | {header} |", "|---|---|" + "---|" * len(levels)]
        for layer in layers:
            kind = bounds.get((layer, w), "")
            row = []
            for lv in levels:
                cell = cells.get((layer, w, lv))
                if cell is None:
                    row.append("–")
                    continue
                s = cell.stat("rps")
                text = spread(s) if s else ""
                ceiling = ceiling_stat(ceilings, kind, lv[1]) if kind and not lv[0] else None
                if s and ceiling:
                    text += f" · {100 * s[0] / ceiling[0]:.0f}%"
                row.append(" ".join(filter(None, [text, cell.flag()])) or "–")
            out.append(f"| {layer} | {kind or '–'} | " + " | ".join(row) + " |")
        out += ["", "Latency, ms: p50 / **p99** (min–max) / p99.9:", "",
                f"| layer | {header} |", "|---|" + "---|" * len(levels)]
        for layer in layers:
            row = []
            for lv in levels:
                cell = cells.get((layer, w, lv))
                if cell is None:
                    row.append("–")
                    continue
                p50, p99, p999 = cell.stat("p50_us"), cell.stat("p99_us"), cell.stat("p999_us")
                text = ""
                if p99:
                    text = (f"{p50[0] / 1000:.2f} / **{spread(p99, 1000, 2)}** / "
                            f"{p999[0] / 1000:.2f}")
                row.append(" ".join(filter(None, [text, cell.flag()])) or "–")
            out.append(f"| {layer} | " + " | ".join(row) + " |")
        out.append("")
    out += drain_out
    out += lag_out

    out += ["## Resources and machine", "",
            "Per cell, medians over the clean rounds: CPU time per request of the layer's own "
            "programs and of its databases (every PostgreSQL process, including backends that "
            "ended, and Redis; the CPU of the whole cell, its warm-up included, over every "
            "request answered in it, the warm-up's included), the server's peak RSS; and the "
            "machine during the cell: the "
            "highest 1-minute load average and CPU steal of any round.", "",
            "| layer | workload | clients | requests | server CPU µs/req | databases CPU µs/req | "
            "peak RSS MiB | load1 max | steal % max |", "|---|---|---|---|---|---|---|---|---|"]
    for (layer, w, lv), cell in cells.items():
        if not cell.good:
            continue

        def med(column, per_request=False):
            vals = []
            for r in cell.good:
                # The CPU is read before the warm-up and after the last answer (run.sh's
                # cell_begin and cell_end): it is divided by every request answered in between.
                v, n = number(r.get(column)), number(r.get("requests"))
                if n is not None:
                    n += number(r.get("warmup_requests")) or 0
                if v is not None and (not per_request or n):
                    vals.append(v * 1e6 / n if per_request else v)
            return statistics.median(vals) if vals else None

        def top(column):
            vals = [number(r.get(column)) for r in cell.rows if number(r.get(column)) is not None]
            return max(vals) if vals else None

        def show(v, fmt):
            return "–" if v is None else format(v, fmt)

        rss = med("server_peak_rss_kb")
        out.append(f"| {layer} | {w} | {level_name(lv)} | {show(med('requests'), ',.0f')} | "
                   f"{show(med('server_cpu_s', True), '.0f')} | "
                   f"{show(med('backend_cpu_s', True), '.0f')} | "
                   f"{show(rss / 1024 if rss else None, '.1f')} | {show(top('load1'), '.2f')} | "
                   f"{show(top('steal_pct'), '.1f')} |")
    out.append("")

    charts = draw_charts(directory, cells, ceilings, layers, workloads, levels)
    out += ["## Charts", ""]
    overview = draw_overview(directory, cells, ceilings, layers, workloads, levels)
    if overview:
        out += ["Every layer at one client count: throughput and p99 per workload, medians of "
                "the clean rounds with error bars from the lowest to the highest; dashed lines "
                "are the ceilings (drawn by report.py itself, no plotting library):", "",
                f"![every layer]({overview})", ""]
    if charts:
        out += ["Medians with error bars from the minimum to the maximum round; logarithmic "
                "scales; dashed lines are the ceilings. Rounds with failed requests are left out.",
                ""] + [f"![{c}]({c})" for c in charts]
    else:
        out += ["(Charts need gnuplot and at least two client counts in the closed loop.)"]
    out.append("")
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(out))


def draw_charts(directory, cells, ceilings, layers, workloads, levels):
    closed = [lv for lv in levels if lv[0] == 0]
    if shutil.which("gnuplot") is None or len(closed) < 2:
        return []
    xs = [c for _, c in closed]
    charts = []
    for metric, label, column in (("throughput", "requests per second", "rps"),
                                  ("p99", "p99 latency (ms)", "p99_us")):
        for w in workloads:
            series = []  # (title, [(x, median, low, high)], ceiling?)
            for layer in layers:
                points = []
                for lv in closed:
                    cell = cells.get((layer, w, lv))
                    s = cell.stat(column) if cell else None
                    if s:
                        scale = 1000 if column == "p99_us" else 1
                        points.append((lv[1],) + tuple(v / scale for v in s))
                series.append((layer, points, False))
            if metric == "throughput":
                for kind in ("http-only", "pg-select", "redis"):
                    points = [(c,) + ceiling_stat(ceilings, kind, c) for c in xs
                              if ceiling_stat(ceilings, kind, c)]
                    series.append((f"ceiling: {kind}", points, True))
            series = [s for s in series if s[1]]
            if not series:
                continue
            data = os.path.join(directory, f".{metric}-{w}.dat")
            with open(data, "w") as f:
                for _, points, _ in series:
                    for p in points:
                        f.write(" ".join(f"{v}" for v in p) + "\n")
                    f.write("\n\n")
            plots = ", ".join(
                f"'{data}' index {i} using 1:2 with lines dashtype {2 + i % 3} "
                f"linecolor rgb 'gray{30 + 15 * (i % 3)}' title '{title}'" if dashed else
                f"'{data}' index {i} using 1:2:3:4 with yerrorlines linestyle {i + 1} "
                f"pointtype 7 title '{title}'"
                for i, (title, _, dashed) in enumerate(series))
            svg = f"{metric}-{w}.svg"
            script = "\n".join([
                "set terminal svg size 760,440 dynamic noenhanced font 'sans,11' background rgb 'white'",  # '@' of a variant is literal
                f"set output '{os.path.join(directory, svg)}'",
                f"set title '{w}: {label} by number of clients (median, min-max)'",
                "set logscale x 2", "set logscale y",
                f"set xrange [{xs[0] / 1.5}:{xs[-1] * 1.5}]",
                "set xtics (" + ", ".join(f"'{c}' {c}" for c in xs) + ")",
                "set pointsize 0.8", "set bars 0.5",
                "set xlabel 'concurrent clients'", f"set ylabel '{label}'",
                "set key outside right top", "set grid", f"plot {plots}", ""])
            subprocess.run(["gnuplot"], input=script.encode(), check=True)
            os.remove(data)
            charts.append(svg)
    return charts


OVERVIEW_CLIENTS = 64  # the client count of the overview chart (the highest measured if absent)
OVERVIEW_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b",
                    "#e377c2", "#7f7f7f")


def svg_text(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def log_ticks(low, high):
    """Tick values 1, 2, 5 x 10^k covering [low, high], and the axis range they span."""
    import math
    k = math.floor(math.log10(low))
    ticks = []
    while True:
        for m in (1, 2, 5):
            v = m * 10 ** k
            if v >= low / 5 and (not ticks or ticks[-1] < high):
                ticks.append(v)
        if ticks and ticks[-1] >= high:
            break
        k += 1
    ticks = [t for t in ticks if t >= low / 2.5] or ticks
    bottom = max(t for t in ticks if t <= low) if any(t <= low for t in ticks) else ticks[0]
    return [t for t in ticks if bottom <= t], bottom, ticks[-1]


def tick_label(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def draw_overview(directory, cells, ceilings, layers, workloads, levels):
    """One SVG across every layer: throughput and p99 at 64 clients (closed loop), a bar per
    workload with its median and an error bar from the lowest to the highest clean round;
    dashed lines: the ceilings at that client count. Written without a plotting library."""
    import math
    closed = sorted(c for r, c in levels if r == 0)
    if not closed or not layers or not workloads:
        return None
    clients = OVERVIEW_CLIENTS if OVERVIEW_CLIENTS in closed else closed[-1]
    lv = (0, clients)
    panels = (("throughput", "requests per second (log scale)", "rps", 1.0),
              ("p99", "p99 latency, ms (log scale)", "p99_us", 1000.0))
    bar_w, gap = 11, 14
    group_w = bar_w * len(workloads) + gap
    left, right, top, panel_h, between = 70, 170, 62, 230, 70
    width = left + group_w * len(layers) + right
    height = top + 2 * panel_h + between + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14">Every layer at {clients} clients: median of the '
           f'clean rounds, error bars from the lowest round to the highest</text>',
           f'<text x="10" y="36" fill="#555">'
           f'{svg_text(os.path.basename(os.path.abspath(directory)))} (closed loop; rounds with a '
           f'failed request left out; x: no clean round; 0: nothing answered within the window)</text>']
    for index, (name, label, column, scale) in enumerate(panels):
        y0 = top + index * (panel_h + between)
        stats = {}
        for layer in layers:
            for w in workloads:
                cell = cells.get((layer, w, lv))
                s = cell.stat(column) if cell else None
                if s:
                    stats[(layer, w)] = tuple(v / scale for v in s)
        lines = []
        if name == "throughput":
            for kind in ("http-only", "redis", "pg-select", "pg-write", "pg-connect"):
                s = ceiling_stat(ceilings, kind, clients)
                if s:
                    lines.append((kind, s[0]))
        values = [v for s in stats.values() for v in s if v > 0] + [v for _, v in lines if v > 0]
        if not values:
            continue
        ticks, low, high = log_ticks(min(values), max(values))

        def y_of(v):
            v = max(v, low)
            return y0 + panel_h - panel_h * (math.log10(v) - math.log10(low)) / (
                math.log10(high) - math.log10(low))
        out.append(f'<text x="14" y="{y0 + panel_h / 2}" transform="rotate(-90 14 '
                   f'{y0 + panel_h / 2})" text-anchor="middle">{svg_text(label)}</text>')
        for t in ticks:
            y = y_of(t)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + group_w * len(layers)}" '
                       f'y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">'
                       f'{tick_label(t)}</text>')
        out.append(f'<rect x="{left}" y="{y0}" width="{group_w * len(layers)}" '
                   f'height="{panel_h}" fill="none" stroke="#888"/>')
        label_y = None  # the labels of close ceilings are moved apart, top down
        for kind, v in sorted(lines, key=lambda kv: -kv[1]):
            y = y_of(v)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + group_w * len(layers)}" '
                       f'y2="{y:.1f}" stroke="#444" stroke-dasharray="5,4"/>')
            label_y = y + 4 if label_y is None else max(y + 4, label_y + 12)
            out.append(f'<text x="{left + group_w * len(layers) + 4}" y="{label_y:.1f}" '
                       f'fill="#444">ceiling {svg_text(kind)} {v:,.0f}</text>')
        for i, layer in enumerate(layers):
            gx = left + i * group_w + gap / 2
            for j, w in enumerate(workloads):
                x = gx + j * bar_w
                s = stats.get((layer, w))
                if s is None:
                    cell = cells.get((layer, w, lv))
                    if cell and not cell.flag().startswith("not served"):
                        out.append(f'<text x="{x + bar_w / 2}" y="{y0 + panel_h - 4}" '
                                   f'text-anchor="middle" fill="#d00">x</text>')
                    continue
                median, lo, hi = s
                y = y_of(median)
                if median <= 0:  # nothing answered within the window: said, not hidden
                    out.append(f'<text x="{x + bar_w / 2}" y="{y0 + panel_h - 4}" '
                               f'text-anchor="middle" font-size="9" fill="#555">0</text>')
                out.append(f'<rect x="{x + 1}" y="{y:.1f}" width="{bar_w - 2}" '
                           f'height="{y0 + panel_h - y:.1f}" fill="{OVERVIEW_COLOURS[j % 8]}">'
                           f'<title>{svg_text(layer)}, {svg_text(w)}: {median:,.2f} '
                           f'({lo:,.2f}-{hi:,.2f})</title></rect>')
                cx = x + bar_w / 2
                out.append(f'<path d="M{cx} {y_of(lo):.1f}V{y_of(hi):.1f}M{cx - 3} '
                           f'{y_of(lo):.1f}h6M{cx - 3} {y_of(hi):.1f}h6" stroke="black"/>')
            if index == 1:
                short = layer.split("-")[0] + ("@" + layer.split("@", 1)[1] if "@" in layer else "")
                out.append(f'<text x="{gx + bar_w * len(workloads) / 2}" '
                           f'y="{y0 + panel_h + 16}" text-anchor="middle">{svg_text(short)}</text>')
            else:
                short = layer.split("-")[0]
                out.append(f'<text x="{gx + bar_w * len(workloads) / 2}" '
                           f'y="{y0 + panel_h + 14}" text-anchor="middle" fill="#555">'
                           f'{svg_text(short)}</text>')
        out.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{svg_text(name)}</text>')
    lx = left + group_w * len(layers) + 10
    ly = top + 2 * panel_h + between - 10 - 16 * len(workloads)
    for j, w in enumerate(workloads):
        out.append(f'<rect x="{lx}" y="{ly + 16 * j}" width="10" height="10" '
                   f'fill="{OVERVIEW_COLOURS[j % 8]}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly + 16 * j + 9}">{svg_text(w)}</text>')
    out.append("</svg>")
    name = f"overview-{clients}.svg"
    with open(os.path.join(directory, name), "w") as f:
        f.write("\n".join(out) + "\n")
    return name


def readme_table(directory):
    """The figures of the top README's "Measured" section, as Markdown: the ceilings, then one
    row per layer and workload (req/s at each closed-loop client count, p99 at the highest,
    the bounding ceiling and the share of it, the machine's load and steal during the cell's
    rounds), then the drain and the lag. Every figure: median of the clean rounds (min-max)."""
    rows, cells, ceilings = load(directory)
    bounds = {(r["layer"], r["workload"]): r["ceiling"] for r in read_csv(directory, "bounds.csv")}
    layers = ordered(r["layer"] for r in rows)
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    closed = sorted(lv for lv in {level(r) for r in rows} if lv[0] == 0)
    if not closed:
        return
    top = closed[-1]
    clients = sorted({c for _, c in ceilings})
    print("| ceiling | " + " | ".join(f"{c} clients" for c in clients) + " |")
    print("|---|" + "---|" * len(clients))
    for kind in CEILINGS:
        stats = [ceiling_stat(ceilings, kind, c) for c in clients]
        if any(stats):
            print(f"| {kind} | " + " | ".join(spread(s) if s else "–" for s in stats) + " |")
    print()
    print("| layer | workload | " + " | ".join(f"req/s, {level_name(lv)}" for lv in closed)
          + f" | p99 ms, {level_name(top)} | bound by | share at {top[1]} | load1 · steal % |")
    print("|---|---|" + "---|" * (len(closed) + 4))
    for layer in layers:
        for w in workloads:
            cell_row = [cells.get((layer, w, lv)) for lv in closed]
            if all(c is None for c in cell_row):
                continue
            if all(c and c.flag().startswith("not served") for c in cell_row):
                continue
            texts = []
            for c in cell_row:
                s = c.stat("rps") if c else None
                texts.append(" ".join(filter(None, [spread(s) if s else "", c.flag() if c else ""]))
                             or "–")
            last = cells.get((layer, w, top))
            p99 = last.stat("p99_us") if last else None
            kind = bounds.get((layer, w), "")
            s, ceiling = (last.stat("rps") if last else None), ceiling_stat(ceilings, kind, top[1])
            share = f"{100 * s[0] / ceiling[0]:.0f}%" if s and ceiling else "–"
            loads = [number(r.get("load1")) for c in cell_row if c for r in c.rows
                     if number(r.get("load1")) is not None]
            steals = [number(r.get("steal_pct")) for c in cell_row if c for r in c.rows
                      if number(r.get("steal_pct")) is not None]
            machine = (f"{min(loads):.0f}–{max(loads):.0f} · {max(steals):.1f}"
                       if loads and steals else "–")
            print(f"| {layer.split('-')[0]} | {w} | " + " | ".join(texts) +
                  f" | {spread(p99, 1000, 1) if p99 else '–'} | {kind or '–'} | {share} | "
                  f"{machine} |")
    print()
    _, own, _ = load(directory, drain=True)
    for (layer, w, lv), cell in own.items():
        s = cell.stat("rps")
        p50, p99 = cell.stat("p50_us"), cell.stat("p99_us")
        if w == DRAIN and lv[0] == 0:
            print(f"- {layer}, drain with one worker: {spread(s) if s else 'FAILED'} rows/s "
                  f"{cell.flag()}".rstrip())
        elif w in OWN_SECTIONS:
            what = "acknowledgement-to-commit delay" if w == DRAIN else "projection lag"
            print(f"- {layer}, {what} under {level_name(lv)} "
                  f"({spread(s) if s else '–'} sustained): "
                  + (f"p50 {spread(p50, 1000, 1)} ms, p99 {spread(p99, 1000, 1)} ms"
                     if p50 and p99 else "FAILED") + f" {cell.flag()}".rstrip())


def summary(directory):
    """A compact table for the terminal and CI logs: median req/s per layer and workload."""
    rows, cells, _ = load(directory)
    workloads = ordered(r["workload"] for r in rows)
    width = max([24] + [len(r["layer"]) + 2 for r in rows])  # variants: layer@value
    for lv in sorted({level(r) for r in rows}):
        print(f"\nreq/s at {level_name(lv)}, median of clean rounds (! = a failed round, see "
              "report.md)")
        print(f"{'layer':{width}}" + "".join(f"{w:>12}" for w in workloads))
        for layer in ordered(r["layer"] for r in rows):
            line = []
            for w in workloads:
                cell = cells.get((layer, w, lv))
                s = cell.stat("rps") if cell else None
                failed = cell and cell.failed and not cell.flag().startswith("not served")
                text = f"{s[0]:,.0f}" if s else ("FAILED" if failed else "–")
                line.append(text + ("!" if cell and cell.failed and s else ""))
            print(f"{layer:{width}}" + "".join(f"{c:>12}" for c in line))
    _, drains, _ = load(directory, drain=True)
    for (layer, w, lv), cell in drains.items():
        s = cell.stat("rps")
        if w == LAG:
            p50, p99 = cell.stat("p50_us"), cell.stat("p99_us")
            print(f"lag, {layer}: at {level_name(lv)}: "
                  + (f"p50 {p50[0] / 1000:.1f} ms, p99 {p99[0] / 1000:.1f} ms" if p99 else "FAILED"))
        elif lv[0] == 0:
            print(f"\ndrain, {layer}: {f'{s[0]:,.0f}' if s else 'FAILED'} rows/s with one worker")
        else:
            p50, p99 = cell.stat("p50_us"), cell.stat("p99_us")
            print(f"drain, {layer}: commit delay at {level_name(lv)}: "
                  + (f"p50 {p50[0] / 1000:.0f} ms, p99 {p99[0] / 1000:.0f} ms" if p99 else "FAILED"))


def verdict(a, b, higher_is_better):
    """Whether B differs from A by more than the spread: their min-max ranges do not overlap."""
    if a is None or b is None:
        return "not measured in both"
    (ma, la, ha), (mb, lb, hb) = a, b
    if la == ha or lb == hb:
        return "one round: no spread known"
    if lb > ha:
        return "B better, beyond the spread" if higher_is_better else "B worse, beyond the spread"
    if hb < la:
        return "B worse, beyond the spread" if higher_is_better else "B better, beyond the spread"
    return "within the spread"


def compare(a, b):
    _, cells_a, _ = load(a)
    _, cells_b, _ = load(b)
    for name, directory in (("A", a), ("B", b)):
        print(f"{name}: {directory}")
        for line in describe(directory).splitlines():
            if line.startswith(("date:", "command:", "commit:", "settings:")):
                print(f"   {line}")
    print("Medians (min-max over each run's clean rounds). A difference counts only when the "
          "two min-max ranges do not overlap; ! marks a cell with a failed round.")
    tally = {}  # "req/s" or "p99" -> [(verdict, A's stat, B's stat)], one per cell
    for key in cells_a:
        if key not in cells_b:
            continue
        ca, cb = cells_a[key], cells_b[key]
        ra, rb = ca.stat("rps"), cb.stat("rps")
        pa, pb = ca.stat("p99_us"), cb.stat("p99_us")
        mark = "!" if ca.failed or cb.failed else " "
        ratio = f"{rb[0] / ra[0]:.2f}" if ra and rb and ra[0] else "–"
        print(f"{mark} {key[0]:22} {key[1]:10} {level_name(key[2]):>18}  req/s "
              f"{spread(ra) if ra else '–'} -> {spread(rb) if rb else '–'} (x{ratio}): "
              f"{verdict(ra, rb, True)}; p99 ms {spread(pa, 1000, 2) if pa else '–'} -> "
              f"{spread(pb, 1000, 2) if pb else '–'}: {verdict(pa, pb, False)}")
        for what, x, y in (("req/s", ra, rb), ("p99", pa, pb)):
            tally.setdefault(what, []).append((verdict(x, y, what == "req/s"), x, y))
    print("In all (cells measured in both runs):")
    for what, rows in tally.items():
        counts = {}
        for v, _, _ in rows:
            counts[v] = counts.get(v, 0) + 1
        inside = sum(1 for v, x, y in rows if x and y and x[1] <= y[0] <= x[2])
        print(f"  {what}: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) +
              f"; B's median inside A's min-max in {inside} of {len(rows)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("report", "summary", "readme"):
        {"report": report, "summary": summary, "readme": readme_table}[sys.argv[1]](sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
