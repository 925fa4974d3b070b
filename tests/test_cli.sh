#!/usr/bin/env bash
# The beltway command, end to end, as a user drives it.
set -u
B=${BELTWAY_BIN:-./beltway}
[ -x "$B" ] || { echo "SKIP: no beltway binary at $B"; exit 77; }
T=$(mktemp -d /tmp/bwcli.XXXXXX)
export BELTWAY_DIR=$T/rings
mkdir -p "$BELTWAY_DIR"
fails=0
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# expect_fail DESCRIPTION CMD...: exit status 1 and exactly one stderr line
expect_fail() {
	local d=$1
	shift
	"$@" >"$T/out" 2>"$T/err"
	local rc=$? lines
	lines=$(wc -l <"$T/err")
	if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && grep -q '^beltway' "$T/err"; then
		ok "$d: $(cat "$T/err")"
	else
		bad "$d (exit $rc, $lines stderr lines: $(head -3 "$T/err"))"
	fi
}

# wait_for DESCRIPTION CMD...: polls CMD until it succeeds, 10 s at most
wait_for() {
	local d=$1 i
	shift
	for i in $(seq 1 200); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	bad "timed out waiting for: $d"
	return 1
}

# ---- help -------------------------------------------------------------------
"$B" --help | grep -q 'create' && ok "--help lists verbs" || bad "--help"
"$B" help read | grep -q 'from-start' && ok "help read" || bad "help read"
"$B" create --help | grep -q -- '--size' && ok "create --help" || bad "create --help"
"$B" --version | grep -q '^beltway ' && ok "--version" || bad "--version"
"$B" >/dev/null 2>&1 && bad "no verb should fail" || ok "no verb fails"

# ---- bad arguments: one clear line, non-zero ------------------------------------
expect_fail "unknown verb" "$B" frobnicate
expect_fail "create without a name" "$B" create
expect_fail "size zero" "$B" create r0 --size 0
expect_fail "size not a power of two" "$B" create r1 --size 5000
expect_fail "size garbage" "$B" create r1 --size 12Q
expect_fail "size missing" "$B" create r1 --size
expect_fail "mode not octal" "$B" create r2 --mode 999
expect_fail "bad name" "$B" create 'a/b'
expect_fail "hidden name" "$B" create .x
expect_fail "unknown option" "$B" create r3 --bogus
expect_fail "stat of nothing" "$B" stat nosuch
expect_fail "rm of nothing" "$B" rm nosuch
expect_fail "read of nothing" "$B" read nosuch
expect_fail "bench of nothing" "$B" bench nosuch
expect_fail "bench bad runs" "$B" bench local --runs 0

# ---- create, ls, stat, rm ----------------------------------------------------------
"$B" create ring1 --size 64K --mode 0640 && ok "create" || bad "create"
expect_fail "create twice" "$B" create ring1
"$B" ls | grep -q '^ring1 *bytes *65536 0640' && ok "ls shows kind, size and mode" || bad "ls: $("$B" ls)"
"$B" stat ring1 | grep -q 'capacity *65536' && ok "stat" || bad "stat"
"$B" stat ring1 | grep -q 'writer timeout none' && ok "stat: no writer timeout" || bad "stat: $("$B" stat ring1)"
"$B" rm ring1 && ok "rm" || bad "rm"
expect_fail "writer timeout garbage" "$B" create r4 --writer-timeout 5x
expect_fail "writer timeout too long" "$B" create r4 --writer-timeout 86400001
"$B" create r4 --policy frp --writer-timeout 250 && "$B" stat r4 | grep -q 'writer timeout 250 ms' \
	&& "$B" stat r4 | grep -q 'policy *frp' && ok "create --policy --writer-timeout" \
	|| bad "create --writer-timeout: $("$B" stat r4)"
"$B" rm r4
expect_fail "wake batch garbage" "$B" create r5 --wake-batch x
expect_fail "wake usec zero" "$B" create r5 --wake-batch 8 --wake-usec 0
"$B" create r5 --wake-batch 64 && "$B" stat r5 | grep -q 'once per 64 writes or 1000 us' \
	&& ok "create --wake-batch" || bad "create --wake-batch: $("$B" stat r5)"
"$B" rm r5
"$B" ls | grep -q ring1 && bad "rm left ring1" || ok "ring gone"

# ---- streaming: a reader that comes first waits; two readers both get it all ------
head -c 3000000 /dev/urandom >"$T/in"
"$B" create s --size 64K
"$B" read s >"$T/out1" &
pids+=($!)
r1=$!
"$B" read s >"$T/out2" &
pids+=($!)
r2=$!
wait_for "two readers attached" sh -c "\"$B\" stat s | grep -q 'attached *2 readers'"
"$B" stat s | grep -q '^reader' && ok "stat lists readers" || bad "stat lists readers"
"$B" write s <"$T/in" && ok "write" || bad "write"
wait $r1 && wait $r2 && ok "readers exit at EOF" || bad "reader exit status"
cmp -s "$T/in" "$T/out1" && cmp -s "$T/in" "$T/out2" && ok "both readers got every byte" \
	|| bad "reader output differs"

# ---- from the start: what is still in the ring --------------------------------------
printf 'hello ring\n' >"$T/small"
"$B" write s --nowait <"$T/small"
"$B" read s --from-start --nowait >"$T/tail" &&
	[ "$(tail -c 11 "$T/tail")" = "hello ring" ] && ok "read --from-start" \
	|| bad "read --from-start: $(tail -c 20 "$T/tail" | od -c | head -2)"

# ---- EPIPE: a writer whose readers are all gone ---------------------------------------
"$B" create p --size 64K
"$B" read p | head -c 1000 >/dev/null &
pids+=($!)
wait_for "reader attached" sh -c "\"$B\" stat p | grep -q 'attached *1 readers'"
head -c 50000000 /dev/zero | "$B" write p 2>"$T/epipe"
rc=$?
if [ $rc -ne 0 ] && grep -q 'no reader' "$T/epipe"; then
	ok "writer gets EPIPE: $(cat "$T/epipe")"
else
	bad "writer without readers: exit $rc, $(cat "$T/epipe")"
fi

# ---- IBufs: create --index, data through it, stat shows where indices point ----------
"$B" create ix --index --size 64K && ok "create --index" || bad "create --index"
"$B" ls | grep -q '^ix *index' && "$B" ls | grep -q '^ix.wt *bytes' && ok "ls shows the IBuf and its DBuf" \
	|| bad "ls after create --index: $("$B" ls)"
head -c 100000 /dev/urandom >"$T/iin"
"$B" read ix >"$T/iout" &
pids+=($!)
r3=$!
wait_for "IBuf reader attached" sh -c "\"$B\" stat ix | grep -q 'attached *1 readers'"
"$B" write ix <"$T/iin" && wait $r3 && cmp -s "$T/iin" "$T/iout" && ok "data through an IBuf" \
	|| bad "data through an IBuf"
"$B" write ix --nowait <"$T/small"
"$B" stat ix | grep -q 'an IBuf' && "$B" stat ix | grep -q 'ix.wt' && ok "stat shows the DBuf the IBuf points into" \
	|| bad "stat ix: $("$B" stat ix)"
"$B" rm ix && ! "$B" ls | grep -q 'ix.wt' && ok "rm takes the IBuf's DBuf" || bad "rm ix"

# ---- record rings -----------------------------------------------------------------------
for L in fr vr dr; do
	"$B" create "rec$L" --layout $L --size 64K || bad "create --layout $L"
	"$B" read "rec$L" >"$T/rout$L" &
	pids+=($!)
	rr=$!
	wait_for "record reader attached" sh -c "\"$B\" stat rec$L | grep -q 'attached *1 readers'"
	"$B" write "rec$L" <"$T/iin" && wait $rr && cmp -s "$T/iin" "$T/rout$L" \
		&& ok "data through a $L ring" || bad "data through a $L ring"
done
"$B" stat recdr | grep -q 'layers *record dr (largest [0-9]* bytes, align 64, offset 0) > dbuf, sync lossless' \
	&& ok "stat shows the layers" || bad "stat recdr: $("$B" stat recdr)"
"$B" ls | grep -q '^recfr *fr ' && ok "ls shows the layout" || bad "ls: $("$B" ls)"
"$B" create recal --layout vr --align 64 --align-offset 14 && "$B" stat recal | grep -q 'align 64, offset 14' \
	&& ok "create --align --align-offset" || bad "create --align"
expect_fail "fr slot not a power of two" "$B" create recbad --layout fr --record-size 1000
expect_fail "layout on an IBuf" "$B" create recbad --layout vr --index
expect_fail "unknown layout" "$B" create recbad --layout xr
expect_fail "alignment not a power of two" "$B" create recbad --layout vr --align 24
"$B" ls | grep -q recbad && bad "a refused ring was made" || ok "refused rings are not made"

# ---- self-scaling rings ------------------------------------------------------------------
for S in realloc deckcut; do
	"$B" create "sc$S" --scale $S --size 1M --scale-min 64K || bad "create --scale $S"
	"$B" read "sc$S" >"$T/sout$S" &
	pids+=($!)
	rr=$!
	wait_for "scaling reader attached" sh -c "\"$B\" stat sc$S | grep -q 'attached *1 readers'"
	head -c 20000000 /dev/urandom >"$T/sin"
	"$B" write "sc$S" <"$T/sin" && wait $rr && cmp -s "$T/sin" "$T/sout$S" \
		&& ok "data through a $S ring" || bad "data through a $S ring"
	"$B" stat "sc$S" | grep -q "layers *scale $S (size now [0-9]*, [0-9]* resizes, 65536 to" \
		&& ok "stat shows the $S layer" || bad "stat sc$S: $("$B" stat sc$S)"
done
"$B" ls | grep -q '^screalloc *scale ' && ok "ls shows a self-scaling ring" || bad "ls: $("$B" ls)"
"$B" ls | grep -q '@' && bad "ls shows regions: $("$B" ls)" || ok "ls hides the regions"
"$B" rm screalloc scdeckcut && ! ls -A "$BELTWAY_DIR" | grep -q '@' && ok "rm takes the regions" \
	|| bad "regions left: $(ls "$BELTWAY_DIR")"
# records over scaling: each read of stdin one record, read back whole
"$B" create scvr --scale deckcut --layout vr --size 1M --scale-min 64K --record-size 8K \
	|| bad "create --scale deckcut --layout vr"
"$B" stat scvr | grep -q "layers *scale deckcut (.*) > record vr (largest 8192 bytes" \
	&& ok "stat shows scale over a record layout" || bad "stat scvr: $("$B" stat scvr)"
"$B" read scvr >"$T/soutvr" &
rr=$!
pids+=($rr)
wait_for "records reader attached" sh -c "\"$B\" stat scvr | grep -q 'attached *1 readers'"
head -c 8000000 /dev/urandom >"$T/sinvr"
"$B" write scvr <"$T/sinvr" && wait $rr && cmp -s "$T/sinvr" "$T/soutvr" \
	&& ok "records through a scaling vr ring" || bad "records through a scaling vr ring"
"$B" rm scvr
expect_fail "records too large for the least size" "$B" create scbad --scale realloc \
	--layout vr --scale-min 64K --record-size 40K
expect_fail "scale-min not a power of two" "$B" create scbad --scale realloc --scale-min 3000
expect_fail "unknown scaling" "$B" create scbad --scale sideways
expect_fail "scale with frp" "$B" create scbad --scale deckcut --policy frp

# ---- bench: the JSON shape (not the speed) --------------------------------------------
"$B" bench local --quick --runs 1 --sizes 64,4K --json >"$T/bench" 2>/dev/null
n=$(grep -c -E '^\{"suite":"local","case":"(rw|peekpoke|pipe|pipe_max|limit)","size":(64|4096),"gbps":[0-9.]+,"mops":[0-9.]+\}$' "$T/bench")
[ "$n" -eq 10 ] && [ "$(wc -l <"$T/bench")" -eq 10 ] && ok "bench --json shape" \
	|| bad "bench --json: $n good lines of $(wc -l <"$T/bench")"
expect_fail "bench ringsize bad ring" "$B" bench ringsize --rings 5000
"$B" bench ringsize --quick --runs 1 --rings 4K --sizes 64,4K --json >"$T/rs" 2>/dev/null
n=$(grep -c -E '^\{"suite":"ringsize","case":"(read|peek)","ring_bytes":4096,"size":(64|4096),"gbps":[0-9.]+\}$' "$T/rs")
# peek stops at half the ring: read 64, read 4K, peek 64
[ "$n" -eq 3 ] && [ "$(wc -l <"$T/rs")" -eq 3 ] && ok "bench ringsize --json shape" \
	|| bad "bench ringsize --json: $n good lines of $(wc -l <"$T/rs")"
expect_fail "bench layout record too large" "$B" bench layout --sizes 4096
"$B" bench layout --quick --runs 1 --sizes 64,1514 --json >"$T/lay" 2>/dev/null
n=$(grep -c -E '^\{"suite":"layout","case":"(byte|fr|vr|dr|malloc_list|malloc_cached)","size":(64|1514),"gbps":[0-9.]+,"mops":[0-9.]+\}$' "$T/lay")
[ "$n" -eq 12 ] && [ "$(wc -l <"$T/lay")" -eq 12 ] && ok "bench layout --json shape" \
	|| bad "bench layout --json: $n good lines of $(wc -l <"$T/lay")"
expect_fail "bench scaling bad loops" "$B" bench scaling --loops 2
"$B" bench scaling --quick --runs 1 --loops 4 --json >"$T/scl" 2>/dev/null
n=$(grep -c -E '^\{"suite":"scaling","case":"(static|realloc|deckcut)","loop":[0-3],"ring_bytes":[0-9]+,"gbps":[0-9.]+\}$' "$T/scl")
[ "$n" -eq 12 ] && [ "$(wc -l <"$T/scl")" -eq 12 ] && ok "bench scaling --json shape" \
	|| bad "bench scaling --json: $n good lines of $(wc -l <"$T/scl")"

"$B" bench shadow --quick --runs 1 --latencies 0,50 --providers tcp --json >"$T/shb" 2>"$T/shberr"
n=$(grep -c -E '^\{"suite":"shadow","case":"(zerocopy|copyonce|hybrid|prefetch)","access":"(header|full)","latency_us":(0|50),"provider":"tcp","gbps":[0-9.]+,"remote_ops_per_record":[0-9.]+\}$' "$T/shb")
[ "$n" -eq 16 ] && [ "$(wc -l <"$T/shb")" -eq 16 ] && ok "bench shadow --json shape" \
	|| bad "bench shadow --json: $n good lines of $(wc -l <"$T/shb") ($(head -2 "$T/shberr"))"
expect_fail "bench shadow bad latency" "$B" bench shadow --latencies 5x
expect_fail "bench shadow bad ring" "$B" bench shadow --ring 3M

# ---- tail through shadow buffers (a ring on this host) -------------------------
"$B" create shd --size 1M && head -c 262144 /dev/urandom >"$T/shin" \
	&& "$B" write shd --nowait <"$T/shin" || bad "shadow ring setup"
for m in zero-copy copy-once hybrid prefetch; do
	"$B" tail shd --from-start --shadow $m --verbose >"$T/shout" 2>"$T/sherr"
	cmp -s "$T/shin" "$T/shout" && grep -q "^beltway tail: $m over shm" "$T/sherr" \
		&& ok "tail --shadow $m" || bad "tail --shadow $m: $(cat "$T/sherr")"
done
"$B" tail shd --from-start --shadow copy-once --latency-us 100 --verbose >"$T/shout" 2>"$T/sherr"
cmp -s "$T/shin" "$T/shout" && grep -q "latency 100 us" "$T/sherr" \
	&& ok "tail --latency-us" || bad "tail --latency-us: $(cat "$T/sherr")"
# headers only: the first 16 bytes of each 4 KiB record, payloads not fetched
"$B" tail shd --from-start --headers --record-size 4K --header-bytes 16 --verbose \
	>"$T/shout" 2>"$T/sherr"
for i in $(seq 0 63); do tail -c +$((i * 4096 + 1)) "$T/shin" | head -c 16; done >"$T/shexp"
cmp -s "$T/shexp" "$T/shout" && grep -q "^beltway tail: hybrid over shm, 1024 bytes" "$T/sherr" \
	&& ok "tail --headers (hybrid by default)" || bad "tail --headers: $(cat "$T/sherr")"
# a record ring: tail gets its records whole and in order
"$B" create shv --layout vr --size 4M --record-size 1M --policy frp || bad "create shv"
head -c 1000000 /dev/urandom >"$T/shrec"
for i in 1 2 3; do cat "$T/shrec"; done >"$T/shvin"
for i in 1 2 3; do "$B" write shv --nowait <"$T/shrec" || bad "write shv"; done
"$B" tail shv --from-start --bytes 3000000 >"$T/shvout" 2>"$T/sherr"
cmp -s "$T/shvin" "$T/shvout" && ok "tail of a record ring" \
	|| bad "tail of a record ring: $(cat "$T/sherr")"
# its headers alone: the first 16 bytes of each record (write made records
# of its 64 KiB reads), the first three
"$B" tail shv --from-start --headers --header-bytes 16 --verbose --bytes 48 \
	>"$T/shvout" 2>"$T/sherr"
for i in 0 1 2; do tail -c +$((i * 65536 + 1)) "$T/shrec" | head -c 16; done >"$T/shvexp"
cmp -s "$T/shvexp" "$T/shvout" && grep -q "^beltway tail: hybrid over shm" "$T/sherr" \
	&& ok "tail --headers of a record ring" \
	|| bad "tail --headers of a record ring: $(cat "$T/sherr")"
expect_fail "tail bad shadow method" "$B" tail shd --shadow teleport
expect_fail "tail headers without record size" "$B" tail shd --headers
expect_fail "tail bad latency" "$B" tail shd --latency-us 2000000
expect_fail "tail missing ring" "$B" tail nosuchring --shadow prefetch

if [ $fails -ne 0 ]; then
	echo "$fails failures"
	exit 1
fi
echo "all passed"
