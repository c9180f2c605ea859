package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/harvesthub/hub/broker"
)

// groupInspector is implemented by brokers that cannot discover a topic's
// groups but report the ones named (amqp.Broker.GroupQueues).
type groupInspector interface {
	GroupQueues(ctx context.Context, topic string, groups ...string) ([]broker.QueueStats, error)
}

func (c *cli) topicsStats(args []string) error {
	var cn conn
	var groups stringList
	var asJSON bool
	fs := c.flagSet("topics stats", "topics stats [topic] [--group name]... [--json]", &cn)
	fs.Var(&groups, "group", "report this consumer group's queue too (a handler name); repeatable or comma-separated. RabbitMQ cannot list a topic's groups")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per queue")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("topics stats: expected at most one topic")
	}
	topic := ""
	if len(pos) == 1 {
		topic = pos[0]
	}
	if len(groups) > 0 && topic == "" {
		return usagef("topics stats: --group needs a topic")
	}
	b, closeB, err := c.open(&cn)
	if err != nil {
		return err
	}
	defer closeB()
	in, ok := b.(broker.Inspector)
	if !ok {
		return fmt.Errorf("broker %s does not report its queues", b.Name())
	}
	var stats []broker.QueueStats
	if gi, ok := b.(groupInspector); ok && len(groups) > 0 {
		stats, err = gi.GroupQueues(c.ctx, topic, append([]string{""}, groups...)...)
	} else {
		stats, err = in.Queues(c.ctx, topic)
		if err == nil && len(groups) > 0 {
			stats, err = onlyGroups(topic, stats, groups)
		}
	}
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return usagef("%v", err)
	case errors.Is(err, broker.ErrUnknownTopic):
		return err
	case err != nil:
		return fmt.Errorf("inspecting queues: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, s := range stats {
			if err := enc.Encode(statsJSON{s.Topic, s.Group, s.Queue, s.Depth, s.InFlight, s.Consumers}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tGROUP\tQUEUE\tDEPTH\tIN-FLIGHT\tCONSUMERS")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", dash(s.Topic), dash(s.Group), s.Queue, s.Depth, unknown(s.InFlight), unknown(int64(s.Consumers)))
	}
	return tw.Flush()
}

// onlyGroups keeps the default group and groups, failing on a group the
// broker does not have.
func onlyGroups(topic string, stats []broker.QueueStats, groups []string) ([]broker.QueueStats, error) {
	want := map[string]bool{topic: true}
	for _, g := range groups {
		want[g] = true
	}
	var out []broker.QueueStats
	for _, s := range stats {
		if want[s.Group] {
			out = append(out, s)
			delete(want, s.Group)
		}
	}
	delete(want, topic)
	for g := range want {
		return nil, fmt.Errorf("group %s of topic %s: %w", g, topic, broker.ErrUnknownTopic)
	}
	return out, nil
}

type statsJSON struct {
	Topic     string `json:"topic"`
	Group     string `json:"group"`
	Queue     string `json:"queue"`
	Depth     int64  `json:"depth"`
	InFlight  int64  `json:"in_flight"`
	Consumers int    `json:"consumers"`
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func unknown(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}
