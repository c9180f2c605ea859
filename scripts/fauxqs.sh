#!/usr/bin/env bash
# fauxqs.sh: start or stop the SQS/SNS emulator (npm package fauxqs) the
# integration tests of broker/sqs and bench/sqs run against.
#
#   scripts/fauxqs.sh start    install the pinned fauxqs if needed, start it on
#                              127.0.0.1 and wait until it answers (idempotent)
#   scripts/fauxqs.sh stop     stop the emulator this script started
#   scripts/fauxqs.sh status   exit 0 when something answers on the port
#
# The version is pinned in scripts/package.json and scripts/package-lock.json
# (fauxqs 1.9.2: it runs on Node 20; 2.x needs Node 22 for node:sqlite) and
# installed with `npm ci` into scripts/node_modules (gitignored).
#
# Environment:
#   HUB_TEST_SQS_ENDPOINT  where to listen; only the port is used, the emulator
#                          always binds 127.0.0.1. Defaults to http://127.0.0.1:4566.
#   HUB_CACHE              directory for the log and pid files.
#                          Defaults to $HOME/.cache/harvesthub.
#   FAUXQS_START_TIMEOUT   seconds to wait for the emulator to answer. Defaults to 30.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
endpoint="${HUB_TEST_SQS_ENDPOINT:-http://127.0.0.1:4566}"
hostport="${endpoint#*://}"
hostport="${hostport%%/*}"
port="${hostport##*:}"
if [[ "$port" == "$hostport" || ! "$port" =~ ^[0-9]+$ ]]; then
	echo "fauxqs.sh: HUB_TEST_SQS_ENDPOINT=$endpoint has no port (want e.g. http://127.0.0.1:4566)" >&2
	exit 2
fi
cache="${HUB_CACHE:-$HOME/.cache/harvesthub}/fauxqs"
log="$cache/fauxqs-$port.log"
pidfile="$cache/fauxqs-$port.pid"
timeout="${FAUXQS_START_TIMEOUT:-30}"

# answers: true when an SQS ListQueues call on the port gets an HTTP reply.
answers() {
	curl -s -o /dev/null --max-time 2 -X POST \
		-H 'Content-Type: application/x-amz-json-1.0' \
		-H 'X-Amz-Target: AmazonSQS.ListQueues' \
		--data '{"MaxResults":1}' "http://127.0.0.1:$port/"
}

install() {
	if [[ -f "$here/node_modules/fauxqs/package.json" ]] &&
		cmp -s "$here/package-lock.json" "$here/node_modules/.hub-installed-lock" 2>/dev/null; then
		return
	fi
	echo "fauxqs.sh: installing the pinned fauxqs (npm ci in $here)" >&2
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
	cp "$here/package-lock.json" "$here/node_modules/.hub-installed-lock"
}

start() {
	if answers; then
		echo "fauxqs.sh: already listening on 127.0.0.1:$port"
		return
	fi
	command -v node >/dev/null || { echo "fauxqs.sh: node is not installed" >&2; exit 1; }
	install
	mkdir -p "$cache"
	# fauxqs's own CLI (startFauxqs) always listens on 0.0.0.0, so this builds
	# the same app with its exported buildApp and listens on loopback only.
	(
		cd "$here"
		FAUXQS_PORT="$port" nohup node --input-type=module -e '
import { buildApp } from "fauxqs";
const port = Number(process.env.FAUXQS_PORT);
const app = buildApp({ logger: false });
const stop = () => app.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
await app.listen({ port, host: "127.0.0.1" });
console.log(`fauxqs listening on http://127.0.0.1:${port}`);
' >>"$log" 2>&1 </dev/null &
		echo $! >"$pidfile"
	)
	local pid deadline
	pid="$(cat "$pidfile")"
	deadline=$((SECONDS + timeout))
	until answers; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "fauxqs.sh: fauxqs exited during start; last lines of $log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			echo "fauxqs.sh: fauxqs did not answer on 127.0.0.1:$port within ${timeout}s; see $log" >&2
			kill "$pid" 2>/dev/null || true
			exit 1
		fi
		sleep 0.2
	done
	echo "fauxqs.sh: fauxqs (pid $pid) listening on 127.0.0.1:$port, log $log"
}

stop() {
	if [[ ! -f "$pidfile" ]]; then
		echo "fauxqs.sh: no pid file $pidfile; nothing this script started is running"
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
		if kill -0 "$pid" 2>/dev/null; then
			kill -9 "$pid" 2>/dev/null || true
		fi
		echo "fauxqs.sh: stopped fauxqs (pid $pid)"
	fi
	rm -f "$pidfile"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
	if answers; then echo "fauxqs.sh: listening on 127.0.0.1:$port"; else
		echo "fauxqs.sh: nothing answers on 127.0.0.1:$port"
		exit 1
	fi
	;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
