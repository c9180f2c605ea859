package main

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Sessions: a cookie names a server-side session that holds its CSRF token
// and, once the operator token was given (or none is needed), who the
// operator is. Sessions live in memory, at most maxSessions of them (the
// least recently used go first), each for sessionTTL.
const (
	sessionCookie = "hubctl_session"
	sessionTTL    = 12 * time.Hour
	maxSessions   = 1024
	csrfField     = "csrf"
)

type session struct {
	id      string
	csrf    string
	authed  bool
	who     string
	created time.Time
	elem    *list.Element
}

type sessions struct {
	now  func() time.Time
	mu   sync.Mutex
	byID map[string]*session
	lru  *list.List // front: most recently used
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, byID: map[string]*session{}, lru: list.New()}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s == nil {
		return nil
	}
	if ss.now().Sub(s.created) > sessionTTL {
		ss.remove(s)
		return nil
	}
	ss.lru.MoveToFront(s.elem)
	return s
}

func (ss *sessions) create() *session {
	s := &session{id: randomToken(), csrf: randomToken(), created: ss.now()}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for ss.lru.Len() >= maxSessions {
		ss.remove(ss.lru.Back().Value.(*session))
	}
	s.elem = ss.lru.PushFront(s)
	ss.byID[s.id] = s
	return s
}

// authenticate marks s as an operator's. It returns a new session (a new
// ID and CSRF token: a session fixed before login is worth nothing).
func (ss *sessions) authenticate(old *session, who string) *session {
	if old != nil {
		ss.drop(old)
	}
	s := ss.create()
	ss.mu.Lock()
	s.authed, s.who = true, who
	ss.mu.Unlock()
	return s
}

func (ss *sessions) drop(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.byID[s.id] == s {
		ss.remove(s)
	}
}

func (ss *sessions) remove(s *session) {
	delete(ss.byID, s.id)
	ss.lru.Remove(s.elem)
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byID)
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// cookieSession returns the request's session, or nil.
func (s *console) cookieSession(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	return s.auth.get(c.Value)
}

func (s *console) setCookie(w http.ResponseWriter, sess *session) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: sess.id, Path: "/",
		HttpOnly: true, Secure: s.cfg.tls != nil, SameSite: http.SameSiteStrictMode,
		MaxAge: int(sessionTTL / time.Second),
	})
}

// identity says who a request comes from without a token: the client
// certificate's subject, or loopback and the remote address.
func (s *console) identity(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName + " from " + remoteIP(r)
	}
	return "local operator from " + remoteIP(r)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authed lets a request through with its session: an authenticated one
// when a token is configured (else it redirects to the login page), or
// one it creates for the CSRF token when none is needed.
func (s *console) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.cookieSession(r)
		switch {
		case sess != nil && sess.authed:
		case s.cfg.token != "":
			if r.Method != http.MethodGet {
				http.Error(w, "hubctl console: log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		default:
			sess = s.auth.authenticate(sess, s.identity(r))
			s.setCookie(w, sess)
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

// writable refuses state changes in read-only mode.
func (s *console) writable(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.readOnly {
			s.fail(w, r, http.StatusForbidden, "The console is read-only (--read-only): replay and purge are off.")
			return
		}
		next(w, r)
	}
}

var (
	errCrossOrigin = errors.New("cross-origin request refused")
	errNoSession   = errors.New("no session: reload the page and try again")
	errBadCSRF     = errors.New("missing or wrong CSRF token: reload the page and try again")
)

// checkCSRF guards every state change: the browser must say the request
// is same-origin (Sec-Fetch-Site or Origin, net/http's
// CrossOriginProtection), and the form must carry the session's CSRF
// token. The cookie is SameSite=Strict besides.
func (s *console) checkCSRF(r *http.Request) error {
	if err := s.cop.Check(r); err != nil {
		return errCrossOrigin
	}
	sess := s.cookieSession(r)
	if sess == nil {
		return errNoSession
	}
	got := r.PostFormValue(csrfField)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
		return errBadCSRF
	}
	return nil
}

func loopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

type loginData struct {
	Next  string
	Error string
}

func (s *console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	sess := s.cookieSession(r)
	if sess == nil {
		sess = s.auth.create()
		s.setCookie(w, sess)
	}
	r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess))
	s.render(w, r, http.StatusOK, "login", "Log in", "", loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

// login checks the operator token (the CSRF token was checked by
// ServeHTTP) and starts an authenticated session.
func (s *console) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	sess := s.cookieSession(r)
	next := safeNext(r.PostFormValue("next"))
	token := r.PostFormValue("token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.token)) != 1 {
		s.log.Warn("console: login refused", "remote", remoteIP(r))
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess))
		s.render(w, r, http.StatusUnauthorized, "login", "Log in", "", loginData{Next: next, Error: "That is not the operator token."})
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if len(name) > 64 {
		name = name[:64]
	}
	who := "operator"
	if name != "" {
		who = "operator " + name
	}
	who += " (token) from " + remoteIP(r)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		who = "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName + ", " + who
	}
	ns := s.auth.authenticate(sess, who)
	s.setCookie(w, ns)
	s.log.Info("console: login", "who", who)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *console) logout(w http.ResponseWriter, r *http.Request) {
	if sess := sessionFrom(r.Context()); sess != nil {
		s.auth.drop(sess)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	return next
}
