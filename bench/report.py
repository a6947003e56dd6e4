#!/usr/bin/python3
"""report.py: turns a benchmark run's CSV files into report.md and SVG charts, and compares runs.

    report.py report RESULTS_DIR          report.md and charts (bench/run.sh calls it at the end)
    report.py summary RESULTS_DIR         a short table on stdout
    report.py compare RESULTS_A RESULTS_B B/A, workload by workload

Every number printed comes from results.csv and ceilings.csv in the same folder; nothing is
averaged across runs, and a run with failed requests is shown as such, never as a number alone.
Standard library only (Debian's /usr/bin/python3); charts are drawn by gnuplot when installed.
"""
import csv
import math
import os
import shutil
import subprocess
import sys

WORKLOADS = {
    "read-hit": "`GET /read/{key}` of existing keys, uniform over the preloaded keys.",
    "read-zipf": "`GET /read/{key}` of existing keys, Zipf-distributed (s = 0.99): a few keys are "
                 "hot, the case caches are built for.",
    "read-miss": "`GET /read/{key}` of keys that do not exist (200 with `\"success\":false`).",
    "write": "`POST /write` upserts of random existing keys (100-byte values).",
    "mixed": "90% reads, 10% writes, both Zipf-distributed.",
}
CEILINGS = {
    "http-only": "HTTP layer alone (GET /ping), req/s",
    "postgresql": "PostgreSQL alone (pgbench -S), transactions/s",
    "redis": "Redis alone (redis-benchmark GET), req/s",
}


def load(directory):
    """The rows of results.csv, and ceilings.csv as {kind: {clients: row}}."""
    with open(os.path.join(directory, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    ceilings = {}
    path = os.path.join(directory, "ceilings.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                ceilings.setdefault(row["kind"], {})[int(row["concurrency"])] = row
    return rows, ceilings


def ordered(values):
    return list(dict.fromkeys(values))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def ms(us):
    value = number(us)
    return "–" if value is None else f"{value / 1000:.2f}"


def failed(row):
    return int(row.get("non2xx") or 0) + int(row.get("socket_errors") or 0)


def status(row):
    """'' for a clean run, else what the reader must know instead of (or with) the number."""
    flag = row.get("flag", "")
    if flag.startswith("not served"):
        return flag
    if flag.startswith("FAILED"):
        return "**FAILED**"
    if flag == "ERRORS" or failed(row):
        return f"**ERRORS: {failed(row):,} failed**"
    return ""


def ceiling_rps(ceilings, kind, clients):
    row = ceilings.get(kind, {}).get(clients)
    value = number(row["rps"]) if row else None
    return value if value else None


def describe(directory):
    path = os.path.join(directory, "machine.txt")
    return open(path).read().strip() if os.path.exists(path) else "(no machine.txt)"


def report(directory):
    rows, ceilings = load(directory)
    layers = ordered(r["layer"] for r in rows)
    workloads = ordered(r["workload"] for r in rows)
    levels = sorted({int(r["concurrency"]) for r in rows} |
                    {c for kind in ceilings.values() for c in kind})
    index = {(r["layer"], r["workload"], int(r["concurrency"])): r for r in rows}
    machine = describe(directory)
    latency = next((line.split("db_latency=")[1].replace("ms", " ms") for line in machine.splitlines()
                    if "db_latency=" in line), "0ms")
    header = " | ".join(f"{c} client{'s' if c > 1 else ''}" for c in levels)
    out = ["# Benchmark report", "", "```", machine, "```", "",
           "Every figure below comes from `results.csv` and `ceilings.csv` in this folder (raw tool "
           "output in `raw.log`). Requests per second are higher-better; latencies are in "
           "milliseconds, lower-better. Percentages compare a layer with the ceilings measured "
           "in the same run at the same number of clients: **http** is the share of the HTTP "
           "layer alone (what any layer could reach on this machine), **pg** the share of "
           "PostgreSQL alone (above 100% means a cache serves more than the database could). "
           "A run with failed requests is marked **ERRORS** and is not comparable; a run that "
           "could not be made is marked **FAILED**.", ""]
    if latency not in ("0 ms", "0"):
        out += [f"PostgreSQL was {latency} away in each direction (`--db-latency`): the servers "
                "and pgbench reached it through `delay-proxy`.", ""]

    problems = ordered(f"- {r['layer']}: {r['flag']}" for r in rows
                       if r["flag"].startswith(("FAILED", "not served")))
    problems += ordered(f"- {r['layer']}, {r['workload']} at {r['concurrency']} clients: "
                        f"{failed(r):,} failed requests ({r['non2xx']} responses with status "
                        f">= 400, {r['socket_errors']} socket errors; see logs/{r['layer']}.log)"
                        for r in rows if r["flag"] == "ERRORS")
    problems += [f"- ceiling {kind} at {c} clients: failed (see raw.log and logs/ceilings.log)"
                 for kind, by_clients in ceilings.items() for c, row in by_clients.items()
                 if int(row.get("errors") or 0)]
    if problems:
        out += ["## Problems in this run", ""] + problems + [""]

    if ceilings:
        out += ["## Ceilings", "", f"| what | {header} |", "|---|" + "---|" * len(levels)]
        for kind, label in CEILINGS.items():
            if kind not in ceilings:
                continue
            cells = []
            for c in levels:
                row = ceilings[kind].get(c)
                if row is None:
                    cells.append("–")
                    continue
                rps = number(row["rps"])
                detail = []
                if number(row.get("p99_us")) is not None:
                    detail.append(f"p99 {ms(row['p99_us'])}")
                elif number(row.get("avg_us")) is not None:
                    detail.append(f"avg {ms(row['avg_us'])}")
                text = f"{rps:,.0f}" if rps else "–"
                if detail:
                    text += f" · {detail[0]} ms"
                if int(row.get("errors") or 0):
                    text += " **ERRORS**"
                cells.append(text)
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")

    for w in workloads:
        out += [f"## {w}", "", WORKLOADS.get(w, ""), "",
                f"Throughput, req/s (share of the http / pg ceilings):", "",
                f"| layer | {header} |", "|---|" + "---|" * len(levels)]
        for layer in layers:
            cells = []
            for c in levels:
                r = index.get((layer, w, c))
                if r is None:
                    cells.append("–")
                    continue
                rps = number(r["rps"])
                if rps is None:
                    cells.append(status(r) or "–")
                    continue
                shares = []
                for kind, short in (("http-only", "http"), ("postgresql", "pg")):
                    ceiling = ceiling_rps(ceilings, kind, c)
                    if ceiling:
                        shares.append(f"{100 * rps / ceiling:.0f}% {short}")
                text = f"{rps:,.0f}" + (f" ({', '.join(shares)})" if shares else "")
                cells.append(" ".join(filter(None, [text, status(r)])))
            out.append(f"| {layer} | " + " | ".join(cells) + " |")
        out += ["", "Latency, ms: p50 / p90 / **p99** / max:", "",
                f"| layer | {header} |", "|---|" + "---|" * len(levels)]
        for layer in layers:
            cells = []
            for c in levels:
                r = index.get((layer, w, c))
                if r is None or number(r["rps"]) is None:
                    cells.append("–" if r is None else status(r) or "–")
                    continue
                text = (f"{ms(r['p50_us'])} / {ms(r['p90_us'])} / **{ms(r['p99_us'])}** / "
                        f"{ms(r['max_us'])}")
                cells.append(" ".join(filter(None, [text, status(r)])))
            out.append(f"| {layer} | " + " | ".join(cells) + " |")
        out.append("")

    out += ["## Resources", "",
            "CPU time during each measured run, per request: the server's, and the databases' "
            "(every PostgreSQL process, including the backends that ended, and Redis). Peak RSS "
            "is the server's resident memory at its highest during the run.", "",
            "| layer | workload | clients | requests | failed | server CPU µs/req | "
            "databases CPU µs/req | server peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        requests = int(number(r.get("requests")) or 0)
        if not requests:
            continue

        def per_request(column):
            value = number(r.get(column))
            return "–" if value is None else f"{value * 1e6 / requests:.0f}"

        rss = number(r.get("server_peak_rss_kb"))
        out.append(f"| {r['layer']} | {r['workload']} | {r['concurrency']} | {requests:,} | "
                   f"{failed(r):,} | {per_request('server_cpu_s')} | "
                   f"{per_request('backend_cpu_s')} | "
                   f"{'–' if rss is None else f'{rss / 1024:.1f}'} |")
    out.append("")

    charts = draw_charts(directory, rows, ceilings, layers, workloads, levels,
                         None if latency in ("0 ms", "0") else latency)
    out += ["## Charts", ""]
    if charts:
        out += ["Throughput on a logarithmic scale; the dashed lines are the ceilings. Points of "
                "runs with failed requests are left out.", ""]
        out += [f"![{c}]({c})" for c in charts]
    elif len(levels) < 2:
        out += ["(Charts need at least two concurrency levels.)"]
    else:
        out += ["(gnuplot is not installed: no charts.)"]
    out.append("")
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(out))


def draw_charts(directory, rows, ceilings, layers, workloads, levels, latency):
    if shutil.which("gnuplot") is None or len(levels) < 2:
        return []
    where = f" (PostgreSQL {latency} away)" if latency else ""
    charts = []
    for metric, label, column in (("throughput", "requests per second", "rps"),
                                  ("p99", "p99 latency (ms)", "p99_us")):
        for w in workloads:
            series = []  # (title, points, dashed)
            for layer in layers:
                points = [(int(r["concurrency"]), number(r[column])) for r in rows
                          if r["layer"] == layer and r["workload"] == w and
                          number(r[column]) is not None and not status(r)]
                series.append((layer, points, None))
            if metric == "throughput":
                for kind, title, style in (
                        ("http-only", "ceiling: HTTP alone", "dashtype 2 linecolor rgb 'gray30'"),
                        ("postgresql", "ceiling: PostgreSQL alone",
                         "dashtype 3 linecolor rgb 'gray50'")):
                    points = [(c, ceiling_rps(ceilings, kind, c)) for c in levels
                              if ceiling_rps(ceilings, kind, c)]
                    series.append((title, points, style))
            series = [s for s in series if s[1]]
            if not series:
                continue
            data = os.path.join(directory, f".{metric}-{w}.dat")
            with open(data, "w") as f:
                for _, points, _ in series:
                    for c, v in sorted(points):
                        f.write(f"{c} {v / 1000 if column == 'p99_us' else v}\n")
                    f.write("\n\n")
            plots = ", ".join(
                f"'{data}' index {i} with "
                + (f"lines {style} " if style else f"linespoints linestyle {i + 1} pointtype 7 ")
                + f"title '{title}'"
                for i, (title, _, style) in enumerate(series))
            svg = f"{metric}-{w}.svg"
            script = "\n".join([
                "set terminal svg size 760,440 dynamic font 'sans,11' background rgb 'white'",
                f"set output '{os.path.join(directory, svg)}'",
                f"set title '{w}: {label} by number of clients{where}'",
                "set logscale x 2", "set logscale y",
                f"set xrange [{levels[0] / 1.5}:{levels[-1] * 1.5}]",
                "set xtics (" + ", ".join(f"'{c}' {c}" for c in levels) + ")",
                "set pointsize 0.8",
                "set xlabel 'concurrent clients'", f"set ylabel '{label}'",
                "set key outside right top", "set grid",
                f"plot {plots}", ""])
            subprocess.run(["gnuplot"], input=script.encode(), check=True)
            os.remove(data)
            charts.append(svg)
    return charts


def summary(directory):
    """A compact table for the terminal and CI logs: req/s per layer and workload."""
    rows, _ = load(directory)
    workloads = ordered(r["workload"] for r in rows)
    for c in sorted({int(r["concurrency"]) for r in rows}):
        print(f"\nreq/s at {c} client{'s' if c > 1 else ''} (! = failed requests, see report.md)")
        print(f"{'layer':24}" + "".join(f"{w:>12}" for w in workloads))
        for layer in ordered(r["layer"] for r in rows):
            cells = []
            for w in workloads:
                r = next((x for x in rows if x["layer"] == layer and x["workload"] == w and
                          int(x["concurrency"]) == c), None)
                if r is None:
                    cells.append("–")
                elif number(r["rps"]) is None:
                    cells.append("FAILED" if r["flag"].startswith("FAILED") else "n/a")
                else:
                    cells.append(f"{number(r['rps']):,.0f}" + ("!" if status(r) else ""))
            print(f"{layer:24}" + "".join(f"{cell:>12}" for cell in cells))


def compare(a, b):
    rows_a, _ = load(a)
    rows_b, _ = load(b)
    index_b = {(r["layer"], r["workload"], r["concurrency"]): r for r in rows_b}
    for name, directory in (("A", a), ("B", b)):
        lines = describe(directory).splitlines()
        print(f"{name}: {directory}")
        for line in lines:
            if line.startswith(("date:", "command:", "settings:")):
                print(f"   {line}")
    print("ratio = B / A; throughput above 1 and p99 below 1 mean B is better. "
          "! marks runs with failed requests.")
    for w in ordered(r["workload"] for r in rows_a):
        print(f"\n{w}")
        print(f"  {'layer':24} {'clients':>7} {'req/s A':>10} {'req/s B':>10} {'ratio':>6}"
              f" {'p99 ms A':>9} {'p99 ms B':>9} {'ratio':>6}")
        logs = []
        for r in rows_a:
            if r["workload"] != w:
                continue
            other = index_b.get((r["layer"], r["workload"], r["concurrency"]))
            if other is None:
                continue
            ra, rb = number(r["rps"]), number(other["rps"])
            pa, pb = number(r["p99_us"]), number(other["p99_us"])
            if ra is None or rb is None:
                print(f"  {r['layer']:24} {r['concurrency']:>7}  (not measured in both)")
                continue
            mark = "!" if status(r) or status(other) else " "
            ratio = rb / ra if ra else math.inf
            p_ratio = pb / pa if pa else math.inf
            if mark == " " and ra and rb:
                logs.append(math.log(rb / ra))
            print(f"{mark} {r['layer']:24} {r['concurrency']:>7} {ra:>10,.0f} {rb:>10,.0f} "
                  f"{ratio:>6.2f} {ms(pa):>9} {ms(pb):>9} {p_ratio:>6.2f}")
        if logs:
            print(f"  geometric mean of the throughput ratios: {math.exp(sum(logs) / len(logs)):.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("report", "summary"):
        (report if sys.argv[1] == "report" else summary)(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
