package jobs_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/harvesthub/hub/jobs"
	"github.com/harvesthub/hub/jobs/jobstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryConformance(t *testing.T) {
	jobstest.Run(t, func(t *testing.T) jobs.Store {
		s := jobs.NewMemoryStore()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
