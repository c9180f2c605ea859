package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/memory"
	"github.com/harvesthub/hub/middleware"
)

// xss is attacker-controlled text a letter carries; the console must show
// it and never run it.
const xss = `<script>window.__xss=1</script><img src=x onerror="alert(1)">`

// consoleEnv is a console over a memory broker with real dead letters.
type consoleEnv struct {
	b     broker.Broker
	w     *worker
	topic string
	cons  *console
	srv   *httptest.Server
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb.String()
}

// newConsoleEnv makes four letters (p1, p2, p3 of normalise, a1 of audit)
// plus, with withXSS, a raw letter carrying xss in its payload and
// metadata, and serves a console over them.
func newConsoleEnv(t *testing.T, withXSS bool, edit func(*consoleConfig)) *consoleEnv {
	t.Helper()
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	topic := "records-" + randomHex()
	w := startWorker(t, b, topic)
	w.publish(t, Record{ID: "p1", Kind: "perm"}, Record{ID: "p2", Kind: "perm"}, Record{ID: "p3", Kind: "perm"},
		Record{ID: "a1", Kind: "audit", Title: "audited"})
	n := int64(4)
	if withXSS {
		raw := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"x1","kind":"perm","title":"</pre>`+strings.ReplaceAll(xss, `"`, `\"`)+`"}`))
		raw.Metadata.Set(hub.KeyKey, "key-x1")
		raw.Metadata.Set("note", xss)
		raw.Metadata.Set(xss, "a key too")
		require.NoError(t, b.Publish(topic, raw))
		n++
	}
	waitDepth(t, b, topic+".dlq", n)
	logs := &syncBuffer{}
	cfg := consoleConfig{
		broker: b, logger: slog.New(slog.NewJSONHandler(logs, nil)), dlqSuffix: ".dlq",
		idle: 200 * time.Millisecond, maxScan: 1000, sample: time.Hour, history: 10, loopback: true,
	}
	if edit != nil {
		edit(&cfg)
	}
	cons, err := newConsole(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(cons)
	t.Cleanup(func() { srv.Close(); cons.close() })
	return &consoleEnv{b: b, w: w, topic: topic, cons: cons, srv: srv, logs: logs}
}

// browser is a client with a cookie jar that sends what a browser sends
// on a same-origin form post.
type browser struct {
	t    *testing.T
	c    *http.Client
	base string
}

func (e *consoleEnv) browser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: e.srv.URL, c: &http.Client{Jar: jar, Timeout: waitFor,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (br *browser) get(path string) (int, string) {
	br.t.Helper()
	resp, err := br.c.Get(br.base + path)
	require.NoError(br.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(br.t, err)
	return resp.StatusCode, string(body)
}

// post sends a form; headers default to a same-origin browser's.
func (br *browser) post(path string, form url.Values, headers map[string]string) (*http.Response, string) {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, br.base+path, strings.NewReader(form.Encode()))
	require.NoError(br.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", br.base)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := br.c.Do(req)
	require.NoError(br.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(br.t, err)
	return resp, string(body)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf loads path and returns the CSRF token of its forms.
func (br *browser) csrf(path string) string {
	br.t.Helper()
	code, body := br.get(path)
	require.Equal(br.t, http.StatusOK, code, body)
	m := csrfRe.FindStringSubmatch(body)
	require.NotNil(br.t, m, "no CSRF token in %s", path)
	return html.UnescapeString(m[1])
}

var letterLinkRe = regexp.MustCompile(`href="/dlq/[^/]+/letters/([^"]+)"`)

func letterIDs(body string) []string {
	var ids []string
	for _, m := range letterLinkRe.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestConsolePages(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	br := e.browser(t)

	code, body := br.get("/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "4 dead letters")
	require.Contains(t, body, `href="/dlq/`+e.topic+`"`)

	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 4},
		{"?handler=audit", 1},
		{"?handler=normalise", 3},
		{"?reason=" + hub.ReasonPermanent, 4},
		{"?error=" + url.QueryEscape("audit log"), 1},
		{"?since=1h", 4},
		{"?until=1h", 0},
		{"?handler=nobody", 0},
	} {
		code, body := br.get("/dlq/" + e.topic + tc.query)
		require.Equal(t, http.StatusOK, code, tc.query)
		require.Len(t, letterIDs(body), tc.want, tc.query)
		require.Contains(t, body, fmt.Sprintf("%d %s match", tc.want, plural(tc.want, "letter")), tc.query)
	}

	t.Run("bad filter", func(t *testing.T) {
		code, body := br.get("/dlq/" + e.topic + "?since=yesterday")
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, body, "--since")
		code, body = br.get("/dlq/" + e.topic + "?reason=bored")
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, body, "use one of")
	})
	t.Run("unknown topic is not created", func(t *testing.T) {
		code, _ := br.get("/dlq/nosuch-" + randomHex())
		require.Equal(t, http.StatusNotFound, code)
		_, err := e.b.(broker.Inspector).Queues(context.Background(), "nosuch.dlq")
		require.ErrorIs(t, err, broker.ErrUnknownTopic)
	})
	t.Run("letter", func(t *testing.T) {
		_, list := br.get("/dlq/" + e.topic + "?handler=audit")
		id := letterIDs(list)[0]
		code, body := br.get("/dlq/" + e.topic + "/letters/" + id)
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "audit log rejected the record")
		require.Contains(t, body, "&#34;title&#34;: &#34;audited&#34;", "pretty JSON")
		require.Contains(t, body, "key-a1")
		code, _ = br.get("/dlq/" + e.topic + "/letters/nosuch")
		require.Equal(t, http.StatusNotFound, code)
	})
	t.Run("headers", func(t *testing.T) {
		resp, err := br.c.Get(br.base + "/")
		require.NoError(t, err)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "frame-ancestors 'none'")
		require.Contains(t, csp, "script-src 'self'")
		require.NotContains(t, csp, "unsafe-inline")
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie {
				cookie = c
			}
		}
		if cookie == nil { // set on the first request only
			_, err := url.Parse(br.base)
			require.NoError(t, err)
			u, _ := url.Parse(br.base)
			for _, c := range br.c.Jar.Cookies(u) {
				if c.Name == sessionCookie {
					cookie = c
				}
			}
		}
		require.NotNil(t, cookie)
	})
	t.Run("static assets", func(t *testing.T) {
		for _, p := range []string{"/static/console.js", "/static/console.css"} {
			code, body := br.get(p)
			require.Equal(t, http.StatusOK, code, p)
			require.NotEmpty(t, body)
		}
	})
}

func TestConsoleEscapesLetters(t *testing.T) {
	e := newConsoleEnv(t, true, nil)
	br := e.browser(t)
	_, list := br.get("/dlq/" + e.topic)
	var xssID string
	for _, id := range letterIDs(list) {
		_, body := br.get("/dlq/" + e.topic + "/letters/" + id)
		if strings.Contains(body, "key-x1") {
			xssID = id
			require.NotContains(t, body, "<script>window.__xss")
			require.NotContains(t, body, `<img src=x`)
			require.NotContains(t, body, `</pre><script`)
			require.Contains(t, body, "&lt;script&gt;window.__xss=1&lt;/script&gt;", "metadata shown as text")
			require.Contains(t, body, "&lt;/pre&gt;&lt;script&gt;", "payload shown as text")
		}
	}
	require.NotEmpty(t, xssID, "the XSS letter")
	_, list = br.get("/dlq/" + e.topic + "?error=" + url.QueryEscape(xss))
	require.NotContains(t, list, "<script>window.__xss", "a filter value is escaped too")

	// A queue name is shown and linked escaped as well.
	evil := `t"><script>window.__xss=3</script>`
	require.NoError(t, e.b.Publish(evil+".dlq", message.NewMessage(watermill.NewUUID(), nil)))
	sctx, stop := context.WithCancel(context.Background())
	ch, err := e.b.SubscribeGroup(sctx, evil+".dlq", broker.Group{})
	require.NoError(t, err)
	stop()
	for range ch {
	}
	require.NoError(t, e.b.Publish(evil+".dlq", message.NewMessage(watermill.NewUUID(), nil)))
	code, page := br.get("/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, page, "&lt;script&gt;window.__xss=3")
	require.NotContains(t, page, "<script>window.__xss")
	require.Contains(t, page, `href="/dlq/t%22%3E%3Cscript%3Ewindow.__xss=3%3C%2Fscript%3E"`)
}

func TestConsoleCSRF(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	br := e.browser(t)
	token := br.csrf("/dlq/" + e.topic)
	purgeAll := func(tok string) url.Values {
		v := url.Values{"action": {"purge"}, "scope": {"filter"}}
		if tok != "" {
			v.Set("csrf", tok)
		}
		return v
	}
	for _, tc := range []struct {
		name    string
		form    url.Values
		headers map[string]string
		client  *browser
	}{
		{"no token", purgeAll(""), nil, br},
		{"wrong token", purgeAll("forged"), nil, br},
		{"token of another session", purgeAll(e.browser(t).csrf("/dlq/" + e.topic)), nil, br},
		{"cross-site fetch", purgeAll(token), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, br},
		{"cross-origin without fetch metadata", purgeAll(token), map[string]string{"Sec-Fetch-Site": "", "Origin": "http://evil.example"}, br},
		{"no session cookie", purgeAll(token), nil, e.browser(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/dlq/" + e.topic + "/confirm", "/dlq/" + e.topic + "/run", "/logout"} {
				resp, _ := tc.client.post(path, tc.form, tc.headers)
				require.Equal(t, http.StatusForbidden, resp.StatusCode, path)
			}
		})
	}
	waitDepth(t, e.b, e.topic+".dlq", 4)
	require.Contains(t, e.logs.String(), "state change refused")
	resp, body := br.post("/dlq/"+e.topic+"/confirm", purgeAll(token), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "4 letters")
}

// runJob confirms an action and runs it, returning the finished job.
func (br *browser) runJob(topic string, form url.Values, wantCount int) jobStatusJSON {
	br.t.Helper()
	return br.runJobWith(topic, form, wantCount, false)
}

// runJobForced is runJob with "force" ticked on the confirmation page.
func (br *browser) runJobForced(topic string, form url.Values, wantCount int) jobStatusJSON {
	br.t.Helper()
	return br.runJobWith(topic, form, wantCount, true)
}

func (br *browser) runJobWith(topic string, form url.Values, wantCount int, force bool) jobStatusJSON {
	br.t.Helper()
	form.Set("csrf", br.csrf("/dlq/"+topic))
	resp, body := br.post("/dlq/"+topic+"/confirm", form, nil)
	require.Equal(br.t, http.StatusOK, resp.StatusCode, body)
	require.Contains(br.t, body, fmt.Sprintf("%d %s", wantCount, plural(wantCount, "letter")))
	m := regexp.MustCompile(`name="confirm" value="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(br.t, m, body)
	run := url.Values{"csrf": {form.Get("csrf")}, "confirm": {html.UnescapeString(m[1])}}
	if force {
		require.Contains(br.t, body, `name="force"`)
		run.Set("force", "1")
	}
	resp, body = br.post("/dlq/"+topic+"/run", run, nil)
	require.Equal(br.t, http.StatusSeeOther, resp.StatusCode, body)
	loc := resp.Header.Get("Location")
	require.True(br.t, strings.HasPrefix(loc, "/jobs/"), loc)

	again, _ := br.post("/dlq/"+topic+"/run", run, nil)
	require.Equal(br.t, http.StatusConflict, again.StatusCode, "a confirmation runs once")

	deadline := time.Now().Add(waitFor)
	for {
		code, raw := br.get(loc + "/status")
		require.Equal(br.t, http.StatusOK, code)
		var st jobStatusJSON
		require.NoError(br.t, json.Unmarshal([]byte(raw), &st))
		if st.State != "running" {
			code, page := br.get(loc)
			require.Equal(br.t, http.StatusOK, code)
			require.Contains(br.t, page, "<progress")
			return st
		}
		require.True(br.t, time.Now().Before(deadline), "job never finished: %+v", st)
		time.Sleep(20 * time.Millisecond) // polling a status endpoint, as the page does
	}
}

func TestConsoleReplayAndPurge(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	br := e.browser(t)
	_, list := br.get("/dlq/" + e.topic + "?handler=normalise")
	ids := letterIDs(list)
	require.Len(t, ids, 3)
	e.w.setBroken(false)

	st := br.runJob(e.topic, url.Values{"action": {"replay"}, "scope": {"selected"}, "id": ids[:2]}, 2)
	require.Equal(t, "done", st.State, st.Error)
	require.EqualValues(t, 2, st.Done)
	e.w.waitHandled(t, func(m map[string]int) bool { return len(m) == 2 })
	require.Equal(t, 0, e.w.count("audit/key-p1"), "a replay reaches only the failed handler")
	waitDepth(t, e.b, e.topic+".dlq", 2)

	st = br.runJob(e.topic, url.Values{"action": {"purge"}, "scope": {"filter"}, "handler": {"audit"}}, 1)
	require.Equal(t, "done", st.State, st.Error)
	require.EqualValues(t, 1, st.Done)
	waitDepth(t, e.b, e.topic+".dlq", 1)

	logs := e.logs.String()
	require.Regexp(t, `"msg":"console: replay finished","who":"local operator from 127.0.0.1".*"asked":2,"done":2`, logs)
	require.Regexp(t, `"msg":"console: purge finished","who":"local operator from 127.0.0.1".*"asked":1,"done":1`, logs)

	t.Run("a confirmation belongs to its session", func(t *testing.T) {
		form := url.Values{"action": {"purge"}, "scope": {"filter"}, "csrf": {br.csrf("/dlq/" + e.topic)}}
		resp, body := br.post("/dlq/"+e.topic+"/confirm", form, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		confirm := html.UnescapeString(regexp.MustCompile(`name="confirm" value="([^"]+)"`).FindStringSubmatch(body)[1])
		other := e.browser(t)
		resp, _ = other.post("/dlq/"+e.topic+"/run", url.Values{"csrf": {other.csrf("/dlq/" + e.topic)}, "confirm": {confirm}}, nil)
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		waitDepth(t, e.b, e.topic+".dlq", 1)
	})
	t.Run("nothing selected", func(t *testing.T) {
		resp, _ := br.post("/dlq/"+e.topic+"/confirm", url.Values{"action": {"replay"}, "scope": {"selected"}, "csrf": {br.csrf("/dlq/" + e.topic)}}, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		resp, _ = br.post("/dlq/"+e.topic+"/confirm", url.Values{"action": {"delete"}, "csrf": {br.csrf("/dlq/" + e.topic)}}, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
}

func TestConsoleReadOnly(t *testing.T) {
	e := newConsoleEnv(t, false, func(c *consoleConfig) { c.readOnly = true })
	br := e.browser(t)
	code, body := br.get("/dlq/" + e.topic)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "read-only")
	require.NotContains(t, body, "Replay selected")
	require.NotContains(t, body, "Purge all")
	tok := br.csrf("/dlq/" + e.topic)
	for _, path := range []string{"/dlq/" + e.topic + "/confirm", "/dlq/" + e.topic + "/run"} {
		resp, _ := br.post(path, url.Values{"action": {"purge"}, "scope": {"filter"}, "csrf": {tok}}, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, path)
	}
	waitDepth(t, e.b, e.topic+".dlq", 4)
}

func TestConsoleToken(t *testing.T) {
	const token = "0123456789abcdef-operator"
	e := newConsoleEnv(t, false, func(c *consoleConfig) { c.token = token })
	br := e.browser(t)
	code, _ := br.get("/dlq/" + e.topic)
	require.Equal(t, http.StatusSeeOther, code, "to the login page")
	resp, _ := br.post("/dlq/"+e.topic+"/confirm", url.Values{"action": {"purge"}}, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "no session, no CSRF token")

	tok := br.csrf("/login")
	resp, body := br.post("/login", url.Values{"csrf": {tok}, "token": {"wrong-token-wrong-token"}}, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "not the operator token")
	resp, _ = br.post("/login", url.Values{"token": {token}}, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a login needs the CSRF token")

	resp, _ = br.post("/login", url.Values{"csrf": {tok}, "token": {token}, "name": {"ada"}, "next": {"//evil.example/"}}, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"), "no open redirect")
	code, body = br.get("/dlq/" + e.topic)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "operator ada (token) from 127.0.0.1")
	newTok := br.csrf("/dlq/" + e.topic)
	require.NotEqual(t, tok, newTok, "a login starts a new session")

	st := br.runJob(e.topic, url.Values{"action": {"purge"}, "scope": {"filter"}, "handler": {"audit"}}, 1)
	require.Equal(t, "done", st.State)
	require.Regexp(t, `"msg":"console: purge finished","who":"operator ada \(token\) from 127.0.0.1"`, e.logs.String())

	resp, _ = br.post("/logout", url.Values{"csrf": {br.csrf("/dlq/" + e.topic)}}, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	code, _ = br.get("/")
	require.Equal(t, http.StatusSeeOther, code, "logged out")
}

func TestConsoleHostCheck(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
	require.NoError(t, err)
	req.Host = "rebound.evil.example"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode)
}

func TestServeConfig(t *testing.T) {
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	name := "console-" + randomHex()
	t.Cleanup(registerMemory(name, b))
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"any address without a token", []string{"--listen", "0.0.0.0:0"}, nil, "refusing to serve without --token"},
		{"a LAN address without a token", []string{"--listen", "192.0.2.1:0"}, nil, "not a loopback address"},
		{"a short token", []string{"--listen", "0.0.0.0:0", "--token", "short"}, nil, "use 16 or more"},
		{"token and token file", []string{"--token", "0123456789abcdef", "--token-file", "x"}, nil, "not both"},
		{"bad listen", []string{"--listen", "8080"}, nil, "want host:port"},
		{"bad metrics URL", []string{"--metrics", "ftp://x"}, nil, "--metrics"},
		{"bad topic", []string{"--topic", ":g"}, nil, "name a topic"},
		{"bad sample", []string{"--sample", "1ms"}, nil, "--sample"},
		{"positional", []string{"records"}, nil, "unexpected argument"},
		{"bad env", nil, map[string]string{"HUBCTL_SAMPLE": "soon"}, "HUBCTL_SAMPLE"},
		{"half console TLS", []string{"--console-tls-cert", "c.pem"}, nil, "--console-tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HUBCTL_BROKER": "memory://" + name}
			for k, v := range tc.env {
				env[k] = v
			}
			r := runHubctl(t, env, "", append([]string{"serve"}, tc.args...)...)
			require.Equal(t, exitUsage, r.code)
			require.Contains(t, r.stderr, tc.want)
		})
	}
}

// lineWriter hands each line written to a channel.
type lineWriter struct{ lines chan string }

func (l lineWriter) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		select {
		case l.lines <- s:
		default:
		}
	}
	return len(p), nil
}

// TestServeRunsAndStops runs hubctl serve with a token on a non-loopback
// address, reaches it, and stops it with its context.
func TestServeRunsAndStops(t *testing.T) {
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	name := "console-" + randomHex()
	t.Cleanup(registerMemory(name, b))
	out := lineWriter{lines: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	env := map[string]string{"HUBCTL_BROKER": "memory://" + name, "HUBCTL_TOKEN": "0123456789abcdef0123"}
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "0.0.0.0:0", "--sample", "100ms"}, strings.NewReader(""), out, io.Discard, func(k string) string { return env[k] })
	}()
	var addr string
	select {
	case line := <-out.lines:
		m := regexp.MustCompile(`console on http://.*:(\d+)/`).FindStringSubmatch(line)
		require.NotNil(t, m, line)
		addr = "http://127.0.0.1:" + m[1]
	case code := <-done:
		t.Fatalf("serve exited with %d", code)
	case <-time.After(waitFor):
		t.Fatal("serve never started")
	}
	client := &http.Client{Timeout: waitFor, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "a token is asked for")
	require.Equal(t, "/login?next=%2F", resp.Header.Get("Location"))
	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code)
	case <-time.After(waitFor):
		t.Fatal("serve did not stop")
	}
}

func TestSampler(t *testing.T) {
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	topic := "records-" + randomHex()
	// A group whose consumer went away: the messages wait for nobody.
	sctx, stop := context.WithCancel(context.Background())
	ch, err := b.SubscribeGroup(sctx, topic, broker.Group{Name: "idle"})
	require.NoError(t, err)
	stop()
	for range ch {
	}
	now := time.Unix(1_800_000_000, 0)
	cons, err := newConsole(consoleConfig{broker: b, dlqSuffix: ".dlq", idle: time.Second, maxScan: 10, sample: time.Hour, history: 3,
		now: func() time.Time { return now }})
	require.NoError(t, err)
	t.Cleanup(cons.close)
	for i := range 5 {
		for range i {
			require.NoError(t, b.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("{}"))))
		}
		cons.samp.sampleOnce(context.Background())
		now = now.Add(time.Minute)
	}
	d := cons.samp.rows()
	require.Empty(t, d.Error)
	var row *queueRow
	for i := range d.Rows {
		if d.Rows[i].Topic == topic {
			row = &d.Rows[i]
		}
	}
	require.NotNil(t, row, "%+v", d.Rows)
	require.Equal(t, 3, row.Points, "history is bounded")
	require.EqualValues(t, 10, row.Depth)
	require.Equal(t, "+3.5/min", row.Rate, "3 then 6 then 10 over two minutes") // (10-3)/2
	require.Len(t, strings.Fields(row.Spark), 3)
	require.Contains(t, row.Warning, "no consumer")
}

func TestSessions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ss := newSessions(func() time.Time { return now })
	first := ss.create()
	for range maxSessions + 10 {
		ss.create()
	}
	require.Equal(t, maxSessions, ss.len(), "bounded")
	require.Nil(t, ss.get(first.id), "the least recently used went first")

	s := ss.create()
	require.Same(t, s, ss.get(s.id))
	authed := ss.authenticate(s, "ada")
	require.Nil(t, ss.get(s.id), "login replaces the session")
	require.NotEqual(t, s.csrf, authed.csrf)
	require.True(t, ss.get(authed.id).authed)
	now = now.Add(sessionTTL + time.Second)
	require.Nil(t, ss.get(authed.id), "expired")
}

// TestConsoleReplayNoConsumer: a replay to a handler that has no consumer
// fails (the letter stays) unless the operator ticks "force".
func TestConsoleReplayNoConsumer(t *testing.T) {
	e := newConsoleEnv(t, false, nil)
	ghost := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"g1"}`))
	ghost.Metadata.Set(hub.KeyOriginalTopic, e.topic)
	ghost.Metadata.Set(hub.KeyHandler, "ghost")
	ghost.Metadata.Set(hub.KeyDLQReason, hub.ReasonPermanent)
	ghost.Metadata.Set(hub.KeyDLQError, "handler renamed")
	require.NoError(t, e.b.Publish(e.topic+".dlq", ghost))
	waitDepth(t, e.b, e.topic+".dlq", 5)
	br := e.browser(t)

	st := br.runJob(e.topic, url.Values{"action": {"replay"}, "scope": {"filter"}, "handler": {"ghost"}}, 1)
	require.Equal(t, "failed", st.State)
	require.Contains(t, st.Error, "no consumer")
	require.EqualValues(t, 0, st.Done)
	waitDepth(t, e.b, e.topic+".dlq", 5)
	require.Contains(t, e.logs.String(), `"msg":"console: replay failed"`)

	st = br.runJobForced(e.topic, url.Values{"action": {"replay"}, "scope": {"filter"}, "handler": {"ghost"}}, 1)
	require.Equal(t, "done", st.State, st.Error)
	require.EqualValues(t, 1, st.Done)
	waitDepth(t, e.b, e.topic+".dlq", 4)
}

// TestConsoleDecrypt: an encrypted payload stays ciphertext until the
// operator asks (a CSRF-checked POST, logged), and only with a keyring.
func TestConsoleDecrypt(t *testing.T) {
	key := make([]byte, middleware.KeySize)
	ring, err := middleware.NewKeyring("k1", map[string][]byte{"k1": key})
	require.NoError(t, err)
	for _, withRing := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyring=%v", withRing), func(t *testing.T) {
			e := newConsoleEnv(t, false, func(c *consoleConfig) {
				if withRing {
					c.keyring = ring
				}
			})
			keyID, ct, err := ring.Encrypt([]byte(`{"secret":"s3cr3t-value"}`))
			require.NoError(t, err)
			m := message.NewMessage(watermill.NewUUID(), ct)
			m.Metadata.Set(hub.KeyOriginalTopic, e.topic)
			m.Metadata.Set(hub.KeyHandler, "normalise")
			m.Metadata.Set(hub.KeyEncKeyID, keyID)
			require.NoError(t, e.b.Publish(e.topic+".dlq", m))
			waitDepth(t, e.b, e.topic+".dlq", 5)
			br := e.browser(t)
			path := "/dlq/" + e.topic + "/letters/" + m.UUID
			code, body := br.get(path)
			require.Equal(t, http.StatusOK, code)
			require.NotContains(t, body, "s3cr3t-value")
			require.Contains(t, body, `Encrypted with key &#34;k1&#34;`)
			tok := br.csrf(path)
			resp, _ := br.post(path, url.Values{"decrypt": {"1"}}, nil)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "decrypting needs the CSRF token")
			resp, body = br.post(path, url.Values{"decrypt": {"1"}, "csrf": {tok}}, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			if !withRing {
				require.NotContains(t, body, "s3cr3t-value")
				require.NotContains(t, body, "Decrypt the payload")
				require.Contains(t, body, "--key-dir")
				return
			}
			require.Contains(t, body, "s3cr3t-value")
			require.Contains(t, e.logs.String(), `"msg":"console: payload decrypted","who":"local operator from 127.0.0.1"`)
		})
	}
}
