package nats

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxNameLen bounds the stream and consumer names the adapter derives
// (JetStream stores them as directory names).
const maxNameLen = 120

// token turns a hub topic or group name into a JetStream stream or consumer
// name, which is also one NATS subject token: the characters
// [A-Za-z0-9-] are kept and '.' becomes '_'. A name with any other
// character (including '_'), or longer than maxNameLen, is cut to what
// fits and gets "_" and the first 16 hex digits of its SHA-256 appended, so
// two different names never map to one token unless one of them is crafted
// to end in the other's hash.
//
// "demo.records" becomes "demo_records"; "orders_v2" becomes
// "orders_v2_<hash>"; "café" becomes "caf__<hash>".
func token(name string) string {
	var b strings.Builder
	clean := name != ""
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		case c == '.':
			b.WriteByte('_')
		default:
			b.WriteByte('_')
			clean = false
		}
	}
	out := b.String()
	if clean && len(out) <= maxNameLen {
		return out
	}
	sum := sha256.Sum256([]byte(name))
	if len(out) > maxNameLen-17 {
		out = out[:maxNameLen-17]
	}
	return out + "_" + hex.EncodeToString(sum[:8])
}

// names are the JetStream names of one topic.
type names struct {
	stream  string // stream name: Config.StreamPrefix + token(topic)
	subject string // subject a plain publish goes to
}

func (b *Broker) names(topic string) names {
	s := b.cfg.StreamPrefix + token(topic)
	return names{stream: s, subject: b.cfg.SubjectPrefix + "." + s}
}

// groupSubject is the subject of a message for one consumer group only.
func (n names) groupSubject(consumer string) string { return n.subject + ".g." + consumer }

// target returns the consumer a message's subject addresses, or "" when it
// is for every group.
func (n names) target(subject string) string {
	rest, ok := strings.CutPrefix(subject, n.subject+".g.")
	if !ok {
		return ""
	}
	return rest
}
