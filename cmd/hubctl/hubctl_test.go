package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
)

// TestDeadLetters makes letters for real with a hub on each broker, then
// lists, shows, replays (in two runs) and purges them with hubctl.
func TestDeadLetters(t *testing.T) {
	for _, bc := range brokerCases {
		if bc.name == "nats" {
			// Known gap (noted on issue 19): on NATS a letter that a scan
			// handed back can stay invisible to the next scan for the
			// consumer's AckWait, so list-then-replay within a second
			// misses it. Until the scan waits it out, hubctl on NATS is
			// covered only by the "unknown topic" cases below.
			continue
		}
		t.Run(bc.name, func(t *testing.T) {
			topic := "records-" + randomHex()
			b, brokerURL := bc.open(t, topic)
			env := map[string]string{"HUBCTL_BROKER": brokerURL, "HUBCTL_IDLE": "400ms"}
			w := startWorker(t, b, topic)
			dlqTopic := topic + ".dlq"

			before := time.Now().UTC()
			w.publish(t,
				Record{ID: "p1", Kind: "perm"}, Record{ID: "p2", Kind: "perm"}, Record{ID: "p3", Kind: "perm"},
				Record{ID: "f1", Kind: "flaky", Title: "t"}, Record{ID: "f2", Kind: "flaky", Title: "t"}, Record{ID: "f3", Kind: "flaky", Title: "t"},
				Record{ID: "a1", Kind: "audit", Title: "audited"},
			)
			waitDepth(t, b, dlqTopic, 7)
			after := time.Now().UTC().Add(time.Second)

			t.Run("list", func(t *testing.T) {
				r := runHubctl(t, env, "", "dlq", "list", topic)
				require.Equal(t, 0, r.code, r.stderr)
				require.Len(t, rows(r.stdout), 7)
				require.True(t, strings.HasPrefix(r.stdout, "ID"), "a header row")
				require.Regexp(t, `FAILED\s+HANDLER\s+ATTEMPTS\s+REASON\s+ERROR`, r.stdout)
				require.Contains(t, r.stderr, "7 letters in "+dlqTopic)

				for _, tc := range []struct {
					args []string
					want int
				}{
					{[]string{"--handler", "audit"}, 1},
					{[]string{"--handler=normalise"}, 6},
					{[]string{"--error", "index unavailable"}, 3},
					{[]string{"--reason", hub.ReasonPermanent}, 4},
					{[]string{"--reason", hub.ReasonExhausted, "--handler", "normalise"}, 3},
					{[]string{"--since", "1h"}, 7},
					{[]string{"--until", "1h"}, 0},
					{[]string{"--since", before.Add(-time.Second).Format(time.RFC3339Nano), "--until", after.Format(time.RFC3339)}, 7},
					{[]string{"--since", after.Format(time.RFC3339)}, 0},
					{[]string{"--limit", "2"}, 2},
				} {
					r := runHubctl(t, env, "", append([]string{"dlq", "list", topic}, tc.args...)...)
					require.Equal(t, 0, r.code, "%v: %s", tc.args, r.stderr)
					require.Len(t, rows(r.stdout), tc.want, "%v", tc.args)
				}
			})

			letters := map[string]letterJSON{} // by key
			t.Run("json", func(t *testing.T) {
				r := runHubctl(t, env, "", "dlq", "list", topic, "--json")
				require.Equal(t, 0, r.code, r.stderr)
				lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
				require.Len(t, lines, 7)
				for _, line := range lines {
					var l letterJSON
					require.NoError(t, json.Unmarshal([]byte(line), &l), line)
					require.Equal(t, topic, l.Topic)
					require.NotNil(t, l.FailedAt)
					require.WithinRange(t, *l.FailedAt, before.Add(-time.Second), after)
					require.Equal(t, 1, l.Attempts)
					require.Positive(t, l.PayloadBytes)
					letters[l.Key] = l
				}
				require.Equal(t, "audit", letters["key-a1"].Handler)
				require.Equal(t, hub.ReasonPermanent, letters["key-a1"].Reason)
				require.Contains(t, letters["key-a1"].Error, "audit log rejected the record")
				require.Equal(t, hub.ReasonExhausted, letters["key-f2"].Reason)
				require.Equal(t, "normalise", letters["key-f2"].Handler)
			})

			t.Run("show", func(t *testing.T) {
				id := letters["key-a1"].ID
				require.NotEmpty(t, id)
				r := runHubctl(t, env, "", "dlq", "show", topic, id)
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stdout, "Handler:       audit")
				require.Contains(t, r.stdout, `"kind": "audit"`, "pretty-printed JSON payload")
				require.Contains(t, r.stdout, `"title": "audited"`)
				// Metadata sorted, the dead-letter keys among them.
				var keys []string
				inMeta := false
				for _, line := range strings.Split(r.stdout, "\n") {
					switch {
					case line == "Metadata:":
						inMeta = true
					case inMeta && strings.HasPrefix(line, "  "):
						keys = append(keys, strings.Fields(line)[0])
					case inMeta:
						inMeta = false
					}
				}
				require.IsIncreasing(t, keys)
				for _, k := range []string{hub.KeyDLQReason, hub.KeyDLQError, hub.KeyOriginalTopic, hub.KeyHandler, hub.KeyKey, hub.KeyFailedAt} {
					require.Contains(t, keys, k)
				}

				r = runHubctl(t, env, "", "dlq", "show", "--json", topic, id)
				require.Equal(t, 0, r.code, r.stderr)
				var l letterJSON
				require.NoError(t, json.Unmarshal([]byte(r.stdout), &l))
				require.JSONEq(t, `{"id":"a1","kind":"audit","title":"audited"}`, string(l.Payload))
				require.Equal(t, "key-a1", l.Metadata[hub.KeyKey])
			})

			t.Run("replay", func(t *testing.T) {
				r := runHubctl(t, env, "", "dlq", "replay", topic, "--dry-run", "--handler", "normalise")
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stdout, "dry run: would replay 6 letters from "+dlqTopic+" to "+topic)
				waitDepth(t, b, dlqTopic, 7)

				w.setBroken(false)
				// First run stops after two letters, as if interrupted.
				r = runHubctl(t, env, "", "dlq", "replay", topic, "--handler", "normalise", "--limit", "2")
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stdout, "replayed 2 letters from "+dlqTopic+" to "+topic)
				waitDepth(t, b, dlqTopic, 5)
				w.waitHandled(t, func(m map[string]int) bool { return len(m) == 2 })

				// Resumed: the rest, both handlers.
				r = runHubctl(t, env, "", "dlq", "replay", topic)
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stdout, "replayed 5 letters")
				w.waitHandled(t, func(m map[string]int) bool { return len(m) == 7 })
				waitDepth(t, b, dlqTopic, 0)

				for _, id := range []string{"p1", "p2", "p3", "f1", "f2", "f3"} {
					require.Equal(t, 1, w.count("normalise/key-"+id), id)
				}
				require.Equal(t, 1, w.count("audit/key-a1"))
				require.Zero(t, w.count("normalise/key-a1"), "a replay reaches the handler that failed only")
				r = runHubctl(t, env, "", "dlq", "list", topic)
				require.Equal(t, 0, r.code)
				require.Empty(t, rows(r.stdout))

				r = runHubctl(t, env, "", "dlq", "show", topic, letters["key-p1"].ID)
				require.Equal(t, 3, r.code, "a replayed letter is gone")
				require.Contains(t, r.stderr, "is not in "+dlqTopic)
			})

			t.Run("purge", func(t *testing.T) {
				w.setBroken(true)
				w.publish(t, Record{ID: "x1", Kind: "perm"}, Record{ID: "x2", Kind: "perm"})
				waitDepth(t, b, dlqTopic, 2)

				r := runHubctl(t, env, "", "dlq", "purge", topic)
				require.Equal(t, 2, r.code, "no terminal and no --yes")
				require.Contains(t, r.stderr, "pass --yes")

				defer func(orig func(any) bool) { isTerminal = orig }(isTerminal)
				isTerminal = func(any) bool { return true }
				r = runHubctl(t, env, "records-typo\n", "dlq", "purge", topic)
				require.Equal(t, 1, r.code)
				require.Contains(t, r.stderr, "Type the topic name ("+topic+") to confirm")
				require.Contains(t, r.stderr, "purge not confirmed")
				waitDepth(t, b, dlqTopic, 2)

				r = runHubctl(t, env, topic+"\n", "dlq", "purge", topic)
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stderr, "This deletes 2 letters from "+dlqTopic)
				require.Contains(t, r.stdout, "purged 2 letters from "+dlqTopic)
				waitDepth(t, b, dlqTopic, 0)

				w.publish(t, Record{ID: "x3", Kind: "perm"})
				waitDepth(t, b, dlqTopic, 1)
				r = runHubctl(t, env, "", "dlq", "list", "--json", topic)
				require.Equal(t, 0, r.code)
				var l letterJSON
				require.NoError(t, json.Unmarshal([]byte(r.stdout), &l))
				r = runHubctl(t, env, "", "dlq", "purge", "--yes", topic)
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stdout, "purged 1 letter from")
				r = runHubctl(t, env, "", "dlq", "show", topic, l.ID)
				require.Equal(t, 3, r.code, "show of a purged letter")
			})

			t.Run("stats", func(t *testing.T) {
				args := []string{"topics", "stats", topic, "--json"}
				if bc.name == "rabbitmq" {
					args = append(args, "--group", "normalise,audit")
				}
				r := runHubctl(t, env, "", args...)
				require.Equal(t, 0, r.code, r.stderr)
				groups := map[string]statsJSON{}
				for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
					var s statsJSON
					require.NoError(t, json.Unmarshal([]byte(line), &s))
					groups[s.Group] = s
				}
				require.Contains(t, groups, "normalise")
				require.Contains(t, groups, "audit")
				require.Zero(t, groups["normalise"].Depth)
				switch bc.name {
				case "sqs":
				case "nats":
					// Pull requests waiting: the running hub's one, or none
					// for the instant between two.
					require.LessOrEqual(t, groups["normalise"].Consumers, 1)
				default:
					require.Equal(t, 1, groups["normalise"].Consumers, "the running hub")
				}

				r = runHubctl(t, env, "", "topics", "stats", dlqTopic)
				require.Equal(t, 0, r.code, r.stderr)
				require.Regexp(t, `TOPIC\s+GROUP\s+QUEUE\s+DEPTH\s+IN-FLIGHT\s+CONSUMERS`, r.stdout)
				require.Contains(t, r.stdout, dlqTopic)
			})
		})
	}
}

// TestErrors checks exit codes and messages that need no letters.
func TestErrors(t *testing.T) {
	t.Run("usage", func(t *testing.T) {
		env := map[string]string{"HUBCTL_BROKER": "memory://none"}
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{nil, exitUsage, "no command"},
			{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
			{[]string{"dlq"}, exitUsage, "name a subcommand"},
			{[]string{"dlq", "list"}, exitUsage, "expected one topic"},
			{[]string{"dlq", "list", "records", "--since", "garbage"}, exitUsage, `--since "garbage": use an RFC 3339 time`},
			{[]string{"dlq", "list", "records", "--since", "1h", "--until", "2h"}, exitUsage, "is not after --since"},
			{[]string{"dlq", "list", "records", "--reason", "bored"}, exitUsage, "use one of retries-exhausted"},
			{[]string{"dlq", "list", "records", "--limit", "-1"}, exitUsage, "--limit -1"},
			{[]string{"dlq", "list", "records", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
			{[]string{"dlq", "show", "records"}, exitUsage, "a topic and a letter ID"},
			{[]string{"topics", "stats", "a", "b"}, exitUsage, "at most one topic"},
			{[]string{"dlq", "list", "records"}, exitUnreachable, `no in-process broker "none"`},
		} {
			r := runHubctl(t, env, "", tc.args...)
			require.Equal(t, tc.code, r.code, "%v: %s", tc.args, r.stderr)
			require.True(t, strings.HasPrefix(r.stderr, "hubctl: "), r.stderr)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			require.Contains(t, r.stderr, tc.msg, "%v", tc.args)
		}

		r := runHubctl(t, map[string]string{}, "", "dlq", "list", "records")
		require.Equal(t, exitUsage, r.code)
		require.Contains(t, r.stderr, "no broker: set --broker or HUBCTL_BROKER")

		r = runHubctl(t, map[string]string{"HUBCTL_IDLE": "soon"}, "", "dlq", "list", "records")
		require.Equal(t, exitUsage, r.code)
		require.Contains(t, r.stderr, `HUBCTL_IDLE="soon"`)

		r = runHubctl(t, map[string]string{}, "", "help")
		require.Equal(t, exitOK, r.code)
		for _, code := range []string{"0  success", "1  operation failed", "2  usage error", "3  not found", "4  broker unreachable"} {
			require.Contains(t, r.stdout, code)
		}
		r = runHubctl(t, map[string]string{}, "", "dlq", "list", "-h")
		require.Equal(t, exitOK, r.code)
		require.Contains(t, r.stderr, "Usage: hubctl dlq list <topic>")
	})

	t.Run("unreachable", func(t *testing.T) {
		for _, u := range []string{"amqp://guest:guest@127.0.0.1:1/", "sqs://test:test@us-east-1?endpoint=http://127.0.0.1:1"} {
			r := runHubctl(t, map[string]string{}, "", "dlq", "list", "records", "--broker", u)
			require.Equal(t, exitUnreachable, r.code, u)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			require.NotContains(t, r.stderr, "guest:guest", "no password in errors")
		}
		r := runHubctl(t, map[string]string{}, "", "dlq", "list", "records", "--broker", "kafka://x")
		require.Equal(t, exitUsage, r.code)
	})

	for _, bc := range brokerCases {
		t.Run("unknown topic/"+bc.name, func(t *testing.T) {
			topic := "nosuch-" + randomHex()
			b, brokerURL := bc.open(t, topic)
			env := map[string]string{"HUBCTL_BROKER": brokerURL}
			for _, args := range [][]string{
				{"dlq", "list", topic},
				{"dlq", "show", topic, "some-id"},
				{"dlq", "replay", topic},
				{"dlq", "purge", "--yes", topic},
				{"topics", "stats", topic},
			} {
				r := runHubctl(t, env, "", args...)
				require.Equal(t, exitNotFound, r.code, "%v: %s", args, r.stderr)
				require.Contains(t, r.stderr, "unknown topic")
			}
			r := runHubctl(t, env, "", "dlq", "list", topic+".dlq")
			require.Equal(t, exitNotFound, r.code)
			require.Equal(t, fmt.Sprintf("hubctl: %[1]s.dlq has no dead-letter queue %[1]s.dlq.dlq (name the original topic: %[1]s): broker: unknown topic\n", topic), r.stderr)

			_, err := b.(broker.Inspector).Queues(t.Context(), topic+".dlq")
			require.ErrorIs(t, err, broker.ErrUnknownTopic, "hubctl created no queue")
		})
	}
}
