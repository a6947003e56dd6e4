#!/usr/bin/python3
"""analyze.py RAW_DIR: the table of measure.sh's cells (markdown on stdout).

For every cell: writes per second (loadgen's rps) and the CPU per write of each kind of process
(utime+stime from cpu.sh's snapshots before and after, over the cell's requests; PostgreSQL's
processes named by their title, their region by their postmaster's port). Then, per layer and
client count, the median (min-max) over the rounds.
"""
import collections
import glob
import os
import re
import statistics
import sys

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
REGION = {"15410": "l1", "15490": "us-east", "15491": "eu-west", "15492": "asia-pac"}
WRITER = {"l1", "eu-west"}  # the region whose clients write (layer 9's X-Region)
GROUPS = ["server", "backends, writing region", "backends, other regions", "walsenders",
          "apply workers", "PostgreSQL, other", "Redis", "delay proxies"]
DATABASES = {"backends, writing region", "backends, other regions", "walsenders",
             "apply workers", "PostgreSQL, other", "Redis"}  # as the harness counts them


def load(path):
    rows = {}
    for line in open(path):
        p = line.rstrip("\n").split("|")
        if len(p) >= 5:
            rows[p[0]] = (int(p[1]), int(p[2]), p[3], p[4])
    return rows


def kind(cmd, parent):
    m = re.search(r"postgres -D \S+ -p (\d+)", parent)
    if cmd.startswith("postgres:"):
        region = REGION.get(m.group(1), "?") if m else "?"
        title = cmd[len("postgres: "):]
        if title.startswith("walsender"):
            return "walsenders"
        if title.startswith("logical replication worker"):
            return "apply workers"
        if re.match(r"\w+ \w+ \d+\.\d+\.\d+\.\d+\(\d+\)", title):
            return "backends, writing region" if region in WRITER else "backends, other regions"
        return "PostgreSQL, other"
    if "delay-proxy" in cmd:
        return "delay proxies"
    if "redis-server" in cmd:
        return "Redis"
    return "server"


def cell(prefix):
    before, after = load(prefix + ".before"), load(prefix + ".after")
    text = open(prefix + ".lg").read()
    requests = int(re.search(r"requests=(\d+)", text).group(1))
    rps = float(re.search(r"rps=([\d.]+)", text).group(1))
    cpu = collections.Counter()
    for pid, (ticks, children, cmd, parent) in after.items():
        t0, c0 = before.get(pid, (0, 0))[:2]
        if re.search(r"postgres -D \S+ -p \d+", cmd):  # a postmaster, and its children gone
            cpu["PostgreSQL, other"] += (ticks - t0) + (children - c0)
        else:
            cpu[kind(cmd, parent)] += ticks - t0
    us = {g: cpu[g] * TICK_US / requests for g in GROUPS}
    us["total"] = sum(us[g] for g in GROUPS)
    us["databases"] = sum(us[g] for g in DATABASES)
    return rps, us


def spread(values, fmt="{:,.0f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main():
    raw = sys.argv[1]
    cells = collections.defaultdict(list)
    for lg in sorted(glob.glob(os.path.join(raw, "r*-*.lg"))):
        tag = os.path.basename(lg)[:-3]
        m = re.match(r"r(\d+)-(.+)-c(\d+)$", tag)
        cells[(m.group(2), int(m.group(3)))].append(cell(lg[:-3]))
    layers = ["l1", "l9", "l9-local"]
    concs = sorted({c for _, c in cells})
    print("writes per second, median (min–max) of the rounds\n")
    print("| clients | " + " | ".join(layers) + " | l9 / l1 | l9-local / l1 |")
    print("|---|" + "---|" * (len(layers) + 2))
    for c in concs:
        med = {l: statistics.median(r for r, _ in cells[(l, c)]) for l in layers if cells[(l, c)]}
        row = [spread([r for r, _ in cells[(l, c)]]) if cells[(l, c)] else "-" for l in layers]
        ratios = [f"{100 * med[l] / med['l1']:.0f}%" if l in med and "l1" in med else "-"
                  for l in ("l9", "l9-local")]
        print(f"| {c} | " + " | ".join(row) + " | " + " | ".join(ratios) + " |")
    print("\nCPU µs per write by process, median (min–max) of the rounds\n")
    head = [f"{l}, {c}" for c in concs for l in layers if cells[(l, c)]]
    print("| process | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for g in GROUPS + ["databases", "total"]:
        row = [spread([u[g] for _, u in cells[(l, c)]]) for c in concs for l in layers
               if cells[(l, c)]]
        name = {"databases": "(databases: PostgreSQL and Redis)", "total": "**total**"}.get(g, g)
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
