package hubtest

import (
	"fmt"
	"sync"
	"testing"
)

// Standalone is a testing.TB for places without a *testing.T: Example
// functions, demos and programs. A failure panics with its message; Close
// runs the registered cleanups, last first. Logs are dropped.
type Standalone struct {
	testing.TB // nil: only the methods below may be called
	mu         sync.Mutex
	cleanups   []func()
}

// NewStandalone returns a Standalone. Call Close when done.
func NewStandalone() *Standalone { return &Standalone{} }

func (s *Standalone) Helper()                           {}
func (s *Standalone) Name() string                      { return "standalone" }
func (s *Standalone) Log(args ...any)                   {}
func (s *Standalone) Logf(format string, args ...any)   {}
func (s *Standalone) Error(args ...any)                 { panic(fmt.Sprint(args...)) }
func (s *Standalone) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (s *Standalone) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (s *Standalone) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (s *Standalone) FailNow()                          { panic("hubtest: FailNow") }
func (s *Standalone) Failed() bool                      { return false }

// Cleanup registers f to run at Close.
func (s *Standalone) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// Close runs the cleanups, last registered first.
func (s *Standalone) Close() {
	s.mu.Lock()
	cs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
