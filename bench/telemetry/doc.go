// Package telemetry benchmarks the hub's throughput on the memory broker
// with telemetry off (the global no-op OpenTelemetry providers), with the
// OpenTelemetry SDK recording metrics and traces, and with payload
// encryption, in one run:
//
//	go test -run '^$' -bench . -benchtime 20000x -count 3 ./bench/telemetry
package telemetry
