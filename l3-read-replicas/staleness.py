#!/usr/bin/python3
"""How stale can a read without a consistency token be? (layer 3)

Writes a key through the API, reads it back at once on the same keep-alive connection without
a token, and, when the read returns the previous value, reads again until the new one shows,
timing how long the old one was visible. Prints how many of the reads were stale, and for how
long, and where the reads were served from (replica, primary, cache).

Run against a running layer 3 server, e.g. on the local stack:

    ./layers up l3 && eval "$(./layers env l3)"
    build/l3-read-replicas/l3-read-replicas &                     # with Redis: floors and cache
    /usr/bin/python3 l3-read-replicas/staleness.py --writes 500

    REDIS_URL=redis://127.0.0.1:1/0 build/l3-read-replicas/l3-read-replicas &   # without Redis
    /usr/bin/python3 l3-read-replicas/staleness.py --writes 500

Only Python's standard library; nothing here is part of the server.
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"{method} {path}: HTTP {response.status}: {data[:200]!r}")
    return json.loads(data)


def source(reply):
    if reply.get("from_cache"):
        return "cache"
    return "replica" if reply.get("from_replica") else "primary"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8003", help="the layer 3 server")
    parser.add_argument("--writes", type=int, default=500, help="write-then-read rounds")
    parser.add_argument("--key", default="staleness:probe", help="the key written and read")
    args = parser.parse_args()

    url = urllib.parse.urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    path = "/read/" + urllib.parse.quote(args.key, safe="")
    stale_ms = []
    sources = {}
    for i in range(args.writes):
        value = f"v{i}-{time.monotonic_ns()}"
        request(conn, "POST", "/write", json.dumps({"key": args.key, "value": value}))
        written = time.monotonic()
        reply = request(conn, "GET", path)
        sources[source(reply)] = sources.get(source(reply), 0) + 1
        if reply.get("value") == value:
            continue
        while reply.get("value") != value:
            if time.monotonic() - written > 10:
                raise SystemExit(f"round {i}: the write was not visible after 10 s")
            reply = request(conn, "GET", path)
        stale_ms.append((time.monotonic() - written) * 1000)

    print(f"{args.writes} writes, each read back at once without a token")
    print("first reads served by: " +
          ", ".join(f"{name} {count}" for name, count in sorted(sources.items())))
    print(f"stale first reads: {len(stale_ms)} of {args.writes}")
    if stale_ms:
        print(f"old value visible for: median {statistics.median(stale_ms):.2f} ms, "
              f"max {max(stale_ms):.2f} ms (from the write's reply to the first fresh read)")


if __name__ == "__main__":
    main()
