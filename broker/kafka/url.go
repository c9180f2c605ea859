package kafka

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ParseURL reads a Config from a kafka:// URL, as hubctl and the examples
// take it: kafka://host:port[,host:port...][?partitions=N&replication=N&
// client_id=ID&max_message_bytes=N&session_timeout=DURATION]. TLS files and
// the logger are set by the caller.
func ParseURL(raw string) (Config, error) {
	var cfg Config
	rest, ok := strings.CutPrefix(raw, "kafka://")
	if !ok {
		return cfg, fmt.Errorf("kafka: URL %q must start with kafka://", raw)
	}
	hosts, query, _ := strings.Cut(rest, "?")
	hosts = strings.TrimSuffix(hosts, "/")
	if hosts == "" {
		return cfg, fmt.Errorf("kafka: URL %q names no broker", raw)
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, _, err := splitHostPort(h); err != nil {
			return cfg, fmt.Errorf("kafka: URL broker %q: %w", h, err)
		}
		cfg.Brokers = append(cfg.Brokers, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return cfg, fmt.Errorf("kafka: URL query: %w", err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "partitions":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			cfg.Partitions = int32(n)
		case "replication":
			var n int64
			n, err = strconv.ParseInt(v, 10, 16)
			cfg.ReplicationFactor = int16(n)
		case "client_id":
			cfg.ClientID = v
		case "max_message_bytes":
			cfg.MaxMessageBytes, err = strconv.Atoi(v)
		case "session_timeout":
			cfg.SessionTimeout, err = time.ParseDuration(v)
		default:
			return cfg, fmt.Errorf("kafka: unknown URL parameter %q; use partitions, replication, client_id, max_message_bytes or session_timeout", k)
		}
		if err != nil {
			return cfg, fmt.Errorf("kafka: URL parameter %s=%q: %w", k, v, err)
		}
	}
	if _, err := cfg.withDefaults(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func splitHostPort(h string) (string, int, error) {
	i := strings.LastIndexByte(h, ':')
	if i <= 0 || strings.HasSuffix(h, "]") {
		return "", 0, fmt.Errorf("want host:port")
	}
	p, err := strconv.Atoi(h[i+1:])
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", h[i+1:])
	}
	return h[:i], p, nil
}
