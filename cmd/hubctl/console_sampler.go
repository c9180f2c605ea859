package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/harvesthub/hub/broker"
)

// maxQueues bounds the queues the sampler keeps a history for.
const maxQueues = 1000

// maxMetricsBody bounds one /metrics response.
const maxMetricsBody = 16 << 20

// rateWindow is the span the rate of change is measured over.
const rateWindow = 5 * time.Minute

type point struct {
	at    time.Time
	depth int64
}

type series struct {
	stats  broker.QueueStats
	points []point // oldest first, at most history
}

// sampler reads queue depths (and the workers' /metrics) every
// cfg.sample while the console runs, keeping cfg.history points per queue
// for the sparklines and rates. Its goroutine is the console's.
type sampler struct {
	s *console

	sampling sync.Mutex // one sample at a time

	mu        sync.Mutex
	series    map[string]*series // by broker queue name
	sampled   bool
	lastAt    time.Time
	lastErr   string
	prev, cur *scrape
	scrapeErr []string
}

func newSampler(s *console) *sampler {
	return &sampler{s: s, series: map[string]*series{}}
}

func (p *sampler) run(ctx context.Context) {
	p.sampleOnce(ctx)
	t := time.NewTicker(p.s.cfg.sample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.sampleOnce(ctx)
		}
	}
}

// sampleOnce reads every queue's stats and the /metrics URLs once.
func (p *sampler) sampleOnce(ctx context.Context) {
	p.sampling.Lock()
	defer p.sampling.Unlock()
	ctx, cancel := context.WithTimeout(ctx, max(p.s.cfg.sample, 10*time.Second))
	defer cancel()
	stats, err := p.queues(ctx)
	var sc *scrape
	var scrapeErr []string
	if len(p.s.cfg.metrics) > 0 {
		sc, scrapeErr = p.scrapeAll(ctx)
	}
	now := p.s.cfg.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sampled, p.lastAt = true, now
	p.lastErr = ""
	if err != nil {
		p.lastErr = err.Error()
	}
	seen := map[string]bool{}
	for _, st := range stats {
		if len(seen) >= maxQueues {
			break
		}
		seen[st.Queue] = true
		sr := p.series[st.Queue]
		if sr == nil {
			sr = &series{}
			p.series[st.Queue] = sr
		}
		sr.stats = st
		sr.points = append(sr.points, point{at: now, depth: st.Depth})
		if over := len(sr.points) - p.s.cfg.history; over > 0 {
			sr.points = append(sr.points[:0], sr.points[over:]...)
		}
	}
	if err == nil {
		for q := range p.series {
			if !seen[q] { // deleted queue
				delete(p.series, q)
			}
		}
	}
	if sc != nil {
		sc.At = now
		p.prev, p.cur = p.cur, sc
	}
	p.scrapeErr = scrapeErr
}

// queues asks the broker for the queues of the --topic topics (their
// groups and dead-letter queues), or for every queue when no topic is
// named and the broker can list them.
func (p *sampler) queues(ctx context.Context) ([]broker.QueueStats, error) {
	in, ok := p.s.cfg.broker.(broker.Inspector)
	if !ok {
		return nil, fmt.Errorf("broker %s does not report its queues", p.s.cfg.broker.Name())
	}
	if len(p.s.cfg.topics) == 0 {
		qs, err := in.Queues(ctx, "")
		if err != nil {
			return nil, fmt.Errorf("listing queues: %w (name topics with --topic records:group,...)", err)
		}
		return qs, nil
	}
	var out []broker.QueueStats
	var errs []error
	gi, _ := p.s.cfg.broker.(groupInspector)
	for _, t := range p.s.cfg.topics {
		if gi != nil {
			// One group at a time: a group without a queue yet is left out,
			// not an error for the whole topic.
			for _, g := range append([]string{""}, t.groups...) {
				qs, err := gi.GroupQueues(ctx, t.topic, g)
				switch {
				case errors.Is(err, broker.ErrUnknownTopic):
				case err != nil:
					errs = append(errs, err)
				default:
					out = append(out, qs...)
				}
			}
		} else {
			qs, err := in.Queues(ctx, t.topic)
			switch {
			case errors.Is(err, broker.ErrUnknownTopic):
			case err != nil:
				errs = append(errs, err)
			default:
				out = append(out, qs...)
			}
		}
		qs, err := in.Queues(ctx, t.topic+p.s.cfg.dlqSuffix)
		switch {
		case errors.Is(err, broker.ErrUnknownTopic):
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, qs...)
		}
	}
	return out, errors.Join(errs...)
}

func (p *sampler) scrapeAll(ctx context.Context) (*scrape, []string) {
	sc := &scrape{Handlers: map[handlerKey]*handlerStats{}}
	var errs []string
	for _, u := range p.s.cfg.metrics {
		if err := p.scrapeOne(ctx, u, sc); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", u, err))
		}
	}
	return sc, errs
}

func (p *sampler) scrapeOne(ctx context.Context, u string, sc *scrape) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := p.s.cfg.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	samples, err := parsePromText(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return err
	}
	sc.add(samples)
	return nil
}

// queueRow is one row of the topics table.
type queueRow struct {
	broker.QueueStats
	DLQ      bool   // a dead-letter queue
	Original string // for a dead-letter queue, its topic
	Rate     string // depth change per minute over rateWindow
	Spark    string // polyline points of the sparkline
	Points   int
	Warning  string
}

type topicsData struct {
	Rows    []queueRow
	Sampled string
	Error   string
	Every   string
}

const sparkW, sparkH = 120, 24

// rows renders the sampler's state for the topics page.
func (p *sampler) rows() topicsData {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := topicsData{Error: p.lastErr, Every: p.s.cfg.sample.String()}
	if p.sampled {
		d.Sampled = formatTime(p.lastAt)
	}
	for _, sr := range p.series {
		r := queueRow{QueueStats: sr.stats, Rate: "-", Points: len(sr.points)}
		suffix := p.s.cfg.dlqSuffix
		if suffix != "" && strings.HasSuffix(sr.stats.Topic, suffix) {
			r.DLQ, r.Original = true, strings.TrimSuffix(sr.stats.Topic, suffix)
		}
		switch {
		case r.DLQ && r.Depth > 0:
			r.Warning = strconv.FormatInt(r.Depth, 10) + " dead " + plural(int(r.Depth), "letter")
		case !r.DLQ && r.Depth > 0 && r.Consumers == 0:
			r.Warning = "no consumer: messages wait for a handler that is not running"
		}
		r.Rate = rate(sr.points)
		r.Spark = spark(sr.points)
		d.Rows = append(d.Rows, r)
	}
	slices.SortFunc(d.Rows, func(a, b queueRow) int {
		ta, tb := a.Topic, b.Topic
		if a.DLQ {
			ta = a.Original + "\x01"
		}
		if b.DLQ {
			tb = b.Original + "\x01"
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
		return strings.Compare(a.Queue, b.Queue)
	})
	return d
}

// rate is the depth's change per minute over the last rateWindow.
func rate(ps []point) string {
	if len(ps) < 2 {
		return "-"
	}
	last := ps[len(ps)-1]
	first := ps[0]
	for _, pt := range ps {
		if last.at.Sub(pt.at) <= rateWindow {
			first = pt
			break
		}
	}
	dt := last.at.Sub(first.at).Minutes()
	if dt <= 0 {
		return "-"
	}
	v := float64(last.depth-first.depth) / dt
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if v > 0 {
		s = "+" + s
	}
	return s + "/min"
}

// spark returns the points of a sparkline sparkW x sparkH of the depths.
func spark(ps []point) string {
	if len(ps) == 0 {
		return ""
	}
	var hi int64 = 1
	for _, pt := range ps {
		hi = max(hi, pt.depth)
	}
	var b strings.Builder
	n := len(ps)
	for i, pt := range ps {
		x := 0.0
		if n > 1 {
			x = float64(i) * sparkW / float64(n-1)
		}
		y := sparkH - 1 - float64(pt.depth)*(sparkH-2)/float64(hi)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	if n == 1 { // a flat line for a single point
		b.WriteString(" " + strconv.Itoa(sparkW) + "," + strconv.FormatFloat(sparkH-1-float64(ps[0].depth)*(sparkH-2)/float64(hi), 'f', 1, 64))
	}
	return b.String()
}

type handlersData struct {
	URLs     []string
	Rows     []handlerRow
	Errors   []string
	Outcomes []string
	Sampled  string
}

func (p *sampler) handlers() handlersData {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := handlersData{URLs: p.s.cfg.metrics, Errors: p.scrapeErr, Outcomes: outcomes}
	if p.cur != nil {
		d.Rows = handlerRows(p.cur, p.prev)
		d.Sampled = formatTime(p.cur.At)
	}
	return d
}
