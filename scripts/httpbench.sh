#!/usr/bin/env bash
# httpbench.sh — the HTTP load test of docs/performance.md, from the
# repository root:
#
#   bash scripts/httpbench.sh
#
# bench/cmd/httpserver (GOMAXPROCS 1, pinned to CPU 0) serves one endpoint
# several ways; wrk (-t1, pinned to CPU 1) loads each in turn, WRK_ROUNDS
# rounds interleaved (every endpoint once per round, in a rotated order),
# and the script prints the medians and the ratios:
#
#   /hit vs /fixed               the adapter's hit vs a handler writing the
#                                same headers and body from memory
#   /notmod vs /notmod-fixed     the adapter's 304 vs a handler writing the
#                                same 304
#   /gin/memo vs /gin/cache      the adapter vs gin-cache (a Go HTTP caching
#                                middleware), both through one gin engine
#   /gin/memo vs /gin/cache-same the same, gin-cache replaying the adapter's
#                                headers: the same response on the wire
#   /bytes                       the floor: body, Content-Type, Content-Length
#
# Each ratio is given twice: of the medians, and the median of the per-round
# ratios (the runs of one round are seconds apart, so a slow spell of this
# shared machine mostly cancels out of a round's ratio). Besides requests/s,
# each run records the server's CPU time per request (/proc/PID/stat before
# and after, over wrk's request count): on a machine where other work
# shares the server's CPU, requests/s falls with it, but the CPU a request
# costs barely moves; the CPU ratio (the base's CPU per request over the
# endpoint's) is the requests/s ratio the server would reach on a CPU of its
# own. Nothing is asserted: the goals (>= 0.97x) are judged in
# docs/performance.md.
#
# Environment:
#   WRK_DURATION   wrk -d per run (default 5s)
#   WRK_ROUNDS     rounds (default 5)
#   WRK_CONNS      wrk -c (default 32)
#   HTTPBENCH_ENDPOINTS  the endpoints to load, space-separated (default all;
#                  the table lists those measured)
#   HTTPBENCH_OUT  output directory (default bench/out/http-<UTC time>)
#   HTTPBENCH_COMMIT  what to print as the commit measured (default: git's
#                  HEAD, and whether the working tree has changes)
#   HTTPBENCH_PROFILE=1  then also take a 5 s CPU profile of the server
#                  while wrk loads /hit, and print its top lines
#   BENCH_LOAD_MAX / BENCH_LOAD_WAIT  wait (at most LOAD_WAIT s, default
#                  300) for the 1-minute load average to drop to LOAD_MAX
#                  (default 1.5) before measuring
# wrk is installed with apt-get when missing (it is not needed by the tests).
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WRK_DURATION=${WRK_DURATION:-5s}
WRK_ROUNDS=${WRK_ROUNDS:-5}
WRK_CONNS=${WRK_CONNS:-32}
LOAD_MAX=${BENCH_LOAD_MAX:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
OUT=${HTTPBENCH_OUT:-$ROOT/bench/out/http-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
read -r -a ENDPOINTS <<<"${HTTPBENCH_ENDPOINTS:-bytes fixed hit notmod-fixed notmod gin/cache gin/cache-same gin/memo}"

log() { printf 'httpbench.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

server_pid=
cleanup() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_wrk() {
	command -v wrk >/dev/null && return 0
	log "installing wrk"
	local sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get install -y --no-install-recommends wrk >&2 ||
		{ "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y --no-install-recommends wrk >&2; }
}

wait_for_quiet() {
	local deadline=$((SECONDS + LOAD_WAIT)) load
	while :; do
		load=$(cut -d' ' -f1 /proc/loadavg)
		if awk -v l="$load" -v m="$LOAD_MAX" 'BEGIN { exit !(l <= m) }'; then
			log "load average $load (<= $LOAD_MAX)"
			return 0
		fi
		if ((SECONDS >= deadline)); then
			log "load average is still $load (> $LOAD_MAX) after ${LOAD_WAIT}s; measuring anyway"
			echo "load $load at the start (above $LOAD_MAX)" >>"$OUT/notes.txt"
			return 0
		fi
		sleep 10
	done
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

ensure_wrk || die "could not install wrk"
(cd bench && go build -o "$OUT/httpserver" ./cmd/httpserver) || die "building bench/cmd/httpserver"
pin_server=() pin_wrk=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
	pin_server=(taskset -c 0)
	pin_wrk=(taskset -c 1)
else
	log "no taskset or fewer than 2 CPUs: server and wrk are not pinned"
fi
pprof_flag=()
[[ ${HTTPBENCH_PROFILE:-0} == 1 ]] && pprof_flag=(-pprof 127.0.0.1:0)
# The server exits by itself after -for; it is also killed by PID on exit.
rm -f "$OUT/http.info"
GOMAXPROCS=1 "${pin_server[@]}" "$OUT/httpserver" -addr 127.0.0.1:0 -for 30m -info "$OUT/http.info" "${pprof_flag[@]}" >"$OUT/httpserver.log" 2>&1 &
server_pid=$!
for ((i = 0; i < 100; i++)); do
	grep -qs '^gomaxprocs=' "$OUT/http.info" && break
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
grep -qs '^gomaxprocs=' "$OUT/http.info" || { cat "$OUT/httpserver.log" >&2; die "bench/cmd/httpserver did not start"; }
addr=$(sed -n 's/^addr=//p' "$OUT/http.info")
etag=$(sed -n 's/^etag=//p' "$OUT/http.info")
pprof_addr=$(sed -n 's/^pprof=//p' "$OUT/http.info")
log "httpserver on $addr (pid $server_pid, $(sed -n 's/^gomaxprocs=/GOMAXPROCS /p' "$OUT/http.info")), ETag $etag"

# wrk_args EP: the request of endpoint EP.
wrk_args() {
	case $1 in
	notmod | notmod-fixed) printf '%s\n' -H "If-None-Match: $etag" ;;
	esac
	printf '%s\n' "http://$addr/$1"
}

# What each endpoint answers, checked once before measuring.
for ep in "${ENDPOINTS[@]}"; do
	want=200
	[[ $ep == notmod* ]] && want=304
	mapfile -t args < <(wrk_args "$ep")
	hdr=()
	[[ ${#args[@]} -gt 1 ]] && hdr=(-H "${args[1]}")
	code=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "${args[-1]}")
	[[ $code == "$want" ]] || die "/$ep answered $code, want $want"
done

{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "go: $(go version)"
	echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "wrk: $(wrk -v 2>&1 | head -n 1)"
	echo "commit: ${HTTPBENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (working tree has changes)')}"
} | tee "$OUT/machine.txt" >&2

HZ=$(getconf CLK_TCK)
# cpu_ticks: the server's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

wait_for_quiet
: >"$OUT/http-runs.txt"
n=${#ENDPOINTS[@]}
for ((round = 1; round <= WRK_ROUNDS; round++)); do
	for ((k = 0; k < n; k++)); do
		ep=${ENDPOINTS[$(((k + round - 1) % n))]}
		mapfile -t args < <(wrk_args "$ep")
		f="$OUT/wrk-${ep//\//_}-$round.txt"
		cpu0=$(cpu_ticks)
		"${pin_wrk[@]}" wrk -t1 -c"$WRK_CONNS" -d"$WRK_DURATION" "${args[@]}" >"$f" 2>&1 || log "wrk /$ep round $round failed"
		cpu1=$(cpu_ticks)
		grep -q 'Non-2xx or 3xx' "$f" && log "/$ep round $round had error responses"
		rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
		reqs=$(awk '/ requests in / { print $1 }' "$f")
		# The server's CPU time per request, in µs: what the server spent,
		# whatever else ran on its CPU meanwhile.
		cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$HZ" -v n="${reqs:-0}" 'BEGIN { printf "%.3f", (n > 0 ? t * 1e6 / hz / n : 0) }')
		echo "$ep $round ${rps:-0} $(cut -d' ' -f1 /proc/loadavg) $cpu" | tee -a "$OUT/http-runs.txt" >&2
	done
done

if [[ -n $pprof_addr ]]; then
	log "profiling /hit for 5 s"
	mapfile -t args < <(wrk_args hit)
	"${pin_wrk[@]}" wrk -t1 -c"$WRK_CONNS" -d7s "${args[@]}" >/dev/null 2>&1 &
	wrk_pid=$!
	sleep 1
	curl -s -o "$OUT/hit.pprof" "http://$pprof_addr/debug/pprof/profile?seconds=5"
	wait "$wrk_pid"
	{
		go tool pprof -top -nodecount 30 "$OUT/httpserver" "$OUT/hit.pprof"
		echo
		echo "cumulative, under the adapter's ServeHTTP:"
		go tool pprof -top -cum -nodecount 30 -focus 'httpadapter.*ServeHTTP' "$OUT/httpserver" "$OUT/hit.pprof"
	} >"$OUT/hit.pprof.txt" 2>&1
	log "profile of /hit: $OUT/hit.pprof (top: $OUT/hit.pprof.txt)"
fi

kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=

med() { awk -v ep="$1" -v c="${2:-3}" '$1 == ep { print $c }' "$OUT/http-runs.txt" | median; }
# round_ratio A B COL: the median over rounds of A's column COL over B's.
round_ratio() {
	awk -v a="$1" -v b="$2" -v c="$3" '{ v[$1 " " $2] = $c } END {
		for (k in v) { split(k, p, " "); if (p[1] == a && v[b " " p[2]] > 0) print v[k] / v[b " " p[2]] }
	}' "$OUT/http-runs.txt" | median
}
row() { # row LABEL EP BASE
	grep -q "^$2 " "$OUT/http-runs.txt" && grep -q "^$3 " "$OUT/http-runs.txt" || return 0
	local m b mc bc
	m=$(med "$2")
	b=$(med "$3")
	mc=$(med "$2" 5)
	bc=$(med "$3" 5)
	# The CPU ratio is BASE's CPU per request over EP's: the throughput
	# ratio a CPU of its own would give.
	awk -v l="$1" -v m="$m" -v b="$b" -v base="$3" -v rr="$(round_ratio "$2" "$3" 3)" \
		-v mc="$mc" -v bc="$bc" -v rc="$(round_ratio "$3" "$2" 5)" 'BEGIN {
		printf "| %s | %.0f | %.2f | /%s | %.3f | %.3f | %.3f | %.3f |\n", l, m, mc, base,
			(b > 0 ? m / b : 0), rr, (mc > 0 ? bc / mc : 0), rc }'
}
{
	echo
	echo "## HTTP (wrk -t1 -c$WRK_CONNS -d$WRK_DURATION; server GOMAXPROCS 1 on CPU 0, wrk on CPU 1; medians of $WRK_ROUNDS interleaved rounds)"
	echo
	echo "| endpoint | requests/s | server CPU µs/request | vs | req/s ratio of medians | median of per-round req/s ratios | CPU ratio of medians (vs's CPU / this one's) | median of per-round CPU ratios |"
	echo "|---|---:|---:|---|---:|---:|---:|---:|"
	row "/bytes: body, Content-Type, Content-Length" bytes bytes
	row "/fixed: the hit's headers and body from memory" fixed bytes
	row "/hit: httpadapter, hit (200)" hit fixed
	row "/notmod-fixed: the same 304 from memory" notmod-fixed bytes
	row "/notmod: httpadapter, If-None-Match (304)" notmod notmod-fixed
	row "/gin/cache: gin + chenyahui/gin-cache, hit" gin/cache bytes
	row "/gin/cache-same: gin + gin-cache replaying the adapter's headers, hit" gin/cache-same bytes
	row "/gin/memo: gin + httpadapter, hit" gin/memo gin/cache
	row "/gin/memo: gin + httpadapter, hit" gin/memo gin/cache-same
	echo
	echo "Each run (endpoint, round, requests/s, load average, server CPU µs/request):"
	sed 's/^/    /' "$OUT/http-runs.txt"
	if [[ -s $OUT/hit.pprof.txt ]]; then
		echo
		echo "CPU profile of /hit (top lines):"
		sed -n '1,30p' "$OUT/hit.pprof.txt" | sed 's/^/    /'
	fi
} | tee "$OUT/http.md"
log "results in $OUT"
