package sqs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestQueueName(t *testing.T) {
	long := "a123456789b123456789c123456789d123456789e123456789f123456789g123456789h123456789i"
	tests := []struct {
		name, prefix, topic, group string
		want                       string
		err                        bool
	}{
		{name: "default group is the topic", topic: "records", want: "records"},
		{name: "group named like the topic is the default", topic: "records", group: "records", want: "records"},
		{name: "prefix", prefix: "p-", topic: "records", want: "p-records"},
		// The names are a wire contract: other processes and versions must
		// compute the same ones.
		{name: "group gets a hash", topic: "records", group: "index", want: "records-index-0ef5191d"},
		{name: "dot is mapped and hashed", topic: "records.dlq", want: "records_dlq-ae76d620"},
		{name: "empty topic", topic: "", err: true},
		{name: "space", topic: "a b", err: true},
		{name: "slash in group", topic: "a", group: "x/y", err: true},
		{name: "unicode", topic: "zürich", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := queueName(tt.prefix, tt.topic, tt.group)
			if tt.err {
				require.ErrorIs(t, err, ErrInvalidName)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("no collisions", func(t *testing.T) {
		seen := map[string]string{}
		for _, tg := range [][2]string{{"a", "b-c"}, {"a-b", "c"}, {"a.b", ""}, {"a_b", ""}, {"a-b-c", ""}, {long, ""}, {long + "x", ""}, {long, "g"}} {
			q, err := queueName("", tg[0], tg[1])
			require.NoError(t, err)
			require.LessOrEqual(t, len(q), maxQueueName, q)
			require.NotContains(t, seen, q, "%v collides with %v", tg, seen[q])
			seen[q] = tg[0] + "/" + tg[1]
		}
	})
}

func TestPlanDelay(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		delay     time.Duration
		seconds   int32
		notBefore time.Time
	}{
		{delay: 0, seconds: 0},
		{delay: -time.Second, seconds: 0},
		{delay: 300 * time.Millisecond, seconds: 1},
		{delay: 90 * time.Second, seconds: 90},
		{delay: 15 * time.Minute, seconds: 900},
		{delay: 15*time.Minute + time.Second, seconds: 900, notBefore: now.Add(15*time.Minute + time.Second)},
		{delay: 3 * time.Hour, seconds: 900, notBefore: now.Add(3 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.delay.String(), func(t *testing.T) {
			seconds, notBefore := planDelay(now, tt.delay)
			require.Equal(t, tt.seconds, seconds)
			require.Equal(t, tt.notBefore, notBefore)
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "endpoint", cfg: Config{Endpoint: "127.0.0.1:4566"}, want: "Config.Endpoint"},
		{name: "prefix", cfg: Config{QueuePrefix: "a.b"}, want: "Config.QueuePrefix"},
		{name: "wait", cfg: Config{WaitTime: time.Minute}, want: "Config.WaitTime"},
		{name: "max messages", cfg: Config{MaxMessages: 11}, want: "Config.MaxMessages"},
		{name: "visibility", cfg: Config{VisibilityTimeout: 1500 * time.Millisecond}, want: "Config.VisibilityTimeout"},
		{name: "credentials", cfg: Config{Credentials: &Credentials{AccessKeyID: "x"}}, want: "Config.Credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults()
			require.ErrorContains(t, err, tt.want)
		})
	}
	c, err := Config{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, RegionDefault, c.Region)
	require.Equal(t, WaitTimeDefault, c.WaitTime)
	require.Equal(t, MaxMessagesDefault, c.MaxMessages)
	require.Equal(t, VisibilityTimeoutDefault, c.VisibilityTimeout)
}
