#!/usr/bin/env bash
# split-modules.sh: give every adapter or store with a heavy dependency a Go
# module of its own, so that a user of the core module (hub, broker,
# broker/memory, retry, dlq, idempotency, middleware, hubtest) gets no AWS,
# pgx, redis, amqp, nats or kafka module in their go.sum.
#
# Idempotent: run it from any directory on a clean checkout, after a merge
# that brought new code, or again after it ran. It
#   1. moves the core's tests that need an adapter into the module
#      internal/integration (test-only packages: brokertest on every broker,
#      dlq on every broker, a trace across two hubs on RabbitMQ);
#   2. writes a go.mod for every module in MODULES that lacks one, with a
#      replace directive for every module of the repository;
#   3. requires, in each module, the repository modules its code imports,
#      then runs go mod tidy in each (GOWORK=off: each module alone);
#   4. writes go.work with every module.
# Then check: scripts/check-core-deps.sh and
#   go vet $(go list -m -f '{{.Dir}}/...')
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base=github.com/harvesthub/hub
# The Go version every module and go.work state: the core's.
gov=$(go mod edit -json go.mod | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])')

# Every module of the repository but the root, in dependency order.
MODULES=(
	broker/amqp
	broker/sqs
	broker/nats
	broker/kafka
	idempotency/redisstore
	idempotency/pgstore
	outbox
	jobs/pgjobs
	cmd/hubctl
	internal/fleet
	internal/soak
	internal/integration
	bench
	bench/nats
	examples
)

# 1. Core tests that import adapters move out of the core module.
move() { # move FROM TO
	if [[ -f $1 ]]; then
		mkdir -p "$(dirname "$2")"
		git mv -f "$1" "$2" 2>/dev/null || mv -f "$1" "$2"
	fi
}
move hubtest/brokertest/brokers_test.go internal/integration/brokertest/brokers_test.go
move dlq/dlq_test.go internal/integration/dlq/dlq_test.go
move telemetry_amqp_test.go internal/integration/telemetry/amqp_test.go
mkdir -p internal/integration/dlq internal/integration/telemetry
if [[ -f internal/integration/telemetry/amqp_test.go ]]; then
	sed -i 's/^package hub_test$/package telemetry_test/' internal/integration/telemetry/amqp_test.go
fi
goleak_main() { # goleak_main DIR PACKAGE
	[[ -f $1/main_test.go ]] && return
	cat >"$1/main_test.go" <<EOF
package $2

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
EOF
}
goleak_main internal/integration/dlq dlq_test
if [[ ! -f internal/integration/telemetry/main_test.go ]]; then
	cat >internal/integration/telemetry/main_test.go <<'EOF'
package telemetry_test

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Record is the payload of these tests (hub_test.Record in the core).
type Record struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// spanAttrs are the attributes of s as strings.
func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}
EOF
fi
if [[ ! -f internal/integration/doc.go ]]; then
	cat >internal/integration/doc.go <<'EOF'
// Package integration is a module of tests that run the core's packages on
// the real adapters (brokertest and dlq on every broker, traces across
// hubs on RabbitMQ): they cannot live in the core module, whose go.sum must
// not name any adapter's dependencies.
package integration
EOF
fi

# 2. A go.mod for every module.
present=()
for m in "${MODULES[@]}"; do
	[[ -d $m ]] && present+=("$m")
done
# A new module starts from the core's requirements (the versions the
# workspace already selects; go mod tidy drops what it does not use).
seed=()
while read -r p v; do
	[[ $p == "$base"* ]] || seed+=(-require="$p@$v")
done < <(go mod edit -json go.mod | python3 -c 'import json,sys; [print(r["Path"], r["Version"]) for r in json.load(sys.stdin).get("Require") or []]')
for m in "${present[@]}"; do
	if [[ ! -f $m/go.mod ]]; then
		printf 'module %s/%s\n\ngo %s\n' "$base" "$m" "$gov" >"$m/go.mod"
		(cd "$m" && go mod edit "${seed[@]}")
		cp go.sum "$m/go.sum"
	fi
done

# relpath FROM TO: TO relative to FROM.
relpath() {
	local r
	r=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[2], sys.argv[1]))' "$1" "$2")
	[[ $r == .* ]] || r=./$r
	echo "$r"
}

# 3. Replaces and requires, then tidy. A module requires another when one
# of its own files (not a nested module's) imports one of its packages.
owns() { # owns DIR: the .go files of DIR's module
	local prune=(-name node_modules -prune -o -name .git -prune -o)
	for o in "${present[@]}"; do
		[[ $o != "$1" && $o == "$1"/* ]] && prune+=(-path "./$o" -prune -o)
	done
	if [[ $1 == . ]]; then
		prune=(-name node_modules -prune -o -name .git -prune -o)
		for o in "${present[@]}"; do prune+=(-path "./$o" -prune -o); done
	fi
	(cd "$root" && find "./${1#.}" "${prune[@]}" -name '*.go' -print 2>/dev/null)
}
imports() { # imports DIR PATH: DIR's module imports a package of PATH
	owns "$1" | xargs -r grep -lE "\"$2(/[^\"]*)?\"" 2>/dev/null | grep -q .
}
for m in "${present[@]}"; do
	args=(-replace="$base=$(relpath "$m" .)")
	args+=(-require="$base@v0.0.0")
	for o in "${present[@]}"; do
		[[ $o == "$m" ]] && continue
		args+=(-replace="$base/$o=$(relpath "$m" "$o")")
		if imports "$m" "$base/$o"; then
			args+=(-require="$base/$o@v0.0.0")
		fi
	done
	(cd "$m" && go mod edit "${args[@]}")
done
# The core needs none of them.
for m in "${present[@]}"; do
	go mod edit -droprequire="$base/$m" -dropreplace="$base/$m" go.mod
done
echo "split: go mod tidy in . ${present[*]}"
GOWORK=off GOFLAGS=-mod=mod go mod tidy
for m in "${present[@]}"; do
	(cd "$m" && GOWORK=off GOFLAGS=-mod=mod go mod tidy)
done

# 4. go.work with every module.
{
	printf 'go %s\n\nuse (\n\t.\n' "$gov"
	for m in "${present[@]}"; do printf '\t./%s\n' "$m"; done
	printf ')\n'
} >go.work
echo "split: done; modules: . ${present[*]}"
