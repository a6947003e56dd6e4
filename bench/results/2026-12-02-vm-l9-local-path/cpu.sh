#!/usr/bin/env bash
# cpu.sh ROOT: one line per process of the stacks of the work tree ROOT (its PostgreSQL
# clusters and their children, its Redis servers, the delay proxies and the layers' servers it
# built): "pid|utime+stime ticks|children's ticks|cmdline|parent's cmdline".
root=${1:?usage: cpu.sh ROOT}
pids=""
for pm in $(pgrep -f "postgres -D $root/"); do
    pids+=" $pm $(pgrep -P "$pm" | tr '\n' ' ')"
done
pids+=" $(pgrep -f "^$root/build/")"
for r in $(pgrep -f 'redis-server 127.0.0.1:'); do
    case $(readlink "/proc/$r/cwd") in "$root"/*) pids+=" $r" ;; esac
done
for pid in $(echo "$pids" | tr ' ' '\n' | sort -un); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra f <<<"${stat##*) }"
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
    pcmd=$(tr '\0' ' ' <"/proc/${f[1]}/cmdline" 2>/dev/null | cut -c1-100)
    echo "$pid|$((f[11] + f[12]))|$((f[13] + f[14]))|$cmd|$pcmd"
done
