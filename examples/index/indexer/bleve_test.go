package indexer

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/retry"
)

var t0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

func openBleve(t *testing.T, dir string) *Bleve {
	t.Helper()
	b, err := OpenBleve(dir)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func sampleJobs() []records.IndexJob {
	return []records.IndexJob{
		{DocID: testTenant + "/cyber-advisories:ADV-1", Tenant: testTenant, Source: "cyber-advisories", Title: "Ransomware targeting email servers", Body: "Apply updates and keep offline backups", Tags: []string{"ransomware", "critical"}, URL: "https://advisories.example.org/1", Language: "en", IngestedAt: t0},
		{DocID: testTenant + "/gov-datasets:ds-1", Tenant: testTenant, Source: "gov-datasets", Title: "Flood risk areas in Wales", Body: "Flood zones for rivers and the sea", Tags: []string{"environment", "flooding"}, IngestedAt: t0},
		{DocID: testTenant + "/careers:job-1", Tenant: testTenant, Source: "careers", Title: "Software Engineer, Platform Engineering – Cheltenham", Body: "Join the platform team", Tags: []string{"engineering", "go"}, IngestedAt: t0},
	}
}

func indexAll(t *testing.T, idx Indexer, jobs []records.IndexJob) {
	t.Helper()
	for i, err := range idx.Index(context.Background(), jobs) {
		require.NoError(t, err, jobs[i].DocID)
	}
}

func TestBleveIndexAndSearch(t *testing.T) {
	b := openBleve(t, t.TempDir())
	indexAll(t, b, sampleJobs())
	n, err := b.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 3, n)

	tests := []struct {
		q    string
		want []string
	}{
		{"ransomware", []string{"cyber-advisories:ADV-1"}},
		{"flood", []string{"gov-datasets:ds-1"}},
		{"tags:flooding", []string{"gov-datasets:ds-1"}},
		{"source:careers", []string{"careers:job-1"}},
		{"+engineer +cheltenham", []string{"careers:job-1"}},
		{"kubernetes", nil},
		{`"flood risk"`, []string{"gov-datasets:ds-1"}},
		{`"risk flood"`, nil},
		{"ranso*", []string{"cyber-advisories:ADV-1"}},
		{"title:engin*", []string{"careers:job-1"}},
		{"flood -wales", nil},
		{"-ransomware", []string{"careers:job-1", "gov-datasets:ds-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			res, err := b.Search(context.Background(), Query{Tenant: testTenant, Text: tt.q})
			require.NoError(t, err)
			var ids []string
			for _, h := range res.Hits {
				ids = append(ids, h.DocID)
				require.Positive(t, h.Score)
				require.NotEmpty(t, h.Title)
			}
			require.Equal(t, tt.want, ids)
			require.EqualValues(t, len(tt.want), res.Total)
		})
	}

	res, err := b.Search(context.Background(), Query{Tenant: testTenant, Text: "ransomware"})
	require.NoError(t, err)
	require.Equal(t, Hit{DocID: "cyber-advisories:ADV-1", Title: "Ransomware targeting email servers", Score: res.Hits[0].Score, Source: "cyber-advisories", URL: "https://advisories.example.org/1", Tags: []string{"ransomware", "critical"}}, res.Hits[0])

	all, err := b.Search(context.Background(), Query{Tenant: testTenant, Size: 2})
	require.NoError(t, err)
	require.EqualValues(t, 3, all.Total, "empty query matches all")
	require.Len(t, all.Hits, 2, "size bounds the hits")
}

func TestBleveIsIdempotentByDocID(t *testing.T) {
	b := openBleve(t, t.TempDir())
	jobs := sampleJobs()
	indexAll(t, b, jobs)
	indexAll(t, b, jobs) // a redelivered batch
	changed := jobs[1]
	changed.Title = "Flood risk areas in Scotland"
	indexAll(t, b, []records.IndexJob{changed, changed})
	n, err := b.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	res, err := b.Search(context.Background(), Query{Tenant: testTenant, Text: "flood"})
	require.NoError(t, err)
	require.Len(t, res.Hits, 1)
	require.Equal(t, "Flood risk areas in Scotland", res.Hits[0].Title, "the last version wins")
}

func TestBleveSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBleve(dir)
	require.NoError(t, err)
	indexAll(t, b, sampleJobs())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close twice")
	_, err = b.Count(context.Background())
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, b.Index(context.Background(), sampleJobs())[0], ErrClosed)

	b2 := openBleve(t, dir)
	n, err := b2.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	require.NoError(t, b2.Ping(context.Background()))
}

func TestBleveRejectsJobWithoutDocID(t *testing.T) {
	b := openBleve(t, t.TempDir())
	errs := b.Index(context.Background(), []records.IndexJob{{Title: "no id"}, sampleJobs()[0]})
	require.True(t, retry.IsPermanent(errs[0]), "%v", errs[0])
	require.NoError(t, errs[1])
}

func TestBleveBadQuery(t *testing.T) {
	b := openBleve(t, t.TempDir())
	_, err := b.Search(context.Background(), Query{Tenant: testTenant, Text: "title:/[/"})
	require.ErrorIs(t, err, ErrBadQuery)
}

func TestBleveConcurrentIndexAndSearch(t *testing.T) {
	b := openBleve(t, t.TempDir())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				job := records.IndexJob{DocID: fmt.Sprintf("s:%d-%d", w, i), Source: "s", Title: fmt.Sprintf("document %d", i)}
				require.NoError(t, b.Index(context.Background(), []records.IndexJob{job})[0])
				_, err := b.Search(context.Background(), Query{Tenant: testTenant, Text: "document"})
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	n, err := b.Count(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 100, n)
}

func TestOpenBleveEmptyDir(t *testing.T) {
	_, err := OpenBleve("")
	require.ErrorContains(t, err, "-data")
}

func TestBleveSearchIsTenantScoped(t *testing.T) {
	b := openBleve(t, t.TempDir())
	indexAll(t, b, sampleJobs())
	other := sampleJobs()[0]
	other.DocID, other.Tenant, other.Title = "t2/cyber-advisories:ADV-1", "t2", "Ransomware in another tenant"
	indexAll(t, b, []records.IndexJob{other})

	res, err := b.Search(context.Background(), Query{Tenant: testTenant, Text: "ransomware"})
	require.NoError(t, err)
	require.Len(t, res.Hits, 1)
	require.Equal(t, "Ransomware targeting email servers", res.Hits[0].Title, "t1's own document, untouched by t2's of the same source and id")
	res, err = b.Search(context.Background(), Query{Tenant: "t2"})
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Total)
	require.Equal(t, "cyber-advisories:ADV-1", res.Hits[0].DocID)
	res, err = b.Search(context.Background(), Query{Tenant: "t3"})
	require.NoError(t, err)
	require.Zero(t, res.Total)
	_, err = b.Search(context.Background(), Query{Text: "ransomware"})
	require.ErrorIs(t, err, ErrNoTenant)
}

func TestBleveSearchRefusesExpensiveQueries(t *testing.T) {
	b := openBleve(t, t.TempDir())
	indexAll(t, b, sampleJobs())
	tests := []struct {
		name string
		q    Query
	}{
		{"regexp", Query{Text: "/.*/"}},
		{"field regexp", Query{Text: "title:/.*/"}},
		{"leading wildcard", Query{Text: "*ware"}},
		{"inner wildcard", Query{Text: "ran*ware"}},
		{"single char wildcard", Query{Text: "ransomwar?"}},
		{"short prefix", Query{Text: "a*"}},
		{"many prefixes", Query{Text: "abc* abd* abe* abf* abg*"}},
		{"fuzzy", Query{Text: "ransomware~2"}},
		{"boost", Query{Text: "ransomware^10"}},
		{"range", Query{Text: "ingested_at:>2020"}},
		{"unknown field", Query{Text: "tenant:t2"}},
		{"too many clauses", Query{Text: strings.Repeat("flood ", MaxClauses+1)}},
		{"too long", Query{Text: strings.Repeat("a", MaxQueryBytes+1)}},
		{"open phrase", Query{Text: `"flood risk`}},
		{"size", Query{Size: MaxSize + 1}},
		{"from overflow", Query{From: math.MaxInt64 - 5}},
		{"window", Query{From: MaxResultWindow}},
		{"negative from", Query{From: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Tenant = testTenant
			_, err := b.Search(context.Background(), tt.q)
			require.ErrorIs(t, err, ErrBadQuery)
		})
	}
}

func TestBleveSearchHonoursContext(t *testing.T) {
	b := openBleve(t, t.TempDir())
	indexAll(t, b, sampleJobs())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.Search(ctx, Query{Tenant: testTenant, Text: "flood"})
	require.ErrorIs(t, err, context.Canceled)
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"flood", `"flood risk"`, "eng*", "+a -b", "tags:x", "/.*/", "a*", `title:"x y"`, "-", "+:", `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		clauses, err := ParseQuery(q)
		if err != nil {
			require.ErrorIs(t, err, ErrBadQuery)
			return
		}
		require.LessOrEqual(t, len(clauses), MaxClauses)
		for _, c := range clauses {
			require.NotEmpty(t, c.Text)
			if c.Kind == Prefix {
				require.GreaterOrEqual(t, utf8.RuneCountInString(c.Text), MinPrefix)
			}
			if c.Kind != Phrase {
				require.False(t, strings.ContainsAny(c.Text, forbidden), c.Text)
			}
		}
	})
}
