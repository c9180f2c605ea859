package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	require.Contains(t, s, "curl -sS -X POST http://127.0.0.1:")
	require.Regexp(t, `GET /v1/jobs/careers:job-\d+\n  \{"doc_id":"careers:job-\d+","status":"indexed"`, s)
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
		err := run(ctx, append([]string{"-listen", "127.0.0.1:0", "-data", t.TempDir()}, args...), pw)
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
		status, body := h.do(t, "GET", "/v1/search?q="+url.QueryEscape(q), "", "", "")
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
		status, body := h.do(t, "GET", "/v1/jobs/cyber-advisories:ADV-9001", "", "", "")
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
