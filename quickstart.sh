#!/usr/bin/env bash
# Beltway from a clone to a running system (see README.md):
#   ./quickstart.sh demo   install what is missing, build, run the demo
#   ./quickstart.sh test   install what is missing, run the whole test suite
#                          in a normal build, an ASan+UBSan build and a TSan
#                          build (clang); exits non-zero on any failure
set -euo pipefail
cd "$(dirname "$0")"

PKGS="build-essential autoconf automake libtool pkg-config libfabric-dev
libfabric-bin libnuma-dev numactl libhwloc-dev hwloc libcunit1-dev
libibverbs-dev librdmacm-dev clang iproute2"
JOBS=$(nproc 2>/dev/null || echo 2)

deps() {
	local missing=() p sudo=""
	for p in $PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "quickstart: installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [configure options...]
build() {
	local dir=$1
	shift
	if [ ! -x configure ] || [ configure.ac -nt configure ] ||
		[ Makefile.am -nt Makefile.in ]; then
		autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ]; then
		(cd "$dir" && ../configure --enable-werror "$@" >/dev/null) ||
			{ cat "$dir/config.log" | tail -40; return 1; }
	fi
	make -C "$dir" -j"$JOBS" >/dev/null
}

# check DIR: run the suite, show the logs of what failed
check() {
	local dir=$1 rc=0
	make -C "$dir" -j"$JOBS" check || rc=$?
	if [ $rc -ne 0 ]; then
		echo "quickstart: tests failed in $dir; test-suite.log follows" >&2
		cat "$dir/test-suite.log" >&2 || true
	fi
	return $rc
}

case "${1:-}" in
demo)
	deps
	build build
	./build/beltway demo
	;;
test)
	deps
	build build
	check build
	build build-asan --enable-asan --enable-ubsan
	check build-asan
	# gcc's TSan ignores atomic_thread_fence; clang's models it
	build build-tsan CC=clang --enable-tsan
	check build-tsan
	echo "quickstart: all tests passed (normal, ASan+UBSan and TSan builds)"
	;;
deps)
	deps
	;;
*)
	echo "usage: ./quickstart.sh demo|test" >&2
	exit 2
	;;
esac
