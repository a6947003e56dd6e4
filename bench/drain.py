#!/usr/bin/python3
"""drain.py: the `drain` workload's readings of layer 6's GET /stats (bench/run.sh calls it).

    drain.py empty PORT TIMEOUT_S      waits until queue_length is 0; prints the stats
    drain.py rate PORT ROWS TIMEOUT_S  with a backlog of ROWS and one worker just started:
                                       prints "DRAIN rows=... seconds=... rps=..." (see below)
    drain.py delay PORT TIMEOUT_S      waits until queue_length is 0; prints "DELAY p50_us=...
                                       p99_us=... max_us=... count=..." from commit_delay_ms

The drain rate is read from the counters the workers keep in Redis (`writes_processed`, counted
by their finish script after each COMMIT; `queue_length`, XLEN of the stream), polled every
10 ms on one kept-alive connection: from the first poll that sees a batch finished to the first
that sees the stream empty, rows/s = (processed at the end - processed at the first poll) /
the time between the two polls. The batches finished before the first poll are left out of both
the rows and the time, so the rate is of whole batch cycles; each end is late by at most one
poll (10 ms), small against a backlog of seconds. Exit status 1 on a timeout, on rows left out
(processed short of ROWS, dead letters) or when /stats does not answer.
"""
import http.client
import json
import sys
import time

POLL_S = 0.010


class Stats:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def read(self):
        self.conn.request("GET", "/stats")
        reply = self.conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"/stats answered {reply.status}: {body[:200]!r}")
        stats = json.loads(body)
        if not stats.get("queue_available"):
            raise RuntimeError("/stats: the queue is unavailable")
        return time.monotonic(), stats


def wait_empty(stats, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        now, s = stats.read()
        if s["queue_length"] == 0:
            return s
        if now > deadline:
            raise RuntimeError(f"the queue still holds {s['queue_length']} entries after "
                               f"{timeout_s} s")
        time.sleep(POLL_S)


def rate(stats, rows, timeout_s):
    _, s = stats.read()
    base, dead = s["writes_processed"], s["dead_letters"]
    backlog = s["queue_length"]
    if backlog < rows:
        raise RuntimeError(f"a backlog of {rows} was expected, the queue holds {backlog}")
    deadline = time.monotonic() + timeout_s
    first = None  # (time, processed) of the first poll after a batch finished
    polls = 0
    while True:
        now, s = stats.read()
        polls += 1
        if first is None and s["writes_processed"] > base:
            first = (now, s["writes_processed"])
        if first is not None and s["queue_length"] == 0:
            break
        if now > deadline:
            raise RuntimeError(f"{s['queue_length']} entries left after {timeout_s} s")
        time.sleep(POLL_S)
    processed = s["writes_processed"] - base
    if processed < rows or s["dead_letters"] != dead:
        raise RuntimeError(f"{processed} of {rows} rows processed, "
                           f"{s['dead_letters'] - dead} dead letters")
    seconds = now - first[0]
    counted = s["writes_processed"] - first[1]
    rps = counted / seconds if seconds > 0 else 0.0
    print(f"DRAIN rows={processed} counted_rows={counted} seconds={seconds:.3f} rps={rps:.1f} "
          f"batches={s['batches']} mean_batch_size={s['mean_batch_size']} polls={polls}")
    if seconds <= 0:
        raise RuntimeError("the whole backlog drained between two polls: no rate (use a "
                           "larger backlog)")


def delay(stats, timeout_s):
    s = wait_empty(stats, timeout_s)
    d = s.get("commit_delay_ms") or {}
    if not d.get("count"):
        raise RuntimeError("no commit delay was counted")
    print(f"DELAY p50_us={d['p50'] * 1000} p99_us={d['p99'] * 1000} max_us={d['max'] * 1000} "
          f"count={d['count']}")


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "empty":
            print(json.dumps(wait_empty(Stats(int(argv[2])), float(argv[3]))))
        elif len(argv) == 5 and argv[1] == "rate":
            rate(Stats(int(argv[2])), int(argv[3]), float(argv[4]))
        elif len(argv) == 4 and argv[1] == "delay":
            delay(Stats(int(argv[2])), float(argv[3]))
        else:
            sys.exit(__doc__)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        print(f"drain.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
