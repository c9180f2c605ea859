package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/middleware"
	"github.com/harvesthub/hub/retry"
)

// memoryHub is a hubtest harness whose "normalise" handler of "records"
// fails permanently for every record, reachable by hubctl as memory://.
func memoryHub(t *testing.T, opts ...hubtest.Option) (*hubtest.Harness, map[string]string) {
	t.Helper()
	opts = append(opts, hubtest.WithConfig(func(c *hub.Config) { c.Retry = retry.Policy{Attempts: 1, Redeliveries: retry.None} }))
	th := hubtest.New(t, opts...)
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		return retry.Permanent(errors.New("no title"))
	}, hub.Name("normalise")))
	th.Start()
	name := "hubctl-" + randomHex()
	t.Cleanup(registerMemory(name, th.Broker))
	return th, map[string]string{"HUBCTL_BROKER": "memory://" + name, "HUBCTL_IDLE": "100ms"}
}

func TestShowEncrypted(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, err := middleware.NewKeyring("k1", map[string][]byte{"k1": key})
	require.NoError(t, err)
	th, env := memoryHub(t, hubtest.WithConfig(func(c *hub.Config) { c.Encryption = ring }))
	hubtest.Send(t, th, "records", Record{ID: "r1", Kind: "secret", Title: "classified"})
	th.Settle(t)

	r := runHubctl(t, env, "", "dlq", "list", "records", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var l letterJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &l))
	require.Equal(t, "k1", l.EncKeyID)

	r = runHubctl(t, env, "", "dlq", "show", "records", l.ID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `encrypted with key "k1"; pass --key-dir or --key-file`)
	require.Contains(t, r.stdout, "(ciphertext not shown)")
	require.NotContains(t, r.stdout, "classified")

	dir := t.TempDir()
	b64 := base64.StdEncoding.EncodeToString(key)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k1"), []byte(b64+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "current"), []byte("k1\n"), 0o600))
	for _, args := range [][]string{{"--key-dir", dir}, {"--key-file", filepath.Join(dir, "k1")}} {
		r = runHubctl(t, env, "", append([]string{"dlq", "show", "records", l.ID}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, `decrypted with key "k1"`)
		require.Contains(t, r.stdout, `"title": "classified"`)
	}

	t.Setenv("HUB_ENC_KEY_k1", b64)
	t.Setenv("HUB_ENC_CURRENT", "k1")
	envKeys := map[string]string{"HUB_ENC_CURRENT": "k1"}
	for k, v := range env {
		envKeys[k] = v
	}
	r = runHubctl(t, envKeys, "", "dlq", "show", "records", l.ID, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var shown letterJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &shown))
	require.JSONEq(t, `{"id":"r1","kind":"secret","title":"classified"}`, string(shown.Payload))

	other := filepath.Join(t.TempDir(), "k1")
	require.NoError(t, os.WriteFile(other, make([]byte, 32), 0o600))
	r = runHubctl(t, env, "", "dlq", "show", "records", l.ID, "--key-file", other)
	require.Equal(t, exitFailed, r.code, "a wrong key fails the command")
	require.Contains(t, r.stdout, "(cannot decrypt:")
	require.Contains(t, r.stderr, `decrypting with key "k1"`)

	r = runHubctl(t, env, "", "dlq", "show", "records", l.ID, "--key-dir", filepath.Join(dir, "missing"))
	require.Equal(t, exitUsage, r.code)
}

func TestReplayProgressAndTo(t *testing.T) {
	th, env := memoryHub(t)
	seen := make(chan string, 10)
	require.NoError(t, hub.Handle(th.Hub, "quarantine", func(ctx context.Context, m hub.Message[Record]) error {
		seen <- m.Payload.ID
		return nil
	}, hub.Name("inspect")))
	for _, id := range []string{"r1", "r2", "r3"} {
		hubtest.Send(t, th, "records", Record{ID: id})
	}
	th.Settle(t)

	defer func(orig func(any) bool) { isTerminal = orig }(isTerminal)
	isTerminal = func(any) bool { return true }
	r := runHubctl(t, env, "", "dlq", "replay", "records", "--to", "quarantine")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "\r[..............................] 0/3 replaying to quarantine")
	require.Contains(t, r.stdout, "\r[##############################] 3/3 replaying to quarantine\n")
	require.Contains(t, r.stdout, "replayed 3 letters from records.dlq to quarantine")
	got := []string{<-seen, <-seen, <-seen}
	require.ElementsMatch(t, []string{"r1", "r2", "r3"}, got)

	r = runHubctl(t, env, "", "dlq", "replay", "records")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "no letters in records.dlq match; nothing replayed")
}

func TestConnectionFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		msg  string
	}{
		{[]string{"--broker", "amqp://127.0.0.1:5672/", "--tls-ca", "/nonexistent/ca.pem"}, nil, "--tls-ca/--tls-cert/--tls-key"},
		{[]string{"--broker", "amqps://127.0.0.1:5671/"}, map[string]string{"HUBCTL_TLS_CERT": "/nonexistent/c.pem", "HUBCTL_TLS_KEY": "/nonexistent/k.pem"}, "--tls-ca/--tls-cert/--tls-key"},
		{[]string{"--broker", "sqs://us-east-1?wait=1s"}, nil, `unknown sqs:// parameter "wait"`},
		{[]string{"--broker", "sqs://us-east-1?visibility=soon"}, nil, `visibility="soon"`},
		{[]string{"--broker", "ftp://x"}, nil, "scheme must be amqp, amqps, sqs, nats, tls (NATS over TLS), kafka or memory"},
	} {
		r := runHubctl(t, tc.env, "", append([]string{"dlq", "list", "records"}, tc.args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.msg)
	}

	// A flag overrides its HUBCTL_ variable.
	th, env := memoryHub(t)
	hubtest.Send(t, th, "records", Record{ID: "r1"})
	th.Settle(t)
	r := runHubctl(t, map[string]string{"HUBCTL_BROKER": "memory://elsewhere", "HUBCTL_IDLE": "100ms"}, "", "dlq", "list", "records", "--broker", env["HUBCTL_BROKER"])
	require.Equal(t, 0, r.code, r.stderr)
	require.Len(t, rows(r.stdout), 1)
	require.True(t, strings.HasSuffix(strings.TrimSpace(r.stderr), "1 letter in records.dlq"))

	r = runHubctl(t, env, "", "dlq", "list", "records", "--dlq-suffix", ".dead")
	require.Equal(t, exitNotFound, r.code)
	require.Contains(t, r.stderr, "hubctl: records has no dead-letter queue records.dead: broker: unknown topic\n")
}
