package indexer

import (
	"testing"

	"go.uber.org/goleak"
)

// bleveGoroutines are Bleve's package-level analysis workers, started by its
// init and never stopped: nothing a test can close.
var bleveGoroutines = goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, bleveGoroutines) }

// testTenant owns the sample documents.
const testTenant = "t1"
