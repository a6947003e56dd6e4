#!/usr/bin/python3
"""reliability: `./layers chaos` and `./layers soak` (docs/reliability.md).

Both run one layer on its local stack (./layers up has started its backends, ./layers build
its programs) under a steady mixed load from this program, and write what they saw, with the
commit, into a result folder:

  chaos: while the load runs, faults are injected one after another, each for a set time:
         every backend SIGKILLed (then started again), hung (SIGSTOP of all its processes, then
         SIGCONT), made slow (a delay-proxy in front of it switched to a long delay), and each
         helper program (layer 6's worker, layer 7's relay and projector) SIGKILLed and started.
         Per fault: requests by outcome (200, 503, other, no answer within the client
         timeout), time to the first 503, time to recovery after the fault ends, the server's
         RSS. Afterwards every acknowledged write is read back and must be there, not older.
  soak:  the same load for N minutes; every few seconds RSS, open descriptors, the /stats
         endpoint's pool and cache sizes and latency; a CSV and an SVG plot; passes when RSS
         and descriptors are flat after the warm-up (the rule: see soak_verdict).

The load: T threads, each with its own keep-alive connection and its own keys (so writes to a
key are sequential and the newest acknowledged value is known). Every write's value is unique
(`<run>:<thread>:<seq>`); a read-back must return a value of this run with a sequence number at
least the last acknowledged one (a later write that was answered 503 or not at all may have
been applied too: newer is fine, older is a lost write).

Only Debian's python3 and its standard library. Exit status 1 on a server crash, a lost write
or a request without answer past its deadline (chaos), or on growth (soak).
"""

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"chaos: {msg}" if MODE == "chaos" else f"soak: {msg}", file=sys.stderr, flush=True)


MODE = "chaos"


# ---- the layer: settings, programs, backends ----


def layers_cmd(*args, check=True):
    return subprocess.run([os.path.join(ROOT, "layers"), *args], check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def table(func, n):
    """A function of scripts/layers-table.sh, its output split into words."""
    out = subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/layers-table.sh"; {func} {n}'],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.split()


# Headers every request of the load sends (layer 10's API key: layer_client_header).
CLIENT_HEADERS = {}


def client_headers(n):
    """The layer's client header (scripts/layers-table.sh layer_client_header), as a dict."""
    out = subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/layers-table.sh"; '
                          f'layer_client_header {n}'],
                         check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    name, sep, value = out.partition(":")
    return {name.strip(): value.strip()} if sep else {}


def layer_dir_name(n):
    """l1-connection-pooling for 1 (LAYER_NAMES in scripts/layers-table.sh)."""
    return subprocess.run(
        ["bash", "-c", f'source "{ROOT}/scripts/layers-table.sh"; echo "${{LAYER_NAMES[{n}]}}"'],
        check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def layer_env(n):
    env = {}
    for line in layers_cmd("env", f"l{n}").stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            env[name] = value
    return env


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def descendants(pid):
    """pid and every process below it (a PostgreSQL postmaster's backends)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class Layer:
    """One layer on its local stack: its server (started here), helpers and backends."""

    def __init__(self, n, out_dir, proxies):
        self.n = n
        self.name = layer_dir_name(n)
        # The stores the server depends on (layer 10's Prometheus only watches: no faults).
        stores = [(k, name) for k, name in zip(table("layer_backends", n),
                                                table("layer_backend_names", n))
                  if k in ("pg", "standby", "redis", "mongo")]
        self.kinds = [k for k, _ in stores]
        # A name ./layers gives to several backends (layer 9's region: its PostgreSQL and its
        # Redis) is told apart here by kind; ./layers start gets the shared name back.
        self.stack_name = {}
        for k, name in stores:
            shared = sum(1 for _, other in stores if other == name) > 1
            self.stack_name[f"{name} ({'pg' if k == 'standby' else k})" if shared else name] = name
        self.names = list(self.stack_name)
        self.helpers = table("layer_helpers", n)
        stats = table("layer_stats_path", n)
        self.stats_path = stats[0] if stats else None
        self.state = subprocess.run(
            ["bash", "-c", f'source "{ROOT}/scripts/stack.sh"; ROOT="{ROOT}"; '
             f'source <(sed -n "/^state_dir()/,/^}}/p" "{ROOT}/layers"); state_dir'],
            check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        self.env = layer_env(n)
        if n == 10:  # the load measures faults, so layer 10's own rate limit must not refuse it
            self.env.setdefault("RATE_LIMIT_REQUESTS", "100000000")
        self.port = 8000 + n
        self.env["PORT"] = str(self.port)
        self.env.setdefault("LOG_LEVEL", "warn")
        self.out_dir = out_dir
        self.server = None
        self.proxies = {}  # backend name -> (proxy process, listen port, upstream port)
        if proxies:
            self.start_proxies()

    def backend_ports(self):
        """backend name -> (kind, index, port), as ./layers places them."""
        out, counts = {}, {}
        for kind, name in zip(self.kinds, self.names):
            k = "pg" if kind == "standby" else kind
            i = counts.get(k, 0)
            counts[k] = i + 1
            base = {"pg": 15400, "redis": 16400, "mongo": 17400}[k]
            out[name] = (kind, i, base + 10 * self.n + i)
        return out

    def pid_file(self, name):
        kind, i, _ = self.backend_ports()[name]
        d = os.path.join(self.state, f"l{self.n}")
        if kind in ("pg", "standby"):
            return os.path.join(d, f"pg{i}", "postmaster.pid")
        if kind == "redis":
            return os.path.join(d, f"redis{i}", "redis.pid")
        return os.path.join(d, f"mongo{i}", "congodb.pid")

    def backend_pid(self, name):
        try:
            with open(self.pid_file(name)) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    # The delay proxies: one per backend, 0 ms normally, SIGUSR1 switches to the slow delay.
    def start_proxies(self):
        binary = os.path.join(ROOT, "build", "bench", "delay-proxy", "delay-proxy")
        for idx, (name, (kind, i, port)) in enumerate(self.backend_ports().items()):
            listen = 25000 + 10 * self.n + idx
            proc = subprocess.Popen([binary, str(listen), str(port), "0", str(SLOW_MS)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proxies[name] = (proc, listen, port)
            for key, value in self.env.items():
                self.env[key] = value.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{listen}/")
        time.sleep(0.3)

    def start_server(self):
        binary = os.path.join(ROOT, "build", self.name, self.name)
        logf = open(os.path.join(self.out_dir, "server.log"), "ab")
        env = dict(os.environ)
        env.update(self.env)
        self.server = subprocess.Popen([binary], env=env, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.server.poll() is not None:
                raise SystemExit(f"the server exited at start ({self.out_dir}/server.log)")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not answer /health in 30 s")

    def start_helpers(self):
        for helper in self.helpers:
            layers_cmd("start", f"l{self.n}", helper[len(f"l{self.n}-"):])

    def stop(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
        for helper in self.helpers:
            layers_cmd("stop", f"l{self.n}", helper[len(f"l{self.n}-"):], check=False)
        for proc, _, _ in self.proxies.values():
            proc.terminate()
            proc.wait()

    def server_alive(self):
        return self.server is not None and self.server.poll() is None


# ---- the load ----


class Load:
    """T threads, each on its own connection and keys; every answer is recorded."""

    def __init__(self, port, threads, keys_per_thread, write_share, timeout_s, run_id, rate=0.0):
        self.port = port
        self.interval_s = threads / rate if rate > 0 else 0.0  # paced: each thread's send period
        self.threads = threads
        self.keys_per_thread = keys_per_thread
        self.write_share = write_share
        self.timeout_s = timeout_s
        self.run_id = run_id
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.records = []  # (start, end, kind, outcome, latency_s)
        self.acked = {}  # key -> highest acknowledged sequence number
        self.workers = []

    def key(self, t, k):
        return f"chaos:{self.run_id}:{t}:{k}"

    def start(self):
        for t in range(self.threads):
            w = threading.Thread(target=self.run, args=(t,), daemon=True)
            w.start()
            self.workers.append(w)

    def stop(self):
        self.stop_flag.set()
        for w in self.workers:
            w.join(self.timeout_s + 5)

    def request(self, conn_box, method, path, body=None):
        """(outcome, body bytes): outcome is the status, or 'timeout' / 'refused'."""
        for attempt in (0, 1):
            conn = conn_box[0]
            fresh = conn is None
            if fresh:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
                conn_box[0] = conn
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                conn.request(method, path, body=body, headers={**headers, **CLIENT_HEADERS})
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn_box[0] = None
                return resp.status, data
            except TimeoutError:
                conn.close()
                conn_box[0] = None
                return "timeout", b""
            except (OSError, http.client.HTTPException):
                conn.close()
                conn_box[0] = None
                if fresh or attempt == 1:  # a kept-alive connection the server closed: once more
                    return "refused", b""
        return "refused", b""

    def run(self, t):
        rng = random.Random(t)
        conn_box = [None]
        seq = 0
        next_send = time.monotonic()
        while not self.stop_flag.is_set():
            if self.interval_s:  # paced load: wait for this thread's next slot, never burst to catch up
                next_send = max(next_send + self.interval_s, time.monotonic() - self.interval_s)
                if self.stop_flag.wait(max(0.0, next_send - time.monotonic())):
                    break
            k = rng.randrange(self.keys_per_thread)
            key = self.key(t, k)
            start = time.monotonic()
            if rng.random() < self.write_share:
                seq += 1
                body = json.dumps({"key": key, "value": f"{self.run_id}:{t}:{seq}"})
                outcome, _ = self.request(conn_box, "POST", "/write", body)
                kind = "write"
                if outcome == 200:
                    with self.lock:
                        self.acked[key] = max(self.acked.get(key, 0), seq)
            else:
                outcome, _ = self.request(conn_box, "GET", f"/read/{key}")
                if outcome == 404:
                    outcome = 200  # a key not written yet: a correct answer
                kind = "read"
            end = time.monotonic()
            with self.lock:
                self.records.append((start, end, kind, outcome))
            if outcome in ("refused",):
                time.sleep(0.05)  # the server is not there: do not spin

    def window(self, t0, t1):
        with self.lock:
            return [r for r in self.records if t0 <= r[0] < t1]


def value_seq(value, run_id):
    """The sequence number of a value this run wrote, or None."""
    if not isinstance(value, str) or not value.startswith(run_id + ":"):
        return None
    try:
        return int(value.rsplit(":", 1)[1])
    except ValueError:
        return None


def read_back(port, acked, run_id, wait_s, timeout_s):
    """Keys whose acknowledged write is missing or older after waiting up to wait_s."""
    pending = dict(acked)
    deadline = time.monotonic() + wait_s
    conn = None
    while pending:
        for key in list(pending):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
                conn.request("GET", f"/read/{key}", headers=CLIENT_HEADERS)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn = None
                continue
            if resp.status == 200:
                try:
                    got = value_seq(json.loads(data).get("value"), run_id)
                except ValueError:
                    got = None
                if got is not None and got >= pending[key]:
                    del pending[key]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return pending


# ---- faults ----

SLOW_MS = 1000  # the delay-proxy's slow delay, each way


class Fault:
    def __init__(self, label, begin, end):
        self.label = label
        self.begin = begin  # callable: inject
        self.end = end  # callable: lift (returns when the part is back)


def signal_tree(layer, name, sig):
    """Sends sig to a backend and every process below it."""
    pid = layer.backend_pid(name)
    if pid:
        for p in descendants(pid):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass  # a backend that ended meanwhile (layer 0 opens one per request)


def make_faults(layer, helpers_too=True, slow=True):
    faults = []
    n = layer.n
    for name in layer.names:
        def kill(name=name):
            # The whole process tree, as a crash of the machine would: a PostgreSQL whose
            # postmaster alone died goes on serving its open connections for a while.
            signal_tree(layer, name, signal.SIGKILL)

        def restart(name=name):
            layers_cmd("start", f"l{n}", layer.stack_name[name])

        def hang(name=name):
            signal_tree(layer, name, signal.SIGSTOP)

        def resume(name=name):
            signal_tree(layer, name, signal.SIGCONT)

        faults.append(Fault(f"{name} SIGKILL, restarted", kill, restart))
        faults.append(Fault(f"{name} hung (SIGSTOP)", hang, resume))
        if slow and name in layer.proxies:
            proxy = layer.proxies[name][0]
            faults.append(Fault(f"{name} slow (+{SLOW_MS} ms each way)",
                                lambda p=proxy: p.send_signal(signal.SIGUSR1),
                                lambda p=proxy: p.send_signal(signal.SIGUSR2)))
    if helpers_too:
        for helper in layer.helpers:
            part = helper[len(f"l{n}-"):]
            faults.append(Fault(f"{helper} SIGKILL, restarted",
                                lambda part=part: layers_cmd("stop", f"l{n}", part, "--kill"),
                                lambda part=part: layers_cmd("start", f"l{n}", part)))
    return faults


def summarize(records, fault_t0, fault_t1, window_end):
    out = {"200": 0, "503": 0, "other": 0, "no answer": 0, "refused": 0}
    first_503 = None
    last_bad = None
    for start, end, kind, outcome in records:
        if outcome == 200:
            out["200"] += 1
        elif outcome == 503:
            out["503"] += 1
            if first_503 is None or end < first_503:
                first_503 = end
        elif outcome == "timeout":
            out["no answer"] += 1
        elif outcome == "refused":
            out["refused"] += 1
        else:
            out["other"] += 1
        if outcome != 200 and start >= fault_t1 - 0.001:
            last_bad = max(last_bad or 0, end)
        elif outcome != 200 and end > fault_t1:
            last_bad = max(last_bad or 0, end)
    out["first_503_s"] = None if first_503 is None else max(0.0, first_503 - fault_t0)
    out["recovery_s"] = 0.0 if last_bad is None else max(0.0, last_bad - fault_t1)
    return out


def git_commit():
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    return sha, ("clean" if not dirty else "dirty (uncommitted changes)")


def result_dir(kind, layer_name, out):
    if out:
        d = out
    else:
        base = os.path.join(ROOT, "bench", "results", kind,
                            f"{time.strftime('%Y-%m-%d', time.gmtime())}-{layer_name}")
        d, i = base, 2
        while os.path.exists(d):
            d, i = f"{base}-{i}", i + 1
    os.makedirs(d, exist_ok=True)
    return d


def write_machine(d, argv):
    sha, state = git_commit()
    with open(os.path.join(d, "machine.txt"), "w") as f:
        f.write(f"command: {' '.join(argv)}\n")
        f.write(f"commit: {sha} ({state})\n")
        f.write(f"date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        f.write(f"host: {os.uname().nodename}, {os.cpu_count()} cores\n")
        with open("/proc/loadavg") as la:
            f.write(f"load before: {la.read().strip()}\n")


def fmt_s(v):
    return "-" if v is None else f"{v:.2f}"


def chaos(args):
    n = args.layer
    quick = args.quick
    fault_s = args.fault_seconds or (3.0 if quick else 6.0)
    recover_s = args.recover_seconds or (4.0 if quick else 6.0)
    layer_name = layer_dir_name(n)
    d = result_dir("chaos", layer_name, args.out)
    write_machine(d, ["./layers", "chaos", f"l{n}"] + (["--quick"] if quick else []))
    layer = Layer(n, d, proxies=not (args.no_slow or quick))
    run_id = f"r{int(time.time())}"
    failures = []
    rows = []
    try:
        layer.start_helpers()
        layer.start_server()
        load = Load(layer.port, args.threads, 20, 0.3, args.client_timeout, run_id)
        load.start()
        time.sleep(2.0)  # the baseline
        t_base = time.monotonic()
        faults = make_faults(layer, helpers_too=True, slow=bool(layer.proxies))
        if quick:
            faults = faults[:3]
        for fault in faults:
            log(f"{fault.label}: {fault_s:g} s")
            t0 = time.monotonic()
            fault.begin()
            time.sleep(fault_s)
            fault.end()
            t1 = time.monotonic()
            time.sleep(recover_s)
            t2 = time.monotonic()
            s = summarize(load.window(t0, t2), t0, t1, t2)
            s["rss_mb"] = rss_kb(layer.server.pid) / 1024
            s["label"] = fault.label
            s["back_s"] = t1 - t0 - fault_s  # how long the restart itself took
            alive = layer.server_alive()
            s["server"] = "up" if alive else "CRASHED"
            rows.append(s)
            log(f"  {s['200']} ok, {s['503']} 503, {s['other']} other, {s['no answer']} no answer,"
                f" {s['refused']} refused; first 503 {fmt_s(s['first_503_s'])} s,"
                f" recovery {fmt_s(s['recovery_s'])} s, RSS {s['rss_mb']:.1f} MB")
            if not alive:
                failures.append(f"the server crashed during '{fault.label}'")
                break
        base = summarize(load.window(t_base - 2.0, t_base), t_base, t_base, t_base)
        load.stop()
        wait = 30.0 if n in (6, 7) else 10.0  # layer 6: the drain; 7: the projection; 3: replay
        lost = read_back(layer.port, load.acked, run_id, wait, args.client_timeout)
        if not layer.server_alive():
            failures.append("the server crashed")
    finally:
        layer.stop()
    timeouts = sum(r["no answer"] for r in rows)
    if timeouts:
        failures.append(f"{timeouts} requests without an answer within {args.client_timeout:g} s")
    if lost:
        failures.append(f"{len(lost)} acknowledged writes missing or older after {wait:g} s")
    with open(os.path.join(d, "lost.txt"), "w") as f:
        for key, seq in sorted(lost.items()):
            f.write(f"{key} acknowledged seq {seq}\n")
    report = [f"# Chaos: {layer_name}", "",
              f"Load: {args.threads} threads (keep-alive), 30% writes, each thread its own 20 keys;"
              f" client timeout {args.client_timeout:g} s. Each fault lasts {fault_s:g} s, then"
              f" {recover_s:g} s of recovery are watched; a row counts the requests started in"
              " both. Slow: the backend behind bench/delay-proxy, switched from 0 to"
              f" {SLOW_MS} ms each way." + (" (--quick: the first three faults, no slow one.)"
                                             if quick else ""), "",
              f"Baseline (2 s before the first fault): {base['200']} answered 200,"
              f" {base['503'] + base['other'] + base['no answer'] + base['refused']} not.", "",
              "| fault | 200 | 503 | other | no answer | refused | first 503 (s) | recovery (s) |"
              " restart (s) | server RSS (MB) | server |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        report.append(f"| {r['label']} | {r['200']} | {r['503']} | {r['other']} | {r['no answer']}"
                      f" | {r['refused']} | {fmt_s(r['first_503_s'])} | {fmt_s(r['recovery_s'])}"
                      f" | {r['back_s']:.2f} | {r['rss_mb']:.1f} | {r['server']} |")
    report += ["", f"Acknowledged writes: {len(load.acked)} keys, each read back"
               f" (bounded wait {wait:g} s): {len(lost)} missing or older (lost.txt).", "",
               "First 503: from the fault's start to the first 503 answered. Recovery: from the"
               " part's return (its restart finished, SIGCONT sent, delay lifted) to the end of"
               " the last request that was not answered 200. Refused: the connection failed"
               " (closed or reset) before an answer. Restart: how long starting the part took.",
               "", "Verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)), ""]
    with open(os.path.join(d, "report.md"), "w") as f:
        f.write("\n".join(report))
    with open(os.path.join(d, "faults.csv"), "w") as f:
        f.write("fault,ok_200,s503,other,no_answer,refused,first_503_s,recovery_s,restart_s,rss_mb\n")
        for r in rows:
            f.write(f"\"{r['label']}\",{r['200']},{r['503']},{r['other']},{r['no answer']},"
                    f"{r['refused']},{fmt_s(r['first_503_s'])},{fmt_s(r['recovery_s'])},"
                    f"{r['back_s']:.2f},{r['rss_mb']:.1f}\n")
    print("\n".join(report))
    print(f"result folder: {os.path.relpath(d, ROOT)}")
    return 1 if failures else 0


def main():
    global MODE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("chaos")
    c.add_argument("layer", type=int)
    c.add_argument("--quick", action="store_true")
    c.add_argument("--threads", type=int, default=8)
    c.add_argument("--client-timeout", type=float, default=10.0)
    c.add_argument("--fault-seconds", type=float, default=0)
    c.add_argument("--recover-seconds", type=float, default=0)
    c.add_argument("--no-slow", action="store_true")
    c.add_argument("--out")
    s = sub.add_parser("soak")
    s.add_argument("layer", type=int)
    s.add_argument("--minutes", type=float, required=True)
    s.add_argument("--threads", type=int, default=8)
    s.add_argument("--interval", type=float, default=0)
    s.add_argument("--rate", type=float, default=0, help="requests/s over all threads (0: as fast as answered)")
    s.add_argument("--out")
    args = p.parse_args()
    MODE = args.mode
    CLIENT_HEADERS.update(client_headers(args.layer))
    if args.mode == "chaos":
        return chaos(args)
    return soak(args)


# ---- soak ----


def flatten(obj, prefix=""):
    """Numeric members of a JSON object, nested names joined with '.'."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix[:-1]] = obj
    return out


SIZE_WORDS = ("in_use", "size", "idle", "open", "total", "entries", "keys", "bytes", "length",
              "pending", "waiting", "connections")


def stats_sample(port, path):
    """The layer's statistics endpoint, only its gauges of sizes (pool, caches, queues)."""
    if not path:
        return {}
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path, headers=CLIENT_HEADERS)
        r = c.getresponse()
        data = json.loads(r.read())
    except (OSError, ValueError, http.client.HTTPException):
        return {}
    return {k: v for k, v in flatten(data).items()
            if any(w in k.split(".")[-1] for w in SIZE_WORDS)}


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def median(values):
    return percentile(values, 0.5)


def soak_verdict(rows, warmup_s):
    """The flatness rule. After the warm-up, the samples are cut in thirds; RSS is flat when the
    median of the last third is at most max(2 MB, 5%) above the median of the first third, and
    descriptors when that difference is at most 4. A steady leak of 30 kB/s shows in a minute;
    a server that only reaches its working size (pools filled, caches warm) does not fail."""
    after = [r for r in rows if r["t_s"] >= warmup_s]
    if len(after) < 3:
        return False, "too few samples after the warm-up (run longer)", 0, 0
    third = max(1, len(after) // 3)
    first, last = after[:third], after[-third:]
    rss0, rss1 = median([r["rss_kb"] for r in first]), median([r["rss_kb"] for r in last])
    fd0, fd1 = median([r["fds"] for r in first]), median([r["fds"] for r in last])
    rss_growth, fd_growth = rss1 - rss0, fd1 - fd0
    problems = []
    if rss_growth > max(2048, rss0 * 0.05):
        problems.append(f"RSS grew {rss_growth / 1024:.1f} MB ({rss0 / 1024:.1f} -> {rss1 / 1024:.1f})")
    if fd_growth > 4:
        problems.append(f"descriptors grew by {fd_growth} ({fd0} -> {fd1})")
    return not problems, "; ".join(problems) or "flat", rss_growth, fd_growth


def svg_plot(rows, path, title, warmup_s):
    """Three panels over time: RSS (MB), open descriptors, latency p50/p99 (ms)."""
    width, panel_h, left, top = 760, 150, 70, 30
    panels = [("RSS (MB)", [("rss", lambda r: r["rss_kb"] / 1024, "#1f77b4")]),
              ("open descriptors", [("fds", lambda r: r["fds"], "#2ca02c")]),
              ("latency (ms)", [("p50", lambda r: r["p50_ms"], "#ff7f0e"),
                                ("p99", lambda r: r["p99_ms"], "#d62728")])]
    height = top + len(panels) * (panel_h + 40) + 20
    t_max = max(r["t_s"] for r in rows) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">{title}</text>']
    plot_w = width - left - 20
    for i, (label, series) in enumerate(panels):
        y0 = top + i * (panel_h + 40)
        values = [f(r) for _, f, _ in series for r in rows if f(r) is not None]
        v_max = max(values) if values else 1
        v_max = v_max * 1.1 if v_max > 0 else 1
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" '
                   'fill="none" stroke="#999"/>')
        out.append(f'<text x="{left - 5}" y="{y0 + 10}" text-anchor="end">{v_max:.1f}</text>')
        out.append(f'<text x="{left - 5}" y="{y0 + panel_h}" text-anchor="end">0</text>')
        out.append(f'<text x="{left + 5}" y="{y0 + 14}">{label}</text>')
        wx = left + plot_w * warmup_s / t_max
        out.append(f'<line x1="{wx:.1f}" y1="{y0}" x2="{wx:.1f}" y2="{y0 + panel_h}" '
                   'stroke="#bbb" stroke-dasharray="4 3"/>')
        for j, (name, f, color) in enumerate(series):
            pts = [(left + plot_w * r["t_s"] / t_max, y0 + panel_h - panel_h * f(r) / v_max)
                   for r in rows if f(r) is not None]
            if pts:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="'
                           + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            if len(series) > 1:
                out.append(f'<text x="{left + plot_w - 60 + 30 * j}" y="{y0 + 14}" '
                           f'fill="{color}">{name}</text>')
        out.append(f'<text x="{left + plot_w}" y="{y0 + panel_h + 14}" text-anchor="end">'
                   f'{t_max:.0f} s</text>')
        out.append(f'<text x="{left}" y="{y0 + panel_h + 14}">0 s</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def soak(args):
    n = args.layer
    layer_name = layer_dir_name(n)
    d = result_dir("soak", layer_name, args.out)
    write_machine(d, ["./layers", "soak", f"l{n}", "--minutes", f"{args.minutes:g}"]
                  + (["--rate", f"{args.rate:g}"] if args.rate else []))
    duration = args.minutes * 60
    interval = args.interval or (2.0 if args.minutes < 5 else 5.0)
    warmup_s = min(60.0, max(10.0, duration * 0.25))
    layer = Layer(n, d, proxies=False)
    run_id = f"s{int(time.time())}"
    rows, failures = [], []
    try:
        layer.start_helpers()
        layer.start_server()
        load = Load(layer.port, args.threads, 200, 0.3, 10.0, run_id, args.rate)
        t_start = time.monotonic()
        load.start()
        last = t_start
        while time.monotonic() - t_start < duration:
            time.sleep(interval)
            now = time.monotonic()
            window = load.window(last, now)
            last = now
            lat = [(r[1] - r[0]) * 1000 for r in window if r[3] == 200]
            row = {"t_s": round(now - t_start, 1), "rss_kb": rss_kb(layer.server.pid),
                   "fds": fd_count(layer.server.pid), "requests": len(window),
                   "errors": sum(1 for r in window if r[3] != 200),
                   "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99)}
            row.update(stats_sample(layer.port, layer.stats_path))
            rows.append(row)
            if not layer.server_alive():
                failures.append("the server crashed")
                break
        load.stop()
        timeouts = sum(1 for r in load.records if r[3] == "timeout")
        if timeouts:
            failures.append(f"{timeouts} requests without an answer within 10 s")
    finally:
        layer.stop()
    if not rows:
        raise SystemExit("soak: no sample taken")
    columns = ["t_s", "rss_kb", "fds", "requests", "errors", "p50_ms", "p99_ms"]
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(os.path.join(d, "samples.csv"), "w") as f:
        f.write(",".join(columns) + "\n")
        for r in rows:
            f.write(",".join("" if r.get(c) is None else (f"{r[c]:.2f}" if isinstance(r[c], float)
                                                           else str(r[c])) for c in columns) + "\n")
    flat, why, rss_growth, fd_growth = soak_verdict(rows, warmup_s)
    if not flat:
        failures.append(why)
    svg_plot(rows, os.path.join(d, "soak.svg"),
             f"{layer_name}: {args.minutes:g} min soak, {args.threads} clients (dashed: end of"
             f" warm-up)", warmup_s)
    total = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    outcomes = {}
    for r in load.records:
        if r[3] != 200:
            outcomes[r[3]] = outcomes.get(r[3], 0) + 1
    not_200 = ", ".join(f"{v} × {k}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    report = [f"# Soak: {layer_name}", "",
              f"{args.minutes:g} minutes, {args.threads} threads (keep-alive), 30% writes over"
              f" {args.threads * 200} keys, "
              + (f"paced at {args.rate:g} requests/s in all" if args.rate else "each thread as fast as answered")
              + f"; a sample every {interval:g} s (samples.csv, soak.svg)."
              f" Warm-up: the first {warmup_s:g} s.", "",
              f"Requests: {total} ({errors} not answered 200{': ' + not_200 if not_200 else ''})."
              " RSS after the warm-up:"
              f" {rows[-1]['rss_kb'] / 1024:.1f} MB at the end, growth {rss_growth / 1024:+.2f} MB;"
              f" descriptors growth {fd_growth:+d}.", "",
              "Flat: after the warm-up the samples are cut in thirds; the median of the last"
              " third may be at most max(2 MB, 5%) above the first third's for RSS, and 4 above"
              " it for open descriptors.", "",
              "Verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)), ""]
    with open(os.path.join(d, "report.md"), "w") as f:
        f.write("\n".join(report))
    print("\n".join(report))
    print(f"result folder: {os.path.relpath(d, ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
