package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// errPromText marks a /metrics body that is not the Prometheus text format.
var errPromText = errors.New("not the Prometheus text format")

// maxPromLine bounds one line of a /metrics body.
const maxPromLine = 64 << 10

// parsePromText reads the Prometheus text exposition format (version
// 0.0.4): comments and blank lines are skipped, every other line is
// name{label="value",...} value [timestamp]. It returns the samples in
// order, or an error naming the first bad line.
func parsePromText(r io.Reader) ([]sample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxPromLine)
	var out []sample
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parsePromLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w: %v", n, errPromText, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return out, nil
}

func parsePromLine(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return s, fmt.Errorf("no metric name in %q", clip(line))
	}
	s.name = line[:i]
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		var err error
		rest, err = parseLabels(rest[1:], s.labels)
		if err != nil {
			return s, err
		}
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("want a value and an optional timestamp after %s, got %q", s.name, clip(rest))
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value of %s: %q is not a number", s.name, clip(fields[0]))
	}
	s.value = v
	return s, nil
}

// parseLabels reads label="value" pairs up to the closing brace and
// returns what follows it.
func parseLabels(s string, into map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		i := 0
		for i < len(s) && isNameChar(s[i], i == 0) && s[i] != ':' {
			i++
		}
		if i == 0 {
			return "", fmt.Errorf("bad label name at %q", clip(s))
		}
		name := s[:i]
		s = strings.TrimLeft(s[i:], " \t")
		if !strings.HasPrefix(s, `="`) {
			return "", fmt.Errorf("label %s: want =\"value\"", name)
		}
		s = s[2:]
		var b strings.Builder
		closed := false
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c == '"' {
				s, closed = s[j+1:], true
				break
			}
			if c == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					b.WriteByte('\n')
				case '\\', '"':
					b.WriteByte(s[j])
				default:
					return "", fmt.Errorf("label %s: bad escape \\%c", name, s[j])
				}
				continue
			}
			b.WriteByte(c)
		}
		if !closed {
			return "", fmt.Errorf("label %s: unterminated value", name)
		}
		into[name] = b.String()
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return "", fmt.Errorf("after label %s: want , or }", name)
		}
	}
}

func isNameChar(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// outcomes are the hub.outcome values the console reports, in order.
var outcomes = []string{"ack", "retry", "delayed", "dlq", "duplicate"}

// handlerKey names a handler: its topic and consumer group.
type handlerKey struct{ Topic, Handler string }

// handlerStats is what one scrape says about one handler.
type handlerStats struct {
	Outcomes map[string]float64 // hub.outcome -> messages processed
	buckets  map[float64]float64
}

// scrape is one read of every /metrics URL.
type scrape struct {
	At       time.Time
	Handlers map[handlerKey]*handlerStats
}

// processDuration is the OTel histogram the hub records per delivery,
// as the OTel Prometheus exporter names it (with or without the unit).
const processDuration = "messaging_process_duration"

// handlerScrape folds samples into per-handler outcome counts and the
// process duration histogram. Samples from several workers add up.
func (sc *scrape) add(samples []sample) {
	if sc.Handlers == nil {
		sc.Handlers = map[handlerKey]*handlerStats{}
	}
	for _, s := range samples {
		if !strings.HasPrefix(s.name, processDuration) {
			continue
		}
		suffix := strings.TrimPrefix(strings.TrimPrefix(s.name, processDuration), "_seconds")
		if suffix != "_count" && suffix != "_bucket" {
			continue
		}
		k := handlerKey{Topic: s.labels["messaging_destination_name"], Handler: s.labels["messaging_consumer_group_name"]}
		if k.Handler == "" {
			continue
		}
		h := sc.Handlers[k]
		if h == nil {
			h = &handlerStats{Outcomes: map[string]float64{}, buckets: map[float64]float64{}}
			sc.Handlers[k] = h
		}
		switch suffix {
		case "_count":
			h.Outcomes[s.labels["hub_outcome"]] += s.value
		case "_bucket":
			le, err := parseLe(s.labels["le"])
			if err != nil {
				continue
			}
			h.buckets[le] += s.value
		}
	}
}

func parseLe(s string) (float64, error) {
	if s == "+Inf" {
		return math.Inf(1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// quantile returns the q-quantile (0 < q < 1) of the histogram in seconds,
// interpolating linearly inside the bucket it falls in as Prometheus'
// histogram_quantile does, and false when the histogram is empty.
func (h *handlerStats) quantile(q float64) (float64, bool) {
	bounds := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, false
	}
	total := h.buckets[bounds[len(bounds)-1]]
	if total <= 0 || !math.IsInf(bounds[len(bounds)-1], 1) {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		count := h.buckets[le]
		if count >= rank {
			if math.IsInf(le, 1) {
				// In the open bucket: the highest finite bound is the
				// best estimate.
				return lower, true
			}
			if count == below {
				return le, true
			}
			return lower + (le-lower)*(rank-below)/(count-below), true
		}
		lower, below = le, count
	}
	return lower, true
}

// handlerRow is one row of the handlers page.
type handlerRow struct {
	handlerKey
	Totals   []float64 // per outcome, in the order of outcomes
	Rates    []string  // per outcome, per minute since the previous scrape
	P50, P99 string
}

// handlerRows compares two scrapes; prev may be nil (no rates yet).
func handlerRows(cur, prev *scrape) []handlerRow {
	var rows []handlerRow
	for k, h := range cur.Handlers {
		r := handlerRow{handlerKey: k, P50: "-", P99: "-"}
		for _, o := range outcomes {
			r.Totals = append(r.Totals, h.Outcomes[o])
			rate := "-"
			if prev != nil {
				if ph := prev.Handlers[k]; ph != nil {
					if dt := cur.At.Sub(prev.At).Minutes(); dt > 0 {
						d := h.Outcomes[o] - ph.Outcomes[o]
						if d >= 0 { // a counter reset shows no rate
							rate = strconv.FormatFloat(d/dt, 'f', 1, 64)
						}
					}
				}
			}
			r.Rates = append(r.Rates, rate)
		}
		if v, ok := h.quantile(0.5); ok {
			r.P50 = formatSeconds(v)
		}
		if v, ok := h.quantile(0.99); ok {
			r.P99 = formatSeconds(v)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b handlerRow) int {
		return cmpStrings(a.Topic+"\x00"+a.Handler, b.Topic+"\x00"+b.Handler)
	})
	return rows
}

func cmpStrings(a, b string) int { return strings.Compare(a, b) }

func formatSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}
