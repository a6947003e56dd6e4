#!/usr/bin/env bash
# cpu.sh: one line per process of the l9 stack of the work tree /work/wt/l9d: its three
# PostgreSQL clusters (postmasters and their children), the delay proxies, the server and the
# Redis servers: "pid|utime+stime ticks|children's ticks|cmdline|parent's cmdline".
pms=$(pgrep -f 'postgres -D /work/wt/l9d/')
pids="$pms"
for pm in $pms; do pids+=" $(pgrep -P "$pm" | tr '\n' ' ')"; done
pids+=" $(pgrep -f 'l9d/build/l9-global-distributed/../bench/delay-proxy') $(pgrep -f 'l9d/build/l9-global-distributed/l9-global-distributed$')"
for r in $(pgrep -f 'redis-server 127.0.0.1:1649'); do
    case $(readlink "/proc/$r/cwd") in *l9d*) pids+=" $r" ;; esac
done
for pid in $pids; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra f <<<"${stat##*) }"
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
    pcmd=$(tr '\0' ' ' <"/proc/${f[1]}/cmdline" 2>/dev/null | cut -c1-80)
    echo "$pid|$((f[11] + f[12]))|$((f[13] + f[14]))|$cmd|$pcmd"
done
