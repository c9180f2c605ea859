package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/harvesthub/hub/broker"
)

// Header names the adapter writes besides the message metadata.
const (
	// HeaderUUID carries the Watermill message UUID; watermill-kafka uses
	// the same header, so messages cross between the two.
	HeaderUUID = "_watermill_message_uuid"
	// headerDue is the Unix millisecond time a delayed message is due, on
	// the records of a retry topic.
	headerDue = "hub-kafka-due"
	// keyKey is hub.KeyKey: the record key.
	keyKey = "hub-key"
	// keyTargetGroup is hub.KeyTargetGroup.
	keyTargetGroup = "hub-target-group"
	// keyDeliveryCount is hub.KeyDeliveryCount.
	keyDeliveryCount = "hub-delivery-count"
)

// recordSlack is what a record costs beyond its key, value and header
// bytes: the batch header (61 bytes) and the record's varints.
const recordSlack = 256

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// Broker is a Kafka adapter on franz-go. It is safe for concurrent use.
type Broker struct {
	cfg  Config
	opts []kgo.Opt // connection options shared by every client
	pub  *kgo.Client
	adm  *kadm.Client

	topics sync.Map // topic name -> struct{}: created or known to exist

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	ctx     context.Context // done once Close begins
	cancel  context.CancelFunc
	wg      sync.WaitGroup // subscriptions
}

var (
	_ broker.Broker           = (*Broker)(nil)
	_ broker.Delayer          = (*Broker)(nil)
	_ broker.Declarer         = (*Broker)(nil)
	_ broker.Inspector        = (*Broker)(nil)
	_ broker.ContextPublisher = (*Broker)(nil)
	_ broker.SizeLimiter      = (*Broker)(nil)
)

// New returns a broker for the cluster cfg.Brokers names. It does not
// connect: the first publish, subscription or Ping does, and fails with
// a clear error when the cluster is unreachable.
func New(cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.WithLogger(slogLogger{cfg.Logger}),
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("kafka: Config.TLS: %w", err)
		}
		if tc.ServerName == "" {
			// One config for every broker of the cluster: verify each
			// against the host it is dialled on.
			host := cfg.Brokers[0]
			if i := strings.LastIndexByte(host, ':'); i >= 0 {
				host = host[:i]
			}
			tc.ServerName = strings.Trim(host, "[]")
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	pub, err := kgo.NewClient(append(opts,
		// Idempotent producer (franz-go's default), every in-sync replica
		// acknowledging: no duplicate from a producer retry, no loss when a
		// leader fails.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxMessageBytes)),
		kgo.RecordDeliveryTimeout(max(cfg.PublishTimeout, time.Second)),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	b := &Broker{cfg: cfg, opts: opts, pub: pub, adm: kadm.NewClient(pub), closing: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// Name is "kafka", the OpenTelemetry messaging.system value.
func (b *Broker) Name() string { return "kafka" }

// Ping returns nil when a broker of the cluster answers.
func (b *Broker) Ping(ctx context.Context) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if err := b.pub.Ping(ctx); err != nil {
		return b.unreachable(err)
	}
	return nil
}

// Close stops every subscription and returns once their channels are
// closed; acked offsets are committed first. Messages delivered and not
// acked are not committed, so the group receives them again. Close is safe
// to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.closing)
	b.cancel()
	b.mu.Unlock()
	b.wg.Wait()
	b.pub.Close()
	return nil
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// MaxMessageSize is MaxMessageBytes less room for the record framing, the
// key and the UUID header, as broker.MessageSize counts.
func (b *Broker) MaxMessageSize() int { return b.cfg.MaxMessageBytes - 4*recordSlack }

// Publish publishes msgs to topic, bounded by Config.PublishTimeout.
func (b *Broker) Publish(topic string, msgs ...*message.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.PublishTimeout)
	defer cancel()
	return b.PublishContext(ctx, topic, msgs...)
}

// PublishContext publishes msgs to topic, creating the topic if needed,
// and returns once every in-sync replica has them or ctx ends. The record
// key is the message's hub-key (records of one key stay in one partition,
// in order); metadata travels as headers. A message over the size limit
// fails the whole call with broker.ErrMessageTooLarge before anything is
// sent.
func (b *Broker) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	recs, err := b.records(topic, msgs, nil)
	if err != nil {
		return err
	}
	if err := b.ensureTopics(ctx, topic); err != nil {
		return err
	}
	return b.produce(ctx, topic, recs)
}

// records turns msgs into records for topic, with extra headers.
func (b *Broker) records(topic string, msgs []*message.Message, extra []kgo.RecordHeader) ([]*kgo.Record, error) {
	recs := make([]*kgo.Record, 0, len(msgs))
	for _, m := range msgs {
		if n := broker.MessageSize(m); n > b.MaxMessageSize() {
			return nil, fmt.Errorf("kafka: publish to %s: message %s is %d bytes, over the %d-byte limit: %w", topic, m.UUID, n, b.MaxMessageSize(), broker.ErrMessageTooLarge)
		}
		r := &kgo.Record{Topic: topic, Value: m.Payload, Headers: make([]kgo.RecordHeader, 0, len(m.Metadata)+1+len(extra))}
		if k := m.Metadata.Get(keyKey); k != "" {
			r.Key = []byte(k)
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderUUID, Value: []byte(m.UUID)})
		for k, v := range m.Metadata {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		r.Headers = append(r.Headers, extra...)
		if n := wireSize(r); n > b.cfg.MaxMessageBytes {
			return nil, fmt.Errorf("kafka: publish to %s: message %s is %d bytes as a record, over MaxMessageBytes %d: %w", topic, m.UUID, n, b.cfg.MaxMessageBytes, broker.ErrMessageTooLarge)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// wireSize bounds the bytes r takes in a record batch of its own.
func wireSize(r *kgo.Record) int {
	n := recordSlack + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 10 // two varints
	}
	return n
}

func (b *Broker) produce(ctx context.Context, topic string, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	// A done context sends nothing: handed to the idempotent producer, a
	// cancelled record fails the records buffered behind it in its
	// partition too, other publishers' included.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafka: publish to %s: %w", topic, err)
	}
	// Close does not wait for a publish: end it with the broker.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)()
	// Produce, not ProduceSync: an idempotent producer cannot fail a
	// record whose request was sent, so ProduceSync would outlive ctx on a
	// hung cluster. The records left behind resolve into the buffered
	// channel.
	results := make(chan error, len(recs))
	for _, r := range recs {
		b.pub.Produce(ctx, r, func(_ *kgo.Record, err error) { results <- err })
	}
	var first error
	for range recs {
		select {
		case err := <-results:
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return fmt.Errorf("kafka: publish to %s (the records may still be written): %w", topic, b.unreachable(ctx.Err()))
		}
	}
	if first != nil {
		if errors.Is(first, kerr.MessageTooLarge) || errors.Is(first, kerr.RecordListTooLarge) {
			first = fmt.Errorf("%w: %w", broker.ErrMessageTooLarge, first)
		}
		return fmt.Errorf("kafka: publish to %s: %w", topic, b.unreachable(first))
	}
	return nil
}

// unreachable names the seed brokers in an error that may come from an
// unreachable cluster.
func (b *Broker) unreachable(err error) error {
	var op *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return fmt.Errorf("cluster %s did not answer in time (unreachable?): %w", strings.Join(b.cfg.Brokers, ","), err)
	case errors.As(err, &op):
		return fmt.Errorf("cluster %s unreachable: %w", strings.Join(b.cfg.Brokers, ","), err)
	}
	return err
}

// ensureTopics creates the topics not yet known to exist.
func (b *Broker) ensureTopics(ctx context.Context, topics ...string) error {
	var missing []string
	for _, t := range topics {
		if _, ok := b.topics.Load(t); !ok {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	parts, rf := b.cfg.Partitions, b.cfg.ReplicationFactor
	if parts == 0 {
		parts = -1
	}
	if rf == 0 {
		rf = -1
	}
	res, err := b.adm.CreateTopics(ctx, parts, rf, nil, missing...)
	if err != nil {
		return fmt.Errorf("kafka: create topics %s: %w", strings.Join(missing, ","), b.unreachable(err))
	}
	for _, t := range missing {
		r, ok := res[t]
		if !ok {
			return fmt.Errorf("kafka: create topic %s: no answer", t)
		}
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", t, r.Err)
		}
		b.topics.Store(t, struct{}{})
	}
	return nil
}

// Declare creates topic and its retry topics, so groups can subscribe
// later: a group that has never committed starts at the earliest retained
// offset, so every group receives what was published before it joined.
func (b *Broker) Declare(ctx context.Context, topic string, groups ...string) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	return b.ensureTopics(ctx, allTopics(topic)...)
}

// ErrInvalidTopic is returned for a topic name Kafka refuses.
var ErrInvalidTopic = errors.New("kafka: invalid topic name")

func validTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(topic)+len(".retry.")+maxTierLen > maxTopicLen:
		return fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidTopic, topic, maxTopicLen-len(".retry.")-maxTierLen)
	case topic == "." || topic == "..":
		return fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	}
	for _, c := range topic {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q has %q; use letters, digits, '.', '_' and '-'", ErrInvalidTopic, topic, c)
		}
	}
	return nil
}

// groupID is the Kafka consumer group of a hub group of topic: '~' never
// appears in a topic name, so the pair is read back unambiguously.
func groupID(topic, group string) string {
	return topic + "~" + broker.GroupName(topic, group)
}
