package platform

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serve runs a runtime with cfg adjusted by adjust, with extra routes, and
// returns its address; it stops at the end of the test.
func serve(t *testing.T, adjust func(*Config), routes func(*http.ServeMux)) string {
	t.Helper()
	cfg := testConfig()
	adjust(&cfg)
	rt, err := New(context.Background(), cfg, io.Discard)
	require.NoError(t, err)
	routes(rt.Mux)
	addr, err := rt.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	<-rt.Hub.Running()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return addr.String()
}

// A client that sends its body slowly loses the connection after
// ReadTimeout instead of holding it for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	readErr := make(chan error, 1)
	addr := serve(t, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond }, func(m *http.ServeMux) {
		m.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			readErr <- err
		})
	})
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
	require.NoError(t, err)
	// ... and nothing more.
	select {
	case err := <-readErr:
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "the body read times out: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still reading a stalled body")
	}
}

// An idle keep-alive connection is closed after IdleTimeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	addr := serve(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond }, func(*http.ServeMux) {})
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	br := bufio.NewReader(conn)
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the server closed the idle connection (not the 10s test bound)")
}

// Beyond MaxConns, a connection is not served until another closes.
func TestConnectionLimit(t *testing.T) {
	addr := serve(t, func(c *Config) { c.MaxConns = 2 }, func(*http.ServeMux) {})
	get := func(conn net.Conn, br *bufio.Reader) error {
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		return res.Body.Close()
	}
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 3 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		conns, readers = append(conns, conn), append(readers, bufio.NewReader(conn))
	}
	require.NoError(t, get(conns[0], readers[0]))
	require.NoError(t, get(conns[1], readers[1]))

	// The third waits in the backlog: no answer within a generous bound.
	require.NoError(t, conns[2].SetReadDeadline(time.Now().Add(500*time.Millisecond)))
	err := get(conns[2], readers[2])
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "the third connection is not served yet: %v", err)

	// One closes: the third is served.
	require.NoError(t, conns[0].Close())
	require.NoError(t, conns[2].SetReadDeadline(time.Now().Add(10*time.Second)))
	res, err := http.ReadResponse(readers[2], nil)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

func TestServerLimitFlags(t *testing.T) {
	c := Defaults("svc")
	require.Equal(t, "127.0.0.1:8080", c.Listen, "loopback unless configured")
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-read-timeout", "5s", "-write-timeout", "6s", "-idle-timeout", "7s", "-max-header-bytes", "4096", "-max-conns", "9"}))
	require.Equal(t, []any{5 * time.Second, 6 * time.Second, 7 * time.Second, 4096, 9}, []any{c.ReadTimeout, c.WriteTimeout, c.IdleTimeout, c.MaxHeaderBytes, c.MaxConns})
	require.NoError(t, c.Validate())
	for _, bad := range []func(*Config){
		func(c *Config) { c.ReadTimeout = 0 },
		func(c *Config) { c.WriteTimeout = -1 },
		func(c *Config) { c.IdleTimeout = 0 },
		func(c *Config) { c.MaxConns = 0 },
		func(c *Config) { c.MaxHeaderBytes = -1 },
	} {
		c2 := c
		bad(&c2)
		err := c2.Validate()
		require.Error(t, err)
		require.True(t, strings.Contains(err.Error(), "must be positive"), err.Error())
	}
}

func TestAMQPURLErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{"amqp://guest:s3cr%et@127.0.0.1:5672/", "http://guest:s3cret@x/", "amqp://guest:s3 cret@x/"} {
		c := Defaults("svc")
		c.Broker, c.AMQPURL = BrokerAMQP, u
		err := c.Validate()
		require.ErrorContains(t, err, "-amqp-url")
		require.NotContains(t, err.Error(), "s3", u)
	}
}
