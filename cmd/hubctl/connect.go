package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/broker/kafka"
	natsbroker "github.com/harvesthub/hub/broker/nats"
	"github.com/harvesthub/hub/broker/sqs"
)

// connectTimeout bounds connecting to the broker.
const connectTimeout = 10 * time.Second

// sqsVisibilityDefault is how long a letter hubctl reads from SQS stays
// hidden from other consumers: longer than one list, replay or purge.
const sqsVisibilityDefault = 2 * time.Minute

// memoryBrokers holds the in-process brokers tests reach as
// memory://<name>.
var memoryBrokers sync.Map // name -> broker.Broker

// registerMemory makes b reachable as memory://name until the returned
// function is called. hubctl never closes it.
func registerMemory(name string, b broker.Broker) (unregister func()) {
	memoryBrokers.Store(name, b)
	return func() { memoryBrokers.Delete(name) }
}

// open connects to the broker cn names. The returned close function is
// safe to call once.
func (c *cli) open(cn *conn) (broker.Broker, func(), error) {
	if cn.broker == "" {
		return nil, nil, usagef("no broker: set --broker or HUBCTL_BROKER (amqp://user:pass@host:5672/, sqs://<region>?endpoint=..., nats://host:4222, kafka://host:9092)")
	}
	u, err := url.Parse(cn.broker)
	if err != nil {
		return nil, nil, usagef("--broker: %v", redactErr(err))
	}
	level := slog.LevelError + 1 // silent
	if cn.verbose {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	tlsSet := cn.tls != (broker.TLSFiles{})
	var tlsFiles *broker.TLSFiles
	if tlsSet {
		t := cn.tls
		if _, err := t.Config(); err != nil {
			return nil, nil, usagef("--tls-ca/--tls-cert/--tls-key: %v", err)
		}
		tlsFiles = &t
	}
	ctx, cancel := context.WithTimeout(c.ctx, connectTimeout)
	defer cancel()
	switch u.Scheme {
	case "amqp", "amqps":
		if tlsSet && u.Scheme != "amqps" {
			return nil, nil, usagef("--tls-* flags need an amqps:// broker URL")
		}
		b, err := amqp.New(amqp.Config{URL: cn.broker, TLS: tlsFiles, Logger: log, DialTimeout: connectTimeout, PublishTimeout: 30 * time.Second})
		if err != nil {
			if strings.Contains(err.Error(), ": Config.") {
				return nil, nil, usagef("%v", err)
			}
			return nil, nil, &unreachableError{err: err}
		}
		return b, func() { _ = b.Close() }, nil
	case "sqs":
		cfg, err := sqsConfig(u)
		if err != nil {
			return nil, nil, err
		}
		cfg.TLS, cfg.Logger = tlsFiles, log
		b, err := sqs.New(ctx, cfg)
		if err != nil {
			if strings.Contains(err.Error(), ": Config.") {
				return nil, nil, usagef("%v", err)
			}
			return nil, nil, &unreachableError{err: err}
		}
		return b, func() { _ = b.Close() }, nil
	case "nats", "tls":
		cfg, err := natsConfig(u)
		if err != nil {
			return nil, nil, err
		}
		cfg.TLS, cfg.Logger = tlsFiles, log
		b, err := natsbroker.New(ctx, cfg)
		if err != nil {
			if strings.Contains(err.Error(), ": Config.") {
				return nil, nil, usagef("%v", err)
			}
			return nil, nil, &unreachableError{err: err}
		}
		return b, func() { _ = b.Close() }, nil
	case "kafka":
		cfg, err := kafka.ParseURL(cn.broker)
		if err != nil {
			return nil, nil, usagef("--broker: %v", redactErr(err))
		}
		cfg.TLS, cfg.Logger = tlsFiles, log
		b, err := kafka.New(cfg)
		if err != nil {
			if strings.Contains(err.Error(), ": Config.") {
				return nil, nil, usagef("%v", err)
			}
			return nil, nil, &unreachableError{err: err}
		}
		if err := b.Ping(ctx); err != nil {
			_ = b.Close()
			return nil, nil, &unreachableError{err: err}
		}
		return b, func() { _ = b.Close() }, nil
	case "memory":
		name := u.Host + u.Path
		v, ok := memoryBrokers.Load(name)
		if !ok {
			return nil, nil, &unreachableError{err: fmt.Errorf("no in-process broker %q: memory:// URLs are for tests of hubctl only", name)}
		}
		return v.(broker.Broker), func() {}, nil
	default:
		return nil, nil, usagef("--broker %q: scheme must be amqp, amqps, sqs, nats, tls (NATS over TLS), kafka or memory", redact(cn.broker))
	}
}

// sqsConfig reads sqs://[KEY:SECRET@]<region>?endpoint=...&prefix=...&visibility=...
func sqsConfig(u *url.URL) (sqs.Config, error) {
	// Short polls (a WaitTime that rounds to 0s): a long poll still open
	// on the server when a scan stops would take the letters the scan then
	// hands back, and hide them for the visibility timeout.
	cfg := sqs.Config{Region: u.Host, VisibilityTimeout: sqsVisibilityDefault, WaitTime: time.Nanosecond}
	if u.User != nil {
		secret, _ := u.User.Password()
		cfg.Credentials = &sqs.Credentials{AccessKeyID: u.User.Username(), SecretAccessKey: secret}
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "prefix", "visibility":
		default:
			return cfg, usagef("--broker: unknown sqs:// parameter %q; use endpoint, prefix or visibility", k)
		}
	}
	cfg.Endpoint = q.Get("endpoint")
	cfg.QueuePrefix = q.Get("prefix")
	if v := q.Get("visibility"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return cfg, usagef("--broker: visibility=%q: %v", v, err)
		}
		cfg.VisibilityTimeout = d
	}
	return cfg, nil
}

// natsConfig reads nats://[USER:PASS@]host:port[?prefix=...] (tls:// for
// NATS over TLS): prefix is the adapter's stream prefix (default hub_).
func natsConfig(u *url.URL) (natsbroker.Config, error) {
	q := u.Query()
	for k := range q {
		if k != "prefix" {
			return natsbroker.Config{}, usagef("--broker: unknown nats:// parameter %q; use prefix", k)
		}
	}
	server := *u
	server.RawQuery = ""
	// Short pulls: a scan of letters stops soon after the last one.
	return natsbroker.Config{URL: server.String(), StreamPrefix: q.Get("prefix"), PollWait: 500 * time.Millisecond, Name: "hubctl"}, nil
}

// redact hides a password in a broker URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// redactErr drops the URL (and its password) from a url.Parse error, and
// the piece of it an escape or host error quotes: a bad "%" in a password
// would otherwise show the characters after it.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ee url.EscapeError
	if errors.As(err, &ee) {
		return errors.New("invalid %-escape in the URL; write a % in the user name or password as %25")
	}
	var he url.InvalidHostError
	if errors.As(err, &he) {
		return errors.New("invalid character in the URL's host")
	}
	return err
}

// check asks an Inspector whether topic's dead-letter topic has a queue,
// so that a mistyped topic is reported instead of created by subscribing
// to it.
func (c *cli) check(b broker.Broker, topic, dlqTopic, hint string) error {
	in, ok := b.(broker.Inspector)
	if !ok {
		return nil
	}
	_, err := in.Queues(c.ctx, dlqTopic)
	if errors.Is(err, broker.ErrUnknownTopic) {
		return fmt.Errorf("%s has no dead-letter queue %s%s: %w", topic, dlqTopic, hint, broker.ErrUnknownTopic)
	}
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", dlqTopic, err)
	}
	return nil
}
