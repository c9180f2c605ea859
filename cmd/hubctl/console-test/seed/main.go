// Command seed makes real dead letters on RabbitMQ for the console's
// browser test: it runs a hub whose handlers fail permanently on topic,
// publishes records (one carrying an XSS payload in its metadata and
// payload), waits until every one is dead-lettered, and stops. The
// topic's group queues are left with no consumer.
//
//	go run ./cmd/hubctl/console-test/seed -broker amqp://guest:guest@127.0.0.1:5672/ -topic t123
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/retry"
)

// Record is what the seeded hub handles.
type Record struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Title string `json:"title"`
}

// XSS is the attacker-controlled text the browser test looks for, shown
// as text and never run.
const XSS = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`

func main() {
	url := flag.String("broker", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	topic := flag.String("topic", "", "topic to make dead letters on (unique per run)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	del := flag.Bool("delete", false, "delete the topic's queues and exchanges instead (cleanup)")
	flag.Parse()
	if *topic == "" {
		fmt.Fprintln(os.Stderr, "seed: -topic is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	run := seed
	if *del {
		run = deleteTopic
	}
	if err := run(ctx, *url, *topic); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func seed(ctx context.Context, url, topic string) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := amqp.New(amqp.Config{URL: url, Logger: quiet})
	if err != nil {
		return err
	}
	defer b.Close()
	h, err := hub.New(b, hub.Config{Logger: quiet, Retry: retry.Policy{Attempts: 1, Redeliveries: retry.None}})
	if err != nil {
		return err
	}
	fail := func(name string, kinds ...string) hub.HandlerFunc[Record] {
		return func(_ context.Context, m hub.Message[Record]) error {
			for _, k := range kinds {
				if m.Payload.Kind == k {
					return retry.Permanent(fmt.Errorf("%s: %s record %s rejected", name, k, m.Payload.ID))
				}
			}
			return nil
		}
	}
	if err := hub.Handle(h, topic, fail("normalise", "invalid", "xss"), hub.Name("normalise")); err != nil {
		return err
	}
	if err := hub.Handle(h, topic, fail("audit", "audit"), hub.Name("audit")); err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(rctx) }()
	defer func() { stop(); <-done }()
	select {
	case <-h.Running():
	case err := <-done:
		return fmt.Errorf("hub did not start: %w", err)
	}
	records := []Record{
		{ID: "r1", Kind: "invalid", Title: "one"},
		{ID: "r2", Kind: "invalid", Title: "two"},
		{ID: "r3", Kind: "invalid", Title: "three"},
		{ID: "r5", Kind: "audit", Title: "five"},
		{ID: "r6", Kind: "audit", Title: "six"},
	}
	for _, r := range records {
		if err := hub.Publish(ctx, h, topic, r, hub.WithKey("key-"+r.ID)); err != nil {
			return err
		}
	}
	// The XSS record goes out raw: encoding/json would escape its < and >.
	raw := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"r4","kind":"xss","title":"</pre>`+strings.ReplaceAll(XSS, `"`, `\"`)+`"}`))
	raw.Metadata.Set(hub.KeyKey, "key-r4")
	raw.Metadata.Set("note", XSS)
	if err := b.Publish(topic, raw); err != nil {
		return err
	}
	records = append(records, Record{ID: "r4"})
	// Wait until all six are dead letters.
	for {
		qs, err := b.GroupQueues(ctx, topic+".dlq")
		if err == nil && len(qs) == 1 && qs[0].Depth == int64(len(records)) {
			fmt.Printf("{\"topic\":%q,\"letters\":%d}\n", topic, len(records))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: want %d dead letters, have %+v: %w", topic, len(records), qs, errors.Join(ctx.Err(), err))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deleteTopic removes what seed and the console test made on RabbitMQ.
func deleteTopic(_ context.Context, url, topic string) error {
	c, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, n := range []string{topic, topic + ".normalise", topic + ".audit", topic + ".dlq"} {
		ch, err := c.Channel()
		if err != nil {
			return err
		}
		_, qerr := ch.QueueDelete(n, false, false, false)
		eerr := ch.ExchangeDelete(n, false, false)
		_ = ch.Close()
		if err := errors.Join(qerr, eerr); err != nil {
			// A channel error (already gone) closes the channel: carry on.
			fmt.Fprintln(os.Stderr, "seed: deleting", n+":", err)
		}
	}
	return nil
}
