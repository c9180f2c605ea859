package main

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParsePromText(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		want  []sample
		error string
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# HELP x y\n# TYPE x counter\n\n"},
		{name: "plain", in: "up 1\n", want: []sample{{name: "up", labels: map[string]string{}, value: 1}}},
		{name: "labels and timestamp", in: `x_total{a="1",b="two words"} 3.5 1700000000000` + "\n",
			want: []sample{{name: "x_total", labels: map[string]string{"a": "1", "b": "two words"}, value: 3.5}}},
		{name: "escapes", in: `x{a="q\"uote",b="back\\slash",c="new\nline"} 1`,
			want: []sample{{name: "x", labels: map[string]string{"a": `q"uote`, "b": `back\slash`, "c": "new\nline"}, value: 1}}},
		{name: "trailing comma", in: `x{a="1",} 2`, want: []sample{{name: "x", labels: map[string]string{"a": "1"}, value: 2}}},
		{name: "braces and commas in values", in: `x{a="{},=",b=""} 2`, want: []sample{{name: "x", labels: map[string]string{"a": "{},=", "b": ""}, value: 2}}},
		{name: "special values", in: "a +Inf\nb -Inf\nc NaN\n", want: []sample{
			{name: "a", labels: map[string]string{}, value: math.Inf(1)},
			{name: "b", labels: map[string]string{}, value: math.Inf(-1)},
		}},
		{name: "no value", in: "x\n", error: "line 1"},
		{name: "bad value", in: "ok 1\nx{a=\"1\"} one\n", error: "line 2"},
		{name: "unterminated label", in: `x{a="1} 2`, error: "unterminated"},
		{name: "bad escape", in: `x{a="\q"} 2`, error: "bad escape"},
		{name: "label without quotes", in: `x{a=1} 2`, error: "want =\"value\""},
		{name: "no name", in: `{a="1"} 2`, error: "no metric name"},
		{name: "too many fields", in: "x 1 2 3", error: "optional timestamp"},
		{name: "html", in: "<html><body>login</body></html>", error: "no metric name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePromText(strings.NewReader(tc.in))
			if tc.error != "" {
				require.ErrorIs(t, err, errPromText)
				require.ErrorContains(t, err, tc.error)
				return
			}
			require.NoError(t, err)
			if tc.name == "special values" {
				require.Len(t, got, 3)
				require.True(t, math.IsNaN(got[2].value))
				got = got[:2]
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParsePromTextLongLine(t *testing.T) {
	_, err := parsePromText(strings.NewReader("x{a=\"" + strings.Repeat("a", maxPromLine) + "\"} 1\n"))
	require.ErrorContains(t, err, "token too long")
}

func FuzzParsePromText(f *testing.F) {
	f.Add(workerMetrics(3, 1))
	f.Add(`x{a="\"",b="\\"} 1 2`)
	f.Add("# only\n")
	f.Fuzz(func(t *testing.T, in string) {
		samples, err := parsePromText(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, smp := range samples {
			require.NotEmpty(t, smp.name)
			require.True(t, isNameChar(smp.name[0], true), smp.name)
		}
		var sc scrape
		sc.add(samples)
		for _, h := range sc.Handlers {
			_, _ = h.quantile(0.5) // no panic on any bucket layout
		}
		_ = handlerRows(&sc, &sc)
	})
}

// workerMetrics is what the OTel Prometheus exporter of a worker shows:
// n acks and d dead letters of handler normalise, processing times in the
// buckets below.
func workerMetrics(acks, dlqs int) string {
	var b strings.Builder
	b.WriteString("# HELP messaging_process_duration_seconds Duration of processing operation.\n")
	b.WriteString("# TYPE messaging_process_duration_seconds histogram\n")
	type series struct {
		outcome string
		n       int
	}
	for _, s := range []series{{"ack", acks}, {"dlq", dlqs}} {
		labels := fmt.Sprintf(`hub_outcome="%s",messaging_consumer_group_name="normalise",messaging_destination_name="records",messaging_system="rabbitmq",otel_scope_name="github.com/harvesthub/hub"`, s.outcome)
		// All in (0.01, 0.025] for ack; all in (0.1, 0.25] for dlq.
		for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"} {
			c := s.n
			switch {
			case s.outcome == "ack" && (le == "0.005" || le == "0.01"):
				c = 0
			case s.outcome == "dlq" && le != "0.25" && le != "+Inf":
				c = 0
			}
			fmt.Fprintf(&b, "messaging_process_duration_seconds_bucket{%s,le=\"%s\"} %d\n", labels, le, c)
		}
		fmt.Fprintf(&b, "messaging_process_duration_seconds_sum{%s} %f\n", labels, 0.02*float64(s.n))
		fmt.Fprintf(&b, "messaging_process_duration_seconds_count{%s} %d\n", labels, s.n)
	}
	b.WriteString(`messaging_client_consumed_messages_total{messaging_consumer_group_name="normalise"} 99` + "\n")
	return b.String()
}

func TestHandlerStats(t *testing.T) {
	samples, err := parsePromText(strings.NewReader(workerMetrics(98, 2)))
	require.NoError(t, err)
	var sc scrape
	sc.add(samples)
	h := sc.Handlers[handlerKey{"records", "normalise"}]
	require.NotNil(t, h)
	require.Equal(t, 98.0, h.Outcomes["ack"])
	require.Equal(t, 2.0, h.Outcomes["dlq"])
	p50, ok := h.quantile(0.5)
	require.True(t, ok)
	require.InDelta(t, 0.01+0.015*(50.0/98), p50, 1e-9, "interpolated in (0.01, 0.025]")
	p99, ok := h.quantile(0.99)
	require.True(t, ok)
	require.InDelta(t, 0.1+0.15*(1.0/2), p99, 1e-9, "interpolated in (0.1, 0.25]")

	empty := &handlerStats{buckets: map[float64]float64{}}
	_, ok = empty.quantile(0.5)
	require.False(t, ok)
	open := &handlerStats{buckets: map[float64]float64{0.1: 0, math.Inf(1): 5}}
	v, ok := open.quantile(0.5)
	require.True(t, ok)
	require.Equal(t, 0.1, v, "in the open bucket: the highest finite bound")

	prev := sc
	prev.At = time.Unix(0, 0)
	var cur scrape
	samples, err = parsePromText(strings.NewReader(workerMetrics(158, 2)))
	require.NoError(t, err)
	cur.add(samples)
	cur.At = prev.At.Add(30 * time.Second)
	rows := handlerRows(&cur, &prev)
	require.Len(t, rows, 1)
	require.Equal(t, "120.0", rows[0].Rates[0], "60 acks in 30s")
	require.Equal(t, "0.0", rows[0].Rates[3], "no new dead letters")
	require.Equal(t, "-", handlerRows(&cur, nil)[0].Rates[0], "no rate from one scrape")
	reset := handlerRows(&prev, &cur) // counters went down: a restarted worker
	require.Equal(t, "-", reset[0].Rates[0])
}

func TestConsoleHandlers(t *testing.T) {
	var mu sync.Mutex
	acks := 10
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, workerMetrics(acks, 1))
	}))
	defer metrics.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<html>not metrics</html>")
	}))
	defer broken.Close()
	now := time.Unix(1_800_000_000, 0)
	e := newConsoleEnv(t, false, func(c *consoleConfig) {
		c.metrics = []string{metrics.URL + "/metrics", broken.URL + "/metrics"}
		c.now = func() time.Time { return now }
	})
	br := e.browser(t)
	code, body := br.get("/handlers")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<td>normalise</td>")
	require.Contains(t, body, "not the Prometheus text format", "a bad endpoint is reported")
	mu.Lock()
	acks = 40
	mu.Unlock()
	now = now.Add(time.Minute)
	e.cons.samp.sampleOnce(t.Context())
	_, body = br.get("/handlers")
	require.Contains(t, body, "40 <span class=\"rate\">(30.0)</span>", "30 acks in a minute")
	require.Contains(t, body, "<td class=\"num\">17.69ms</td>", "p50")

	e2 := newConsoleEnv(t, false, nil)
	_, body = e2.browser(t).get("/handlers")
	require.Contains(t, body, "--metrics")
}
