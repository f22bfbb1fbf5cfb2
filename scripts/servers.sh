#!/usr/bin/env bash
# servers.sh — start, stop and describe the servers that memo's backend tests
# run against. Everything lives under .servers/ in the repository root and
# listens on 127.0.0.1 only.
#
#   scripts/servers.sh start   install what is missing, start what is not running
#   scripts/servers.sh stop    stop what start started (by pidfile only)
#   scripts/servers.sh env     print the `export` lines the tests read
#
# start is idempotent: a server whose pidfile names a live process that
# answers on its port is left alone. Environment:
#   SERVERS_TIMEOUT      seconds start waits for each server (default 30)
#   SERVERS_PORT_OFFSET  added to every port (default 0), so that two
#                        checkouts on one machine do not collide; `env`
#                        prints the shifted addresses
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.servers"
HOST=127.0.0.1
OFFSET=${SERVERS_PORT_OFFSET:-0}
[[ $OFFSET =~ ^[0-9]+$ ]] || { echo "servers.sh: SERVERS_PORT_OFFSET must be a number" >&2; exit 2; }
REDIS_PORT=$((16379 + OFFSET))
# Redis Cluster: three masters (the addresses MEMO_REDIS_CLUSTER_ADDRS
# names) and one replica of each, so that a master can fail over.
CLUSTER_MASTER_PORTS=($((17000 + OFFSET)) $((17001 + OFFSET)) $((17002 + OFFSET)))
CLUSTER_REPLICA_PORTS=($((17003 + OFFSET)) $((17004 + OFFSET)) $((17005 + OFFSET)))
CLUSTER_PORTS=("${CLUSTER_MASTER_PORTS[@]}" "${CLUSTER_REPLICA_PORTS[@]}")
MEMCACHED_PORT=$((21211 + OFFSET))
DYNALITE_PORT=$((18000 + OFFSET))
# nginx: a shared HTTP cache (proxy_cache, proxy_cache_revalidate) in front
# of an upstream that each test starts on a port of its own (see
# write_nginx_conf).
NGINX_PORT=$((18080 + OFFSET))
# What each server's /proc/PID/cmdline contains: a pidfile whose process
# lacks it is stale (the pid was recycled) and is never signalled.
REDIS_MARK=redis-server
MEMCACHED_MARK=memcached
DYNALITE_MARK=dynalite/cli.js
NGINX_MARK="nginx: master process"
DYNALITE_VERSION=4.0.0
TIMEOUT=${SERVERS_TIMEOUT:-30}

log() { printf 'servers.sh: %s\n' "$*" >&2; }
die() { printf 'servers.sh: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

# port_open PORT: true when something accepts TCP connections on HOST:PORT.
port_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# pid_of PIDFILE: prints the pid recorded in PIDFILE, if any.
pid_of() {
	[[ -s $1 ]] || return 1
	local pid
	pid=$(tr -dc '0-9' <"$1")
	[[ -n $pid ]] || return 1
	printf '%s\n' "$pid"
}

# alive PIDFILE MARK: true when PIDFILE names a live process whose command
# line contains MARK (guards against a recycled pid).
alive() {
	local pid
	pid=$(pid_of "$1") || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# wait_for WHAT TIMEOUT CMD...: retries CMD until it succeeds or TIMEOUT
# seconds pass.
wait_for() {
	local what=$1 limit=$2
	shift 2
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${limit}s waiting for $what"
			return 1
		fi
		sleep 0.2
	done
}

redis_ping() {
	[[ $(redis-cli -h "$HOST" -p "$1" ping 2>/dev/null) == PONG ]]
}

memcached_ping() {
	local line
	exec 3<>"/dev/tcp/$HOST/$1" || return 1
	printf 'version\r\n' >&3
	IFS= read -r -t 2 line <&3 || { exec 3>&-; return 1; }
	exec 3>&-
	[[ $line == VERSION* ]]
}

# nginx_ping PORT: nginx answers GET /ping with 204.
nginx_ping() {
	local line
	exec 3<>"/dev/tcp/$HOST/$1" || return 1
	printf 'GET /ping HTTP/1.0\r\nHost: %s\r\n\r\n' "$HOST" >&3
	IFS= read -r -t 2 line <&3 || { exec 3>&-; return 1; }
	exec 3>&-
	[[ $line == "HTTP/1."?" 204"* ]]
}

cluster_ok() {
	redis-cli -h "$HOST" -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

# cluster_node_ready PORT: the node reports cluster_state:ok, sees three
# replicas, and, if it is a replica, is in sync with its master.
cluster_node_ready() {
	cluster_ok "$1" || return 1
	local replicas
	replicas=$(redis-cli -h "$HOST" -p "$1" cluster nodes 2>/dev/null | grep -cE '[ ,]slave ') || true
	[[ $replicas == "${#CLUSTER_REPLICA_PORTS[@]}" ]] || return 1
	local repl
	repl=$(redis-cli -h "$HOST" -p "$1" info replication 2>/dev/null) || return 1
	if grep -q '^role:slave' <<<"$repl"; then
		grep -q '^master_link_status:up' <<<"$repl" || return 1
	fi
}

cluster_all_ok() {
	local p
	for p in "${CLUSTER_PORTS[@]}"; do cluster_node_ready "$p" || return 1; done
}

# stop_pidfile PIDFILE MARK [LOGFILE]: stops the process PIDFILE names (if
# it is still ours) and removes the pidfile. A server whose pidfile is left
# but whose process is gone died on its own (while the tests ran): that is
# said, with the tail of LOGFILE, so that a test failing on a refused
# connection can be traced to the server's own last words.
stop_pidfile() {
	local file=$1 mark=$2 logfile=${3:-} pid
	if [[ -s $file ]] && ! alive "$file" "$mark"; then
		log "$(basename "$file" .pid) (pid $(pid_of "$file")) had already exited: it died before it was stopped"
		if [[ -n $logfile && -s $logfile ]]; then
			log "last lines of $logfile:"
			tail -n 40 "$logfile" >&2 || true
		fi
	fi
	if alive "$file" "$mark"; then
		pid=$(pid_of "$file")
		log "stopping $(basename "$file" .pid) (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 10))
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				sleep 0.2
				break
			fi
			sleep 0.1
		done
	fi
	rm -f "$file"
}

# fail_start NAME LOGFILE MESSAGE: reports a server that did not come up,
# with the tail of its log.
fail_start() {
	log "$1 failed to start: $3"
	if [[ -s $2 ]]; then
		log "last lines of $2:"
		tail -n 20 "$2" >&2 || true
	fi
	exit 1
}

# free_port NAME PORT: dies when PORT is taken by a process this script did
# not start.
free_port() {
	if port_open "$2"; then
		die "$1: port $HOST:$2 is already in use by a process not started by scripts/servers.sh (no live pidfile in $STATE); stop it or free the port"
	fi
}

# ---------------------------------------------------------------- install

ensure_packages() {
	local missing=()
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v redis-cli >/dev/null || missing+=(redis-tools)
	command -v memcached >/dev/null || missing+=(memcached)
	command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		missing+=(nodejs npm)
	fi
	((${#missing[@]})) || return 0
	log "installing ${missing[*]}"
	local sudo=()
	if [[ $(id -u) != 0 ]]; then
		command -v sudo >/dev/null || die "need root (or sudo) to install ${missing[*]}"
		sudo=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		log "apt-get install failed; running apt-get update and retrying"
		"${sudo[@]}" apt-get update >&2
		"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
			die "could not install ${missing[*]}"
	fi
}

DYNALITE_CLI="$STATE/node/node_modules/dynalite/cli.js"
# Keeps dynalite alive when a client aborts a request (see the file).
DYNALITE_GUARD="$ROOT/scripts/dynalite-guard.js"

ensure_dynalite() {
	[[ -f $DYNALITE_CLI ]] && return 0
	log "installing dynalite@$DYNALITE_VERSION into $STATE/node"
	mkdir -p "$STATE/node"
	# --ignore-scripts: dynalite's LevelDB dependency ships prebuilt binaries
	# and the in-memory store we use never compiles anything.
	npm install --prefix "$STATE/node" --no-audit --no-fund --ignore-scripts \
		--loglevel=error "dynalite@$DYNALITE_VERSION" >&2 ||
		die "npm install dynalite@$DYNALITE_VERSION failed"
	[[ -f $DYNALITE_CLI ]] || die "dynalite installed but $DYNALITE_CLI is missing"
}

# ---------------------------------------------------------------- servers

start_redis() {
	local pidfile="$STATE/redis.pid" dir="$STATE/redis"
	if alive "$pidfile" "$REDIS_MARK" && redis_ping "$REDIS_PORT"; then
		log "redis already running on $HOST:$REDIS_PORT"
		return 0
	fi
	stop_pidfile "$pidfile" "$REDIS_MARK"
	free_port redis "$REDIS_PORT"
	mkdir -p "$dir"
	redis-server --port "$REDIS_PORT" --bind "$HOST" --protected-mode yes \
		--daemonize yes --pidfile "$pidfile" --dir "$dir" --logfile "$dir/redis.log" \
		--save "" --appendonly no >/dev/null ||
		fail_start redis "$dir/redis.log" "redis-server exited with an error"
	wait_for "redis on $HOST:$REDIS_PORT" "$TIMEOUT" redis_ping "$REDIS_PORT" ||
		fail_start redis "$dir/redis.log" "no PONG on $HOST:$REDIS_PORT"
	wait_for "redis pidfile" 5 test -s "$pidfile" ||
		fail_start redis "$dir/redis.log" "no pidfile $pidfile"
	log "redis listening on $HOST:$REDIS_PORT (pid $(pid_of "$pidfile"))"
}

cluster_pidfile() { printf '%s\n' "$STATE/redis-cluster-$1.pid"; }

stop_cluster() {
	local p
	for p in "${CLUSTER_PORTS[@]}"; do
		stop_pidfile "$(cluster_pidfile "$p")" "$REDIS_MARK" "$STATE/cluster/$p/redis.log"
	done
}

start_cluster() {
	local p all_alive=1
	for p in "${CLUSTER_PORTS[@]}"; do
		alive "$(cluster_pidfile "$p")" "$REDIS_MARK" && redis_ping "$p" || all_alive=0
	done
	if ((all_alive)); then
		if cluster_all_ok; then
			log "redis cluster already running on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}"
			return 0
		fi
		if wait_for "cluster_state:ok" 10 cluster_all_ok; then
			log "redis cluster already running on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}"
			return 0
		fi
		log "redis cluster nodes are up but the cluster is not ok; recreating it"
	fi
	# Some node is missing or the cluster is broken: state on disk
	# (nodes.conf) is stale, so start from scratch.
	if ((!all_alive)) && [[ -d $STATE/cluster ]]; then
		log "redis cluster nodes are not all running; creating a fresh cluster"
	fi
	stop_cluster
	rm -rf "$STATE/cluster"
	for p in "${CLUSTER_PORTS[@]}"; do
		free_port "redis cluster node" "$p"
		free_port "redis cluster bus" "$((p + 10000))"
	done
	for p in "${CLUSTER_PORTS[@]}"; do
		local dir="$STATE/cluster/$p"
		mkdir -p "$dir"
		redis-server --port "$p" --bind "$HOST" --protected-mode yes \
			--cluster-enabled yes --cluster-config-file nodes.conf \
			--cluster-node-timeout 5000 --repl-diskless-sync-delay 0 \
			--daemonize yes --pidfile "$(cluster_pidfile "$p")" --dir "$dir" \
			--logfile "$dir/redis.log" --save "" --appendonly no >/dev/null ||
			fail_start "redis cluster node $p" "$dir/redis.log" "redis-server exited with an error"
	done
	for p in "${CLUSTER_PORTS[@]}"; do
		wait_for "redis cluster node on $HOST:$p" "$TIMEOUT" redis_ping "$p" ||
			fail_start "redis cluster node $p" "$STATE/cluster/$p/redis.log" "no PONG on $HOST:$p"
		wait_for "redis cluster pidfile" 5 test -s "$(cluster_pidfile "$p")" ||
			fail_start "redis cluster node $p" "$STATE/cluster/$p/redis.log" "no pidfile"
	done
	# redis-cli makes the first three addresses the masters and gives each
	# one of the last three as its replica.
	local addrs=()
	for p in "${CLUSTER_PORTS[@]}"; do addrs+=("$HOST:$p"); done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
		>"$STATE/cluster/create.log" 2>&1 ||
		fail_start "redis cluster" "$STATE/cluster/create.log" "redis-cli --cluster create failed"
	wait_for "cluster_state:ok and replicas in sync on every cluster node" "$TIMEOUT" cluster_all_ok ||
		fail_start "redis cluster" "$STATE/cluster/create.log" "cluster_state is not ok or a replica is not in sync"
	local p0 role
	for p0 in "${CLUSTER_MASTER_PORTS[@]}"; do
		role=$(redis-cli -h "$HOST" -p "$p0" role 2>/dev/null | head -n 1)
		[[ $role == master ]] ||
			fail_start "redis cluster" "$STATE/cluster/create.log" "node $HOST:$p0 is a $role, not a master"
	done
	log "redis cluster listening on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} (masters ${CLUSTER_MASTER_PORTS[*]}, replicas ${CLUSTER_REPLICA_PORTS[*]})"
}

start_memcached() {
	local pidfile="$STATE/memcached.pid" logfile="$STATE/memcached.log"
	if alive "$pidfile" "$MEMCACHED_MARK" && memcached_ping "$MEMCACHED_PORT"; then
		log "memcached already running on $HOST:$MEMCACHED_PORT"
		return 0
	fi
	stop_pidfile "$pidfile" "$MEMCACHED_MARK"
	free_port memcached "$MEMCACHED_PORT"
	local user=()
	[[ $(id -u) == 0 ]] && user=(-u root)
	# -d daemonizes, so the pidfile (-P) holds the daemon's pid.
	memcached -d "${user[@]}" -l "$HOST" -p "$MEMCACHED_PORT" -U 0 -m 64 \
		-P "$pidfile" >"$logfile" 2>&1 ||
		fail_start memcached "$logfile" "memcached exited with an error"
	wait_for "memcached on $HOST:$MEMCACHED_PORT" "$TIMEOUT" memcached_ping "$MEMCACHED_PORT" ||
		fail_start memcached "$logfile" "no VERSION reply on $HOST:$MEMCACHED_PORT"
	wait_for "memcached pidfile" 5 test -s "$pidfile" ||
		fail_start memcached "$logfile" "no pidfile $pidfile"
	log "memcached listening on $HOST:$MEMCACHED_PORT (pid $(pid_of "$pidfile"))"
}

start_dynalite() {
	local pidfile="$STATE/dynalite.pid" logfile="$STATE/dynalite.log"
	if alive "$pidfile" "$DYNALITE_MARK" && port_open "$DYNALITE_PORT"; then
		log "dynalite already running on $HOST:$DYNALITE_PORT"
		return 0
	fi
	stop_pidfile "$pidfile" "$DYNALITE_MARK"
	free_port dynalite "$DYNALITE_PORT"
	ensure_dynalite
	# In-memory store (no --path); --host keeps it off every other interface;
	# tables become ACTIVE at once instead of after 500 ms.
	# setsid detaches it from the caller's process group; in a script (no job
	# control) the background child is no group leader, so setsid execs in
	# place and $! is node's own pid.
	local launcher=()
	command -v setsid >/dev/null && launcher=(setsid)
	"${launcher[@]}" nohup node --require "$DYNALITE_GUARD" "$DYNALITE_CLI" --port "$DYNALITE_PORT" --host "$HOST" \
		--createTableMs 0 --deleteTableMs 0 --updateTableMs 0 </dev/null >"$logfile" 2>&1 &
	local pid=$!
	echo "$pid" >"$pidfile"
	wait_for "dynalite on $HOST:$DYNALITE_PORT" "$TIMEOUT" port_open "$DYNALITE_PORT" ||
		fail_start dynalite "$logfile" "nothing listening on $HOST:$DYNALITE_PORT"
	alive "$pidfile" "$DYNALITE_MARK" ||
		fail_start dynalite "$logfile" "pid $pid is not the dynalite process"
	log "dynalite listening on $HOST:$DYNALITE_PORT (pid $pid)"
}

NGINX_DIR="$STATE/nginx"

# write_nginx_conf: nginx as the shared cache the httpadapter tests put in
# front of memo. A request for /up/PORT/... is proxied, URI unchanged, to
# 127.0.0.1:PORT (a test's own server on an ephemeral port, so that
# concurrent test runs never compete for one upstream port); the cache key
# is nginx's default ($scheme$proxy_host$request_uri, the port included).
# nginx's defaults are kept on purpose: it stores what Cache-Control,
# Expires and Vary allow, ignores Age and the client's Cache-Control, and
# does not store answers with Set-Cookie. proxy_cache_revalidate makes it
# revalidate a stale entry with If-None-Match / If-Modified-Since. Every
# answer says X-Nginx-Cache: HIT, MISS, EXPIRED, REVALIDATED, BYPASS...
# ($upstream_cache_status). The cache persists across runs: tests put a
# run id in their paths.
write_nginx_conf() {
	local user=""
	# Workers run as the invoking user, so that they can write the cache
	# under .servers/ (as root nginx would switch them to nobody).
	[[ $(id -u) == 0 ]] && user="user root root;"
	mkdir -p "$NGINX_DIR/cache" "$NGINX_DIR/tmp" "$NGINX_DIR/logs"
	cat >"$NGINX_DIR/nginx.conf" <<-END
		# Written by scripts/servers.sh; changes are overwritten on start.
		$user
		worker_processes 1;
		daemon on;
		pid $NGINX_DIR/nginx.pid;
		error_log $NGINX_DIR/logs/error.log warn;
		events { worker_connections 512; }
		http {
		    log_format cache '\$remote_addr [\$time_local] "\$request" \$status \$upstream_cache_status \$request_time';
		    access_log $NGINX_DIR/logs/access.log cache;
		    client_body_temp_path $NGINX_DIR/tmp/body;
		    proxy_temp_path $NGINX_DIR/tmp/proxy;
		    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
		    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
		    scgi_temp_path $NGINX_DIR/tmp/scgi;
		    proxy_cache_path $NGINX_DIR/cache levels=1:2 keys_zone=memo:10m max_size=256m inactive=10m use_temp_path=off;
		    server {
		        listen $HOST:$NGINX_PORT;
		        location = /ping { return 204; }
		        location ~ "^/up/(?<upport>[1-9][0-9]{3,4})/" {
		            proxy_pass http://127.0.0.1:\$upport;
		            proxy_http_version 1.1;
		            proxy_set_header Connection "";
		            proxy_cache memo;
		            proxy_cache_revalidate on;
		            add_header X-Nginx-Cache \$upstream_cache_status always;
		        }
		        location / { return 404; }
		    }
		}
	END
}

start_nginx() {
	local pidfile="$NGINX_DIR/nginx.pid" errlog="$NGINX_DIR/logs/error.log"
	local nginx
	nginx=$(command -v nginx || echo /usr/sbin/nginx)
	if alive "$pidfile" "$NGINX_MARK" && nginx_ping "$NGINX_PORT"; then
		log "nginx already running on $HOST:$NGINX_PORT"
		return 0
	fi
	stop_pidfile "$pidfile" "$NGINX_MARK"
	free_port nginx "$NGINX_PORT"
	write_nginx_conf
	"$nginx" -t -q -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$errlog" >"$NGINX_DIR/logs/start.log" 2>&1 ||
		fail_start nginx "$NGINX_DIR/logs/start.log" "nginx -t rejected $NGINX_DIR/nginx.conf"
	"$nginx" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$errlog" >>"$NGINX_DIR/logs/start.log" 2>&1 ||
		fail_start nginx "$errlog" "nginx exited with an error"
	wait_for "nginx on $HOST:$NGINX_PORT" "$TIMEOUT" nginx_ping "$NGINX_PORT" ||
		fail_start nginx "$errlog" "no 204 from http://$HOST:$NGINX_PORT/ping"
	wait_for "nginx pidfile" 5 test -s "$pidfile" ||
		fail_start nginx "$errlog" "no pidfile $pidfile"
	log "nginx listening on $HOST:$NGINX_PORT (pid $(pid_of "$pidfile"))"
}

# ---------------------------------------------------------------- commands

cmd_start() {
	ensure_packages
	mkdir -p "$STATE"
	start_redis
	start_cluster
	start_memcached
	start_dynalite
	start_nginx
}

cmd_stop() {
	[[ -d $STATE ]] || return 0
	stop_pidfile "$NGINX_DIR/nginx.pid" "$NGINX_MARK" "$NGINX_DIR/logs/error.log"
	stop_pidfile "$STATE/dynalite.pid" "$DYNALITE_MARK" "$STATE/dynalite.log"
	stop_pidfile "$STATE/memcached.pid" "$MEMCACHED_MARK" "$STATE/memcached.log"
	stop_cluster
	stop_pidfile "$STATE/redis.pid" "$REDIS_MARK" "$STATE/redis/redis.log"
}

cmd_env() {
	local addrs=() p
	for p in "${CLUSTER_MASTER_PORTS[@]}"; do addrs+=("$HOST:$p"); done
	local IFS=,
	cat <<-END
		export MEMO_REDIS_ADDR=$HOST:$REDIS_PORT
		export MEMO_REDIS_CLUSTER_ADDRS=${addrs[*]}
		export MEMO_MEMCACHED_ADDR=$HOST:$MEMCACHED_PORT
		export MEMO_DYNAMODB_ENDPOINT=http://$HOST:$DYNALITE_PORT
		export MEMO_DYNALITE_CMD='node --require $DYNALITE_GUARD $DYNALITE_CLI'
		export MEMO_NGINX_ADDR=$HOST:$NGINX_PORT
	END
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
