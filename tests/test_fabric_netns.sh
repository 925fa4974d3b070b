#!/bin/bash
# Two hosts: network namespaces joined by a veth pair, made and removed
# here. A server in one, tail and push from the other over the tcp
# provider on the veth addresses: checksummed data both ways, a killed
# server, and a link cut mid-transfer (ip link set down), which must give
# a clear error within the configured timeout, never a hang.
# Skips (77) only where namespaces cannot be made.
set -u
BW=${BELTWAY_BIN:-$(dirname "$0")/../beltway}
BW=$(readlink -f "$BW")
tag=bwt$$
A=${tag}a
B=${tag}b
fails=0
dir=$(mktemp -d /dev/shm/bwnetns.XXXXXX)
export BELTWAY_DIR=$dir
export BELTWAY_PROVIDER=tcp

cleanup() {
	[ -n "${spid:-}" ] && kill -9 "$spid" 2>/dev/null
	ip netns del "$A" 2>/dev/null
	ip netns del "$B" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

if [ "$(id -u)" != 0 ] || ! ip netns add "$A" 2>/dev/null; then
	echo "SKIP: cannot create network namespaces here (needs root and netns)"
	exit 77
fi
ip netns add "$B" || { echo "SKIP: second namespace"; exit 77; }
ip link add "${tag}x" type veth peer name "${tag}y" || { echo "SKIP: veth"; exit 77; }
ip link set "${tag}x" netns "$A"
ip link set "${tag}y" netns "$B"
ip -n "$A" addr add 10.77.0.1/24 dev "${tag}x"
ip -n "$B" addr add 10.77.0.2/24 dev "${tag}y"
for n in "$A" "$B"; do ip -n "$n" link set lo up; done
ip -n "$A" link set "${tag}x" up
ip -n "$B" link set "${tag}y" up

inA() { ip netns exec "$A" "$@"; }
inB() { ip netns exec "$B" "$@"; }

# Starts a server in A; sets spid and port.
start_server() {
	ip netns exec "$A" "$BW" serve --listen 10.77.0.1:0 --timeout 2000 >"$dir/serve.out" 2>&1 &
	spid=$!
	for _ in $(seq 1 500); do
		port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$dir/serve.out")
		[ -n "$port" ] && return 0
		kill -0 "$spid" 2>/dev/null || break
		inA true # a short pause, not a guess at how long it takes
	done
	echo "server did not start:"; cat "$dir/serve.out"
	exit 1
}

head -c $((24 << 20)) /dev/urandom >"$dir/src"

# ---- pull: A's ring, tailed from B; the writer in A waits for a local
# reader to pace it, so nothing is overwritten before the tail fetches it
# (the tail itself never holds the writer back)
"$BW" create pulled --size 32M || exit 1
start_server
inB timeout 60 "$BW" tail "10.77.0.1:$port/pulled" --timeout 2000 --strict --from-start >"$dir/pulled.out" 2>"$dir/tail.err" &
tpid=$!
# the tail reads from the start of the (fresh) ring, so it gets everything
# however late it attaches; the writer writes it all at once (it fits)
for _ in $(seq 1 500); do grep -q pull-reader "$dir/.fabric/$spid" 2>/dev/null && break; inA true; done
inA "$BW" write pulled --nowait <"$dir/src" || fail "write into the pulled ring"
wait $tpid || fail "tail exited $? ($(cat "$dir/tail.err"))"
cmp -s "$dir/src" "$dir/pulled.out" && echo "ok: pull across hosts, 24 MiB, identical" ||
	fail "pulled data differs"

# ---- shadows across hosts: the pulled ring holds the whole stream and its
# writer has gone; every method reads it from B, whole and headers only
# (the first 16 bytes of each 64 KiB record), once behind 200 us of
# added latency
for i in $(seq 0 383); do
	dd if="$dir/src" bs=16 count=1 skip=$((i * 4096)) status=none
done >"$dir/heads"
for m in zero-copy copy-once hybrid prefetch; do
	inB timeout 60 "$BW" tail "10.77.0.1:$port/pulled" --shadow $m --from-start \
		--timeout 2000 --strict >"$dir/sh.out" 2>"$dir/sh.err"
	cmp -s "$dir/src" "$dir/sh.out" && echo "ok: shadow $m across hosts, identical" ||
		fail "shadow $m across hosts: $(cat "$dir/sh.err")"
	inB timeout 60 "$BW" tail "10.77.0.1:$port/pulled" --shadow $m --from-start \
		--headers --record-size 64K --header-bytes 16 --timeout 2000 --strict \
		>"$dir/sh.out" 2>"$dir/sh.err"
	cmp -s "$dir/heads" "$dir/sh.out" && echo "ok: shadow $m headers across hosts" ||
		fail "shadow $m headers across hosts: $(cat "$dir/sh.err")"
done
inB timeout 60 "$BW" tail "10.77.0.1:$port/pulled" --from-start --latency-us 200 \
	--timeout 2000 --strict --verbose >"$dir/sh.out" 2>"$dir/sh.err"
cmp -s "$dir/src" "$dir/sh.out" && grep -q "prefetch over tcp.*latency 200 us" "$dir/sh.err" &&
	echo "ok: prefetching shadow behind 200 us across hosts" ||
	fail "shadow behind latency: $(cat "$dir/sh.err")"

# ---- push: B's local ring replicated into A's ring, read in A
"$BW" create pushed --size 1M || exit 1
"$BW" create local --size 1M || exit 1
inA timeout 60 "$BW" read pushed >"$dir/pushed.out" 2>"$dir/read.err" &
rpid=$!
inB timeout 60 "$BW" push local "10.77.0.1:$port/pushed" --timeout 2000 2>"$dir/push.err" &
ppid=$!
inB timeout 60 "$BW" write local <"$dir/src" || fail "write into the local ring"
wait $ppid || fail "push exited $? ($(cat "$dir/push.err"))"
wait $rpid || fail "read exited $? ($(cat "$dir/read.err"))"
cmp -s "$dir/src" "$dir/pushed.out" && echo "ok: push across hosts, 24 MiB, identical" ||
	fail "pushed data differs"

# ---- push of a stream that pauses: what was pushed is visible across the
# link while the local writer stays and writes nothing more (push flushes
# when its ring runs dry, not only at the next write)
"$BW" create pushed2 --size 1M || exit 1
"$BW" create local2 --size 1M || exit 1
mkfifo "$dir/hold2"
inA timeout 60 "$BW" read pushed2 >"$dir/trickle.out" 2>"$dir/read2.err" &
rpid=$!
inB timeout 60 "$BW" push local2 "10.77.0.1:$port/pushed2" --timeout 2000 2>"$dir/push2.err" &
ppid=$!
inB "$BW" write local2 <"$dir/hold2" &
wpid=$!
exec 5>"$dir/hold2"
printf 'a pause follows' >&5
# bounded (each look costs a namespace switch), then the check below
# reports what arrived
for _ in $(seq 1 2000); do
	[ "$(cat "$dir/trickle.out")" = "a pause follows" ] && break
	inA true
done
[ "$(cat "$dir/trickle.out")" = "a pause follows" ] &&
	echo "ok: push makes a paused stream visible across hosts" ||
	fail "paused push: '$(cat "$dir/trickle.out")' arrived ($(cat "$dir/push2.err"))"
exec 5>&-
wait $wpid || fail "write into local2 exited $?"
wait $ppid || fail "push2 exited $? ($(cat "$dir/push2.err"))"
wait $rpid || fail "read2 exited $? ($(cat "$dir/read2.err"))"

# ---- the server killed under a waiting tail: an error, not a hang. A
# writer stays attached (reading a FIFO nobody writes), so the stream has
# not ended and the tail waits for data.
mkfifo "$dir/hold"
ip netns exec "$A" "$BW" write pulled --nowait <"$dir/hold" &
hpid=$!
exec 4>"$dir/hold"
inB timeout 30 "$BW" tail "10.77.0.1:$port/pulled" --timeout 2000 >/dev/null 2>"$dir/killed.err" &
tpid=$!
for _ in $(seq 1 500); do grep -q pull-reader "$dir/.fabric/$spid" 2>/dev/null && break; inA true; done
"$BW" stat pulled | grep -q "pull-reader .*10.77.0.2" &&
	echo "ok: beltway stat shows the remote reader" ||
	fail "beltway stat does not show the remote reader: $("$BW" stat pulled)"
kill -9 "$spid"
wait "$spid" 2>/dev/null
spid=
wait $tpid
rc=$?
if [ $rc = 0 ] || [ $rc = 124 ]; then
	fail "tail after a killed server exited $rc: $(cat "$dir/killed.err")"
elif grep -q "server ended the session\|connection dropped\|did not answer\|stayed full" "$dir/killed.err"; then
	echo "ok: killed server: $(tail -1 "$dir/killed.err")"
else
	fail "unclear error after a killed server: $(cat "$dir/killed.err")"
fi
exec 4>&-
wait $hpid

# ---- the link cut mid-transfer: a writer in A streams forever; the tail
# in B must fail within about its timeout once the link is down
start_server
(yes beltway | inA "$BW" write pulled --nowait >/dev/null 2>&1) &
wpid=$!
inB timeout 60 "$BW" tail "10.77.0.1:$port/pulled" --timeout 2000 >/dev/null 2>"$dir/cut.err" &
tpid=$!
for _ in $(seq 1 500); do grep -q pull-reader "$dir/.fabric/$spid" 2>/dev/null && break; inA true; done
ip -n "$B" link set "${tag}y" down
t0=$(date +%s)
wait $tpid
rc=$?
t1=$(date +%s)
kill "$wpid" 2>/dev/null
# the writer itself (killing the subshell leaves it): ours alone, found in
# our namespace (a pkill by name would reach another run's writer)
for p in $(ip netns pids "$A"); do
	[ "$p" = "$spid" ] || kill "$p" 2>/dev/null
done
if [ $rc = 0 ] || [ $rc = 124 ]; then
	fail "tail after the link went down exited $rc"
else
	echo "ok: link down: tail failed after $((t1 - t0)) s: $(grep -v 'lost to' "$dir/cut.err" | tail -1)"
fi
ip -n "$B" link set "${tag}y" up

[ $fails = 0 ] || exit 1
exit 0
