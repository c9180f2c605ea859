#!/usr/bin/env bash
# check-core-deps.sh: build a throwaway user module that imports only the
# core module (hub, broker, broker/memory, retry, dlq, idempotency,
# middleware, hubtest) and fail if its go.sum names AWS, pgx, redis, amqp,
# nats or kafka modules: those belong to the adapters' own modules.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/go.mod" <<EOF
module example.com/coreuser

go 1.25.0

require github.com/harvesthub/hub v0.0.0

replace github.com/harvesthub/hub => $repo
EOF
cat >"$tmp/main.go" <<'EOF'
package main

import (
	"fmt"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/dlq"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/middleware"
	"github.com/harvesthub/hub/retry"
)

var (
	_ = hub.New
	_ broker.Broker
	_ = memory.New
	_ = dlq.List
	_ = hubtest.New
	_ idempotency.Store
	_ = middleware.Recover
	_ = retry.Permanent
)

func main() { fmt.Println("core only") }
EOF
cd "$tmp"
GOWORK=off GOFLAGS=-mod=mod go mod tidy
GOWORK=off GOFLAGS=-mod=mod go build ./...
# Module paths only (the first field): hashes are base64 and may spell anything.
if bad=$(awk '{print $1}' go.sum | sort -u | grep -Ei 'aws|pgx|redis|amqp|nats|kafka|franz'); then
	echo "check-core-deps: a user of the core module gets adapter dependencies in go.sum:" >&2
	echo "$bad" >&2
	exit 1
fi
echo "check-core-deps: ok, $(wc -l <go.sum) go.sum lines, none of aws, pgx, redis, amqp, nats, kafka"
