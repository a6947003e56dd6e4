#!/bin/bash
# The CPU of an idle layer-8 stack over 5 s (no requests): the server's threads, the stand-in
# MongoDB (node), and 3 s of the server's system calls (strace -c). Run from the repository root
# in a private network namespace: unshare -n bash bench/results/2026-12-02-vm-l8-idle-monitoring/measure.sh
# Clock ticks are 10 ms (getconf CLK_TCK = 100): 100 ticks in 5 s = 20% of a core.
set -u
ip link set lo up
./layers up l8 >/dev/null 2>&1
eval "$(./layers env l8)"
LOG_LEVEL=warn build/l8-polyglot-persistence/l8-polyglot-persistence >/dev/null 2>&1 &
SRV=$!
sleep 6
NODE=$(pgrep -f congodb.mjs)
s1=$(awk '{print $14+$15}' /proc/"$SRV"/stat); n1=$(awk '{print $14+$15}' /proc/"$NODE"/stat)
sleep 5
s2=$(awk '{print $14+$15}' /proc/"$SRV"/stat); n2=$(awk '{print $14+$15}' /proc/"$NODE"/stat)
echo "idle 5 s: server $((s2 - s1)) ticks, stand-in (node) $((n2 - n1)) ticks"
timeout 3 strace -f -c -p $SRV 2>&1 | tail -12
kill $SRV
./layers down l8 >/dev/null 2>&1
