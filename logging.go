package hub

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// levelTrace is below slog.LevelDebug, for Watermill's trace logs.
const levelTrace = slog.LevelDebug - 4

// watermillLogger adapts slog for the Watermill router. It checks the level
// before building attributes, so disabled logs cost nothing per message.
// Watermill's Info logs (router start and stop) are logged at Debug: the hub
// logs its own lifecycle.
type watermillLogger struct {
	l      *slog.Logger
	fields watermill.LogFields
}

func (w watermillLogger) log(level slog.Level, msg string, err error, fields watermill.LogFields) {
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(w.fields)+len(fields)+1)
	for k, v := range w.fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	for k, v := range fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	w.l.LogAttrs(ctx, level, msg, attrs...)
}

func (w watermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	w.log(slog.LevelError, msg, err, fields)
}
func (w watermillLogger) Info(msg string, fields watermill.LogFields) {
	w.log(slog.LevelDebug, msg, nil, fields)
}
func (w watermillLogger) Debug(msg string, fields watermill.LogFields) {
	w.log(slog.LevelDebug, msg, nil, fields)
}
func (w watermillLogger) Trace(msg string, fields watermill.LogFields) {
	w.log(levelTrace, msg, nil, fields)
}
func (w watermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return watermillLogger{l: w.l, fields: w.fields.Add(fields)}
}
