module github.com/harvesthub/hub/jobs/pgjobs

go 1.26.0

require (
	github.com/harvesthub/hub v0.0.0
	github.com/jackc/pgx/v5 v5.12.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)

replace github.com/harvesthub/hub => ../..

replace github.com/harvesthub/hub/broker/amqp => ../../broker/amqp

replace github.com/harvesthub/hub/broker/sqs => ../../broker/sqs

replace github.com/harvesthub/hub/broker/nats => ../../broker/nats

replace github.com/harvesthub/hub/broker/kafka => ../../broker/kafka

replace github.com/harvesthub/hub/idempotency/redisstore => ../../idempotency/redisstore

replace github.com/harvesthub/hub/idempotency/pgstore => ../../idempotency/pgstore

replace github.com/harvesthub/hub/outbox => ../../outbox

replace github.com/harvesthub/hub/cmd/hubctl => ../../cmd/hubctl

replace github.com/harvesthub/hub/internal/fleet => ../../internal/fleet

replace github.com/harvesthub/hub/internal/soak => ../../internal/soak

replace github.com/harvesthub/hub/internal/integration => ../../internal/integration

replace github.com/harvesthub/hub/bench => ../../bench

replace github.com/harvesthub/hub/bench/nats => ../../bench/nats

replace github.com/harvesthub/hub/examples => ../../examples
