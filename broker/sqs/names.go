package sqs

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// Queue and SNS topic names.
//
// A topic's default group reads the queue named after the topic; every other
// group reads "<topic>-<group>-<hash>", where hash is 8 hex digits of an FNV
// hash of the topic and group, so that topic "a" with group "b-c" and topic
// "a-b" with group "c" never share a queue. SQS names hold [A-Za-z0-9_-] and
// at most 80 characters: a '.' in a topic or group (the hub's ".dlq" topics)
// becomes '_' and the hash is appended then too, so "a.b" and "a_b" stay
// apart; a name too long is cut and keeps its hash. Any other character is
// rejected with [ErrInvalidName].

// queueName returns the SQS queue of group of topic (group "" or equal to
// topic: the default group). The SNS topic of a topic has the name of its
// default queue.
func queueName(prefix, topic, group string) (string, error) {
	if err := checkName("topic", topic); err != nil {
		return "", err
	}
	if group == topic {
		group = ""
	}
	readable := prefix + mapName(topic)
	hashed := readable != prefix+topic
	if group != "" {
		if err := checkName("group", group); err != nil {
			return "", err
		}
		readable += "-" + mapName(group)
		hashed = true
	}
	if !hashed && len(readable) <= maxQueueName {
		return readable, nil
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(group))
	suffix := fmt.Sprintf("-%08x", h.Sum32())
	if len(readable)+len(suffix) > maxQueueName {
		readable = readable[:maxQueueName-len(suffix)]
	}
	return readable + suffix, nil
}

func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidName, what)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("%w: %s %q has %q; SQS names allow letters, digits, '_' and '-' ('.' is mapped to '_')", ErrInvalidName, what, name, r)
		}
	}
	return nil
}

func mapName(name string) string { return strings.ReplaceAll(name, ".", "_") }
