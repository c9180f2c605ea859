package dynamojobs_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/jobs"
	"github.com/harvesthub/hub/jobs/dynamojobs"
	"github.com/harvesthub/hub/jobs/jobstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// endpoint is the DynamoDB emulator (dynalite, scripts/dynalite.sh).
func endpoint() string {
	return cmp.Or(os.Getenv("HUB_TEST_DYNAMODB_ENDPOINT"), "http://127.0.0.1:4567")
}

func newClient(t *testing.T) *dynamodb.Client {
	t.Helper()
	testenv.Require(t, "DynamoDB emulator (scripts/dynalite.sh start)", endpoint())
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return dynamodb.New(dynamodb.Options{
		HTTPClient:   &http.Client{Transport: tr},
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	})
}

// newTable returns a table name unique to t, deleted when t ends.
func newTable(t *testing.T, c *dynamodb.Client) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "hub_jobs_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		_, _ = c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return name
}

func TestConformance(t *testing.T) {
	c := newClient(t)
	table := newTable(t, c)
	s, err := dynamojobs.New(dynamojobs.Config{Client: c, Table: table})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	require.NoError(t, s.Migrate(context.Background()), "Migrate twice")
	jobstest.Run(t, func(t *testing.T) jobs.Store {
		s, err := dynamojobs.New(dynamojobs.Config{Client: c, Table: table})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestNewValidates(t *testing.T) {
	_, err := dynamojobs.New(dynamojobs.Config{})
	require.ErrorContains(t, err, "Client is required")
	_, err = dynamojobs.New(dynamojobs.Config{Client: &dynamodb.Client{}, Table: "ab"})
	require.ErrorContains(t, err, "3 to 255")
}

func TestPingMissingTable(t *testing.T) {
	c := newClient(t)
	s, err := dynamojobs.New(dynamojobs.Config{Client: c, Table: newTable(t, c)})
	require.NoError(t, err)
	require.Error(t, s.Ping(context.Background()), "no table yet")
	require.NoError(t, s.Migrate(context.Background()))
	require.NoError(t, s.Ping(context.Background()))
}
