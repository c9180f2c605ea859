package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/internal/itest"
)

// TestJobStatusFromEveryReplica runs two dispatch replicas with
// -jobs-store postgres (job status in PostgreSQL, IndexJobs through the
// outbox, the dispatch transaction completing its idempotency key) between
// ingest and index on RabbitMQ, and reads each job's status from both
// replicas: they answer the same, whichever replica dispatched it.
func TestJobStatusFromEveryReplica(t *testing.T) {
	itest.Require(t, "RabbitMQ", itest.AMQPURL())
	itest.Require(t, "PostgreSQL", itest.PostgresDSN())
	ctx := context.Background()
	prefix := "e2e-" + randomHex(t, 4) + "-"
	t.Cleanup(func() { deleteTopology(t, prefix) })
	pool, err := pgxpool.New(ctx, itest.PostgresDSN())
	require.NoError(t, err)
	t.Cleanup(pool.Close) // after the cleanups below
	run := randomHex(t, 4)
	schema := "e2e_jobs_" + run
	_, err = pool.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		require.NoError(t, err)
		// The services share pgstore's default idempotency table in the
		// test database: remove this run's keys (its record IDs are unique).
		_, err = pool.Exec(context.Background(), "DELETE FROM hub_idempotency WHERE position($1::bytea IN key) > 0", []byte(run+"-adv-"))
		require.NoError(t, err)
	})

	bins := buildServices(t)
	dir := t.TempDir()
	keysPath, key := writeKeys(t, dir)
	env := []string{
		"HUB_LISTEN=127.0.0.1:0", "HUB_LOG_LEVEL=info", "HUB_SHUTDOWN_TIMEOUT=20s",
		"HUB_BROKER=amqp", "HUB_AMQP_URL=" + itest.AMQPURL(), "HUB_TOPIC_PREFIX=" + prefix,
		"HUB_STORE=postgres", "HUB_POSTGRES_DSN=" + itest.PostgresDSN(),
	}
	dispatchEnv := append(env[:len(env):len(env)], "HUB_JOBS_STORE=postgres",
		"HUB_JOBS_TABLE="+schema+".jobs", "HUB_OUTBOX_TABLE="+schema+".outbox")
	bin := func(name string) string { return filepath.Join(bins, name) }
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := client{t: t, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}

	replicas := []*proc{start(t, "dispatch-1", bin("dispatch"), dispatchEnv, "-keys", keysPath), start(t, "dispatch-2", bin("dispatch"), dispatchEnv, "-keys", keysPath)}
	index := start(t, "index", bin("index"), env, "-data", filepath.Join(dir, "index-data"))
	ingest := start(t, "ingest", bin("ingest"), env, "-keys", keysPath)
	for _, p := range append(replicas, index, ingest) {
		eventually(t, 20*time.Second, p.name+" ready", func() bool {
			status, _ := c.do("GET", p.addr+"/readyz", "", "", "")
			return status == http.StatusOK
		})
	}

	// Record IDs unique to this run: the idempotency table outlives it.
	records := strings.ReplaceAll(ndjson(0, 20), `"id":"adv-`, `"id":"`+run+`-adv-`)
	status, body := c.do("POST", ingest.addr+"/v1/records", "application/x-ndjson", key, records)
	require.Equal(t, http.StatusAccepted, status, body)

	type job struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		History []struct {
			State string `json:"state"`
		} `json:"history"`
	}
	for _, n := range []string{"000", "007", "019"} {
		id := "cyber-advisories:" + run + "-adv-" + n
		var bodies []string
		for _, r := range replicas {
			eventually(t, 60*time.Second, r.name+" reports "+id+" indexed", func() bool {
				status, body := c.do("GET", r.addr+"/v1/jobs/"+id, "", key, "")
				var j job
				return status == http.StatusOK && json.Unmarshal([]byte(body), &j) == nil && j.State == "indexed"
			})
			_, body := c.do("GET", r.addr+"/v1/jobs/"+id, "", key, "")
			bodies = append(bodies, body)
		}
		require.Equal(t, bodies[0], bodies[1], "both replicas answer the same for %s", id)
		var j job
		require.NoError(t, json.Unmarshal([]byte(bodies[0]), &j))
		var states []string
		for _, ev := range j.History {
			states = append(states, ev.State)
		}
		require.Equal(t, []string{"ingested", "dispatched", "indexed"}, states, "%s: dispatched exactly once", id)
	}
	var pending int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".outbox WHERE sent_at IS NULL").Scan(&pending))
	require.Zero(t, pending, "every staged IndexJob was relayed")

	for _, p := range append(replicas, ingest, index) {
		require.NoError(t, p.stop(t, syscall.SIGTERM), "%s exit status\n%s", p.name, p.Logs())
	}
}
