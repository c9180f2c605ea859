#!/usr/bin/env bash
# rabbitmq-tls-node.sh: a private RabbitMQ node for tests that restart the
# broker or need mutual TLS, separate from the machine's shared node (which
# other packages' tests use concurrently and must never be restarted).
#
#   scripts/rabbitmq-tls-node.sh start|stop|restart|status
#
# Environment (defaults in brackets):
#   HUB_RMQ_DIR        state directory: config, mnesia, logs, cookie [/tmp/hub-rabbitmq-node]
#   HUB_RMQ_NODENAME   Erlang node name [hubtest@localhost]
#   HUB_RMQ_PORT       plain AMQP port on 127.0.0.1 [5682]
#   HUB_RMQ_TLS_PORT   AMQPS port on 127.0.0.1, requires a client certificate [5681]
#   HUB_RMQ_DIST_PORT  Erlang distribution port [25682]
#   HUB_RMQ_CERTS      directory holding ca.pem, server.pem, server.key; when
#                      empty the node has no TLS listener []
#
# The node runs as the current user with HOME=$HUB_RMQ_DIR, so it has its own
# Erlang cookie, no plugins (no management UI) and nothing in /etc/rabbitmq
# or /var/lib/rabbitmq is read or written.
set -euo pipefail

DIR=${HUB_RMQ_DIR:-/tmp/hub-rabbitmq-node}
NODE=${HUB_RMQ_NODENAME:-hubtest@localhost}
PORT=${HUB_RMQ_PORT:-5682}
TLS_PORT=${HUB_RMQ_TLS_PORT:-5681}
DIST_PORT=${HUB_RMQ_DIST_PORT:-25682}
CERTS=${HUB_RMQ_CERTS:-}
BIN=${HUB_RMQ_BIN:-/usr/lib/rabbitmq/bin}

if [ ! -x "$BIN/rabbitmq-server" ]; then
	echo "rabbitmq-tls-node: $BIN/rabbitmq-server not found (install rabbitmq-server or set HUB_RMQ_BIN)" >&2
	exit 3
fi

# One command at a time per node: concurrent restarts (Watermill's reconnect
# test starts them in goroutines) would race on the pid file.
mkdir -p "$DIR"
exec 9>"$DIR.lock"
flock 9

setup() {
	mkdir -p "$DIR/mnesia" "$DIR/log"
	: >"$DIR/rabbitmq-env.conf" # instead of /etc/rabbitmq/rabbitmq-env.conf
	echo '[].' >"$DIR/enabled_plugins"
	{
		echo "listeners.tcp.1 = 127.0.0.1:$PORT"
		echo "loopback_users = none"
		echo "log.console = false"
		echo "log.file.level = warning"
		if [ -n "$CERTS" ]; then
			echo "listeners.ssl.1 = 127.0.0.1:$TLS_PORT"
			echo "ssl_options.cacertfile = $CERTS/ca.pem"
			echo "ssl_options.certfile = $CERTS/server.pem"
			echo "ssl_options.keyfile = $CERTS/server.key"
			echo "ssl_options.verify = verify_peer"
			echo "ssl_options.fail_if_no_peer_cert = true"
		else
			echo "listeners.ssl = none"
		fi
	} >"$DIR/rabbitmq.conf"
}

env_run() {
	env HOME="$DIR" \
		RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
		RABBITMQ_NODENAME="$NODE" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$PORT" \
		RABBITMQ_DIST_PORT="$DIST_PORT" \
		RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config" \
		RABBITMQ_MNESIA_BASE="$DIR/mnesia" \
		RABBITMQ_LOG_BASE="$DIR/log" \
		RABBITMQ_PID_FILE="$DIR/pid" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" \
		RABBITMQ_PLUGINS_EXPAND_DIR="$DIR/plugins-expand" \
		RABBITMQ_FEATURE_FLAGS_FILE="$DIR/feature_flags" \
		ERL_EPMD_ADDRESS=127.0.0.1 \
		ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
		"$@" 9>&- # the node must not inherit (and hold) the lock
}

ctl() { env_run "$BIN/rabbitmqctl" -n "$NODE" "$@"; }

start() {
	setup
	if ctl status >/dev/null 2>&1; then
		echo "rabbitmq-tls-node: $NODE already running"
		return 0
	fi
	env_run "$BIN/rabbitmq-server" -detached
	# Waits until the node has booted and its listeners are up.
	ctl wait --timeout 120 "$DIR/pid" >/dev/null
	echo "rabbitmq-tls-node: $NODE up, amqp 127.0.0.1:$PORT${CERTS:+, amqps 127.0.0.1:$TLS_PORT}"
}

stop() {
	if [ -f "$DIR/pid" ] && ctl status >/dev/null 2>&1; then
		# With the pid file, stop returns once the OS process has exited.
		ctl stop "$DIR/pid" >/dev/null
	fi
	rm -f "$DIR/pid"
	echo "rabbitmq-tls-node: $NODE stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
restart) stop && start ;;
status) ctl status >/dev/null 2>&1 && echo running || { echo stopped; exit 1; } ;;
*)
	echo "usage: $0 start|stop|restart|status" >&2
	exit 2
	;;
esac
