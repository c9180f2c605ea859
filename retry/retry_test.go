package retry_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestZeroPolicyTakesDefaults(t *testing.T) {
	p := retry.Policy{}.WithDefaults()
	require.NoError(t, p.Validate())
	require.Equal(t, retry.Policy{
		Attempts: 3, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second, Multiplier: 2, Jitter: 0.2,
		Redeliveries: 3, RedeliveryDelay: 10 * time.Second, MaxRedeliveryDelay: 15 * time.Minute,
	}, p)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    retry.Policy
		want string
	}{
		{"negative attempts", retry.Policy{Attempts: -1}, "Attempts is -1"},
		{"negative interval", retry.Policy{InitialInterval: -time.Second}, "must not be negative"},
		{"initial above max", retry.Policy{InitialInterval: time.Minute, MaxInterval: time.Second}, "above MaxInterval"},
		{"shrinking multiplier", retry.Policy{Multiplier: 0.5}, "Multiplier is 0.5"},
		{"jitter above one", retry.Policy{Jitter: 1.5}, "within [0, 1]"},
		{"negative redeliveries", retry.Policy{Redeliveries: -2}, "retry.None"},
		{"none is fine", retry.Policy{Redeliveries: retry.None}, ""},
		{"fast is fine", retry.Fast, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestBackOffGrowsWithinJitterAndCap(t *testing.T) {
	p := retry.Policy{InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2, Jitter: 0.5}.WithDefaults()
	bo := p.NewBackOff()
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		got := bo.NextBackOff()
		require.GreaterOrEqual(t, got, w/2, "wait %d", i)
		require.LessOrEqual(t, got, w*3/2, "wait %d", i)
	}
}

func TestRedeliveryDelayFor(t *testing.T) {
	p := retry.Policy{RedeliveryDelay: time.Second, Multiplier: 3, MaxRedeliveryDelay: 20 * time.Second}.WithDefaults()
	for n, want := range []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 20 * time.Second, 20 * time.Second} {
		require.Equal(t, want, p.RedeliveryDelayFor(n), "n=%d", n)
	}
	require.Equal(t, 20*time.Second, p.RedeliveryDelayFor(10000), "no overflow")
}

func TestPermanentAndAfter(t *testing.T) {
	base := errors.New("schema violation")
	require.Nil(t, retry.Permanent(nil))
	wrapped := fmt.Errorf("handler: %w", retry.Permanent(base))
	require.True(t, retry.IsPermanent(wrapped))
	require.ErrorIs(t, wrapped, base)
	require.False(t, retry.IsPermanent(base))

	d, ok := retry.DelayOf(fmt.Errorf("x: %w", retry.AfterErr(3*time.Second, base)))
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)
	require.ErrorIs(t, retry.AfterErr(time.Second, base), base)
	require.Equal(t, "retry after 2s", retry.After(2*time.Second).Error())
	_, ok = retry.DelayOf(base)
	require.False(t, ok)
}
