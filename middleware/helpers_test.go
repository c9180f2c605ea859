package middleware_test

import (
	"bytes"
	"log/slog"
)

func newJSONLogger(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
