#!/usr/bin/python3
"""regions.py: layer 9's own measurements, the costs its README quotes.

    regions.py OUT_DIR [--rounds R]     (a running l9 server at $API_URL, default :8009,
                                         with its three regions and WAN links up)

What it measures, R rounds (default 3) of each, one keep-alive connection per client, in
order, so that rounds interleave:
  - local-read:     GET /read of a key that exists, from each region's clients (X-Region),
                    200 requests: served in the client's own region;
  - eventual-write: POST /write from each region, 200 requests;
  - strong-write:   POST /write?consistency=strong from each region, 30 requests: each waits
                    until both other regions have applied it (their round trips);
  - lag:            replication lag per region pair (GET /stats: the newest heartbeat's commit
                    there to its apply here), sampled every 100 ms for 10 s under a steady
                    load of eventual writes (one client, as fast as it goes, from us-east).
regions.md also sets each strong write against the issue's target, the slowest link's round trip
(twice the largest link_latency_ms of its region in GET /regions) plus a local commit (the p50
of that region's eventual writes in the same round): per round, strong p50 / target - 1.
Failover (a region's reads served by the nearest other one) needs a region stopped: run with
--failover REGION after `./layers stop l9 REGION`: it then measures local-read for that
region's clients only, labelled failover-read.

Latency is the client's (request sent to reply read, on 127.0.0.1), in milliseconds; each
round's p50 and p99 go to OUT_DIR/regions.csv, and OUT_DIR/regions.md summarises them as the
median of the rounds' p50 and p99 with their min-max. The server's own latency_ms and the
machine's load are in machine.txt (uptime, nproc, the commit measured).
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

REGIONS = ["us-east", "eu-west", "asia-pac"]


def url():
    u = os.environ.get("API_URL", "http://127.0.0.1:8009")
    host, port = u.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def conn():
    host, port = url()
    return http.client.HTTPConnection(host, port, timeout=30)


def request(c, method, path, body=None, headers=None):
    t0 = time.perf_counter()
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    ms = (time.perf_counter() - t0) * 1000
    if r.status != 200:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return ms, json.loads(data)


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_cell(kind, region, n, rnd):
    c = conn()
    h = {"X-Region": region, "Content-Type": "application/json"}
    times = []
    for i in range(n):
        if kind in ("local-read", "failover-read"):
            ms, reply = request(c, "GET", "/read/regions:seed", headers=h)
            if reply.get("value") != "seed":
                raise RuntimeError(f"read: {reply}")
        else:
            path = "/write?consistency=strong" if kind == "strong-write" else "/write"
            body = json.dumps({"key": f"regions:{kind}:{region}:{rnd}:{i}", "value": "x" * 100})
            ms, reply = request(c, "POST", path, body=body, headers=h)
            if kind == "strong-write" and reply.get("strong_timed_out"):
                raise RuntimeError(f"strong write timed out: {reply}")
        times.append(ms)
    c.close()
    return times


def lag_cell(seconds):
    stop = threading.Event()

    def load():
        c = conn()
        i = 0
        while not stop.is_set():
            body = json.dumps({"key": f"regions:lag:{i % 1000}", "value": "y" * 100})
            request(c, "POST", "/write", body=body, headers={"X-Region": "us-east"})
            i += 1

    t = threading.Thread(target=load)
    t.start()
    samples = {}
    c = conn()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, stats = request(c, "GET", "/stats")
        for r, s in stats["regions"].items():
            for p, ms in s["replication_lag_ms"].items():
                if ms is not None:
                    samples.setdefault(f"{p}->{r}", []).append(ms)
        time.sleep(0.1)
    stop.set()
    t.join()
    return samples


def strong_against_target(rows):
    """Strong writes' p50 against the slowest link's round trip plus a local commit."""
    _, regions = request(conn(), "GET", "/regions")
    slowest = {r["name"]: max(r["link_latency_ms"].values()) for r in regions["regions"]}
    p50 = {(r[0], r[1], r[2]): r[4] for r in rows}
    text = ("\n| strong write from | slowest link round trip ms | + local commit (eventual p50) ms "
            "| strong p50 ms | over the target: median (min-max) |\n|---|---|---|---|---|\n")
    for region in REGIONS:
        over, commits, strongs = [], [], []
        for rnd in sorted({r[0] for r in rows}):
            commit = p50.get((rnd, "eventual-write", region))
            strong = p50.get((rnd, "strong-write", region))
            if commit is None or strong is None:
                continue
            commits.append(commit)
            strongs.append(strong)
            over.append(100 * (strong / (2 * slowest[region] + commit) - 1))
        if over:
            text += (f"| {region} | {2 * slowest[region]:.0f} | {statistics.median(commits):.1f} "
                     f"| {statistics.median(strongs):.1f} | {statistics.median(over):+.1f}% "
                     f"({min(over):+.1f}%..{max(over):+.1f}%) |\n")
    return text


def main():
    out = sys.argv[1]
    rounds = 3
    failover = None
    args = sys.argv[2:]
    while args:
        if args[0] == "--rounds":
            rounds = int(args[1])
            args = args[2:]
        elif args[0] == "--failover":
            failover = args[1]
            args = args[2:]
        else:
            sys.exit(f"unknown option {args[0]}")
    os.makedirs(out, exist_ok=True)
    c = conn()
    request(c, "POST", "/write?consistency=strong", body=json.dumps({"key": "regions:seed", "value": "seed"}),
            headers={"X-Region": "us-east" if failover != "us-east" else "eu-west"})
    time.sleep(1)
    rows = []
    for rnd in range(rounds):
        if failover:
            cells = [("failover-read", failover, 200)]
        else:
            cells = [(k, r, n) for k, n in (("local-read", 200), ("eventual-write", 200),
                                            ("strong-write", 30)) for r in REGIONS]
        for kind, region, n in cells:
            t = run_cell(kind, region, n, rnd)
            rows.append((rnd, kind, region, len(t), pct(t, 50), pct(t, 99)))
            print(f"round {rnd} {kind} {region}: p50 {pct(t, 50):.2f} ms p99 {pct(t, 99):.2f} ms",
                  file=sys.stderr)
        if not failover:
            for pair, s in sorted(lag_cell(10).items()):
                rows.append((rnd, "lag", pair, len(s), pct(s, 50), pct(s, 99)))
    name = "failover.csv" if failover else "regions.csv"
    with open(os.path.join(out, name), "w") as f:
        f.write("round,measure,region,samples,p50_ms,p99_ms\n")
        for r in rows:
            f.write(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]:.2f},{r[5]:.2f}\n")
    summary = {}
    for r in rows:
        summary.setdefault((r[1], r[2]), []).append((r[4], r[5]))
    with open(os.path.join(out, name.replace(".csv", ".md")), "a") as f:
        f.write("| measure | region | p50 ms: median (min-max) | p99 ms: median (min-max) |\n")
        f.write("|---|---|---|---|\n")
        for (measure, region), v in summary.items():
            p50 = [x[0] for x in v]
            p99 = [x[1] for x in v]
            f.write(f"| {measure} | {region} | {statistics.median(p50):.1f} ({min(p50):.1f}-{max(p50):.1f}) "
                    f"| {statistics.median(p99):.1f} ({min(p99):.1f}-{max(p99):.1f}) |\n")
    if not failover:
        with open(os.path.join(out, "regions.md"), "a") as f:
            f.write(strong_against_target(rows))
    with open(os.path.join(out, "machine.txt"), "a") as f:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        f.write(f"{name}: commit {commit}{' (dirty)' if dirty else ''}, nproc {os.cpu_count()}, "
                f"load {open('/proc/loadavg').read().strip()}\n")


if __name__ == "__main__":
    main()
