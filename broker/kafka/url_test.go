package kafka_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker/kafka"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want kafka.Config
		err  string
	}{
		{raw: "kafka://127.0.0.1:9092", want: kafka.Config{Brokers: []string{"127.0.0.1:9092"}}},
		{raw: "kafka://a:1,b:2/?partitions=6&replication=3&client_id=w&max_message_bytes=2000000&session_timeout=30s",
			want: kafka.Config{Brokers: []string{"a:1", "b:2"}, Partitions: 6, ReplicationFactor: 3, ClientID: "w", MaxMessageBytes: 2000000, SessionTimeout: 30 * time.Second}},
		{raw: "kafka://[::1]:9092", want: kafka.Config{Brokers: []string{"[::1]:9092"}}},
		{raw: "amqp://a:1", err: "kafka://"},
		{raw: "kafka://", err: "no broker"},
		{raw: "kafka://host", err: "host:port"},
		{raw: "kafka://host:x", err: "bad port"},
		{raw: "kafka://a:1?partitions=x", err: "partitions"},
		{raw: "kafka://a:1?partitions=-2", err: "Partitions"},
		{raw: "kafka://a:1?acks=0", err: "unknown URL parameter"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := kafka.ParseURL(tc.raw)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("kafka://a:1,b:2?partitions=3")
	f.Add("kafka://[::1]:9092/?session_timeout=1s")
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := kafka.ParseURL(raw)
		if err == nil {
			require.NotEmpty(t, cfg.Brokers)
		}
	})
}
