// Command memory1m pushes many 1 KB messages through one topic of the
// in-memory broker (broker/memory) with one consumer, and reports the peak
// heap, to show that memory is bounded by the queue bound, not by the
// number of messages.
//
// Every message gets its own payload, so a broker that kept messages would
// grow by about 1 KB per message. The consumer samples the live heap with
// runtime/metrics every 1024 messages. Run it under /usr/bin/time -v for
// the peak RSS:
//
//	go build -o /tmp/memory1m ./bench/memory1m
//	/usr/bin/time -v /tmp/memory1m -n 1000000
//	/usr/bin/time -v /tmp/memory1m -n 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
)

func main() {
	n := flag.Int("n", 1_000_000, "messages to push")
	size := flag.Int("size", 1024, "payload bytes")
	queue := flag.Int("queue", 0, "memory.Config.QueueSize (0: the default, 1024)")
	prefetch := flag.Int("prefetch", 1, "consumer prefetch")
	flag.Parse()
	if err := run(*n, *size, *queue, *prefetch); err != nil {
		log.Fatal(err)
	}
}

func run(n, size, queue, prefetch int) error {
	b, err := memory.New(memory.Config{QueueSize: queue})
	if err != nil {
		return err
	}
	defer b.Close()
	ctx := context.Background()
	ch, err := b.SubscribeGroup(ctx, "load", broker.Group{Name: "consumer", Prefetch: prefetch})
	if err != nil {
		return err
	}

	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"}, // live and not yet swept heap objects
		{Name: "/memory/classes/total:bytes"},        // everything the runtime mapped
	}
	var peakHeap, peakTotal uint64
	sample := func() {
		metrics.Read(samples)
		peakHeap = max(peakHeap, samples[0].Value.Uint64())
		peakTotal = max(peakTotal, samples[1].Value.Uint64())
	}

	consumed := make(chan int, 1)
	go func() {
		count := 0
		for m := range ch {
			count++
			if count%1024 == 0 {
				sample()
			}
			m.Ack()
			if count == n {
				break
			}
		}
		consumed <- count
	}()

	start := time.Now()
	for i := range n {
		m := message.NewMessage(strconv.Itoa(i), make([]byte, size))
		if err := b.Publish("load", m); err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
	}
	got := <-consumed
	elapsed := time.Since(start)
	sample()
	if got != n {
		return fmt.Errorf("consumed %d of %d", got, n)
	}
	if err := b.WaitIdle(ctx); err != nil {
		return err
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cfgQueue := queue
	if cfgQueue == 0 {
		cfgQueue = memory.QueueSizeDefault
	}
	fmt.Fprintf(os.Stdout, "messages=%d payload=%dB queue=%d prefetch=%d\n", n, size, cfgQueue, prefetch)
	fmt.Fprintf(os.Stdout, "elapsed=%s throughput=%.0f msgs/s\n", elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Fprintf(os.Stdout, "peak heap objects=%.1f MiB peak runtime total=%.1f MiB\n", mib(peakHeap), mib(peakTotal))
	fmt.Fprintf(os.Stdout, "end: HeapSys=%.1f MiB TotalAlloc=%.1f MiB NumGC=%d\n", mib(ms.HeapSys), mib(ms.TotalAlloc), ms.NumGC)
	return nil
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }
