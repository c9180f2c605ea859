module github.com/harvesthub/hub/outbox

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1
	github.com/harvesthub/hub v0.0.0
	github.com/jackc/pgx/v5 v5.12.0
	github.com/rabbitmq/amqp091-go v1.16.0
	github.com/stretchr/testify v1.12.1
	go.opentelemetry.io/otel v1.45.0
	go.opentelemetry.io/otel/metric v1.45.0
	go.opentelemetry.io/otel/sdk/metric v1.45.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/harvesthub/hub/broker/amqp v0.0.0
	github.com/harvesthub/hub/idempotency/pgstore v0.0.0
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel/sdk v1.45.0 // indirect
	go.opentelemetry.io/otel/trace v1.45.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)

replace github.com/harvesthub/hub => ..

replace github.com/harvesthub/hub/broker/amqp => ../broker/amqp

replace github.com/harvesthub/hub/broker/sqs => ../broker/sqs

replace github.com/harvesthub/hub/broker/nats => ../broker/nats

replace github.com/harvesthub/hub/broker/kafka => ../broker/kafka

replace github.com/harvesthub/hub/idempotency/redisstore => ../idempotency/redisstore

replace github.com/harvesthub/hub/idempotency/pgstore => ../idempotency/pgstore

replace github.com/harvesthub/hub/cmd/hubctl => ../cmd/hubctl

replace github.com/harvesthub/hub/internal/fleet => ../internal/fleet

replace github.com/harvesthub/hub/internal/soak => ../internal/soak

replace github.com/harvesthub/hub/internal/integration => ../internal/integration

replace github.com/harvesthub/hub/bench => ../bench

replace github.com/harvesthub/hub/bench/nats => ../bench/nats

replace github.com/harvesthub/hub/examples => ../examples

replace github.com/harvesthub/hub/jobs/pgjobs => ../jobs/pgjobs
