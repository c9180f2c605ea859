package nats_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/nats"
)

// A hub on JetStream over mutual TLS: a stream per topic, a durable
// consumer per handler. (Not run: it needs a NATS server with TLS.)
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	b, err := nats.New(ctx, nats.Config{
		URL: "tls://nats.internal:4222",
		TLS: &broker.TLSFiles{CA: "ca.pem", Cert: "client.pem", Key: "client.key"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	h, err := hub.New(b, hub.Config{Logger: slog.Default()})
	if err != nil {
		log.Fatal(err)
	}
	err = hub.Handle(h, "records", func(ctx context.Context, m hub.Message[string]) error {
		log.Println("got", m.Payload)
		return nil
	}, hub.Name("printer"), hub.Concurrency(8))
	if err != nil {
		log.Fatal(err)
	}
	if err := h.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
