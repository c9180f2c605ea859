package hubtest

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
)

var _ broker.ContextPublisher = (*recorder)(nil)

// PublishContext records and injects faults as Publish does. Without it
// the memory broker's own PublishContext, promoted through the embedded
// *memory.Broker, would take the hub's publishes past the recorder.
func (r *recorder) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	msgs, err := r.intercept(topic, msgs)
	if err != nil {
		return err
	}
	return r.Broker.PublishContext(ctx, topic, msgs...)
}
