package itest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRequireReachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	Require(t, "listener", "http://"+ln.Addr().String()+"/") // does not skip
}

func TestRequireSkipsUnreachable(t *testing.T) {
	if Required() {
		t.Skip("HUB_REQUIRE_INTEGRATION=1 turns the skip into a failure")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ok := t.Run("inner", func(t *testing.T) {
		Require(t, "nothing", addr)
		t.Error("Require did not skip")
	})
	require.True(t, ok)
}
