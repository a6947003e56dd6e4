#!/usr/bin/python3
"""summary_join.py: what layer 8's summary join costs, from the timings its replies carry.

    /usr/bin/python3 bench/summary_join.py [--requests N] [--concurrency C] [--out DIR]

`GET /users/{id}/summary` reads the profile document (MongoDB) and the transaction totals
(PostgreSQL) at the same time and answers when both are back; each reply says how long each
read took and how long the whole request took inside the server (`timing`: mongodb_ms,
postgres_ms, total_ms, all from the request's start). If the two reads really overlap, a
summary costs the slower of the two (total ~ max), not their sum (total ~ sum). This command
starts layer 8 on its local stack (./layers up l8, the server built by ./layers build), writes
50 users' profiles and 5 transactions each, sends N summaries from C client threads, and
writes a result folder: summary.csv (one row per request), report.md (percentiles of each
timing, of max and sum of the two reads, and the share of requests that finished before the
sum). The MongoDB here is the native stack's stand-in (CongoDB), not MongoDB.
"""
import argparse
import datetime
import http.client
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 8188  # away from the layer's default, so a running `./layers run l8` is not disturbed
USERS = 50
TRANSACTIONS_PER_USER = 5


def call(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    reply = conn.getresponse()
    data = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"{method} {path} answered {reply.status}: {data[:200]!r}")
    return json.loads(data)


def start_server():
    subprocess.run([f"{ROOT}/layers", "build"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([f"{ROOT}/layers", "up", "l8"], check=True, stdout=subprocess.DEVNULL)
    env_text = subprocess.run([f"{ROOT}/layers", "env", "l8"], check=True, capture_output=True,
                              text=True).stdout
    env = dict(os.environ)
    for line in env_text.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    env.update(PORT=str(PORT), LOG_LEVEL="warn")
    server = subprocess.Popen([f"{ROOT}/build/l8-polyglot-persistence/l8-polyglot-persistence"],
                              env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            if conn.request("GET", "/health") is None and conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("layer 8 did not become healthy within 30 s")


def preload(conn):
    for u in range(1, USERS + 1):
        call(conn, "POST", "/write/document",
             {"key": f"user:sj{u}", "data": {"name": f"user {u}", "tier": "gold"}})
        for _ in range(TRANSACTIONS_PER_USER):
            call(conn, "POST", "/write/transaction",
                 {"user_id": f"sj{u}", "amount": 12.34, "transaction_type": "deposit"})


def client(thread, count, rows, errors):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    for i in range(count):
        user = (thread * count + i) % USERS + 1
        try:
            t = call(conn, "GET", f"/users/sj{user}/summary")["timing"]
            rows.append((t["mongodb_ms"], t["postgres_ms"], t["total_ms"]))
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            errors.append(str(e))
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)


def percentile(values, p):
    """The nearest-rank percentile of sorted values."""
    rank = max(1, int(-(-p * len(values) // 1)))
    return values[rank - 1]


def report(rows, errors, args, started, load):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], capture_output=True,
                           text=True).stdout.strip()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.csv"), "w") as f:
        f.write("mongodb_ms,postgres_ms,total_ms\n")
        for m, p, t in rows:
            f.write(f"{m:.3f},{p:.3f},{t:.3f}\n")
    columns = {
        "MongoDB read (mongodb_ms)": [r[0] for r in rows],
        "PostgreSQL read (postgres_ms)": [r[1] for r in rows],
        "the slower of the two (max)": [max(r[0], r[1]) for r in rows],
        "the two one after the other (sum)": [r[0] + r[1] for r in rows],
        "the request (total_ms)": [r[2] for r in rows],
    }
    before_sum = sum(1 for m, p, t in rows if t < m + p) / len(rows)
    lines = [
        "# Layer 8: the summary join",
        "",
        f"command: /usr/bin/python3 bench/summary_join.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --out {args.out}",
        f"commit: {commit} ({'uncommitted changes' if dirty else 'clean work tree'})",
        f"date: {started:%Y-%m-%dT%H:%M:%SZ}; load average at start: {load}",
        f"requests: {len(rows)} answered 200, {len(errors)} failed; "
        f"{USERS} users, {TRANSACTIONS_PER_USER} transactions each",
        "MongoDB: the native stack's stand-in (CongoDB on Node.js), not MongoDB",
        "",
        "Times in ms from the request's start, inside the server (the replies' `timing`).",
        "",
        "| | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for name, values in columns.items():
        values.sort()
        lines.append(f"| {name} | {percentile(values, 0.5):.2f} | "
                     f"{percentile(values, 0.9):.2f} | {percentile(values, 0.99):.2f} | "
                     f"{values[-1]:.2f} |")
    lines += ["", f"Requests answered before the sum of their two reads: {before_sum:.1%}.", ""]
    if errors:
        lines += ["First failures:", ""] + [f"- {e}" for e in errors[:5]] + [""]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    started = datetime.datetime.now(datetime.timezone.utc)
    parser.add_argument("--out", default=f"bench/results/{started:%Y-%m-%d}-vm-l8-summary")
    args = parser.parse_args()
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    server = start_server()
    try:
        preload(http.client.HTTPConnection("127.0.0.1", PORT, timeout=10))
        rows, errors = [], []
        per_thread = args.requests // args.concurrency
        threads = [threading.Thread(target=client, args=(i, per_thread, rows, errors))
                   for i in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    if not rows:
        sys.exit(f"summary_join.py: no summary answered: {errors[:3]}")
    report(rows, errors, args, started, load)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
