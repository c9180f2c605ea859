package sqs

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"time"

	"github.com/harvesthub/hub/broker"
)

// Defaults of [Config].
const (
	// RegionDefault is the AWS region used when Config.Region is empty.
	RegionDefault = "us-east-1"
	// WaitTimeDefault is the long-polling wait of one ReceiveMessage call.
	WaitTimeDefault = 20 * time.Second
	// MaxMessagesDefault is the number of messages one ReceiveMessage call
	// asks for (SQS's maximum).
	MaxMessagesDefault = 10
	// VisibilityTimeoutDefault is how long a received message stays hidden
	// from other consumers before SQS delivers it again (SQS's default).
	VisibilityTimeoutDefault = 30 * time.Second
	// AckWindowDefault is how long acks are collected into one
	// DeleteMessageBatch call.
	AckWindowDefault = 5 * time.Millisecond
	// RequestTimeoutDefault bounds one SQS or SNS call, its retries
	// included.
	RequestTimeoutDefault = 15 * time.Second
)

// Limits SQS imposes.
const (
	maxWaitTime          = 20 * time.Second
	maxVisibilityTimeout = 12 * time.Hour
	maxBatch             = 10
	maxQueueName         = 80
	maxPrefix            = 40
)

// Credentials are a static AWS access key.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken is optional (temporary credentials).
	SessionToken string
}

// Config configures a [Broker]. The zero value talks to AWS in us-east-1
// with the default credential chain.
type Config struct {
	// Endpoint is the base URL of an SQS (and SNS) compatible endpoint, such
	// as http://127.0.0.1:4566 for the fauxqs emulator. Defaults to empty:
	// AWS's own regional endpoints.
	Endpoint string
	// Region is the AWS region. Defaults to [RegionDefault].
	Region string
	// Credentials is a static key. Defaults to nil: the AWS SDK's default
	// chain (environment, shared files, SSO, instance or task role).
	Credentials *Credentials
	// TLS, when set, is the client identity and trusted CAs of the HTTPS
	// client (mutual TLS to a proxy or a private endpoint). Defaults to nil:
	// the system roots and no client certificate.
	TLS *broker.TLSFiles
	// QueuePrefix is prepended to every queue and SNS topic name the broker
	// creates, such as "staging-". It may hold [A-Za-z0-9_-], at most 40
	// characters. Defaults to empty.
	QueuePrefix string
	// WaitTime is the long-polling wait of one ReceiveMessage call, at most
	// 20s. It bounds how long a cancelled subscription takes to stop
	// receiving. Defaults to [WaitTimeDefault].
	WaitTime time.Duration
	// MaxMessages is the number of messages one ReceiveMessage call asks
	// for, 1 to 10; fewer are asked for when the subscription's prefetch
	// has less room. Defaults to [MaxMessagesDefault].
	MaxMessages int
	// VisibilityTimeout is how long a received, unacked message stays
	// hidden before SQS delivers it again, at least 1s and at most 12h,
	// whole seconds. While a delivered message is neither acked nor nacked
	// the subscription extends it every half VisibilityTimeout, so a slow
	// handler keeps its message; a crashed process stops extending and the
	// message comes back within VisibilityTimeout. Defaults to
	// [VisibilityTimeoutDefault].
	VisibilityTimeout time.Duration
	// NoVisibilityExtension turns the extension off: a message not settled
	// within VisibilityTimeout is delivered again, to any consumer of the
	// group, while its first delivery is still out. Defaults to false.
	NoVisibilityExtension bool
	// AckWindow is how long acks are collected before one
	// DeleteMessageBatch call deletes them (at most 10 per call). Defaults
	// to [AckWindowDefault].
	AckWindow time.Duration
	// NackDelay is how long a nacked message stays hidden before SQS
	// delivers it again, whole seconds up to 12h. Defaults to 0: at once.
	NackDelay time.Duration
	// RequestTimeout bounds every SQS and SNS call, the SDK's retries
	// included; a ReceiveMessage call gets WaitTime on top. A stalled
	// endpoint then costs a publish, a receive or an ack at most this long
	// (a receive is retried, an ack's message comes back after its
	// visibility timeout). Defaults to [RequestTimeoutDefault].
	RequestTimeout time.Duration
	// Logger receives the adapter's warnings (failed deletes, receive
	// errors). Defaults to slog.Default().
	Logger *slog.Logger
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// withDefaults returns a copy of c with defaults filled in, or an error
// naming the first invalid setting.
func (c Config) withDefaults() (Config, error) {
	c.Region = cmp.Or(c.Region, RegionDefault)
	c.WaitTime = cmp.Or(c.WaitTime, WaitTimeDefault)
	c.MaxMessages = cmp.Or(c.MaxMessages, MaxMessagesDefault)
	c.VisibilityTimeout = cmp.Or(c.VisibilityTimeout, VisibilityTimeoutDefault)
	c.AckWindow = cmp.Or(c.AckWindow, AckWindowDefault)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("sqs: Config.Endpoint %q is not an http(s) URL such as http://127.0.0.1:4566", c.Endpoint))
		}
	}
	if !prefixPattern.MatchString(c.QueuePrefix) || len(c.QueuePrefix) > maxPrefix {
		errs = append(errs, fmt.Errorf("sqs: Config.QueuePrefix %q must match [A-Za-z0-9_-]* and be at most %d characters", c.QueuePrefix, maxPrefix))
	}
	if c.WaitTime < 0 || c.WaitTime > maxWaitTime {
		errs = append(errs, fmt.Errorf("sqs: Config.WaitTime %v must be between 0 and %v", c.WaitTime, maxWaitTime))
	}
	if c.MaxMessages < 1 || c.MaxMessages > maxBatch {
		errs = append(errs, fmt.Errorf("sqs: Config.MaxMessages %d must be between 1 and %d", c.MaxMessages, maxBatch))
	}
	if c.VisibilityTimeout < time.Second || c.VisibilityTimeout > maxVisibilityTimeout || c.VisibilityTimeout%time.Second != 0 {
		errs = append(errs, fmt.Errorf("sqs: Config.VisibilityTimeout %v must be whole seconds between 1s and %v", c.VisibilityTimeout, maxVisibilityTimeout))
	}
	if c.NackDelay < 0 || c.NackDelay > maxVisibilityTimeout || c.NackDelay%time.Second != 0 {
		errs = append(errs, fmt.Errorf("sqs: Config.NackDelay %v must be whole seconds between 0 and %v", c.NackDelay, maxVisibilityTimeout))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqs: Config.RequestTimeout %v must not be negative (0 for the default %v)", c.RequestTimeout, RequestTimeoutDefault))
	}
	if c.AckWindow < 0 {
		errs = append(errs, fmt.Errorf("sqs: Config.AckWindow %v must not be negative", c.AckWindow))
	}
	if c.Credentials != nil && (c.Credentials.AccessKeyID == "" || c.Credentials.SecretAccessKey == "") {
		errs = append(errs, errors.New("sqs: Config.Credentials needs AccessKeyID and SecretAccessKey (or leave it nil for the default chain)"))
	}
	return c, errors.Join(errs...)
}
