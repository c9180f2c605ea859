package api_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/hubtest"
)

// Post one record with an API key; the server publishes it to
// records.TopicIngested.
func Example() {
	t := hubtest.NewStandalone() // in a test, use the test's *testing.T
	defer t.Close()
	th := hubtest.New(t)

	keys := api.NewKeyStore()
	key, _ := keys.Generate("dev", []string{api.ScopeWrite}, 0, "acme")
	srv, err := api.New(api.Config{
		Hub:  th.Hub,
		Keys: keys,
		Now:  func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/records",
		strings.NewReader(`{"id":"r1","source":"web","title":"Annual report","url":"https://example.org/r1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "ApiKey "+key)
	req.Header.Set("Idempotency-Key", "upload-0001")
	resp, err := ts.Client().Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	fmt.Println(resp.Status, strings.TrimSpace(string(body)))

	for _, r := range hubtest.Published[records.RecordIngested](t, th, records.TopicIngested) {
		fmt.Printf("%s/%s %q %s tenant=%s at %s\n", r.Source, r.ID, r.Title, r.URL, r.Tenant, r.IngestedAt.Format(time.RFC3339))
	}
	fmt.Println("hub key:", th.Messages(records.TopicIngested)[0].Metadata.Get("hub-key"))
	// Output:
	// 202 Accepted {"accepted":1,"ids":["r1"]}
	// web/r1 "Annual report" https://example.org/r1 tenant=acme at 2026-11-22T12:00:00Z
	// hub key: acme/upload-0001
}

// A validation error: the problem names the line and field, and nothing is
// published.
func Example_validation() {
	t := hubtest.NewStandalone()
	defer t.Close()
	th := hubtest.New(t)
	keys := api.NewKeyStore()
	key, _ := keys.Generate("dev", []string{api.ScopeWrite}, 0, "")
	srv, _ := api.New(api.Config{Hub: th.Hub, Keys: keys})
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	body := `{"id":"1","source":"web","title":"ok"}
{"id":"2","source":"web","url":"not a url"}
`
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/records", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-API-Key", key)
	resp, err := ts.Client().Do(req)
	if err != nil {
		panic(err)
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	// The instance differs on every request: cut it out.
	s := string(out)
	i, j := strings.Index(s, `"instance"`), strings.Index(s, `,"errors"`)
	fmt.Println(s[:i] + s[j+1:])
	fmt.Println("published:", len(hubtest.Published[records.RecordIngested](t, th, records.TopicIngested)))
	// Output:
	// 422 Unprocessable Entity application/problem+json
	// {"type":"https://harvesthub.dev/problems/validation-failed","title":"Unprocessable Entity","status":422,"detail":"2 invalid fields; nothing was published: line 2 title is required, line 2 url must be an absolute http or https URL","errors":[{"line":2,"field":"title","detail":"is required"},{"line":2,"field":"url","detail":"must be an absolute http or https URL"}]}
	// published: 0
}
