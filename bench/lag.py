#!/usr/bin/python3
"""lag.py: the `lag` workload's reading of layer 7's projection lag (bench/run.sh calls it).

    lag.py caught-up PORT TIMEOUT_S     waits until GET /stats says the projector has applied
                                        everything the outbox holds, and the read model has
                                        every key written; prints the stats
    lag.py read REDIS_PORT              prints "LAG p50_us=... p99_us=... max_us=... count=..."
                                        from the samples in the Redis list l7:lag

Where the lag is measured: in the projector (l7-cqrs/projector.c, record_lag). After each
read-model transaction's COMMIT is acknowledged, it appends one sample per event of the batch
to the list l7:lag: the wall clock at that moment minus the event's `at`, which is the
command transaction's now() in the write database (its start: a command is one statement, so
this is the moment its only round trip began). Both databases and the projector run on one
host, one clock. A sample is therefore the time from the command's transaction starting to
its row being visible in the read model: it includes the command's own commit (its WAL flush),
the NOTIFY, the relay's read, XADD and mark, the projector's XREADGROUP and its transaction.
The list keeps the newest 100,000 samples; bench/run.sh empties it before the load.
"""
import http.client
import json
import subprocess
import sys
import time

POLL_S = 0.050


def caught_up(port, timeout_s):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + timeout_s
    while True:
        conn.request("GET", "/stats")
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"/stats answered {reply.status}: {body[:200]!r}")
        s = json.loads(body)
        # Positions alone cannot say it: an event that committed late is published after a
        # higher position, which the projector's checkpoint (the highest position applied) may
        # already hold, so the counts must agree too (copies after a relay restart are counted
        # once on both sides; a dead letter was published and never applied).
        # And, independent of both counters, every key the write side has a command for is in
        # the read model (write_db_records counts command_keys, read_db_records the read
        # model's rows): what the verification that follows reads back.
        applied = (s.get("events_projected") or 0) + (s.get("dead_letters") or 0)
        if (s.get("outbox_backlog") == 0 and s.get("projection_lag_events") == 0
                and s.get("projector_position") is not None
                and s.get("events_published") is not None
                and applied >= s["events_published"]
                and s.get("read_db_records") is not None
                and s.get("write_db_records") is not None
                and s["read_db_records"] >= s["write_db_records"]):
            return s
        if time.monotonic() > deadline:
            raise RuntimeError(f"not caught up after {timeout_s} s: outbox_backlog "
                               f"{s.get('outbox_backlog')}, projection_lag_events "
                               f"{s.get('projection_lag_events')}, events_published "
                               f"{s.get('events_published')}, events_projected "
                               f"{s.get('events_projected')}, read_db_records "
                               f"{s.get('read_db_records')}, write_db_records "
                               f"{s.get('write_db_records')}")
        time.sleep(POLL_S)


def percentile(values, p):
    """The nearest-rank percentile of sorted values."""
    rank = max(1, int(-(-p * len(values) // 1)))
    return values[rank - 1]


def read(redis_port):
    out = subprocess.run(["redis-cli", "-p", str(redis_port), "--raw", "LRANGE", "l7:lag", "0",
                          "-1"], check=True, capture_output=True, text=True).stdout
    samples = sorted(int(line) for line in out.split())
    if not samples:
        raise RuntimeError("no lag sample was recorded")
    print(f"LAG p50_us={percentile(samples, 0.50)} p99_us={percentile(samples, 0.99)} "
          f"max_us={samples[-1]} count={len(samples)}")


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "caught-up":
            print(json.dumps(caught_up(int(argv[2]), float(argv[3]))))
        elif len(argv) == 3 and argv[1] == "read":
            read(int(argv[2]))
        else:
            sys.exit(__doc__)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError,
            subprocess.CalledProcessError) as e:
        print(f"lag.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
