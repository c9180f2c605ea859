package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/dlq"
)

// maxRows bounds the letters one list page shows (all are counted).
const maxRows = 500

// Pending confirmations and finished jobs are kept in memory, bounded.
const (
	maxPending = 256
	pendingTTL = 15 * time.Minute
	maxJobs    = 100
)

type dlqData struct {
	Topic, DLQ string
	Form       filterForm
	Reasons    []string
	Letters    []dlq.Letter
	Total      int
	Truncated  bool
	Error      string
}

// filterForm is the filter as the operator typed it.
type filterForm struct {
	Handler, Reason, Error, Since, Until string
}

func formFilter(get func(string) string) filterForm {
	return filterForm{Handler: get("handler"), Reason: get("reason"), Error: get("error"), Since: get("since"), Until: get("until")}
}

func (f filterForm) filter(now time.Time) (dlq.Filter, error) {
	ff := filterFlags{handler: f.Handler, reason: f.Reason, errText: f.Error, since: f.Since, until: f.Until}
	out, err := ff.filter(now)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return out, errors.New(ue.msg)
		}
	}
	return out, err
}

// list reads the letters of topic's DLQ that match f, holding the topic's
// lock.
func (s *console) list(ctx context.Context, topic string, f dlq.Filter) (string, []dlq.Letter, error) {
	d, err := s.dlqTopicOf(ctx, topic)
	if err != nil {
		return "", nil, err
	}
	unlock, err := s.locks.lock(ctx, d)
	if err != nil {
		return d, nil, err
	}
	defer unlock()
	ls, err := dlq.List(ctx, s.cfg.broker, d, s.options(f, 0))
	return d, ls, err
}

func (s *console) dlqStatus(err error) int {
	if errors.Is(err, broker.ErrUnknownTopic) || errors.Is(err, dlq.ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadGateway
}

func (s *console) dlqPage(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	data := dlqData{Topic: topic, DLQ: topic + s.cfg.dlqSuffix, Reasons: reasons, Form: formFilter(r.URL.Query().Get)}
	f, err := data.Form.filter(s.cfg.now())
	if err != nil {
		data.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "dlq", "Dead letters of "+topic, "dlq", data)
		return
	}
	_, letters, err := s.list(r.Context(), topic, f)
	if err != nil {
		s.fail(w, r, s.dlqStatus(err), "Reading the dead letters of "+topic+": "+err.Error())
		return
	}
	data.Total = len(letters)
	if len(letters) > maxRows {
		letters, data.Truncated = letters[:maxRows], true
	}
	data.Letters = letters
	s.render(w, r, http.StatusOK, "dlq", "Dead letters of "+topic, "dlq", data)
}

type letterData struct {
	Topic      string
	L          dlq.Letter
	Meta       [][2]string
	Payload    string
	PayloadFmt string // json, text, base64, ciphertext
	Note       string
	KeyID      string
	CanDecrypt bool
	History    [][2]string
}

func (s *console) letterPage(w http.ResponseWriter, r *http.Request) {
	topic, id := r.PathValue("topic"), r.PathValue("id")
	d, err := s.dlqTopicOf(r.Context(), topic)
	if err != nil {
		s.fail(w, r, s.dlqStatus(err), err.Error())
		return
	}
	unlock, err := s.locks.lock(r.Context(), d)
	if err != nil {
		return
	}
	l, err := dlq.Get(r.Context(), s.cfg.broker, d, id, s.options(dlq.Filter{}, 0))
	unlock()
	if err != nil {
		s.fail(w, r, s.dlqStatus(err), fmt.Sprintf("Letter %s of %s: %v", id, d, err))
		return
	}
	data := letterData{Topic: topic, L: l, KeyID: l.Metadata[hub.KeyEncKeyID]}
	for _, k := range slices.Sorted(mapKeys(l.Metadata)) {
		data.Meta = append(data.Meta, [2]string{k, l.Metadata[k]})
	}
	data.History = [][2]string{
		{"Attempts", strconv.Itoa(l.Attempts)},
		{"First failed", formatTime(l.FirstFailedAt)},
		{"Last failed", formatTime(l.FailedAt)},
		{"Delayed retries", dash(l.Metadata[hub.KeyRedeliveries])},
		{"Reason", l.Reason},
	}
	plain := l.Payload
	switch {
	case data.KeyID == "":
	case s.cfg.keyring == nil:
		data.PayloadFmt, data.Note = "ciphertext", fmt.Sprintf("Encrypted with key %q. Start hubctl serve with --key-dir, --key-file or HUB_ENC_* to decrypt.", data.KeyID)
	case r.Method == http.MethodPost && r.PostFormValue("decrypt") == "1":
		who := sessionFrom(r.Context()).who
		p, derr := s.cfg.keyring.Decrypt(data.KeyID, l.Payload)
		if derr != nil {
			data.PayloadFmt, data.Note = "ciphertext", fmt.Sprintf("Decrypting with key %q failed: %v", data.KeyID, derr)
			break
		}
		s.log.Info("console: payload decrypted", "who", who, "topic", topic, "letter", id, "key_id", data.KeyID)
		plain, data.Note = p, fmt.Sprintf("Decrypted with key %q.", data.KeyID)
	default:
		data.PayloadFmt, data.CanDecrypt = "ciphertext", true
		data.Note = fmt.Sprintf("Encrypted with key %q.", data.KeyID)
	}
	if data.PayloadFmt == "" {
		var buf bytes.Buffer
		switch {
		case len(plain) == 0:
			data.PayloadFmt = "text"
		case json.Valid(plain) && json.Indent(&buf, plain, "", "  ") == nil:
			data.PayloadFmt, data.Payload = "json", buf.String()
		case utf8.Valid(plain):
			data.PayloadFmt, data.Payload = "text", string(plain)
		default:
			data.PayloadFmt, data.Payload = "base64", base64.StdEncoding.EncodeToString(plain)
		}
	}
	s.render(w, r, http.StatusOK, "letter", "Letter "+id, "dlq", data)
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pending is a replay or purge the operator was asked to confirm: the
// exact letters counted, so that the run touches those and no others.
type pending struct {
	id, session, action, topic, dlq string
	ids                             []string
	created                         time.Time
}

type confirmData struct {
	Topic, DLQ, Action, ID string
	Count                  int
	Sample                 []dlq.Letter
	Dest                   string
}

// confirm counts what a replay or purge would touch and asks to confirm.
func (s *console) confirm(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	action := r.PostFormValue("action")
	if action != "replay" && action != "purge" {
		s.fail(w, r, http.StatusBadRequest, "Unknown action: choose replay or purge.")
		return
	}
	var f dlq.Filter
	if r.PostFormValue("scope") == "selected" {
		ids := r.PostForm["id"]
		if len(ids) == 0 {
			s.fail(w, r, http.StatusBadRequest, "No letters selected: tick the letters to "+action+" first.")
			return
		}
		f.IDs = ids
	} else {
		var err error
		f, err = formFilter(r.PostFormValue).filter(s.cfg.now())
		if err != nil {
			s.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
	}
	d, letters, err := s.list(r.Context(), topic, f)
	if err != nil {
		s.fail(w, r, s.dlqStatus(err), "Counting the letters of "+topic+": "+err.Error())
		return
	}
	data := confirmData{Topic: topic, DLQ: d, Action: action, Count: len(letters), Dest: topic}
	if len(letters) > 0 {
		p := &pending{id: randomToken(), session: sessionFrom(r.Context()).id, action: action, topic: topic, dlq: d, created: s.cfg.now()}
		for _, l := range letters {
			p.ids = append(p.ids, l.ID)
		}
		s.jobs.addPending(p, s.cfg.now())
		data.ID = p.id
		data.Sample = letters[:min(len(letters), 20)]
	}
	s.render(w, r, http.StatusOK, "confirm", "Confirm "+action, "dlq", data)
}

// runAction starts the confirmed replay or purge as a job.
func (s *console) runAction(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	p := s.jobs.takePending(r.PostFormValue("confirm"), sess.id, r.PathValue("topic"), s.cfg.now())
	if p == nil {
		s.fail(w, r, http.StatusConflict, "This confirmation is unknown, expired or already used: start again from the list.")
		return
	}
	j := &job{ID: randomToken()[:16], Kind: p.action, Topic: p.topic, DLQ: p.dlq, Who: sess.who, Total: len(p.ids), Started: s.cfg.now(), state: "running",
		Force: p.action == "replay" && r.PostFormValue("force") == "1"}
	s.jobs.add(j)
	s.log.Info("console: "+p.action+" started", "who", j.Who, "topic", p.topic, "dlq", p.dlq, "letters", len(p.ids), "force", j.Force, "job", j.ID)
	if !s.goJob(func(ctx context.Context) { s.runJob(ctx, j, p.ids) }) {
		j.finish(s.cfg.now(), errors.New("the console is shutting down"))
	}
	http.Redirect(w, r, "/jobs/"+j.ID, http.StatusSeeOther)
}

func (s *console) runJob(ctx context.Context, j *job, ids []string) {
	var err error
	unlock, err := s.locks.lock(ctx, j.DLQ)
	if err == nil {
		o := s.options(dlq.Filter{IDs: ids}, 0)
		switch j.Kind {
		case "replay":
			var res dlq.ReplayResult
			res, err = dlq.Replay(ctx, s.cfg.broker, j.DLQ, dlq.ReplayOptions{Options: o, Force: j.Force, Progress: func(n int) { j.done.Store(int64(n)) }})
			j.done.Store(int64(res.Replayed))
		case "purge":
			var n int
			n, err = dlq.Purge(ctx, s.cfg.broker, j.DLQ, o)
			j.done.Store(int64(n))
		}
		unlock()
	}
	j.finish(s.cfg.now(), err)
	attrs := []any{"who", j.Who, "topic", j.Topic, "dlq", j.DLQ, "asked", j.Total, "done", j.done.Load(), "job", j.ID}
	if err != nil {
		s.log.Error("console: "+j.Kind+" failed", append(attrs, "err", err.Error())...)
		return
	}
	s.log.Info("console: "+j.Kind+" finished", attrs...)
}

// job is one replay or purge running in the background.
type job struct {
	ID, Kind, Topic, DLQ, Who string
	Total                     int
	Started                   time.Time
	// Force replays to handlers without a consumer (dlq.ReplayOptions).
	Force bool
	done  atomic.Int64

	mu       sync.Mutex
	state    string // running, done, failed
	err      string
	finished time.Time
}

func (j *job) finish(now time.Time, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished = now
	j.state = "done"
	if err != nil {
		j.state, j.err = "failed", err.Error()
	}
}

// jobStatusJSON is GET /jobs/{id}/status.
type jobStatusJSON struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Topic    string `json:"topic"`
	State    string `json:"state"`
	Done     int64  `json:"done"`
	Total    int    `json:"total"`
	Error    string `json:"error,omitempty"`
	Who      string `json:"who"`
	Started  string `json:"started"`
	Finished string `json:"finished,omitempty"`
}

func (j *job) status() jobStatusJSON {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := jobStatusJSON{ID: j.ID, Kind: j.Kind, Topic: j.Topic, State: j.state, Done: j.done.Load(), Total: j.Total,
		Error: j.err, Who: j.Who, Started: formatTime(j.Started)}
	if !j.finished.IsZero() {
		st.Finished = formatTime(j.finished)
	}
	return st
}

type jobs struct {
	mu      sync.Mutex
	byID    map[string]*job
	order   []string
	pending map[string]*pending
}

func newJobs() *jobs { return &jobs{byID: map[string]*job{}, pending: map[string]*pending{}} }

func (js *jobs) add(j *job) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.byID[j.ID] = j
	js.order = append(js.order, j.ID)
	for len(js.order) > maxJobs { // forget the oldest finished job
		dropped := false
		for i, id := range js.order {
			if old := js.byID[id]; old.status().State != "running" {
				delete(js.byID, id)
				js.order = slices.Delete(js.order, i, i+1)
				dropped = true
				break
			}
		}
		if !dropped {
			break
		}
	}
}

func (js *jobs) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.byID[id]
}

func (js *jobs) addPending(p *pending, now time.Time) {
	js.mu.Lock()
	defer js.mu.Unlock()
	for id, q := range js.pending {
		if now.Sub(q.created) > pendingTTL {
			delete(js.pending, id)
		}
	}
	for len(js.pending) >= maxPending {
		var oldest *pending
		for _, q := range js.pending {
			if oldest == nil || q.created.Before(oldest.created) {
				oldest = q
			}
		}
		delete(js.pending, oldest.id)
	}
	js.pending[p.id] = p
}

// takePending returns and forgets the confirmation id, when it belongs to
// the session and topic and has not expired.
func (js *jobs) takePending(id, session, topic string, now time.Time) *pending {
	js.mu.Lock()
	defer js.mu.Unlock()
	p := js.pending[id]
	if p == nil || p.session != session || p.topic != topic {
		return nil
	}
	delete(js.pending, id)
	if now.Sub(p.created) > pendingTTL {
		return nil
	}
	return p
}

func (s *console) jobPage(w http.ResponseWriter, r *http.Request) {
	j := s.jobs.get(r.PathValue("id"))
	if j == nil {
		s.fail(w, r, http.StatusNotFound, "No such job (jobs are kept in memory while the console runs).")
		return
	}
	s.render(w, r, http.StatusOK, "job", "Job "+j.ID, "dlq", j.status())
}

func (s *console) jobStatus(w http.ResponseWriter, r *http.Request) {
	j := s.jobs.get(r.PathValue("id"))
	if j == nil {
		http.Error(w, `{"error":"no such job"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(j.status())
}

func (s *console) topicsPage(w http.ResponseWriter, r *http.Request) {
	s.ensureSampled(r.Context())
	s.render(w, r, http.StatusOK, "topics", "Topics", "topics", s.samp.rows())
}

// topicsTable is the topics table alone, for the page's refresh.
func (s *console) topicsTable(w http.ResponseWriter, r *http.Request) {
	s.ensureSampled(r.Context())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.tmpl["topics"].ExecuteTemplate(w, "table", s.samp.rows()); err != nil {
		s.log.Error("console: rendering", "template", "table", "err", err.Error())
	}
}

// ensureSampled takes a first sample when the sampler has none yet.
func (s *console) ensureSampled(ctx context.Context) {
	s.samp.mu.Lock()
	sampled := s.samp.sampled
	s.samp.mu.Unlock()
	if !sampled {
		s.samp.sampleOnce(ctx)
	}
}

func (s *console) handlersPage(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.metrics) > 0 {
		s.ensureSampled(r.Context())
	}
	s.render(w, r, http.StatusOK, "handlers", "Handlers", "handlers", s.samp.handlers())
}
