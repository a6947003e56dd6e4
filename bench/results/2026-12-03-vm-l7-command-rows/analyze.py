#!/usr/bin/python3
"""analyze.py raw.txt: median (min-max) of tps and PostgreSQL CPU per transaction, by variant."""
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("round="):
        continue
    f = dict(kv.split("=") for kv in line.split())
    rows.setdefault(f["variant"], []).append((int(f["tps"]), int(f["pg_cpu_us_per_tx"])))
print("| variant | tps, median (min-max) | PostgreSQL CPU a transaction, us, median (min-max) | rounds |")
print("|---|---|---|---|")
for v in ("three", "lock2", "lock2x", "two", "one", "l1"):
    if v not in rows:
        continue
    tps = [r[0] for r in rows[v]]
    cpu = [r[1] for r in rows[v]]
    print(f"| {v} | {statistics.median(tps):,.0f} ({min(tps):,}-{max(tps):,}) | "
          f"{statistics.median(cpu):.0f} ({min(cpu)}-{max(cpu)}) | {len(rows[v])} |")
