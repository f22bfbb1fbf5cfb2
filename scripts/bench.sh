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
#   4. HTTP: bench/cmd/httpserver pinned to CPU 0, wrk pinned to CPU 1
#      (wrk -t1 -c32 -d5s), /fixed, /hit and /notmod (If-None-Match) each
#      measured 3 times interleaved; medians and the ratios hit/fixed and
#      304/fixed.
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
#   WRK_DURATION      wrk -d (default 5s); WRK_ROUNDS (default 3)
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
WRK_ROUNDS=${WRK_ROUNDS:-3}
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
ensure_wrk() {
	command -v wrk >/dev/null && return 0
	log "installing wrk"
	local sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get install -y --no-install-recommends wrk >&2 ||
		{ "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y --no-install-recommends wrk >&2; }
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

http_step() {
	ensure_wrk || { fail "could not install wrk"; return; }
	(cd bench && go build -o "$OUT/httpserver" ./cmd/httpserver) || { fail "building bench/cmd/httpserver"; return; }
	local pin_server=() pin_wrk=()
	if command -v taskset >/dev/null && (($(nproc) >= 2)); then
		pin_server=(taskset -c 0)
		pin_wrk=(taskset -c 1)
	else
		log "no taskset or fewer than 2 CPUs: server and wrk are not pinned"
	fi
	rm -f "$OUT/http.info"
	# The server exits by itself after -for; it is also killed by PID on exit.
	"${pin_server[@]}" "$OUT/httpserver" -addr 127.0.0.1:0 -for 15m -info "$OUT/http.info" >"$OUT/httpserver.log" 2>&1 &
	server_pid=$!
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -s $OUT/http.info ]] && grep -q '^gomaxprocs=' "$OUT/http.info" && break
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^gomaxprocs=' "$OUT/http.info" 2>/dev/null; then
		fail "bench/cmd/httpserver did not start"
		cat "$OUT/httpserver.log" >&2
		return
	fi
	local addr etag
	addr=$(sed -n 's/^addr=//p' "$OUT/http.info")
	etag=$(sed -n 's/^etag=//p' "$OUT/http.info")
	log "httpserver on $addr (pid $server_pid, $(sed -n 's/^gomaxprocs=/GOMAXPROCS /p' "$OUT/http.info")), ETag $etag"

	# What each endpoint answers, checked once before measuring.
	if command -v curl >/dev/null; then
		local code
		for check in "fixed 200" "hit 200" "notmod 304"; do
			set -- $check
			if [[ $1 == notmod ]]; then
				code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://$addr/$1")
			else
				code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/$1")
			fi
			[[ $code == "$2" ]] || fail "/$1 answered $code, want $2"
		done
	fi

	wait_for_quiet "the HTTP measurement"
	local round ep rps
	: >"$OUT/http-runs.txt"
	for ((round = 1; round <= WRK_ROUNDS; round++)); do
		for ep in fixed hit notmod; do
			local hdr=()
			[[ $ep == notmod ]] && hdr=(-H "If-None-Match: $etag")
			"${pin_wrk[@]}" wrk -t1 -c32 -d"$WRK_DURATION" "${hdr[@]}" "http://$addr/$ep" >"$OUT/wrk-$ep-$round.txt" 2>&1 ||
				fail "wrk /$ep round $round"
			if grep -q 'Non-2xx or 3xx' "$OUT/wrk-$ep-$round.txt"; then
				fail "/$ep round $round had error responses"
			fi
			rps=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/wrk-$ep-$round.txt")
			echo "$ep $round ${rps:-0}" | tee -a "$OUT/http-runs.txt" >&2
		done
	done
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=

	local fixed hit notmod rhit rnotmod
	fixed=$(awk '$1 == "fixed" { print $3 }' "$OUT/http-runs.txt" | median)
	hit=$(awk '$1 == "hit" { print $3 }' "$OUT/http-runs.txt" | median)
	notmod=$(awk '$1 == "notmod" { print $3 }' "$OUT/http-runs.txt" | median)
	# Also the median of each round's own ratio: the three runs of a round
	# are seconds apart, so a slow spell of this shared machine that hits
	# one round cancels out of that round's ratios.
	round_ratios() {
		awk -v ep="$1" '{ v[$1 " " $2] = $3 } END {
			for (k in v) { split(k, p, " "); if (p[1] == ep && v["fixed " p[2]] > 0) print v[k] / v["fixed " p[2]] }
		}' "$OUT/http-runs.txt" | median
	}
	rhit=$(round_ratios hit)
	rnotmod=$(round_ratios notmod)
	{
		echo
		echo "## HTTP (wrk -t1 -c32 -d$WRK_DURATION, server on CPU 0, wrk on CPU 1, medians of $WRK_ROUNDS interleaved runs)"
		echo
		echo "| endpoint | requests/s | ratio to /fixed (of medians) | median of per-round ratios |"
		echo "|---|---:|---:|---:|"
		awk -v f="$fixed" -v h="$hit" -v n="$notmod" -v rh="$rhit" -v rn="$rnotmod" -v bytes="$(sed -n 's/^body_bytes=//p' "$OUT/http.info")" 'BEGIN {
			printf "| /fixed: net/http writing the same %s bytes | %.0f | 1.000 | 1.000 |\n", bytes, f
			printf "| /hit: httpadapter, cache hit (200) | %.0f | %.3f | %.3f |\n", h, (f > 0 ? h / f : 0), rh
			printf "| /notmod: httpadapter, If-None-Match (304) | %.0f | %.3f | %.3f |\n", n, (f > 0 ? n / f : 0), rn
		}'
		echo
		echo "Each run (endpoint, round, requests/s):"
		sed 's/^/    /' "$OUT/http-runs.txt"
	} | tee "$OUT/http.md"
}

if ! skipped http; then
	http_step
fi

echo
log "results in $OUT"
[[ -s $OUT/notes.txt ]] && { log "notes:"; cat "$OUT/notes.txt" >&2; }
exit $status
