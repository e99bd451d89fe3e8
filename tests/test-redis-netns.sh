#!/usr/bin/env bash
# test-redis-netns.sh: "many machines", simulated: sluice-gzip --redis with
# its remote workers in network namespaces of their own
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage:
#   test-redis-netns.sh SLUICE_WORKER SLUICE_GZIP DEFLATE_MODULE
#
# Makes two network namespaces, each joined to this one by a veth pair
# with private addresses (10.231.X.1 here, 10.231.X.2 there), starts a
# redis-server (persistence off) bound to the two addresses on this side
# only, runs a `sluice-worker --redis` in each namespace (`ip netns exec`)
# that reaches Redis over its veth link, and compresses a file with
# `sluice-gzip --redis` from this side: the output is byte for byte the
# local run's, gzip accepts it, and Redis saw the workers connect from
# their namespaces' addresses. Nothing assumes loopback.
#
# Needs root (or CAP_NET_ADMIN), `ip` (iproute2), redis-server and
# redis-cli: without them it skips, with a message. The namespaces, links
# and processes are removed on every exit, failures included.
set -u

worker_tool=$(realpath "${1:?usage: test-redis-netns.sh SLUICE_WORKER SLUICE_GZIP MODULE}")
gzip_tool=$(realpath "${2:?}")
module=$(realpath "${3:?}")

skip () { echo "1..0 # SKIP $1"; exit 0; }

for tool in ip redis-server redis-cli gzip; do
  command -v "$tool" > /dev/null || skip "$tool is not installed"
done

# The subnets of this run, 10.231.(SUB+1) and 10.231.(SUB+2), and the
# names of its namespaces and links, all follow from SUB; a run claims SUB
# by creating the namespace sluice-SUB-1 (`ip netns add` fails when it
# exists), so runs at once (or a crashed run's leftovers) never share one.
port=7379
tmp=$(mktemp -d)
pids=()
namespaces=()

cleanup () {
  # The workers first (SIGTERM: they answer what they run), then Redis.
  for (( k = ${#pids[@]} - 1; k >= 0; k-- )); do
    kill "${pids[k]}" 2> /dev/null
    wait "${pids[k]}" 2> /dev/null
  done
  for ns in "${namespaces[@]}"; do
    # Deleting the namespace deletes the veth end in it, and so its peer.
    ip netns delete "$ns" 2> /dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! ip netns add "sluice-probe-$$" 2> /dev/null; then
  skip "cannot create network namespaces (needs root or CAP_NET_ADMIN)"
fi
ip netns delete "sluice-probe-$$"

sub=
for (( k = 0; k < 62; k++ )); do
  candidate=$(( (($$ + k) % 62) * 4 + 8 ))
  if ip netns add "sluice-$candidate-1" 2> /dev/null; then
    sub=$candidate
    namespaces+=("sluice-$sub-1")
    break
  fi
done
[ -n "$sub" ] || { echo "Bail out! no free subnet: sluice-* namespaces left over?"; exit 1; }

n=0
failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
bail () { echo "Bail out! $1"; exit 1; }

# Two "machines": namespace i, link slh$sub-$i (here) <-> sln$sub-$i (there).
for i in 1 2; do
  ns="sluice-$sub-$i"
  net="10.231.$((sub + i))"
  if [ "$i" != 1 ]; then
    ip netns add "$ns" || bail "ip netns add $ns"
    namespaces+=("$ns")
  fi
  ip link add "slh$sub-$i" type veth peer name "sln$sub-$i" || bail "ip link add"
  ip link set "sln$sub-$i" netns "$ns" || bail "ip link set netns"
  ip addr add "$net.1/24" dev "slh$sub-$i" || bail "ip addr add here"
  ip link set "slh$sub-$i" up || bail "ip link set up here"
  ip netns exec "$ns" ip addr add "$net.2/24" dev "sln$sub-$i" || bail "ip addr add there"
  ip netns exec "$ns" ip link set "sln$sub-$i" up || bail "ip link set up there"
  ip netns exec "$ns" ip link set lo up
done
ok "two network namespaces joined by veth pairs"

# Redis on the two private addresses only (not on loopback).
a1="10.231.$((sub + 1)).1"
a2="10.231.$((sub + 2)).1"
redis-server --bind "$a1" "$a2" --port "$port" --protected-mode no --save '' \
  --appendonly no --dir "$tmp" > "$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 500); do
  [ "$(redis-cli -h "$a1" -p "$port" PING 2> /dev/null)" = PONG ] && break
  sleep 0.02
done
[ "$(redis-cli -h "$a1" -p "$port" PING 2> /dev/null)" = PONG ] || bail "redis-server did not start"
ok "redis-server bound to $a1 and $a2"

# A worker per namespace, each reaching Redis through its own link.
for i in 1 2; do
  ip netns exec "sluice-$sub-$i" "$worker_tool" --redis="redis://10.231.$((sub + i)).1:$port" \
    --series=gzip --consumer="netns-$i" --threads=1 "$module" &
  pids+=($!)
done

# Both in the consumer group before the job starts (a worker joins as it
# starts, XGROUP CREATECONSUMER; before session 11 it joined with the first
# entry it got, and under load the other worker could do the whole job
# first). Waits for the event, however long the start takes under load; the
# test's own timeout is the bound.
members () {
  redis-cli -h "$a1" -p "$port" XINFO CONSUMERS sluice:calls:gzip sluice-workers 2> /dev/null
}
until grep -q "^netns-1$" <<< "$(members)" && grep -q "^netns-2$" <<< "$(members)"; do
  for k in 1 2; do
    kill -0 "${pids[k]}" 2> /dev/null || bail "the worker of namespace $k exited"
  done
  sleep 0.05
done

# Some text that compresses as text does (~400 KiB, 13 blocks of 32 KiB).
# The local run names zlib, the engine --redis uses without --deflate.
for i in $(seq 6000); do
  echo "line $i of the input: ordered producer, window, block, deflate, stream $((i * 7919 % 1000))"
done > "$tmp/input.txt"

"$gzip_tool" --deflate=zlib -b 32 -c "$tmp/input.txt" > "$tmp/local.gz" || bail "local sluice-gzip failed"
if timeout 120 "$gzip_tool" -b 32 --redis="redis://$a1:$port" -c "$tmp/input.txt" \
    > "$tmp/remote.gz"; then
  ok "sluice-gzip --redis through workers in the namespaces"
else
  not_ok "sluice-gzip --redis through workers in the namespaces (status $?)"
fi
if cmp -s "$tmp/local.gz" "$tmp/remote.gz"; then
  ok "the output is the local run's, byte for byte"
else
  not_ok "the output is the local run's, byte for byte"
fi
if gzip -t < "$tmp/remote.gz"; then
  ok "gzip -t accepts it"
else
  not_ok "gzip -t accepts it"
fi

# Both workers joined the group, from their namespaces' addresses.
clients=$(redis-cli -h "$a1" -p "$port" CLIENT LIST)
for i in 1 2; do
  if grep -q "addr=10.231.$((sub + i)).2:" <<< "$clients"; then
    ok "namespace $i's worker connected from 10.231.$((sub + i)).2"
  else
    not_ok "namespace $i's worker connected from 10.231.$((sub + i)).2"
    sed 's/^/# /' <<< "$clients"
  fi
done
consumers=$(redis-cli -h "$a1" -p "$port" XINFO CONSUMERS sluice:calls:gzip sluice-workers)
if grep -q "^netns-1$" <<< "$consumers" && grep -q "^netns-2$" <<< "$consumers"; then
  ok "both are members of the consumer group"
else
  not_ok "both are members of the consumer group"
  sed 's/^/# /' <<< "$consumers"
fi

echo "1..$n"
exit $failed
