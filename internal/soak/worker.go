package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/idempotency/redisstore"
	"github.com/harvesthub/hub/retry"
)

// Job is the soak's message.
type Job struct {
	N int `json:"n"`
	// Poison jobs fail permanently; Transient ones fail their first attempt.
	Poison    bool `json:"poison,omitempty"`
	Transient bool `json:"transient,omitempty"`
}

// worker runs one hub worker until SIGTERM, writing "handled <key>" for
// every successful handler call to SOAK_OUT, one write(2) per line so that
// a SIGKILL after the handler returned cannot lose it.
func worker() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out, err := os.OpenFile(os.Getenv("SOAK_OUT"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Error("soak worker: open output", "error", err)
		return 1
	}
	defer out.Close()
	rc := redis.NewClient(&redis.Options{Addr: os.Getenv("SOAK_REDIS")})
	defer rc.Close()
	store, err := redisstore.New(rc, redisstore.Config{Prefix: os.Getenv("SOAK_PREFIX")})
	if err != nil {
		log.Error("soak worker: store", "error", err)
		return 1
	}
	defer store.Close()
	b, err := amqp.New(amqp.Config{URL: os.Getenv("SOAK_URL"), Logger: log, Prefetch: 16})
	if err != nil {
		log.Error("soak worker: amqp", "error", err)
		return 1
	}
	defer b.Close()
	h, err := hub.New(b, hub.Config{Logger: log, Idempotency: store, Lease: 5 * time.Second,
		Retry: retry.Policy{Attempts: 3, InitialInterval: time.Millisecond, RedeliveryDelay: 100 * time.Millisecond, MaxRedeliveryDelay: time.Second}})
	if err != nil {
		log.Error("soak worker: hub", "error", err)
		return 1
	}
	var mu sync.Mutex
	write := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := out.WriteString(line + "\n"); err != nil {
			log.Error("soak worker: write", "error", err)
		}
	}
	errTransient := errors.New("soak: transient failure")
	if err := hub.Handle(h, os.Getenv("SOAK_TOPIC"), func(ctx context.Context, m hub.Message[Job]) error {
		switch {
		case m.Payload.Poison:
			return retry.Permanent(errors.New("soak: poison message"))
		case m.Payload.Transient && m.Attempt == 1:
			return errTransient
		}
		write("handled " + m.Key)
		return nil
	}, hub.Concurrency(16)); err != nil {
		log.Error("soak worker: handle", "error", err)
		return 1
	}
	write("ready")
	if err := h.Run(ctx); err != nil {
		log.Error("soak worker: run", "error", err)
		return 1
	}
	return 0
}
