package indexer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/harvesthub/hub/examples/internal/records"
)

func benchJob(i int64) records.IndexJob {
	return records.IndexJob{
		DocID: fmt.Sprintf("bench:%d", i), Source: "bench",
		Title: fmt.Sprintf("Ransomware advisory %d for email servers", i),
		Body:  "Apply the vendor's security updates, enable multi-factor authentication and keep offline backups.",
		Tags:  []string{"ransomware", "patching"},
	}
}

// BenchmarkBleveOneByOne indexes one document per Bleve batch: what a
// handler calling Index directly would do. Each batch waits for Bleve to
// persist its segment.
func BenchmarkBleveOneByOne(b *testing.B) {
	idx, err := OpenBleve(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	b.ResetTimer()
	for i := range b.N {
		if err := idx.Index(context.Background(), []records.IndexJob{benchJob(int64(i))})[0]; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServiceGroupCommit indexes through the Service with 32
// concurrent handlers, as the index service runs: documents that arrive
// while a batch persists go in the next batch.
func BenchmarkServiceGroupCommit(b *testing.B) {
	idx, err := OpenBleve(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	s, err := NewService(idx, ServiceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := s.Index(context.Background(), benchJob(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
