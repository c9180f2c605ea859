package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	amazonsqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker/sqs"
	"github.com/harvesthub/hub/internal/testenv"
)

const payloadSize = 1024

func uniqueTopic(tb testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "bench-" + hex.EncodeToString(b)
}

// pubSub is what one benchmark case runs on.
type pubSub struct {
	pub message.Publisher
	sub message.Subscriber
}

func hubPubSub(tb testing.TB) pubSub {
	b, err := sqs.New(context.Background(), sqs.Config{
		Endpoint:    testenv.SQSEndpoint(),
		Credentials: &sqs.Credentials{AccessKeyID: "test", SecretAccessKey: "test"},
	})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = b.Close() })
	return pubSub{pub: b, sub: b}
}

func watermillPubSub(tb testing.TB) pubSub {
	// The SDK's default transport, held here so that cleanup can drop its
	// idle connections (watermill-aws cannot).
	transport := awshttp.NewBuildableClient().GetTransport()
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:  &http.Client{Transport: transport},
	}
	opts := []func(*amazonsqs.Options){func(o *amazonsqs.Options) { o.BaseEndpoint = aws.String(testenv.SQSEndpoint()) }}
	logger := watermill.NopLogger{}
	pub, err := wmsqs.NewPublisher(wmsqs.PublisherConfig{AWSConfig: cfg, OptFns: opts}, logger)
	require.NoError(tb, err)
	sub, err := wmsqs.NewSubscriber(wmsqs.SubscriberConfig{AWSConfig: cfg, OptFns: opts}, logger)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = sub.Close(); _ = pub.Close(); transport.CloseIdleConnections() })
	return pubSub{pub: pub, sub: sub}
}

// BenchmarkEndToEnd publishes b.N 1 KiB messages (in Publish calls of
// perCall messages, from 4 goroutines) while one subscription receives and
// acks them; msg/s is b.N over the time until the last one is received.
func BenchmarkEndToEnd(b *testing.B) {
	testenv.Require(b, "SQS emulator", testenv.SQSEndpoint())
	adapters := []struct {
		name string
		make func(testing.TB) pubSub
	}{
		{"hub", hubPubSub},
		{"watermill-aws", watermillPubSub},
	}
	for _, perCall := range []int{1, 10} {
		for _, a := range adapters {
			// One pub/sub for every run of the sub-benchmark (b.N grows).
			ps := a.make(b)
			b.Run(a.name+"/perCall="+itoa(perCall), func(b *testing.B) {
				run(b, ps, perCall)
			})
		}
	}
}

func run(b *testing.B, ps pubSub, perCall int) {
	topic := uniqueTopic(b)
	payload := make([]byte, payloadSize)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Create the queue and warm the connections before timing.
	require.NoError(b, ps.pub.Publish(topic, message.NewMessage(watermill.NewUUID(), payload)))
	msgs, err := ps.sub.Subscribe(ctx, topic)
	require.NoError(b, err)
	select {
	case m := <-msgs:
		m.Ack()
	case <-time.After(30 * time.Second):
		b.Fatal("warm-up message not received")
	}

	b.ResetTimer()
	start := time.Now()
	const publishers = 4
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p * perCall; i < b.N; i += publishers * perCall {
				batch := make([]*message.Message, 0, perCall)
				for j := i; j < min(i+perCall, b.N); j++ {
					batch = append(batch, message.NewMessage(watermill.NewUUID(), payload))
				}
				if err := ps.pub.Publish(topic, batch...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	timeout := time.After(5 * time.Minute)
	for received := 0; received < b.N; {
		select {
		case m := <-msgs:
			m.Ack()
			received++
		case err := <-errs:
			b.Fatal(err)
		case <-timeout:
			b.Fatalf("received %d of %d", received, b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	wg.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + itoa(n%10)
}
