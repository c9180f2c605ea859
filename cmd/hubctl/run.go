package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/dlq"
)

// Exit codes, documented in the package doc and in `hubctl help`.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitUnreachable = 4
)

// usageError is a bad command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// unreachableError is a broker hubctl could not connect to: exit 4.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ue *usageError
	var ne *unreachableError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ne):
		return exitUnreachable
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, dlq.ErrNotFound):
		return exitNotFound
	default:
		return exitFailed
	}
}

const helpText = `hubctl: operate Harvest Hub dead letters and queues

Usage:
  hubctl dlq list    <topic> [filters] [--json]
  hubctl dlq show    <topic> <id> [--key-dir dir | --key-file file] [--json]
  hubctl dlq replay  <topic> [filters] [--to topic] [--dry-run]
  hubctl dlq purge   <topic> [filters] [--yes]
  hubctl topics stats [topic] [--group name] [--json]
  hubctl serve [--listen 127.0.0.1:8080] [--topic t[:group,...]]... [--metrics url]...
               [--token t | --token-file f] [--read-only]
  hubctl help

<topic> is the original topic ("records"); its dead letters are in
<topic><dlq-suffix> ("records.dlq").

Filters (list, replay, purge):
  --handler name     letters of this handler only
  --error text       letters whose error contains text
  --reason r         retries-exhausted, permanent-error, decode-error or panic
  --since t          failed at or after t: RFC 3339 or a duration ago (2h, 7d)
  --until t          failed before t (same forms)
  --limit n          at most n letters

Connection (flags, or HUBCTL_<FLAG> environment variables):
  --broker url       amqp://user:pass@host:5672/, amqps://..., sqs://<region>,
                     sqs://KEY:SECRET@<region>?endpoint=http://127.0.0.1:4566&prefix=p
  --tls-ca, --tls-cert, --tls-key, --tls-server-name   files for amqps:// (and SQS HTTPS)
  --dlq-suffix s     dead-letter topic suffix (default .dlq)
  --idle d           how long to wait for one more letter before the queue
                     counts as drained (default 1s)

Exit codes:
  0  success
  1  operation failed (broker error, replay failed part way, purge not confirmed)
  2  usage error (bad flag, bad filter, missing argument, purge with no
     terminal and no --yes)
  3  not found (unknown topic, letter that no longer exists)
  4  broker unreachable

Run "hubctl <command> <subcommand> -h" for the flags of one command.
`

// run is hubctl: args without the program name; env reads configuration
// variables (os.Getenv in main). It returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	err := dispatch(ctx, args, stdin, stdout, stderr, env)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "hubctl: "+oneLine(err.Error()))
	}
	return exitCode(err)
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) error {
	if len(args) == 0 {
		return usagef("no command; run: hubctl help")
	}
	c := &cli{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, env: env}
	switch cmd := args[0]; cmd {
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, helpText)
		return nil
	case "dlq":
		if len(args) < 2 {
			return usagef("dlq: name a subcommand: list, show, replay or purge")
		}
		switch sub := args[1]; sub {
		case "list":
			return c.dlqList(args[2:])
		case "show":
			return c.dlqShow(args[2:])
		case "replay":
			return c.dlqReplay(args[2:])
		case "purge":
			return c.dlqPurge(args[2:])
		default:
			return usagef("dlq: unknown subcommand %q; use list, show, replay or purge", sub)
		}
	case "topics":
		if len(args) < 2 || args[1] != "stats" {
			return usagef("topics: the subcommand is stats")
		}
		return c.topicsStats(args[2:])
	case "serve":
		return c.serve(args[1:])
	default:
		return usagef("unknown command %q; use dlq, topics or serve", cmd)
	}
}

// cli is one run of hubctl.
type cli struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	env    func(string) string
	usage  func() // the usage of the command being parsed
}

// conn holds the connection flags every command takes.
type conn struct {
	broker    string
	tls       broker.TLSFiles
	dlqSuffix string
	idle      time.Duration
	maxScan   int
	verbose   bool
}

// connFlags are the flags that HUBCTL_ variables set.
var connFlags = []string{"broker", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "dlq-suffix", "idle", "max-scan", "key-dir", "key-file", "key-env"}

func (c *cli) flagSet(name, usage string, cn *conn) *flag.FlagSet {
	fs := flag.NewFlagSet("hubctl "+name, flag.ContinueOnError)
	// Parse errors become one line from run; the usage is printed for -h
	// only (see parse).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c.usage = func() {
		fmt.Fprintf(c.stderr, "Usage: hubctl %s\n\nFlags:\n", usage)
		fs.SetOutput(c.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fs.StringVar(&cn.broker, "broker", "", "broker URL: amqp://, amqps://, sqs://<region>?endpoint=..., memory://<name> (tests)")
	fs.StringVar(&cn.tls.CA, "tls-ca", "", "PEM file of the CAs that sign the broker's certificate")
	fs.StringVar(&cn.tls.Cert, "tls-cert", "", "PEM file of the client certificate (mutual TLS)")
	fs.StringVar(&cn.tls.Key, "tls-key", "", "PEM file of the client key (mutual TLS)")
	fs.StringVar(&cn.tls.ServerName, "tls-server-name", "", "name to verify in the broker's certificate (default: the host)")
	fs.StringVar(&cn.dlqSuffix, "dlq-suffix", ".dlq", "suffix of dead-letter topics (hub.Config.DeadLetterSuffix)")
	fs.DurationVar(&cn.idle, "idle", dlq.IdleDefault, "how long to wait for one more letter before the queue counts as drained")
	fs.IntVar(&cn.maxScan, "max-scan", dlq.MaxScanDefault, "at most this many letters are read (held unacked) by one command")
	fs.BoolVar(&cn.verbose, "v", false, "log the broker adapter's warnings on stderr")
	return fs
}

// parse parses args with flags and positional arguments in any order,
// after applying HUBCTL_ variables to the connection flags.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	for _, name := range connFlags {
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		key := "HUBCTL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v := c.env(key); v != "" {
			if err := fs.Set(name, v); err != nil {
				return nil, usagef("%s=%q: %v", key, v, err)
			}
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage()
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

// safe escapes what a terminal would interpret in s: control characters
// (ESC starts the sequences that move the cursor, rewrite the screen or set
// the window title), invalid UTF-8 and the bidirectional overrides that
// reorder text on screen. Letters carry client-chosen data (IDs, keys,
// metadata, errors): it is shown, never obeyed. Escapes are written as Go
// escapes (\x1b, \u202e), so nothing is hidden either.
func safe(s string) string { return escapeFor(s, false) }

// safeText is safe for multi-line text: newlines and tabs stay.
func safeText(s string) string { return escapeFor(s, true) }

func escapeFor(s string, keepLines bool) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r, keepLines) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r, keepLines) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r, keepLines):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func unsafeRune(r rune, keepLines bool) bool {
	switch {
	case keepLines && (r == '\n' || r == '\t'):
		return false
	case r == utf8.RuneError:
		return true
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

// isTerminal reports whether f is an interactive terminal. Tests replace
// it to drive the confirmation prompt and the progress bar.
var isTerminal = func(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
