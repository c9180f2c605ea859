#!/usr/bin/env bash
# dynalite.sh: start or stop the DynamoDB emulator (npm package dynalite) the
# tests of jobs/dynamojobs run against. It is an emulator, not DynamoDB.
#
#   scripts/dynalite.sh start    install the pinned dynalite if needed, start it
#                                on 127.0.0.1 (in memory) and wait until it answers
#                                (idempotent)
#   scripts/dynalite.sh stop     stop the emulator this script started
#   scripts/dynalite.sh status   exit 0 when something answers on the port
#
# The version is pinned in scripts/dynalite/package.json and package-lock.json
# (dynalite 4.0.0) and installed with `npm ci` into scripts/dynalite/node_modules
# (gitignored).
#
# Environment:
#   HUB_TEST_DYNAMODB_ENDPOINT  where to listen; only the port is used, the
#                               emulator binds 127.0.0.1. Defaults to
#                               http://127.0.0.1:4567.
#   HUB_CACHE                   directory for the log and pid files. Defaults
#                               to $HOME/.cache/harvesthub.
#   DYNALITE_START_TIMEOUT      seconds to wait for it to answer. Defaults to 30.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/dynalite"
endpoint="${HUB_TEST_DYNAMODB_ENDPOINT:-http://127.0.0.1:4567}"
hostport="${endpoint#*://}"
hostport="${hostport%%/*}"
port="${hostport##*:}"
if [[ "$port" == "$hostport" || ! "$port" =~ ^[0-9]+$ ]]; then
	echo "dynalite.sh: HUB_TEST_DYNAMODB_ENDPOINT=$endpoint has no port (want e.g. http://127.0.0.1:4567)" >&2
	exit 2
fi
cache="${HUB_CACHE:-$HOME/.cache/harvesthub}/dynalite"
log="$cache/dynalite-$port.log"
pidfile="$cache/dynalite-$port.pid"
timeout="${DYNALITE_START_TIMEOUT:-30}"

# answers: true when a request on the port gets an HTTP reply from dynalite
# (an unsigned request is answered with a signature error, which is enough).
answers() {
	curl -s --max-time 2 -X POST -H 'Content-Type: application/x-amz-json-1.0' \
		-H 'X-Amz-Target: DynamoDB_20120810.ListTables' --data '{}' \
		"http://127.0.0.1:$port/" 2>/dev/null | grep -q '__type'
}

install() {
	if [[ -f "$here/node_modules/dynalite/package.json" ]] &&
		cmp -s "$here/package-lock.json" "$here/node_modules/.hub-installed-lock" 2>/dev/null; then
		return
	fi
	echo "dynalite.sh: installing the pinned dynalite (npm ci in $here)" >&2
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
	cp "$here/package-lock.json" "$here/node_modules/.hub-installed-lock"
}

start() {
	if answers; then
		echo "dynalite.sh: already listening on 127.0.0.1:$port"
		return
	fi
	command -v node >/dev/null || { echo "dynalite.sh: node is not installed" >&2; exit 1; }
	install
	mkdir -p "$cache"
	(
		cd "$here"
		nohup node node_modules/dynalite/cli.js --host 127.0.0.1 --port "$port" >>"$log" 2>&1 </dev/null &
		echo $! >"$pidfile"
	)
	local pid deadline
	pid="$(cat "$pidfile")"
	deadline=$((SECONDS + timeout))
	until answers; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "dynalite.sh: dynalite exited during start; last lines of $log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			echo "dynalite.sh: dynalite did not answer on 127.0.0.1:$port within ${timeout}s; see $log" >&2
			kill "$pid" 2>/dev/null || true
			exit 1
		fi
		sleep 0.2
	done
	echo "dynalite.sh: dynalite (pid $pid) listening on 127.0.0.1:$port, log $log"
}

stop() {
	if [[ ! -f "$pidfile" ]]; then
		echo "dynalite.sh: no pid file $pidfile; nothing this script started is running"
		return
	fi
	local pid
	pid="$(cat "$pidfile")"
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
		echo "dynalite.sh: stopped dynalite (pid $pid)"
	fi
	rm -f "$pidfile"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
	if answers; then echo "dynalite.sh: listening on 127.0.0.1:$port"; else
		echo "dynalite.sh: nothing answers on 127.0.0.1:$port"
		exit 1
	fi
	;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
