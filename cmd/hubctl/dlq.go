package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/dlq"
)

// dlqCmd is what every dlq subcommand starts with: flags parsed, the broker
// open and the dead-letter queue known to exist.
type dlqCmd struct {
	cn      conn
	filter  filterFlags
	asJSON  bool
	b       broker.Broker
	closeB  func()
	topic   string // the original topic
	dlq     string // its dead-letter topic
	options dlq.Options
}

func (d *dlqCmd) close() {
	if d.closeB != nil {
		d.closeB()
	}
}

// dlqStart parses args (want positional arguments, the topic first),
// connects and checks that the dead-letter queue exists.
func (c *cli) dlqStart(d *dlqCmd, fs *flag.FlagSet, args []string, want int, usage string) ([]string, error) {
	pos, err := c.dlqParse(d, fs, args, want, usage)
	if err != nil {
		return nil, err
	}
	return pos, c.dlqConnect(d, pos[0])
}

func (c *cli) dlqParse(d *dlqCmd, fs *flag.FlagSet, args []string, want int, usage string) ([]string, error) {
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != want {
		return nil, usagef("%s: expected %s", fs.Name(), usage)
	}
	f, err := d.filter.filter(time.Now())
	if err != nil {
		return nil, err
	}
	if d.cn.idle <= 0 || d.cn.maxScan <= 0 {
		return nil, usagef("--idle and --max-scan must be positive")
	}
	d.options = dlq.Options{Filter: f, Limit: d.filter.limit, Idle: d.cn.idle, MaxScan: d.cn.maxScan}
	return pos, nil
}

func (c *cli) dlqConnect(d *dlqCmd, topic string) error {
	var err error
	d.b, d.closeB, err = c.open(&d.cn)
	if err != nil {
		return err
	}
	d.topic = topic
	var hint string
	d.dlq, hint = dlqTopic(d.topic, d.cn.dlqSuffix)
	return c.check(d.b, d.topic, d.dlq, hint)
}

func (c *cli) dlqList(args []string) error {
	var d dlqCmd
	defer d.close()
	fs := c.flagSet("dlq list", "dlq list <topic> [--handler h] [--error text] [--reason r] [--since t] [--until t] [--limit n] [--json]", &d.cn)
	d.filter.register(fs)
	fs.BoolVar(&d.asJSON, "json", false, "print one JSON object per letter")
	if _, err := c.dlqStart(&d, fs, args, 1, "one topic, such as: hubctl dlq list records"); err != nil {
		return err
	}
	letters, err := dlq.List(c.ctx, d.b, d.dlq, d.options)
	if err != nil {
		return fmt.Errorf("listing %s: %w", d.dlq, err)
	}
	if d.asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, l := range letters {
			if err := enc.Encode(toJSON(l, false, nil)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(letters) == 0 {
		fmt.Fprintf(c.stderr, "no letters in %s match\n", d.dlq)
		return nil
	}
	writeTable(c.stdout, letters)
	fmt.Fprintf(c.stderr, "%d %s in %s\n", len(letters), plural(len(letters), "letter"), d.dlq)
	return nil
}

func writeTable(w io.Writer, letters []dlq.Letter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFAILED\tHANDLER\tATTEMPTS\tREASON\tERROR")
	for _, l := range letters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", safe(l.ID), formatTime(l.FailedAt), safe(l.Handler), l.Attempts, safe(l.Reason), truncate(safe(oneLine(l.Error)), 60))
	}
	_ = tw.Flush()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

// letterJSON is the --json form of a letter.
type letterJSON struct {
	ID            string            `json:"id"`
	Key           string            `json:"key"`
	Topic         string            `json:"topic"`
	Handler       string            `json:"handler"`
	Reason        string            `json:"reason"`
	Error         string            `json:"error"`
	Attempts      int               `json:"attempts"`
	FirstFailedAt *time.Time        `json:"first_failed_at,omitempty"`
	FailedAt      *time.Time        `json:"failed_at,omitempty"`
	PayloadBytes  int               `json:"payload_bytes"`
	EncKeyID      string            `json:"enc_key_id,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	// Show only: the payload (decrypted when it could be) as JSON, text or
	// base64.
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadText   *string         `json:"payload_text,omitempty"`
	PayloadBase64 string          `json:"payload_base64,omitempty"`
	DecryptError  string          `json:"decrypt_error,omitempty"`
}

func toJSON(l dlq.Letter, full bool, p *payload) letterJSON {
	j := letterJSON{
		ID: l.ID, Key: l.Key, Topic: l.OriginalTopic, Handler: l.Handler, Reason: l.Reason, Error: l.Error,
		Attempts: l.Attempts, PayloadBytes: len(l.Payload), EncKeyID: l.Metadata[hub.KeyEncKeyID],
	}
	if !l.FirstFailedAt.IsZero() {
		t := l.FirstFailedAt.UTC()
		j.FirstFailedAt = &t
	}
	if !l.FailedAt.IsZero() {
		t := l.FailedAt.UTC()
		j.FailedAt = &t
	}
	if !full {
		return j
	}
	j.Metadata = l.Metadata
	switch {
	case p.err != nil:
		j.DecryptError = p.err.Error()
		j.PayloadBase64 = base64.StdEncoding.EncodeToString(p.bytes)
	case json.Valid(p.bytes) && len(p.bytes) > 0:
		j.Payload = json.RawMessage(p.bytes)
	case utf8.Valid(p.bytes) && p.plain:
		s := string(p.bytes)
		j.PayloadText = &s
	default:
		j.PayloadBase64 = base64.StdEncoding.EncodeToString(p.bytes)
	}
	return j
}

// payload is a letter's payload as show prints it.
type payload struct {
	bytes []byte
	plain bool   // not ciphertext
	note  string // how it was obtained
	err   error  // decryption failed
}

func (c *cli) dlqShow(args []string) error {
	var d dlqCmd
	defer d.close()
	var keys keyFlags
	fs := c.flagSet("dlq show", "dlq show <topic> <id> [--key-dir dir | --key-file file] [--json]", &d.cn)
	keys.register(fs)
	fs.BoolVar(&d.asJSON, "json", false, "print the letter as one JSON object")
	pos, err := c.dlqStart(&d, fs, args, 2, "a topic and a letter ID, such as: hubctl dlq show records 0f8c...")
	if err != nil {
		return err
	}
	id := pos[1]
	l, err := dlq.Get(c.ctx, d.b, d.dlq, id, d.options)
	if errors.Is(err, dlq.ErrNotFound) {
		return fmt.Errorf("letter %s is not in %s (replayed, purged, or never there): %w", id, d.dlq, dlq.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.dlq, err)
	}
	p := &payload{bytes: l.Payload, plain: true}
	if keyID := l.Metadata[hub.KeyEncKeyID]; keyID != "" {
		p.plain = false
		ring, err := keys.keyring(c.env)
		switch {
		case err != nil:
			return err
		case ring == nil:
			p.note = fmt.Sprintf("encrypted with key %q; pass --key-dir or --key-file (or set %s_KEY_<ID>) to decrypt", keyID, keys.envPrefix)
		default:
			plain, derr := ring.Decrypt(keyID, l.Payload)
			if derr != nil {
				p.err = fmt.Errorf("decrypting with key %q: %w", keyID, derr)
			} else {
				p.bytes, p.plain, p.note = plain, true, fmt.Sprintf("decrypted with key %q", keyID)
			}
		}
	}
	if d.asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(toJSON(l, true, p)); err != nil {
			return err
		}
	} else {
		writeLetter(c.stdout, l, p)
	}
	if p.err != nil {
		return p.err
	}
	return nil
}

func writeLetter(w io.Writer, l dlq.Letter, p *payload) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, safe(v)) }
	row("ID:", l.ID)
	row("Key:", l.Key)
	row("Topic:", l.OriginalTopic)
	row("Handler:", l.Handler)
	row("Reason:", l.Reason)
	row("Error:", oneLine(l.Error))
	row("Attempts:", strconv.Itoa(l.Attempts))
	row("First failed:", formatTime(l.FirstFailedAt))
	row("Failed:", formatTime(l.FailedAt))
	_ = tw.Flush()
	fmt.Fprintln(w, "Metadata:")
	keys := make([]string, 0, len(l.Metadata))
	for k := range l.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\n", safe(k), safe(oneLine(l.Metadata[k])))
	}
	_ = tw.Flush()
	head := fmt.Sprintf("Payload (%d bytes", len(p.bytes))
	if p.note != "" {
		head += ", " + p.note
	}
	fmt.Fprintln(w, head+"):")
	switch {
	case p.err != nil:
		fmt.Fprintf(w, "  (cannot decrypt: %v)\n", p.err)
	case !p.plain:
		fmt.Fprintln(w, "  (ciphertext not shown)")
	case len(p.bytes) == 0:
	case json.Valid(p.bytes):
		var buf bytes.Buffer
		if json.Indent(&buf, p.bytes, "", "  ") == nil {
			fmt.Fprintln(w, buf.String())
		}
	case utf8.Valid(p.bytes):
		fmt.Fprintln(w, safeText(string(p.bytes)))
	default:
		fmt.Fprintln(w, base64.StdEncoding.EncodeToString(p.bytes)+"  (binary, base64)")
	}
}

func (c *cli) dlqReplay(args []string) error {
	var d dlqCmd
	defer d.close()
	var to string
	var dry bool
	fs := c.flagSet("dlq replay", "dlq replay <topic> [filters] [--to topic] [--dry-run]", &d.cn)
	d.filter.register(fs)
	fs.StringVar(&to, "to", "", "publish to this topic instead of the letters' original topic")
	fs.BoolVar(&dry, "dry-run", false, "show what would be replayed, change nothing")
	if _, err := c.dlqStart(&d, fs, args, 1, "one topic, such as: hubctl dlq replay records"); err != nil {
		return err
	}
	dest := d.topic
	if to != "" {
		dest = to
	}
	o := dlq.ReplayOptions{Options: d.options, To: to, DryRun: dry}
	if dry {
		res, err := dlq.Replay(c.ctx, d.b, d.dlq, o)
		if err != nil {
			return fmt.Errorf("dry run on %s: %w", d.dlq, err)
		}
		if len(res.Letters) > 0 {
			writeTable(c.stdout, res.Letters)
		}
		fmt.Fprintf(c.stdout, "dry run: would replay %d %s from %s to %s\n", len(res.Letters), plural(len(res.Letters), "letter"), d.dlq, dest)
		return nil
	}
	var bar *progressBar
	if isTerminal(c.stdout) {
		// Count first so the bar has a total, then replay exactly those.
		letters, err := dlq.List(c.ctx, d.b, d.dlq, d.options)
		if err != nil {
			return fmt.Errorf("listing %s: %w", d.dlq, err)
		}
		if len(letters) == 0 {
			fmt.Fprintf(c.stdout, "no letters in %s match; nothing replayed\n", d.dlq)
			return nil
		}
		ids := make([]string, len(letters))
		for i, l := range letters {
			ids[i] = l.ID
		}
		o.Filter = dlq.Filter{IDs: ids}
		o.Limit = 0
		bar = &progressBar{w: c.stdout, total: len(ids), label: "replaying to " + dest}
		bar.draw(0)
		o.Progress = bar.draw
	}
	res, err := dlq.Replay(c.ctx, d.b, d.dlq, o)
	if bar != nil {
		bar.done()
	}
	if err != nil {
		if res.Replayed > 0 {
			return fmt.Errorf("replayed %d %s to %s, then failed (the rest stay in %s; run again to resume): %w", res.Replayed, plural(res.Replayed, "letter"), dest, d.dlq, err)
		}
		return fmt.Errorf("replaying %s: %w", d.dlq, err)
	}
	fmt.Fprintf(c.stdout, "replayed %d %s from %s to %s\n", res.Replayed, plural(res.Replayed, "letter"), d.dlq, dest)
	return nil
}

func (c *cli) dlqPurge(args []string) error {
	var d dlqCmd
	defer d.close()
	var yes bool
	fs := c.flagSet("dlq purge", "dlq purge <topic> [filters] [--yes]", &d.cn)
	d.filter.register(fs)
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	pos, err := c.dlqParse(&d, fs, args, 1, "one topic, such as: hubctl dlq purge records")
	if err != nil {
		return err
	}
	if !yes && !isTerminal(c.stdin) {
		return usagef("dlq purge: refusing to purge without confirmation: stdin is not a terminal; pass --yes")
	}
	if err := c.dlqConnect(&d, pos[0]); err != nil {
		return err
	}
	o := d.options
	if !yes {
		letters, err := dlq.List(c.ctx, d.b, d.dlq, o)
		if err != nil {
			return fmt.Errorf("listing %s: %w", d.dlq, err)
		}
		if len(letters) == 0 {
			fmt.Fprintf(c.stdout, "no letters in %s match; nothing purged\n", d.dlq)
			return nil
		}
		fmt.Fprintf(c.stderr, "This deletes %d %s from %s for good.\nType the topic name (%s) to confirm: ", len(letters), plural(len(letters), "letter"), d.dlq, d.topic)
		line, rerr := bufio.NewReader(c.stdin).ReadString('\n')
		if strings.TrimSpace(line) != d.topic {
			if rerr != nil && rerr != io.EOF {
				return fmt.Errorf("purge not confirmed: reading stdin: %w", rerr)
			}
			return fmt.Errorf("purge not confirmed (typed %q, not %q); nothing purged", strings.TrimSpace(line), d.topic)
		}
		// Purge exactly the letters counted, not any that arrived since.
		ids := make([]string, len(letters))
		for i, l := range letters {
			ids[i] = l.ID
		}
		o.Filter, o.Limit = dlq.Filter{IDs: ids}, 0
	}
	n, err := dlq.Purge(c.ctx, d.b, d.dlq, o)
	if err != nil {
		return fmt.Errorf("purged %d %s from %s, then failed: %w", n, plural(n, "letter"), d.dlq, err)
	}
	fmt.Fprintf(c.stdout, "purged %d %s from %s\n", n, plural(n, "letter"), d.dlq)
	return nil
}
