module github.com/harvesthub/hub/cmd/hubctl

go 1.26.0

require (
	github.com/ThreeDotsLabs/watermill v1.5.1
	github.com/harvesthub/hub v0.0.0
	github.com/harvesthub/hub/broker/amqp v0.0.0
	github.com/harvesthub/hub/broker/kafka v0.0.0-00010101000000-000000000000
	github.com/harvesthub/hub/broker/nats v0.0.0
	github.com/harvesthub/hub/broker/sqs v0.0.0
	github.com/nats-io/nats.go v1.53.0
	github.com/rabbitmq/amqp091-go v1.16.0
	github.com/stretchr/testify v1.12.1
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	go.uber.org/goleak v1.3.0
)

require (
	github.com/ThreeDotsLabs/watermill-aws v1.0.1 // indirect
	github.com/aws/aws-sdk-go-v2 v1.38.1 // indirect
	github.com/aws/aws-sdk-go-v2/config v1.31.2 // indirect
	github.com/aws/aws-sdk-go-v2/credentials v1.18.6 // indirect
	github.com/aws/aws-sdk-go-v2/feature/ec2/imds v1.18.4 // indirect
	github.com/aws/aws-sdk-go-v2/internal/configsources v1.4.4 // indirect
	github.com/aws/aws-sdk-go-v2/internal/endpoints/v2 v2.7.4 // indirect
	github.com/aws/aws-sdk-go-v2/internal/ini v1.8.3 // indirect
	github.com/aws/aws-sdk-go-v2/service/internal/accept-encoding v1.13.0 // indirect
	github.com/aws/aws-sdk-go-v2/service/internal/presigned-url v1.13.4 // indirect
	github.com/aws/aws-sdk-go-v2/service/sns v1.37.2 // indirect
	github.com/aws/aws-sdk-go-v2/service/sqs v1.42.1 // indirect
	github.com/aws/aws-sdk-go-v2/service/sso v1.28.2 // indirect
	github.com/aws/aws-sdk-go-v2/service/ssooidc v1.33.2 // indirect
	github.com/aws/aws-sdk-go-v2/service/sts v1.38.0 // indirect
	github.com/aws/smithy-go v1.22.5 // indirect
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/lithammer/shortuuid/v3 v3.0.7 // indirect
	github.com/nats-io/nkeys v0.4.15 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/sony/gobreaker v1.0.0 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kadm v1.20.0 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.45.0 // indirect
	go.opentelemetry.io/otel/metric v1.45.0 // indirect
	go.opentelemetry.io/otel/trace v1.45.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/crypto v0.51.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)

replace github.com/harvesthub/hub => ../..

replace github.com/harvesthub/hub/broker/amqp => ../../broker/amqp

replace github.com/harvesthub/hub/broker/sqs => ../../broker/sqs

replace github.com/harvesthub/hub/broker/nats => ../../broker/nats

replace github.com/harvesthub/hub/broker/kafka => ../../broker/kafka

replace github.com/harvesthub/hub/idempotency/redisstore => ../../idempotency/redisstore

replace github.com/harvesthub/hub/idempotency/pgstore => ../../idempotency/pgstore

replace github.com/harvesthub/hub/internal/fleet => ../../internal/fleet

replace github.com/harvesthub/hub/internal/integration => ../../internal/integration

replace github.com/harvesthub/hub/bench => ../../bench

replace github.com/harvesthub/hub/bench/nats => ../../bench/nats

replace github.com/harvesthub/hub/examples => ../../examples

replace github.com/harvesthub/hub/internal/soak => ../../internal/soak

replace github.com/harvesthub/hub/outbox => ../../outbox

replace github.com/harvesthub/hub/jobs/pgjobs => ../../jobs/pgjobs
