package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
)

func TestEncode(t *testing.T) {
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	defer b.Close()
	h, err := hub.New(b, hub.Config{})
	require.NoError(t, err)
	defer h.Close()
	type Rec struct{ ID string }
	ctx := hub.WithCorrelationID(context.Background(), "c-1")

	for _, tc := range []struct {
		name      string
		opts      []hub.PublishOption
		wantID    string
		wantKey   string
		wantDelay time.Duration
		wantErr   error
	}{
		{name: "defaults"},
		{name: "id, key, delay", opts: []hub.PublishOption{hub.WithID("m-1"), hub.WithKey("k-1"), hub.WithDelay(time.Second)}, wantID: "m-1", wantKey: "k-1", wantDelay: time.Second},
		{name: "key func", opts: []hub.PublishOption{hub.WithKeyFunc(func(i int) string { return "kf" })}, wantKey: "kf"},
		{name: "negative delay", opts: []hub.PublishOption{hub.WithDelay(-1)}, wantErr: hub.ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := hub.Encode(ctx, h, Rec{ID: "r"}, tc.opts...)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			m := enc.Message
			if tc.wantID != "" {
				require.Equal(t, tc.wantID, m.UUID)
			} else {
				require.NotEmpty(t, m.UUID)
			}
			require.Equal(t, tc.wantKey, m.Metadata.Get(hub.KeyKey))
			require.Equal(t, tc.wantDelay, enc.Delay)
			require.Equal(t, "c-1", m.Metadata.Get(hub.KeyCorrelationID))
			require.Equal(t, "Rec", m.Metadata.Get(hub.KeySchema))
			var got Rec
			require.NoError(t, hub.Decode(h, m, &got), "a handler of Rec reads it")
			require.Equal(t, Rec{ID: "r"}, got)
		})
	}
	_, err = hub.Encode(ctx, h, make(chan int))
	require.Error(t, err, "a value the codec cannot encode")
}
