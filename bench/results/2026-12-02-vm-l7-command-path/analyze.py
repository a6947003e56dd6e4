#!/usr/bin/python3
"""analyze.py RAW_DIR: the table of measure.sh's cells (markdown on stdout).

Per layer and client count, over the rounds: writes per second (loadgen's rps), median
(min-max), and the CPU per write (utime+stime between cpu.sh's snapshots, over the cell's
requests) of the layer's programs, of PostgreSQL (every process of its clusters, exited
children included) and of Redis.
"""
import collections
import glob
import os
import re
import statistics
import sys

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
GROUPS = ["programs", "PostgreSQL", "Redis"]


def load(path):
    rows = {}
    for line in open(path):
        p = line.rstrip("\n").split("|")
        if len(p) >= 5:
            rows[p[0]] = (int(p[1]), int(p[2]), p[3])
    return rows


def group(cmd):
    if cmd.startswith("postgres"):
        return "PostgreSQL"
    return "Redis" if "redis-server" in cmd else "programs"


def cell(prefix):
    before, after = load(prefix + ".before"), load(prefix + ".after")
    text = open(prefix + ".lg").read()
    requests = int(re.search(r"requests=(\d+)", text).group(1))
    rps = float(re.search(r"rps=([\d.]+)", text).group(1))
    cpu = collections.Counter()
    for pid, (ticks, children, cmd) in after.items():
        t0, c0 = before.get(pid, (0, 0))[:2]
        exited = children - c0 if re.search(r"postgres -D \S+", cmd) else 0
        cpu[group(cmd)] += ticks - t0 + exited
    return rps, {g: cpu[g] * TICK_US / requests for g in GROUPS}


def spread(values):
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main():
    cells = collections.defaultdict(list)
    for lg in sorted(glob.glob(os.path.join(sys.argv[1], "r*-*.lg"))):
        m = re.match(r"r(\d+)-(.+)-c(\d+)$", os.path.basename(lg)[:-3])
        cells[(m.group(2), int(m.group(3)))].append(cell(lg[:-3]))
    print("| layer | clients | writes/s | " + " | ".join(f"{g} µs/write" for g in GROUPS) +
          " | total µs/write |")
    print("|---|---|---|" + "---|" * (len(GROUPS) + 1))
    for (name, clients), runs in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        us = [statistics.median(r[1][g] for r in runs) for g in GROUPS]
        print(f"| {name} | {clients} | {spread([r[0] for r in runs])} | " +
              " | ".join(f"{u:,.0f}" for u in us) + f" | {sum(us):,.0f} |")


if __name__ == "__main__":
    main()
