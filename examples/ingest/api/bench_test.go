package api_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/records"
)

// BenchmarkPost measures a POST through real HTTP (loopback) to a hub on
// the memory broker, for one record and for NDJSON batches.
func BenchmarkPost(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run("records="+strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b, func(c *api.Config) { c.RateLimit = rate.Inf })
			// A consumer drains the topic: the memory broker's bounded
			// queue would block publishes otherwise.
			require.NoError(b, hub.Handle(e.th.Hub, records.TopicIngested, func(context.Context, hub.Message[records.RecordIngested]) error { return nil }))
			e.th.Start()
			ct := ctJSON
			body := validRecord
			if n > 1 {
				ct = ctNDJSON
				var sb strings.Builder
				for i := range n {
					sb.WriteString(`{"id":"r` + strconv.Itoa(i) + `","source":"web","title":"A title","body":"` + strings.Repeat("text ", 40) + `","tags":["a","b"]}` + "\n")
				}
				body = sb.String()
			}
			client := e.srv.Client()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/records", strings.NewReader(body))
				req.Header.Set("Content-Type", ct)
				req.Header.Set("X-API-Key", e.devKey)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatal(resp.Status)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
			require.NotZero(b, b.N)
		})
	}
}
