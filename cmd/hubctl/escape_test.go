package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
)

// A letter's client-chosen data (key, metadata, payload) reaches the
// operator's terminal escaped: no escape sequence rewrites the screen.
func TestLetterDataIsEscaped(t *testing.T) {
	th, env := memoryHub(t)
	const clear = "\x1b[2J\x1b[H"    // clear the screen, cursor home
	const title = "\x1b]0;owned\x07" // set the window title
	const rtl = "evil\u202efdp.exe"  // right-to-left override
	const c1 = "\u009b31m"           // the 8-bit CSI
	hubtest.Send(t, th, "records", Record{ID: "r1", Title: "payload " + clear},
		hub.WithKey("key"+clear),
		hub.WithMetadata("x-note", title+rtl),
		hub.WithMetadata("x-"+c1, "v"))
	th.Settle(t)

	list := runHubctl(t, env, "", "dlq", "list", "records")
	require.Equal(t, 0, list.code, list.stderr)
	id := strings.Fields(rows(list.stdout)[0])[0]
	show := runHubctl(t, env, "", "dlq", "show", "records", id)
	require.Equal(t, 0, show.code, show.stderr)
	for _, out := range []string{list.stdout, show.stdout} {
		for _, bad := range []string{"\x1b", "\x07", "\u202e", "\u009b"} {
			require.NotContains(t, out, bad)
		}
	}
	require.Contains(t, show.stdout, `key\x1b[2J\x1b[H`, "shown, escaped")
	require.Contains(t, show.stdout, `\x1b]0;owned\x07evil\u202efdp.exe`)
	require.Contains(t, show.stdout, `x-\u009b31m`)
}

func TestSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, é ü 漢字", "plain text, é ü 漢字"},
		{"a\x1bb", `a\x1bb`},
		{"del\x7f", `del\x7f`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"tab\tnl\n", `tab\x09nl\x0a`},
		{"\u200fx", `\u200fx`},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, safe(tt.in), "%q", tt.in)
	}
	require.Equal(t, "line 1\n\tline 2 \\x1b", safeText("line 1\n\tline 2 \x1b"))
}

// A broker URL that does not parse is reported without any part of it: a
// bad '%' in a password would otherwise print what follows it.
func TestBrokerURLErrorsHideThePassword(t *testing.T) {
	for _, u := range []string{
		"amqp://guest:s3cr%et@127.0.0.1:5672/",
		"amqp://guest:s3cret%@127.0.0.1:5672/",
		"amqps://guest:s3c%zzret@[::1%zz]:5671/",
		"amqp://guest:se cret@127.0.0.1:5672/",
	} {
		r := runHubctl(t, nil, "", "dlq", "list", "records", "--broker", u)
		require.Equal(t, exitUsage, r.code, "%s: %s", u, r.stderr)
		for _, leak := range []string{"s3c", "cr", "%et", "et@", "ret", "zz"} {
			require.NotContains(t, r.stderr, leak, u)
		}
		require.Contains(t, r.stderr, "--broker")
	}
}
