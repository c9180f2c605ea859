package sqs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/harvesthub/hub/broker"
)

// Message layout on the wire.
//
// SQS allows at most 10 message attributes and Watermill's own marshaler
// spends one per metadata key, which hub messages exceed. This adapter sends
// the payload as the message body and every other part in one String
// attribute, [EnvelopeAttribute], holding JSON: the message UUID, all
// metadata, whether the body is base64 (payloads that are empty or not
// valid SQS text, such as ciphertext), whether it is empty and, for delays longer than SQS's 15
// minutes, the time before which the message must not be handed out.
//
// Messages without the attribute (sent by Watermill's SQS publisher or by
// hand) are read too: their String attributes become metadata and the UUID
// comes from Watermill's UUID attribute or the SQS message ID.

// EnvelopeAttribute is the name of the message attribute that carries a hub
// message's UUID and metadata.
const EnvelopeAttribute = "hub-envelope"

// MaxMessageSize is the largest message SNS (which every Publish goes
// through) and SQS accept, counted as they count it: the body plus each
// message attribute's name, data type and value, in UTF-8 bytes. A hub
// message's size on the wire is its payload (base64 when it is not valid
// SQS text) plus the [EnvelopeAttribute] holding its UUID and metadata as
// JSON, so it is larger than [broker.MessageSize].
const MaxMessageSize = 256 * 1024

const stringType = "String"

type envelope struct {
	UUID     string            `json:"id"`
	Metadata map[string]string `json:"md,omitempty"`
	Base64   bool              `json:"b64,omitempty"`
	// Empty marks an empty payload: SQS and SNS need a body, so it is "-".
	Empty bool `json:"e,omitempty"`
	// NotBefore is a Unix time in milliseconds: a message received earlier
	// is sent again with the remaining delay instead of being delivered.
	NotBefore int64 `json:"nb,omitempty"`
}

// wireMessage is an encoded message: its body and envelope attribute.
type wireMessage struct {
	uuid     string
	body     string
	envelope string
}

func (w wireMessage) attributes() map[string]types.MessageAttributeValue {
	return map[string]types.MessageAttributeValue{
		EnvelopeAttribute: {DataType: aws.String(stringType), StringValue: aws.String(w.envelope)},
	}
}

func (w wireMessage) size() int {
	return len(w.body) + len(EnvelopeAttribute) + len(stringType) + len(w.envelope)
}

// encode lays msg out for SQS. notBefore, when not zero, is recorded for a
// delay longer than one SQS hop.
func encode(msg *message.Message, notBefore time.Time) (wireMessage, error) {
	env := envelope{UUID: msg.UUID, Metadata: msg.Metadata}
	body := string(msg.Payload)
	switch {
	case len(body) == 0:
		body, env.Empty = "-", true
	case !validText(body):
		body = base64.StdEncoding.EncodeToString(msg.Payload)
		env.Base64 = true
	}
	if !notBefore.IsZero() {
		env.NotBefore = notBefore.UnixMilli()
	}
	js, err := json.Marshal(env)
	if err != nil {
		return wireMessage{}, fmt.Errorf("sqs: encode metadata of message %s: %w", msg.UUID, err)
	}
	w := wireMessage{uuid: msg.UUID, body: body, envelope: string(js)}
	if n := w.size(); n > MaxMessageSize {
		return wireMessage{}, fmt.Errorf("%w: message %s is %d bytes with its metadata (%d keys, %d bytes of envelope), SQS accepts %d",
			ErrTooLarge, msg.UUID, n, len(msg.Metadata), len(js), MaxMessageSize)
	}
	return w, nil
}

// decoded is a received message.
type decoded struct {
	msg       *message.Message
	notBefore time.Time // zero unless a long delay is not over
	env       envelope
	body      string
}

func decode(m types.Message) (decoded, error) {
	body := aws.ToString(m.Body)
	attr, ok := m.MessageAttributes[EnvelopeAttribute]
	if !ok {
		// Not sent by this adapter: one attribute per metadata key.
		md := message.Metadata{}
		uuid := aws.ToString(m.MessageId)
		for k, v := range m.MessageAttributes {
			if v.StringValue == nil {
				continue
			}
			if k == wmsqs.UUIDAttribute {
				uuid = *v.StringValue
				continue
			}
			md[k] = *v.StringValue
		}
		msg := message.NewMessage(uuid, []byte(body))
		msg.Metadata = md
		return decoded{msg: msg, body: body}, nil
	}
	var env envelope
	if err := json.Unmarshal([]byte(aws.ToString(attr.StringValue)), &env); err != nil {
		return decoded{}, fmt.Errorf("sqs: message %s: bad %s attribute: %w", aws.ToString(m.MessageId), EnvelopeAttribute, err)
	}
	payload := []byte(body)
	if env.Empty {
		payload = nil
	} else if env.Base64 {
		var err error
		if payload, err = base64.StdEncoding.DecodeString(body); err != nil {
			return decoded{}, fmt.Errorf("sqs: message %s: body is not base64: %w", env.UUID, err)
		}
	}
	msg := message.NewMessage(env.UUID, payload)
	if env.Metadata != nil {
		msg.Metadata = env.Metadata
	}
	d := decoded{msg: msg, env: env, body: body}
	if env.NotBefore != 0 {
		d.notBefore = time.UnixMilli(env.NotBefore)
	}
	return d, nil
}

// validText reports whether s is made of the characters SQS accepts in a
// message body: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// Errors callers may branch on.
var (
	// ErrTooLarge is returned by Publish when a message with its metadata
	// exceeds [MaxMessageSize], before anything is sent. It wraps
	// [broker.ErrMessageTooLarge].
	ErrTooLarge = fmt.Errorf("sqs: %w", broker.ErrMessageTooLarge)
	// ErrInvalidName is returned for a topic or group name SQS cannot hold.
	ErrInvalidName = errors.New("sqs: invalid name")
)
