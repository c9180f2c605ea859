package platform

import (
	"io"
	"log/slog"
)

// NewLogger returns a JSON logger whose records use Elastic Common Schema
// field names (@timestamp, log.level, message, service.name), so Filebeat or
// Logstash ship them to Elasticsearch without a parsing pipeline.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a.Key = "log.level"
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	})
	return slog.New(h).With("service.name", service)
}
