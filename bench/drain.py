#!/usr/bin/python3
"""drain.py: the `drain` workload's readings of layer 6's GET /stats (bench/run.sh calls it).

    drain.py empty PORT TIMEOUT_S      waits until queue_length is 0; prints the stats
    drain.py rate PORT ROWS TIMEOUT_S  with a backlog of ROWS and one worker just started:
                                       prints "DRAIN rows=... seconds=... rps=..." (see below)
    drain.py delay PORT TIMEOUT_S      waits until queue_length is 0; prints "DELAY p50_us=...
                                       p99_us=... max_us=... count=..." from commit_delay_ms

The drain rate is read from the counters the workers keep in Redis (`writes_processed`, counted
by their finish script after each COMMIT; `queue_length`, XLEN of the stream), polled every
50 ms on one kept-alive connection (a /stats request also counts the cache's keys with SCAN, so
polling faster would take Redis time from the drain it measures). Each poll is dated at the
middle of its round trip. rows/s = (processed at the last poll that still saw a backlog -
processed at the first poll that saw a batch finished) / the time between those two polls:
both are readings taken mid-drain, so the rate is exact to the polls' round trips whatever the
interval, and the first and last partial intervals are left out of both the rows and the time
(when the backlog drains within fewer polls, the first poll that sees it empty is the end: late
by up to one interval). Exit status 1 on a timeout, on rows left out (processed short of ROWS,
dead letters) or when /stats does not answer. A reading whose queue is unavailable (Redis did
not answer the API within REDIS_TIMEOUT_MS, e.g. while a large batch's finish script runs) is
skipped and counted (`unavailable=` in the output); 10 s of them in a row fail the run.
"""
import http.client
import json
import sys
import time

POLL_S = 0.050


UNAVAILABLE_S = 10.0


class Stats:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.unavailable = 0  # readings skipped: the queue was unavailable

    def read(self):
        since = time.monotonic()
        while True:
            sent = time.monotonic()
            self.conn.request("GET", "/stats")
            reply = self.conn.getresponse()
            body = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"/stats answered {reply.status}: {body[:200]!r}")
            stats = json.loads(body)
            if stats.get("queue_available"):
                return (sent + time.monotonic()) / 2, stats
            self.unavailable += 1
            if time.monotonic() - since > UNAVAILABLE_S:
                raise RuntimeError(f"/stats: the queue unavailable for {UNAVAILABLE_S} s")
            time.sleep(POLL_S)


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
    # The worker may finish batches before this first poll (it starts first): the count before
    # the backlog is writes_queued minus the backlog (the queue was empty, and every write of
    # the backlog was acknowledged, so counted by the write script).
    base, dead = s["writes_queued"] - rows, s["dead_letters"]
    backlog = s["queue_length"] + s["writes_processed"] - base
    if s["writes_processed"] < base or backlog < rows:
        raise RuntimeError(f"a backlog of {rows} was expected, the queue holds "
                           f"{s['queue_length']} and {s['writes_processed'] - base} were "
                           f"processed")
    deadline = time.monotonic() + timeout_s
    first = None  # (time, processed) of the first poll after a batch finished
    last = None  # and of the last one that still saw a backlog, if later than the first
    polls = 0
    while True:
        now, s = stats.read()
        polls += 1
        if s["writes_processed"] > base:
            if first is None:
                first = (now, s["writes_processed"])
            elif s["queue_length"] > 0:
                last = (now, s["writes_processed"])
        if first is not None and s["queue_length"] == 0:
            break
        if now > deadline:
            raise RuntimeError(f"{s['queue_length']} entries left after {timeout_s} s")
        time.sleep(POLL_S)
    processed = s["writes_processed"] - base
    if processed < rows or s["dead_letters"] != dead:
        raise RuntimeError(f"{processed} of {rows} rows processed, "
                           f"{s['dead_letters'] - dead} dead letters")
    end = last or (now, s["writes_processed"])
    seconds = end[0] - first[0]
    counted = end[1] - first[1]
    rps = counted / seconds if seconds > 0 else 0.0
    print(f"DRAIN rows={processed} counted_rows={counted} seconds={seconds:.3f} rps={rps:.1f} "
          f"batches={s['batches']} mean_batch_size={s['mean_batch_size']} polls={polls} "
          f"unavailable={stats.unavailable}")
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
