#!/usr/bin/env bash
# bench.sh — rerun memo's performance measurements end to end, from the
# repository root:
#
#   1. start the test servers (scripts/servers.sh start), and stop them at
#      the end only if this script started them;
#   2. the peer comparison: bench/ (its own module) run by bench/cmd/table:
#      BENCH_COUNT interleaved rounds, one markdown table of medians;
#   3. memo's own benchmarks: go test -run '^$' -bench . -count 5 on the
#      root module's packages;
#   4. HTTP: scripts/httpbench.sh (bench/cmd/httpserver pinned to CPU 0,
#      wrk -t1 -c32 pinned to CPU 1, rounds interleaved): the adapter's hit
#      and 304 against handlers writing the same bytes from memory, and
#      against gin-cache; medians and ratios.
#
# Everything is written under $BENCH_OUT (default bench/out/<UTC time>) and
# the tables are printed. Environment:
#   BENCH_COUNT       rounds of the peer table and -count of memo's own
#                     benchmarks (default 5)
#   BENCH_ROOT_PKGS   root packages to benchmark (default ./...; the bench/
#                     module is never among them)
#   BENCH_SKIP        space-separated steps to skip: peers root http
#   BENCH_LOAD_MAX    wait while the 1-minute load average is above this
#                     (default 1.5), at most BENCH_LOAD_WAIT seconds
#                     (default 300), then go on with a warning
#   WRK_DURATION      wrk -d (default 5s); WRK_ROUNDS (default 5)
# The exit status is non-zero when any step failed; the other steps still run.
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

COUNT=${BENCH_COUNT:-5}
ROOT_PKGS=${BENCH_ROOT_PKGS:-./...}
SKIP=" ${BENCH_SKIP:-} "
LOAD_MAX=${BENCH_LOAD_MAX:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
WRK_DURATION=${WRK_DURATION:-5s}
WRK_ROUNDS=${WRK_ROUNDS:-5}
OUT=${BENCH_OUT:-$ROOT/bench/out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { printf 'bench.sh: %s\n' "$*" >&2; }
status=0
fail() { log "FAILED: $*"; status=1; }
skipped() { [[ $SKIP == *" $1 "* ]]; }

started_servers=0
server_pid=
cleanup() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if ((started_servers)); then
		log "stopping the test servers this script started"
		bash scripts/servers.sh stop || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for_quiet: waits (up to LOAD_WAIT s) for the 1-minute load average to
# drop to LOAD_MAX; this machine is shared with other test runs.
wait_for_quiet() {
	local deadline=$((SECONDS + LOAD_WAIT)) load
	while :; do
		load=$(cut -d' ' -f1 /proc/loadavg)
		if awk -v l="$load" -v m="$LOAD_MAX" 'BEGIN { exit !(l <= m) }'; then
			log "load average $load (<= $LOAD_MAX): $1"
			return 0
		fi
		if ((SECONDS >= deadline)); then
			log "load average is still $load (> $LOAD_MAX) after ${LOAD_WAIT}s; going on with $1 anyway"
			echo "load $load at the start of $1 (above $LOAD_MAX)" >>"$OUT/notes.txt"
			return 0
		fi
		sleep 10
	done
}

# ------------------------------------------------------------ machine
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "go: $(go version)"
	echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "uptime: $(uptime)"
	echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (working tree has changes)')"
} | tee "$OUT/machine.txt"

# ------------------------------------------------------------ servers
redis_up() {
	local addr=${MEMO_REDIS_ADDR#*://}
	timeout 2 bash -c "exec 3<>/dev/tcp/${addr%:*}/${addr##*:}" 2>/dev/null
}
eval "$(bash scripts/servers.sh env)"
if redis_up; then
	log "the test servers are already running; they are left running"
fi
if ! redis_up; then
	started_servers=1
fi
if ! bash scripts/servers.sh start; then
	fail "scripts/servers.sh start (Redis rows will be missing)"
fi

# ------------------------------------------------------------ peers
if ! skipped peers; then
	wait_for_quiet "the peer benchmarks"
	log "peer benchmarks (bench/, $COUNT interleaved rounds); progress in $OUT/peers.log"
	if (cd bench && go run ./cmd/table -count "$COUNT" -raw "$OUT/peers.json") >"$OUT/peers.md" 2>"$OUT/peers.log"; then
		:
	else
		fail "peer benchmarks (see $OUT/peers.log)"
		tail -n 30 "$OUT/peers.log" >&2
	fi
	echo
	echo "## Peers (bench/)"
	echo
	cat "$OUT/peers.md"
fi

# ------------------------------------------------------------ memo's own
if ! skipped root; then
	wait_for_quiet "memo's own benchmarks"
	log "memo's own benchmarks: go test -run '^\$' -bench . -count $COUNT $ROOT_PKGS"
	# shellcheck disable=SC2086 # ROOT_PKGS is a list of patterns
	if ! go test -run '^$' -bench . -benchmem -count "$COUNT" -timeout 60m $ROOT_PKGS >"$OUT/root.txt" 2>&1; then
		fail "memo's own benchmarks (see $OUT/root.txt)"
	fi
	echo
	echo "## memo's own benchmarks (medians of $COUNT)"
	echo
	echo '```'
	# One line per benchmark: the median ns/op, B/op and allocs/op.
	awk '
		/^pkg: / { pkg = $2 }
		/^Benchmark/ && / ns\/op/ {
			name = pkg "." $1
			for (i = 3; i < NF; i++) {
				if ($(i + 1) == "ns/op") ns[name] = ns[name] " " $i
				if ($(i + 1) == "B/op") bs[name] = bs[name] " " $i
				if ($(i + 1) == "allocs/op") al[name] = al[name] " " $i
			}
			if (!(name in seen)) { seen[name] = 1; order[++n] = name }
		}
		function med(s,    a, k, i, j, t) {
			k = split(s, a, " ")
			if (k == 0) return "-"
			for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
			return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
		}
		END {
			for (i = 1; i <= n; i++) printf "%-90s %12s ns/op %8s B/op %5s allocs/op\n", order[i], med(ns[order[i]]), med(bs[order[i]]), med(al[order[i]])
		}' "$OUT/root.txt" | tee "$OUT/root-medians.txt"
	echo '```'
	grep -E '^(--- FAIL|FAIL|panic:)' "$OUT/root.txt" >&2 || true
fi

# ------------------------------------------------------------ HTTP
# scripts/httpbench.sh: wrk against bench/cmd/httpserver, pinned to separate
# CPUs, rounds interleaved; its table goes to $OUT/http/http.md.
http_step() {
	WRK_DURATION=$WRK_DURATION WRK_ROUNDS=$WRK_ROUNDS HTTPBENCH_OUT="$OUT/http" \
		BENCH_LOAD_MAX=$LOAD_MAX BENCH_LOAD_WAIT=$LOAD_WAIT bash scripts/httpbench.sh ||
		fail "scripts/httpbench.sh (see $OUT/http)"
}

if ! skipped http; then
	http_step
fi

echo
log "results in $OUT"
[[ -s $OUT/notes.txt ]] && { log "notes:"; cat "$OUT/notes.txt" >&2; }
exit $status
