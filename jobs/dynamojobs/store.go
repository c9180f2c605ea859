// Package dynamojobs is a jobs.Store on Amazon DynamoDB (AWS SDK for Go
// v2), for services that keep their state there. It is its own Go module
// (github.com/harvesthub/hub/jobs/dynamojobs), so the AWS SDK stays out of
// the core; it is not in the repository's go.work either (its DynamoDB
// client is newer than the SQS adapter's), so build and test it from its
// directory (GOWORK=off).
//
// # Table
//
// One item per job, keyed by the string attribute "id" (Config.Table, by
// default hub_jobs; [Store.Migrate] creates it on demand billing): state,
// reason, created, updated (RFC 3339 times), history (a list of maps, in
// recording order) and keys (a string set of the event keys recorded).
//
// Record is one UpdateItem: it appends to the history and, for a keyed
// event, adds the key under the condition that it is not there yet, so a
// duplicate is refused atomically (and ignored). DynamoDB serialises the
// updates of one item, so the history is in recording order without a
// read. A job's history is bounded by DynamoDB's 400 KB item size (a few
// hundred events); Record returns DynamoDB's error beyond it.
//
// # Tests
//
// The tests run against dynalite, an open-source DynamoDB emulator (npm
// package, pinned in scripts/dynalite/package-lock.json, started by
// scripts/dynalite.sh on 127.0.0.1:4567), not against AWS.
package dynamojobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/harvesthub/hub/jobs"
)

// TableDefault is the default [Config.Table].
const TableDefault = "hub_jobs"

// Config configures a [Store].
type Config struct {
	// Client is the DynamoDB client. Required.
	Client *dynamodb.Client
	// Table is the table name. Defaults to [TableDefault].
	Table string
}

// Store is a [jobs.Store] on DynamoDB, safe for concurrent use by many
// goroutines and processes.
type Store struct {
	c      *dynamodb.Client
	table  string
	closed atomic.Bool
}

// New returns a Store. It does no I/O: run [Store.Migrate] first, or
// create the table yourself (string hash key "id").
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("dynamojobs: Config.Client is required, such as dynamodb.NewFromConfig(awsCfg)")
	}
	if cfg.Table == "" {
		cfg.Table = TableDefault
	}
	if len(cfg.Table) < 3 || len(cfg.Table) > 255 {
		return nil, fmt.Errorf("dynamojobs: Config.Table %q: DynamoDB table names have 3 to 255 characters", cfg.Table)
	}
	return &Store{c: cfg.Client, table: cfg.Table}, nil
}

// Migrate creates the table unless it exists and waits (bounded by ctx)
// until it is active. Many processes may call it at once.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return jobs.ErrClosed
	}
	_, err := s.c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(s.table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamojobs: create table %s: %w", s.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second
	})
	deadline := 2 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, deadline); err != nil {
		return fmt.Errorf("dynamojobs: waiting for table %s: %w", s.table, err)
	}
	return nil
}

const timeFormat = time.RFC3339Nano

// Record implements [jobs.Store.Record] in one UpdateItem.
func (s *Store) Record(ctx context.Context, id string, ev jobs.Event) error {
	ev, err := jobs.Check(id, ev)
	if err != nil {
		return err
	}
	if s.closed.Load() {
		return jobs.ErrClosed
	}
	at := &types.AttributeValueMemberS{Value: ev.At.Format(timeFormat)}
	item := map[string]types.AttributeValue{
		"state": &types.AttributeValueMemberS{Value: string(ev.State)},
		"at":    at,
	}
	if ev.Reason != "" {
		item["reason"] = &types.AttributeValueMemberS{Value: ev.Reason}
	}
	if ev.Key != "" {
		item["key"] = &types.AttributeValueMemberS{Value: ev.Key}
	}
	in := &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table),
		Key:       map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}},
		UpdateExpression: aws.String(`SET #state = :state, #reason = :reason, #updated = :at, #created = if_not_exists(#created, :at),
#history = list_append(if_not_exists(#history, :empty), :ev)`),
		ExpressionAttributeNames: map[string]string{
			"#state": "state", "#reason": "reason", "#updated": "updated", "#created": "created", "#history": "history",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":state":  &types.AttributeValueMemberS{Value: string(ev.State)},
			":reason": &types.AttributeValueMemberS{Value: ev.Reason},
			":at":     at,
			":empty":  &types.AttributeValueMemberL{Value: []types.AttributeValue{}},
			":ev":     &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberM{Value: item}}},
		},
	}
	if ev.Key != "" {
		*in.UpdateExpression += " ADD #keys :keys"
		in.ConditionExpression = aws.String("NOT contains(#keys, :key)")
		in.ExpressionAttributeNames["#keys"] = "keys"
		in.ExpressionAttributeValues[":keys"] = &types.AttributeValueMemberSS{Value: []string{ev.Key}}
		in.ExpressionAttributeValues[":key"] = &types.AttributeValueMemberS{Value: ev.Key}
	}
	_, err = s.c.UpdateItem(ctx, in)
	var dup *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &dup):
		return nil // the key is recorded already
	case err != nil:
		return fmt.Errorf("dynamojobs: record %q: %w", id, err)
	}
	return nil
}

// Get implements [jobs.Store.Get] with a strongly consistent read.
func (s *Store) Get(ctx context.Context, id string) (jobs.Job, error) {
	if s.closed.Load() {
		return jobs.Job{}, jobs.ErrClosed
	}
	out, err := s.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return jobs.Job{}, fmt.Errorf("dynamojobs: get %q: %w", id, err)
	}
	if len(out.Item) == 0 {
		return jobs.Job{}, fmt.Errorf("%w: %q", jobs.ErrNotFound, id)
	}
	j, err := decodeJob(id, out.Item)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("dynamojobs: job %q: %w", id, err)
	}
	return j, nil
}

func str(m map[string]types.AttributeValue, k string) string {
	if v, ok := m[k].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func parseTime(m map[string]types.AttributeValue, k string) (time.Time, error) {
	t, err := time.Parse(timeFormat, str(m, k))
	if err != nil {
		return time.Time{}, fmt.Errorf("attribute %s: %w", k, err)
	}
	return t.UTC(), nil
}

func decodeJob(id string, item map[string]types.AttributeValue) (jobs.Job, error) {
	j := jobs.Job{ID: id, State: jobs.State(str(item, "state")), Reason: str(item, "reason")}
	var err error
	if j.CreatedAt, err = parseTime(item, "created"); err != nil {
		return j, err
	}
	if j.UpdatedAt, err = parseTime(item, "updated"); err != nil {
		return j, err
	}
	hist, _ := item["history"].(*types.AttributeValueMemberL)
	if hist == nil {
		return j, errors.New("no history attribute")
	}
	for i, v := range hist.Value {
		m, ok := v.(*types.AttributeValueMemberM)
		if !ok {
			return j, fmt.Errorf("history[%d] is not a map", i)
		}
		ev := jobs.Event{State: jobs.State(str(m.Value, "state")), Reason: str(m.Value, "reason"), Key: str(m.Value, "key")}
		if ev.At, err = parseTime(m.Value, "at"); err != nil {
			return j, fmt.Errorf("history[%d]: %w", i, err)
		}
		j.History = append(j.History, ev)
	}
	return j, nil
}

// Ping checks that the table exists and answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return jobs.ErrClosed
	}
	if _, err := s.c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}); err != nil {
		return fmt.Errorf("dynamojobs: ping: %w", err)
	}
	return nil
}

// Close makes later calls return jobs.ErrClosed; the client stays the
// caller's. Safe to call twice.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

var _ jobs.Store = (*Store)(nil)
