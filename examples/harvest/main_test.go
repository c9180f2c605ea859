package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/ingest/api"
	"go.uber.org/goleak"
)

// Bleve's package-level analysis workers start in its init and never stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker"))
}

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, run(ctx, []string{"-demo", "-data", t.TempDir()}, &out))
	s := out.String()
	t.Log(s)
	require.Contains(t, s, "Ingested 310 records through POST /v1/records (202 Accepted)")
	require.Contains(t, s, "All 310 records are searchable")
	require.Regexp(t, `GET /v1/search\?q=ransomware  -> \d+ hits\n\s+\d+\.\d+\s+cyber-advisories:ADV-`, s)
	require.Regexp(t, `GET /v1/search\?q=flood\+risk  -> \d+ hits\n\s+\d+\.\d+\s+gov-datasets:ds-\d+\s+Flood risk areas`, s)
	require.Regexp(t, `GET /v1/jobs/careers:job-\d+\n  \{"doc_id":"careers:job-\d+","status":"indexed"`, s)
	require.Regexp(t, `API key  hh_demo_\S{8}…   \(demo key, valid while the demo runs\)`, s, "the demo's key is shown cut short")
	require.NotContains(t, s, "24h", "no 24h key unless asked for")
}

// Without -dev-key, harvest mints no key and prints none.
func TestNoDevKeyUnlessAsked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-listen", "127.0.0.1:0", "-data", t.TempDir()}, pw)
		_ = pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var banner []string
	for sc.Scan() {
		banner = append(banner, sc.Text())
		if strings.HasPrefix(sc.Text(), "Health and metrics") {
			break
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	require.NoError(t, <-done)
	text := strings.Join(banner, "\n")
	require.Contains(t, text, "API key  none: pass -dev-key")
	require.NotContains(t, text, "hh_")
	require.Contains(t, text, "listen   http://127.0.0.1:")
}

func TestSampleIsValid(t *testing.T) {
	ids := map[string]bool{}
	sources := map[string]int{}
	for i, l := range sampleLines() {
		var r struct {
			ID, Source, Title, Body, URL string
			Tags                         []string
		}
		require.NoError(t, json.Unmarshal(l, &r), "line %d", i+1)
		require.NotEmpty(t, r.ID)
		require.NotEmpty(t, r.Title)
		require.NotEmpty(t, r.Body)
		require.True(t, strings.HasPrefix(r.URL, "https://"), r.URL)
		key := r.Source + ":" + r.ID
		require.False(t, ids[key], "duplicate %s", key)
		ids[key] = true
		sources[r.Source]++
	}
	require.Len(t, ids, 310)
	require.Equal(t, map[string]int{"gov-datasets": 110, "cyber-advisories": 110, "careers": 90}, sources)
}

// harvest is a running harvest process in this test process.
type harvest struct {
	base, key string
	client    *http.Client
	stop      context.CancelFunc
	done      chan error
}

func startHarvest(t *testing.T, args ...string) *harvest {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	h := &harvest{stop: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, append([]string{"-listen", "127.0.0.1:0", "-data", t.TempDir(), "-dev-key"}, args...), pw)
		_ = pw.Close()
		h.done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() && (h.base == "" || h.key == "") {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "listen":
			h.base = f[1]
		case len(f) >= 3 && f[0] == "API" && f[1] == "key":
			h.key = f[2]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	require.NotEmpty(t, h.base, "harvest printed no listen address")
	require.NotEmpty(t, h.key, "harvest printed no API key")
	tr := &http.Transport{}
	h.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		h.stop()
		<-h.done
	})
	return h
}

func (h *harvest) do(t *testing.T, method, path, ctype, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	res, err := h.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// eventually polls cond every 20ms until it holds or d passes: the pipeline
// is asynchronous, and a client can only observe it by asking.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

// TestEndToEndInProcess drives HTTP ingest -> dispatch -> index -> search
// through the real services in one process on the memory broker.
func TestEndToEndInProcess(t *testing.T) {
	h := startHarvest(t)

	status, body := h.do(t, "GET", "/readyz", "", "", "")
	require.Equal(t, http.StatusOK, status, body)

	status, body = h.do(t, "POST", "/v1/records", "application/json", "hh_nobody_"+strings.Repeat("x", 43), `{"id":"1","source":"s","title":"t"}`)
	require.Equal(t, http.StatusUnauthorized, status, body)

	records := []string{
		`{"id":"ADV-9001","source":"cyber-advisories","title":"Zero-day   exploitation of  file transfer software","body":"Patch now and hunt for web shells","tags":["Exploitation","exploitation","Critical"],"url":"https://advisories.example.org/9001"}`,
		`{"id":"job-77","source":"careers","title":"Quantum Cryptographer – Cheltenham","body":"Design post-quantum schemes","tags":["cryptography"]}`,
	}
	status, body = h.do(t, "POST", "/v1/records", "application/x-ndjson", h.key, strings.Join(records, "\n"))
	require.Equal(t, http.StatusAccepted, status, body)

	var res struct {
		Total uint64 `json:"total"`
		Hits  []struct {
			DocID string  `json:"doc_id"`
			Title string  `json:"title"`
			Score float64 `json:"score"`
		} `json:"hits"`
	}
	search := func(q string) bool {
		status, body := h.do(t, "GET", "/v1/search?q="+url.QueryEscape(q), "", h.key, "")
		require.Equal(t, http.StatusOK, status, body)
		require.NoError(t, json.Unmarshal([]byte(body), &res))
		return res.Total > 0
	}
	eventually(t, 10*time.Second, "the advisory searchable", func() bool { return search("web shells") })
	require.Equal(t, "cyber-advisories:ADV-9001", res.Hits[0].DocID)
	require.Equal(t, "Zero-day exploitation of file transfer software", res.Hits[0].Title, "normalised by dispatch")
	require.Positive(t, res.Hits[0].Score)
	eventually(t, 10*time.Second, "the job searchable", func() bool { return search("tags:cryptography") })
	require.Equal(t, "careers:job-77", res.Hits[0].DocID)

	var job struct {
		Status string `json:"status"`
		Index  string `json:"index"`
	}
	eventually(t, 10*time.Second, "the job reported indexed", func() bool {
		status, body := h.do(t, "GET", "/v1/jobs/cyber-advisories:ADV-9001", "", h.key, "")
		require.Equal(t, http.StatusOK, status, body)
		require.NoError(t, json.Unmarshal([]byte(body), &job))
		return job.Status == "indexed"
	})
	require.Equal(t, "bleve", job.Index)

	status, body = h.do(t, "GET", "/metrics", "", "", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "messaging_process_duration")
	require.Contains(t, body, "go_goroutines")

	h.stop()
	select {
	case err := <-h.done:
		h.done <- err
		require.NoError(t, err, "a clean shutdown")
	case <-time.After(30 * time.Second):
		t.Fatal("harvest did not stop")
	}
}

func TestRejectsBadFlags(t *testing.T) {
	err := run(context.Background(), []string{"-broker", "carrier-pigeon"}, io.Discard)
	require.ErrorContains(t, err, "-broker")
	err = run(context.Background(), []string{"-no-such-flag"}, io.Discard)
	require.Error(t, err)
}

// writeKeys writes a keys file with one key per tenant (records:write and
// records:read) and returns the keys, by tenant.
func writeKeys(t *testing.T, tenants ...string) (path string, keys map[string]string) {
	t.Helper()
	keys = map[string]string{}
	var entries []api.KeyEntry
	for i, tn := range tenants {
		id := fmt.Sprintf("k%d", i)
		key := api.FormatKey(id, strings.Repeat(string(rune('a'+i)), 43))
		keys[tn] = key
		entries = append(entries, api.KeyEntry{ID: id, Hash: api.HashKey(key), Scopes: []string{api.ScopeWrite, api.ScopeRead}, Tenant: tn})
	}
	b, err := json.Marshal(entries)
	require.NoError(t, err)
	path = filepath.Join(t.TempDir(), "keys.json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path, keys
}

// Two tenants post the same source and id: neither overwrites, reads or
// finds the other's document or job, through the real HTTP API.
func TestTenantsAreIsolated(t *testing.T) {
	path, keys := writeKeys(t, "acme", "initech")
	h := startHarvest(t, "-keys", path)
	a, b := keys["acme"], keys["initech"]

	post := func(key, title string) {
		status, body := h.do(t, "POST", "/v1/records", "application/json", key, `{"id":"r1","source":"web","title":"`+title+`"}`)
		require.Equal(t, http.StatusAccepted, status, body)
	}
	type hit struct {
		DocID string `json:"doc_id"`
		Title string `json:"title"`
	}
	search := func(key, q string) (int, []hit) {
		status, body := h.do(t, "GET", "/v1/search?q="+url.QueryEscape(q), "", key, "")
		var res struct{ Hits []hit }
		if status == http.StatusOK {
			require.NoError(t, json.Unmarshal([]byte(body), &res))
		}
		return status, res.Hits
	}
	post(a, "acme original")
	eventually(t, 10*time.Second, "acme's document searchable", func() bool { _, hits := search(a, "original"); return len(hits) == 1 })

	// initech posts the same source and id: a document of its own.
	post(b, "initech intruder")
	eventually(t, 10*time.Second, "initech's document searchable", func() bool { _, hits := search(b, "intruder"); return len(hits) == 1 })
	_, hits := search(a, "")
	require.Equal(t, []hit{{DocID: "web:r1", Title: "acme original"}}, hits, "acme's document is untouched")
	_, hits = search(a, "intruder")
	require.Empty(t, hits, "acme does not see initech's")
	_, hits = search(b, "original")
	require.Empty(t, hits, "initech does not see acme's")

	// Jobs: each tenant reads its own.
	job := func(key string) (int, string) { return h.do(t, "GET", "/v1/jobs/web:r1", "", key, "") }
	eventually(t, 10*time.Second, "both jobs indexed", func() bool {
		sa, ba := job(a)
		sb, bb := job(b)
		return sa == 200 && sb == 200 && strings.Contains(ba, `"tenant":"acme"`) && strings.Contains(bb, `"tenant":"initech"`) &&
			strings.Contains(ba, `"status":"indexed"`) && strings.Contains(bb, `"status":"indexed"`)
	})

	// Without credentials, nothing is served.
	for _, path := range []string{"/v1/search?q=original", "/v1/jobs/web:r1", "/v1/stats"} {
		status, body := h.do(t, "GET", path, "", "", "")
		require.Equal(t, http.StatusUnauthorized, status, "%s: %s", path, body)
		require.NotContains(t, body, "original")
	}

	// A re-harvest with a changed title updates acme's document; an exact
	// repeat changes nothing.
	post(a, "acme corrected")
	eventually(t, 10*time.Second, "acme's update indexed", func() bool { _, hits := search(a, "corrected"); return len(hits) == 1 })
	_, hits = search(b, "")
	require.Equal(t, []hit{{DocID: "web:r1", Title: "initech intruder"}}, hits)
}

// The search language is the documented safe one, and paging is bounded:
// the requests that once pinned the CPU or panicked a handler are 400s.
func TestSearchAbuseIsRefused(t *testing.T) {
	h := startHarvest(t)
	for _, q := range []string{
		"q=" + url.QueryEscape(strings.Repeat("/.*/ ", 8)),
		"q=" + url.QueryEscape(strings.Repeat("a* ", 340)),
		"q=" + url.QueryEscape("*ware"),
		"q=" + url.QueryEscape("ransomware~2"),
		"q=x&from=9223372036854775802",
		"q=x&size=100000",
	} {
		status, body := h.do(t, "GET", "/v1/search?"+q, "", h.key, "")
		require.Equal(t, http.StatusBadRequest, status, "%.80s: %s", q, body)
		require.Contains(t, body, `"status":400`)
	}
	status, body := h.do(t, "GET", "/readyz", "", "", "")
	require.Equal(t, http.StatusOK, status, "still serving: %s", body)
}
