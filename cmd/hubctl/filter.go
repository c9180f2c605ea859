package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/dlq"
)

// filterFlags are the letter filters of list, replay and purge.
type filterFlags struct {
	handler, errText, reason, since, until string
	limit                                  int
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.handler, "handler", "", "only letters of this handler")
	fs.StringVar(&f.errText, "error", "", "only letters whose error text contains this")
	fs.StringVar(&f.reason, "reason", "", "only letters with this reason: "+strings.Join(reasons, ", "))
	fs.StringVar(&f.since, "since", "", "only letters that failed at or after this time: RFC 3339, or a duration ago such as 2h or 7d")
	fs.StringVar(&f.until, "until", "", "only letters that failed before this time (same forms as --since)")
	fs.IntVar(&f.limit, "limit", 0, "at most this many letters (0: no limit)")
}

var reasons = []string{hub.ReasonExhausted, hub.ReasonPermanent, hub.ReasonDecode, hub.ReasonPanic}

// filter builds the dlq.Filter, rejecting bad values as usage errors.
func (f *filterFlags) filter(now time.Time) (dlq.Filter, error) {
	out := dlq.Filter{Handler: f.handler, ErrorContains: f.errText, Reason: f.reason}
	if f.reason != "" && !contains(reasons, f.reason) {
		return out, usagef("--reason %q: use one of %s", f.reason, strings.Join(reasons, ", "))
	}
	var err error
	if out.Since, err = parseTime("--since", f.since, now); err != nil {
		return out, err
	}
	if out.Until, err = parseTime("--until", f.until, now); err != nil {
		return out, err
	}
	if err := out.Validate(); err != nil {
		return out, usagef("--until %s is not after --since %s: the range selects nothing", f.until, f.since)
	}
	if f.limit < 0 {
		return out, usagef("--limit %d: use a positive number, or 0 for no limit", f.limit)
	}
	return out, nil
}

// parseTime reads an RFC 3339 time, or a duration meaning that long
// before now ("2h", "90m", "7d").
func parseTime(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, usagef("%s %q: use an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (30m, 2h, 7d)", name, s)
	}
	return now.Add(-d), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// dlqTopic returns the dead-letter topic of topic and a hint for a
// not-found error.
func dlqTopic(topic, suffix string) (string, string) {
	hint := ""
	if suffix != "" && strings.HasSuffix(topic, suffix) {
		hint = fmt.Sprintf(" (name the original topic: %s)", strings.TrimSuffix(topic, suffix))
	}
	return topic + suffix, hint
}
