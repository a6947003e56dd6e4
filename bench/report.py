#!/usr/bin/python3
"""report.py: turns a benchmark run's CSV files into report.md and SVG charts, and compares runs.

    report.py report RESULTS_DIR        (called by bench/run.sh at the end of a run)
    report.py compare RESULTS_A RESULTS_B

Standard library only (Debian's /usr/bin/python3); charts are drawn by gnuplot when installed.
Every number printed comes from results.csv / ceilings.csv in the same directory.
"""
import csv
import os
import shutil
import subprocess
import sys
from collections import defaultdict


def load(directory):
    with open(os.path.join(directory, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    ceilings = defaultdict(dict)
    path = os.path.join(directory, "ceilings.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["rps"]:
                    ceilings[row["kind"]][int(row["concurrency"])] = float(row["rps"])
    return rows, ceilings


def ms(us):
    return f"{int(us) / 1000:.2f}"


def ordered(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def report(directory):
    rows, ceilings = load(directory)
    layers = ordered(r["layer"] for r in rows)
    workloads = ordered(r["workload"] for r in rows)
    levels = sorted({int(r["concurrency"]) for r in rows})
    machine = open(os.path.join(directory, "machine.txt")).read().strip()
    out = ["# Benchmark report", "", "```", machine, "```", ""]
    out += ["Requests per second (higher is better), then p99 latency in milliseconds. "
            "`http%` is the share of the HTTP-only ceiling (GET /ping) at the same concurrency. "
            "A cell marked **ERRORS** had failed requests; its numbers are not comparable.", ""]
    if ceilings:
        out += ["## Ceilings (same machine, same run)", "",
                "| what | " + " | ".join(f"{c} clients" for c in levels) + " |",
                "|---|" + "---|" * len(levels)]
        names = {"http-only": "HTTP layer alone (GET /ping, req/s)",
                 "postgresql": "PostgreSQL alone (pgbench -S, tps)",
                 "redis": "Redis alone (redis-benchmark GET, req/s)"}
        for kind in ("http-only", "postgresql", "redis"):
            if kind in ceilings:
                cells = [f"{ceilings[kind].get(c, 0):,.0f}" for c in levels]
                out.append(f"| {names[kind]} | " + " | ".join(cells) + " |")
        out.append("")
    index = {(r["layer"], r["workload"], int(r["concurrency"])): r for r in rows}
    for w in workloads:
        out += [f"## {w}", "",
                "| layer | " + " | ".join(f"{c} clients: req/s (http%) · p99 ms" for c in levels)
                + " |", "|---|" + "---|" * len(levels)]
        for layer in layers:
            cells = []
            for c in levels:
                r = index.get((layer, w, c))
                if r is None:
                    cells.append("n/a")
                    continue
                rps = float(r["rps"])
                ceiling = ceilings.get("http-only", {}).get(c)
                share = f" ({100 * rps / ceiling:.0f}%)" if ceiling else ""
                flag = " **ERRORS**" if r["flag"] else ""
                cells.append(f"{rps:,.0f}{share} · {ms(r['p99_us'])}{flag}")
            out.append(f"| {layer} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Server resources per measured run", "",
            "| layer | workload | clients | CPU s | peak RSS MiB (since start) | requests | failed |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = int(r["non2xx"]) + int(r["socket_errors"])
        out.append(f"| {r['layer']} | {r['workload']} | {r['concurrency']} | {r['server_cpu_s']} | "
                   f"{int(r['server_peak_rss_kb'] or 0) / 1024:.1f} | {r['requests']} | {failed} |")
    out.append("")
    charts = draw_charts(directory, rows, layers, workloads, levels)
    if charts:
        out += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(out))


def draw_charts(directory, rows, layers, workloads, levels):
    if shutil.which("gnuplot") is None or len(levels) < 2:
        return []
    charts = []
    for metric, label, column in (("throughput", "requests/s", "rps"),
                                  ("p99", "p99 latency (ms)", "p99_us")):
        for w in workloads:
            data = os.path.join(directory, f".{metric}-{w}.dat")
            with open(data, "w") as f:
                for layer in layers:
                    f.write(f"# {layer}\n")
                    for r in rows:
                        if r["layer"] == layer and r["workload"] == w:
                            v = float(r[column]) / (1000 if column == "p99_us" else 1)
                            f.write(f"{r['concurrency']} {v}\n")
                    f.write("\n\n")
            svg = f"{metric}-{w}.svg"
            plots = ", ".join(f"'{data}' index {i} with linespoints title '{layer}'"
                              for i, layer in enumerate(layers))
            script = (f"set terminal svg size 720,420 dynamic font 'sans,11'\n"
                      f"set output '{os.path.join(directory, svg)}'\n"
                      f"set title '{w}: {label} by concurrency'\nset logscale x 2\n"
                      f"set xlabel 'concurrent clients'\nset ylabel '{label}'\nset key top left\n"
                      f"set grid\nplot {plots}\n")
            subprocess.run(["gnuplot"], input=script.encode(), check=True)
            os.remove(data)
            charts.append(svg)
    return charts


def compare(a, b):
    rows_a, _ = load(a)
    rows_b, _ = load(b)
    index_b = {(r["layer"], r["workload"], r["concurrency"]): r for r in rows_b}
    print(f"B / A   (A = {a}, B = {b})")
    print(f"{'layer':24} {'workload':10} {'clients':>7} {'req/s A':>10} {'req/s B':>10} "
          f"{'ratio':>6} {'p99 ms A':>9} {'p99 ms B':>9}")
    for r in rows_a:
        other = index_b.get((r["layer"], r["workload"], r["concurrency"]))
        if other is None:
            continue
        ra, rb = float(r["rps"]), float(other["rps"])
        ratio = rb / ra if ra else float("inf")
        print(f"{r['layer']:24} {r['workload']:10} {r['concurrency']:>7} {ra:>10,.0f} {rb:>10,.0f} "
              f"{ratio:>6.2f} {ms(r['p99_us']):>9} {ms(other['p99_us']):>9}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
