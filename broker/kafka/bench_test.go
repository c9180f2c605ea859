package kafka_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/kafka"
)

// The benchmarks run on kfake, franz-go's in-process Kafka emulator (no
// Kafka server runs here): figures compare the hub with raw franz-go on the
// same emulator in the same run, and say nothing of a real cluster's
// throughput. Each publishes b.N records of ~1 KB of JSON from 8
// goroutines, one acknowledged produce per record, while one consumer group
// decodes and acks them; a benchmark ends when every record is handled.
//
//	go test -run '^$' -bench . -benchtime 5000x ./broker/kafka/

type benchRecord struct {
	ID    string   `json:"id"`
	Title string   `json:"title"`
	Body  string   `json:"body"`
	Tags  []string `json:"tags"`
}

var benchRec = benchRecord{ID: "rec-0001", Title: "Quarterly cyber security breaches survey",
	Body: strings.Repeat("Harvested body text. ", 44), Tags: []string{"cyber", "survey", "statistics"}}

const benchPublishers = 8

// publishN calls publish b.N times from benchPublishers goroutines.
func publishN(b *testing.B, publish func() error) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range benchPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := publish(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func benchCluster(b *testing.B) []string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c.ListenAddrs()
}

// BenchmarkHubKafka: hub.Publish and hub.Handle (Concurrency 8) on the
// adapter: idempotency claim and complete (memory store), schema checks,
// commits after acks.
func BenchmarkHubKafka(b *testing.B) {
	addrs := benchCluster(b)
	br, err := kafka.New(kafka.Config{Brokers: addrs, Partitions: 1, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	h, err := hub.New(br, hub.Config{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	topic := unique("bench")
	var handled atomic.Int64
	done := make(chan struct{})
	if err := hub.Handle(h, topic, func(ctx context.Context, m hub.Message[benchRecord]) error {
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}, hub.Concurrency(8)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- h.Run(ctx) }()
	<-h.Running()
	b.SetBytes(1024)
	b.ResetTimer()
	start := time.Now()
	publishN(b, func() error { return hub.Publish(ctx, h, topic, benchRec) })
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	b.StopTimer()
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRawFranzGo: the same with franz-go alone: json.Marshal,
// ProduceSync per record (idempotent, acks=all), a consumer group client
// that decodes each record and marks it for autocommit.
func BenchmarkRawFranzGo(b *testing.B) {
	addrs := benchCluster(b)
	topic := unique("bench")
	pub, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup(topic+"~g"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitMarks(), kgo.AutoCommitInterval(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	ctx := context.Background()
	// Create the topic before the clock starts, as the adapter does.
	if _, err := kadm.NewClient(pub).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	consumeCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		defer close(done)
		n := 0
		for n < b.N {
			f := sub.PollFetches(consumeCtx)
			if consumeCtx.Err() != nil {
				return
			}
			f.EachRecord(func(r *kgo.Record) {
				var rec benchRecord
				if err := json.Unmarshal(r.Value, &rec); err != nil {
					b.Error(err)
				}
				sub.MarkCommitRecords(r)
				n++
			})
		}
	}()
	b.SetBytes(1024)
	b.ResetTimer()
	start := time.Now()
	publishN(b, func() error {
		v, err := json.Marshal(benchRec)
		if err != nil {
			return err
		}
		return pub.ProduceSync(ctx, &kgo.Record{Key: []byte(benchRec.ID), Value: v}).FirstErr()
	})
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
