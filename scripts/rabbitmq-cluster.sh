#!/usr/bin/env bash
# rabbitmq-cluster.sh: a private three-node RabbitMQ cluster on this machine,
# for tests that kill and restart nodes. It never touches the machine's
# shared node (5672): its nodes have their own names, ports, data and logs.
#
#   scripts/rabbitmq-cluster.sh start            start (or complete) the cluster; idempotent
#   scripts/rabbitmq-cluster.sh stop             stop every node and remove the state
#   scripts/rabbitmq-cluster.sh kill N           SIGKILL node N's Erlang VM (beam.smp), N in 1..3
#   scripts/rabbitmq-cluster.sh restart N        start node N again (after kill) and wait for it
#   scripts/rabbitmq-cluster.sh status           "running" (exit 0) when all three answer
#   scripts/rabbitmq-cluster.sh urls             the AMQP URLs, comma-separated
#   scripts/rabbitmq-cluster.sh ctl N ARGS...    rabbitmqctl against node N
#   scripts/rabbitmq-cluster.sh queues N ARGS... rabbitmq-queues against node N
#
# Environment (defaults in brackets):
#   HUB_RMQC_DIR        state: cookie, per-node config, mnesia, logs [/tmp/hub-rabbitmq-cluster]
#   HUB_RMQC_PREFIX     node names PREFIX1@localhost.. [hubc]
#   HUB_RMQC_PORT       AMQP port of node 1 on 127.0.0.1; nodes 2, 3 the next ones [5701]
#   HUB_RMQC_DIST_PORT  Erlang distribution port of node 1; idem [25701]
#   HUB_RMQC_TIMEOUT    seconds a node may take to boot [300]
#
# The nodes run as the current user with HOME=$HUB_RMQC_DIR (one Erlang
# cookie for the three, none of the machine's), no plugins, and register with
# the machine's epmd on 127.0.0.1 under their own names. "start" on a cluster
# that is not running wipes the old state and forms a fresh cluster: node 1
# boots, nodes 2 and 3 boot in parallel and join it (rabbitmqctl
# join_cluster).
set -euo pipefail

DIR=${HUB_RMQC_DIR:-/tmp/hub-rabbitmq-cluster}
PREFIX=${HUB_RMQC_PREFIX:-hubc}
PORT=${HUB_RMQC_PORT:-5701}
DIST_PORT=${HUB_RMQC_DIST_PORT:-25701}
TIMEOUT=${HUB_RMQC_TIMEOUT:-300}
BIN=${HUB_RMQ_BIN:-/usr/lib/rabbitmq/bin}
NODES=(1 2 3)

if [ ! -x "$BIN/rabbitmq-server" ]; then
	echo "rabbitmq-cluster: $BIN/rabbitmq-server not found (install rabbitmq-server or set HUB_RMQ_BIN)" >&2
	exit 3
fi

mkdir -p "$DIR"
exec 9>"$DIR.lock" # one command at a time
flock 9

name() { echo "$PREFIX$1@localhost"; }
port() { echo $((PORT + $1 - 1)); }
ndir() { echo "$DIR/node$1"; }

check_node() {
	case "${1:-}" in
	1 | 2 | 3) ;;
	*)
		echo "rabbitmq-cluster: node must be 1, 2 or 3, not '${1:-}'" >&2
		exit 2
		;;
	esac
}

setup() { # setup N: config files of node N
	local d
	d=$(ndir "$1")
	mkdir -p "$d/mnesia" "$d/log"
	: >"$d/rabbitmq-env.conf"
	echo '[].' >"$d/enabled_plugins"
	{
		echo "listeners.tcp.1 = 127.0.0.1:$(port "$1")"
		echo "listeners.ssl = none"
		echo "loopback_users = none"
		echo "log.console = false"
		echo "log.file.level = warning"
		# A killed node is a normal event here: do not pause the survivors.
		echo "cluster_partition_handling = ignore"
	} >"$d/rabbitmq.conf"
}

env_run() { # env_run N CMD...: run CMD with node N's environment
	local n=$1 d
	shift
	d=$(ndir "$n")
	env HOME="$DIR" \
		RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
		RABBITMQ_NODENAME="$(name "$n")" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$(port "$n")" \
		RABBITMQ_DIST_PORT=$((DIST_PORT + n - 1)) \
		RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
		RABBITMQ_MNESIA_BASE="$d/mnesia" \
		RABBITMQ_LOG_BASE="$d/log" \
		RABBITMQ_PID_FILE="$d/pid" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
		RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins-expand" \
		RABBITMQ_FEATURE_FLAGS_FILE="$d/feature_flags" \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +A 4" \
		ERL_EPMD_ADDRESS=127.0.0.1 \
		ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
		"$@" 9>&- # the node must not inherit (and hold) the lock
}

ctl() { # ctl N ARGS...
	local n=$1
	shift
	env_run "$n" "$BIN/rabbitmqctl" -n "$(name "$n")" "$@"
}

up() { ctl "$1" status >/dev/null 2>&1; }

# beam_pid N: the pid of node N's Erlang VM, checked against its command line
# so that a stale pid file never names another process.
beam_pid() {
	local f pid
	f="$(ndir "$1")/pid"
	[ -s "$f" ] || return 1
	pid=$(tr -d '[:space:]' <"$f")
	[ -r "/proc/$pid/cmdline" ] || return 1
	grep -q beam "/proc/$pid/comm" 2>/dev/null || return 1
	tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$(name "$1")" || return 1
	echo "$pid"
}

boot() { # boot N: start node N detached and wait until it serves AMQP
	env_run "$1" "$BIN/rabbitmq-server" -detached
	ctl "$1" wait --timeout "$TIMEOUT" "$(ndir "$1")/pid" >/dev/null
}

# members N: the running nodes of the cluster as node N sees them.
running_members() {
	ctl "$1" eval 'rabbit_nodes:all_running().' 2>/dev/null | tr -d "[]'\n" | tr ',' ' ' || true
}

clustered() {
	local m
	m=$(running_members 1)
	for n in "${NODES[@]}"; do
		case " $m " in *" $(name "$n") "*) ;; *) return 1 ;; esac
	done
}

join() { # join N: node N (freshly booted) joins node 1
	ctl "$1" stop_app >/dev/null
	ctl "$1" join_cluster "$(name 1)" >"$(ndir "$1")/log/join.out" 2>&1 || { cat "$(ndir "$1")/log/join.out" >&2; return 1; }
	ctl "$1" start_app >/dev/null
	ctl "$1" await_startup --timeout "$TIMEOUT" >/dev/null
}

start() {
	local t0=$SECONDS
	if up 1 && up 2 && up 3 && clustered; then
		echo "rabbitmq-cluster: already running: $(urls)"
		return 0
	fi
	# Not (fully) up: start over from a clean state.
	stop_all quiet
	rm -rf "${DIR:?}/node1" "${DIR:?}/node2" "${DIR:?}/node3"
	for n in "${NODES[@]}"; do setup "$n"; done
	# Boot the three VMs at once; 2 and 3 then join 1.
	local pids=()
	for n in "${NODES[@]}"; do
		boot "$n" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	join 2 &
	local j2=$!
	join 3 &
	local j3=$!
	wait $j2
	wait $j3
	if ! clustered; then
		echo "rabbitmq-cluster: nodes did not form a cluster: $(running_members 1)" >&2
		exit 1
	fi
	echo "rabbitmq-cluster: up in $((SECONDS - t0))s: $(urls)"
}

stop_all() {
	for n in "${NODES[@]}"; do
		if up "$n"; then
			ctl "$n" stop "$(ndir "$n")/pid" >/dev/null 2>&1 || true
		fi
		# A node that does not answer but still runs (hung, or half
		# booted) is killed.
		local pid
		if pid=$(beam_pid "$n"); then
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$(ndir "$n")/pid"
	done
	[ "${1:-}" = quiet ] || echo "rabbitmq-cluster: stopped"
}

kill_node() {
	check_node "$1"
	local pid
	if ! pid=$(beam_pid "$1"); then
		echo "rabbitmq-cluster: node $(name "$1") is not running" >&2
		exit 1
	fi
	kill -9 "$pid"
	# Wait until the VM is gone, so that a restart cannot race with it.
	local deadline=$((SECONDS + 30))
	while [ -e "/proc/$pid" ]; do
		if ((SECONDS > deadline)); then
			echo "rabbitmq-cluster: $pid survived SIGKILL for 30s" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "rabbitmq-cluster: killed $(name "$1") (pid $pid)"
}

restart_node() {
	check_node "$1"
	if up "$1"; then
		echo "rabbitmq-cluster: $(name "$1") already running"
		return 0
	fi
	local pid
	if pid=$(beam_pid "$1"); then
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$(ndir "$1")/pid"
	boot "$1"
	ctl "$1" await_startup --timeout "$TIMEOUT" >/dev/null
	echo "rabbitmq-cluster: $(name "$1") back"
}

urls() {
	local out=() n
	for n in "${NODES[@]}"; do out+=("amqp://guest:guest@127.0.0.1:$(port "$n")/"); done
	(
		IFS=,
		echo "${out[*]}"
	)
}

case "${1:-}" in
start) start ;;
stop)
	stop_all
	rm -rf "${DIR:?}/node1" "${DIR:?}/node2" "${DIR:?}/node3"
	;;
kill) kill_node "${2:-}" ;;
restart) restart_node "${2:-}" ;;
status)
	if up 1 && up 2 && up 3 && clustered; then
		echo running
	else
		echo "not running"
		exit 1
	fi
	;;
urls) urls ;;
ctl)
	check_node "${2:-}"
	n=$2
	shift 2
	ctl "$n" "$@"
	;;
queues)
	check_node "${2:-}"
	n=$2
	shift 2
	env_run "$n" "$BIN/rabbitmq-queues" -n "$(name "$n")" "$@"
	;;
*)
	echo "usage: $0 start|stop|kill N|restart N|status|urls|ctl N ...|queues N ..." >&2
	exit 2
	;;
esac
