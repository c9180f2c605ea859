package faultnet_test

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/internal/faultnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo serves a line echo on a loopback port until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, s string, wait time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(s + "\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxy(t *testing.T) {
	p, err := faultnet.New(echo(t))
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()); require.NoError(t, p.Close()) }()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	got, err := roundTrip(c, r, "a", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "a\n", got)

	p.Freeze()
	_, err = roundTrip(c, r, "b", 100*time.Millisecond)
	require.True(t, isTimeout(err), "frozen: no answer: %v", err)

	p.Resume()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "b\n", got, "held bytes forwarded on resume")

	p.Cut()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = r.ReadString('\n')
	require.Error(t, err, "cut: connection closed")
}

func TestStalledListener(t *testing.T) {
	p, err := faultnet.New("")
	require.NoError(t, err)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err, "accepts")
	defer c.Close()
	_, err = roundTrip(c, bufio.NewReader(c), "x", 100*time.Millisecond)
	require.True(t, isTimeout(err), "never answers: %v", err)
	require.NoError(t, p.Close())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
