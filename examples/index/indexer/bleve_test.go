package indexer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
		{DocID: "cyber-advisories:ADV-1", Source: "cyber-advisories", Title: "Ransomware targeting email servers", Body: "Apply updates and keep offline backups", Tags: []string{"ransomware", "critical"}, URL: "https://advisories.example.org/1", Language: "en", IngestedAt: t0},
		{DocID: "gov-datasets:ds-1", Source: "gov-datasets", Title: "Flood risk areas in Wales", Body: "Flood zones for rivers and the sea", Tags: []string{"environment", "flooding"}, IngestedAt: t0},
		{DocID: "careers:job-1", Source: "careers", Title: "Software Engineer, Platform Engineering – Cheltenham", Body: "Join the platform team", Tags: []string{"engineering", "go"}, IngestedAt: t0},
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
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			res, err := b.Search(context.Background(), Query{Text: tt.q})
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

	res, err := b.Search(context.Background(), Query{Text: "ransomware"})
	require.NoError(t, err)
	require.Equal(t, Hit{DocID: "cyber-advisories:ADV-1", Title: "Ransomware targeting email servers", Score: res.Hits[0].Score, Source: "cyber-advisories", URL: "https://advisories.example.org/1", Tags: []string{"ransomware", "critical"}}, res.Hits[0])

	all, err := b.Search(context.Background(), Query{Size: 2})
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
	res, err := b.Search(context.Background(), Query{Text: "flood"})
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
	_, err := b.Search(context.Background(), Query{Text: "title:/[/"})
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
				_, err := b.Search(context.Background(), Query{Text: "document"})
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
