#!/usr/bin/python3
"""Black-box test of delay-proxy: delay, order, many connections, bounded memory, closing.

    test_delay_proxy.py [--no-memory-check] PATH_TO_DELAY_PROXY

(--no-memory-check for sanitizer builds, whose allocator keeps freed memory on purpose.)

Runs an echo server on a free loopback port, the proxy in front of it, and checks that:
a round trip costs two delays; 300 concurrent connections each get their bytes back intact and
in order; 32 MiB pushed through a slow reader neither corrupt nor balloon the proxy's memory;
a client's end-of-file reaches the server after its data (and the server's comes back); a
connection to an upstream that is down is closed at once; addresses (a listen address, an upstream
named by a host name, as docker-compose's layer 9 uses them) work, and bad ones are refused.
Standard library only.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

DELAY_MS = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server(listener):
    """Echoes every connection until the client's end-of-file, then closes."""
    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def recv_exactly(sock, n):
    parts, got = [], 0
    while got < n:
        data = sock.recv(min(65536, n - got))
        if not data:
            raise AssertionError(f"connection closed after {got} of {n} bytes")
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def check_round_trip(port):
    with connect(port) as s:
        s.sendall(b"warm")
        recv_exactly(s, 4)
        best = float("inf")
        for _ in range(5):
            start = time.monotonic()
            s.sendall(b"ping")
            assert recv_exactly(s, 4) == b"ping"
            best = min(best, (time.monotonic() - start) * 1000)
    assert 2 * DELAY_MS <= best < 2 * DELAY_MS + 15, f"round trip {best:.1f} ms"
    print(f"ok: a round trip costs {best:.1f} ms (two delays of {DELAY_MS} ms)")


def check_many_in_order(port, clients=300, messages=20):
    errors = []

    def client(i):
        try:
            with connect(port) as s:
                sent = b"".join(f"<{i}:{m}>".encode() for m in range(messages))
                for m in range(messages):  # many small writes, pipelined
                    s.sendall(f"<{i}:{m}>".encode())
                assert recv_exactly(s, len(sent)) == sent, "bytes reordered or corrupted"
        except Exception as e:  # noqa: BLE001 (report every failure)
            errors.append(f"client {i}: {e}")

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    print(f"ok: {clients} concurrent connections, {messages} pipelined messages each, in order "
          f"({time.monotonic() - start:.2f} s)")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def check_bounded(port, pid, memory_check, total=32 * 1024 * 1024):
    """The client sends fast and reads slowly: the proxy must hold back, not buffer it all."""
    block = bytes(range(256)) * 256  # 64 KiB
    received = bytearray()
    start_kb = rss_kb(pid)
    peak = [start_kb]

    with connect(port) as s:
        def reader():
            while len(received) < total:
                data = s.recv(65536)
                if not data:
                    break
                received.extend(data)
                peak[0] = max(peak[0], rss_kb(pid))
                time.sleep(0.002)  # a slow reader

        t = threading.Thread(target=reader)
        t.start()
        for _ in range(total // len(block)):
            s.sendall(block)
        t.join()
    assert len(received) == total, f"got {len(received)} of {total} bytes"
    assert bytes(received) == block * (total // len(block)), "bytes corrupted"
    growth = peak[0] - start_kb
    assert not memory_check or growth < 16 * 1024, f"proxy grew by {growth} KiB"
    print(f"ok: {total >> 20} MiB through a slow reader, intact; proxy grew by {growth} KiB")


def check_half_close(port):
    with connect(port) as s:
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        assert recv_exactly(s, 10) == b"last words"
        assert s.recv(1) == b"", "no end-of-file after the echo"
        elapsed = (time.monotonic() - start) * 1000
    assert elapsed >= 2 * DELAY_MS
    print(f"ok: a half-close delivers the data first, then end-of-file ({elapsed:.1f} ms)")


def check_upstream_down(binary):
    port, dead = free_port(), free_port()
    proxy = subprocess.Popen([binary, str(port), str(dead), "1"], stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        with connect(port) as s:
            s.settimeout(2)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=5)
    print("ok: with the upstream down, a connection is closed at once")


def check_slow_switch(binary, listener):
    """SLOW_MS: SIGUSR1 makes new bytes slow, SIGUSR2 fast again (./layers chaos)."""
    port = free_port()
    proxy = subprocess.Popen([binary, str(port), str(listener.getsockname()[1]), "0", "200"],
                             stderr=subprocess.DEVNULL)

    def round_trip(s):
        start = time.monotonic()
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        return (time.monotonic() - start) * 1000

    try:
        wait_listening(port)
        with connect(port) as s:
            fast = round_trip(s)
            proxy.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            slow = round_trip(s)
            proxy.send_signal(signal.SIGUSR2)
            time.sleep(0.2)
            again = round_trip(s)
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=5)
    assert fast < 100 and 400 <= slow < 1000 and again < 100, f"{fast:.0f} {slow:.0f} {again:.0f} ms"
    print(f"ok: SIGUSR1 slows it ({fast:.1f} -> {slow:.1f} ms), SIGUSR2 restores ({again:.1f} ms)")


def check_addresses(binary, listener):
    """[HOST:]PORT: a numeric listen address, an upstream by name (resolved per connection)."""
    echo = listener.getsockname()[1]
    for listen, upstream in ((f"0.0.0.0:{free_port()}", f"localhost:{echo}"),
                             (f"127.0.0.1:{free_port()}", f"127.0.0.1:{echo}")):
        port = int(listen.rsplit(":", 1)[1])
        proxy = subprocess.Popen([binary, listen, upstream, str(DELAY_MS)],
                                 stderr=subprocess.PIPE, text=True)
        try:
            wait_listening(port)
            with connect(port) as s:
                start = time.monotonic()
                s.sendall(b"addressed")
                assert recv_exactly(s, 9) == b"addressed"
                elapsed = (time.monotonic() - start) * 1000
        finally:
            proxy.send_signal(signal.SIGTERM)
            _, err = proxy.communicate(timeout=5)
        assert elapsed >= 2 * DELAY_MS, f"round trip {elapsed:.1f} ms"
        assert f"{listen} -> {upstream}" in err, err
        print(f"ok: {listen} -> {upstream} forwards ({elapsed:.1f} ms)")
    for bad in (["localhost:1", "1", "1"], ["1", "host:", "1"], ["1", "[::1]:70000", "1"],
                ["1.2.3:1", "1", "1"]):
        done = subprocess.run([binary] + bad, stderr=subprocess.DEVNULL, timeout=5)
        assert done.returncode == 2, f"{bad}: exit {done.returncode}"
    print("ok: a listen address that is not numeric, or a bad upstream, is refused (exit 2)")


def wait_listening(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def main():
    args = sys.argv[1:]
    memory_check = "--no-memory-check" not in args
    args = [a for a in args if a != "--no-memory-check"]
    if len(args) != 1:
        sys.exit(__doc__)
    binary = args[0]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    threading.Thread(target=echo_server, args=(listener,), daemon=True).start()
    port = free_port()
    proxy = subprocess.Popen([binary, str(port), str(listener.getsockname()[1]), str(DELAY_MS)],
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port)
        check_round_trip(port)
        check_many_in_order(port)
        check_bounded(port, proxy.pid, memory_check)
        check_half_close(port)
    finally:
        proxy.send_signal(signal.SIGTERM)
        _, err = proxy.communicate(timeout=5)
        sys.stderr.write(err)
    assert proxy.returncode == 0, f"proxy exited with {proxy.returncode}"
    check_upstream_down(binary)
    check_slow_switch(binary, listener)
    check_addresses(binary, listener)
    print("delay-proxy: all checks passed")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
