// Package platform is the plumbing every example service shares: settings
// from flags and environment variables, the broker and idempotency store
// those settings name, a JSON (ECS-style, ELK-ready) slog logger, an
// OpenTelemetry MeterProvider exported to Prometheus on /metrics, /healthz
// and /readyz, and a graceful shutdown on SIGTERM or SIGINT.
//
// A service main is three steps:
//
//	cfg := platform.Defaults("dispatch")
//	fs := flag.NewFlagSet("dispatch", flag.ContinueOnError)
//	cfg.RegisterFlags(fs)              // -broker, -listen, ... with HUB_* env defaults
//	fs.Parse(args)
//	rt, err := platform.New(ctx, cfg, stderr)
//	// register handlers on rt.Hub and routes on rt.Mux
//	err = rt.Run(ctx)                  // serves HTTP, runs the hub, drains on ctx done
package platform
