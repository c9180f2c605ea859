package amqp

import (
	"context"
	"fmt"
	"sync"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// calls runs the AMQP calls that take no context (opening a channel,
// declaring topology: each waits for the server's reply) so that their
// caller can stop waiting when its context ends. A call given up on runs to
// its end in the background, bounded by the connection: Close closes the
// connection, which ends every call, then waits for them.
type calls struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

type callResult struct {
	ch  *amqp091.Channel
	err error
}

// await runs f and returns its result, or ctx's error once ctx ends first;
// a channel f opens after its caller gave up is closed.
func (cs *calls) await(ctx context.Context, what string, f func() (*amqp091.Channel, error)) (*amqp091.Channel, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("amqp: %s: %w", what, err)
	}
	res := make(chan callResult, 1)
	var mu sync.Mutex
	abandoned := false
	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		return nil, broker.ErrClosed
	}
	cs.wg.Add(1)
	cs.mu.Unlock()
	go func() {
		defer cs.wg.Done()
		ch, err := f()
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if ch != nil {
				_ = ch.Close()
			}
			return
		}
		res <- callResult{ch, err}
	}()
	select {
	case r := <-res:
		return r.ch, r.err
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		mu.Unlock()
		select {
		case r := <-res: // sent just before: ours to close
			if r.ch != nil {
				_ = r.ch.Close()
			}
		default:
		}
		return nil, fmt.Errorf("amqp: %s: %w", what, ctx.Err())
	}
}

// close refuses new calls and waits for those running; the connection
// must be closed first so that they end.
func (cs *calls) close() {
	cs.mu.Lock()
	cs.closed = true
	cs.mu.Unlock()
	cs.wg.Wait()
}
