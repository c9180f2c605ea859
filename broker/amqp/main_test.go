package amqp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	node.stop()
	if code == 0 {
		// Watermill's TestReconnect leaves its collector goroutine ranging
		// over a channel it never closes (test_pubsub.go:1085).
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/ThreeDotsLabs/watermill/pubsub/tests.TestReconnect.func2")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// privateNode is a RabbitMQ node of this test binary's own, started by
// scripts/rabbitmq-tls-node.sh for tests that restart the broker or need
// mutual TLS: the machine's shared node is never restarted.
type privateNode struct {
	once    sync.Once
	err     error
	dir     string
	certs   string // ca.pem server.* client.* other-client.*
	started bool
}

var node privateNode

const (
	nodePort    = "5682"
	nodeTLSPort = "5681"
)

func (n *privateNode) script() string {
	p, _ := filepath.Abs("../../scripts/rabbitmq-tls-node.sh")
	return p
}

// command runs the node script with this node's environment.
func (n *privateNode) command(verb string) []string {
	return []string{"env",
		"HUB_RMQ_DIR=" + n.dir + "/node",
		"HUB_RMQ_PORT=" + nodePort,
		"HUB_RMQ_TLS_PORT=" + nodeTLSPort,
		"HUB_RMQ_DIST_PORT=25682",
		"HUB_RMQ_CERTS=" + n.certs,
		n.script(), verb}
}

func (n *privateNode) run(verb string) error {
	args := n.command(verb)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", n.script(), verb, err, out)
	}
	return nil
}

// require starts the node once per test binary, or skips t (fails it with
// HUB_REQUIRE_INTEGRATION=1) when RabbitMQ is not installed.
func (n *privateNode) require(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil {
		msg := "rabbitmq-server is not installed, cannot start a private RabbitMQ node for restart and TLS tests"
		if testenv.Required() {
			t.Fatal(msg + "; HUB_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	n.once.Do(func() {
		// A fixed directory: a node left behind by a killed test run has
		// its cookie and pid file there, so it can be stopped now.
		n.dir = filepath.Join(os.TempDir(), "hub-amqp-test-node")
		n.certs = filepath.Join(n.dir, "certs")
		if n.err = os.MkdirAll(n.dir, 0o755); n.err != nil {
			return
		}
		if n.err = n.run("stop"); n.err != nil {
			return
		}
		if n.err = os.RemoveAll(filepath.Join(n.dir, "node", "mnesia")); n.err != nil {
			return
		}
		if n.err = writeCerts(n.certs); n.err != nil {
			return
		}
		n.started = true
		n.err = n.run("start")
	})
	require.NoError(t, n.err)
	testenv.Require(t, "private RabbitMQ node", n.url())
}

func (n *privateNode) stop() {
	if !n.started {
		return
	}
	if err := n.run("stop"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	_ = os.RemoveAll(n.dir)
}

func (n *privateNode) url() string    { return "amqp://guest:guest@127.0.0.1:" + nodePort + "/" }
func (n *privateNode) tlsURL() string { return "amqps://guest:guest@127.0.0.1:" + nodeTLSPort + "/" }
func (n *privateNode) file(name string) string {
	return filepath.Join(n.certs, name)
}

// writeCerts generates a CA, a server certificate for localhost and
// 127.0.0.1, a client certificate, and a client certificate of another CA.
func writeCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, caKey, caPEM, err := newCert(nil, nil, "hub test CA", true)
	if err != nil {
		return err
	}
	other, otherKey, _, err := newCert(nil, nil, "hub other CA", true)
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.pem": caPEM}
	for _, c := range []struct {
		name   string
		parent *x509.Certificate
		key    *ecdsa.PrivateKey
	}{{"server", ca, caKey}, {"client", ca, caKey}, {"other-client", other, otherKey}} {
		_, key, certPEM, err := newCert(c.parent, c.key, c.name, false)
		if err != nil {
			return err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		files[c.name+".pem"] = certPEM
		files[c.name+".key"] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	for name, data := range files {
		// RabbitMQ may run as another user: the files are world-readable
		// test material, generated per run and removed after.
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var serial int64

func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// sharedURL returns the machine's RabbitMQ, skipping t when unreachable.
func sharedURL(t *testing.T) string {
	t.Helper()
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	return testenv.AMQPURL()
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// uniqueTopic returns a topic name no other test uses, and deletes its
// exchange and queues from url at the end of t.
func uniqueTopic(t *testing.T, url string) string {
	t.Helper()
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	topic := fmt.Sprintf("hubtest.%s.%x", strings.Trim(nonName.ReplaceAllString(t.Name(), "-"), "-"), rb)
	t.Cleanup(func() { deleteTopology(url, topic) })
	return topic
}

// deleteTopology removes the test's exchange and queues. Queue names are
// unknown here, so the test registers them through cleanupQueues.
func deleteTopology(url, topic string) {
	c, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return
	}
	_ = ch.ExchangeDelete(topic, false, false)
	queuesMu.Lock()
	qs := queues[topic]
	delete(queues, topic)
	queuesMu.Unlock()
	for _, q := range append(qs, topic) {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			if ch, err = c.Channel(); err != nil {
				return
			}
		}
	}
}

var (
	queuesMu sync.Mutex
	queues   = map[string][]string{}
)

// cleanupQueues registers more queues of topic to delete at the end.
func cleanupQueues(topic string, names ...string) {
	queuesMu.Lock()
	queues[topic] = append(queues[topic], names...)
	queuesMu.Unlock()
}

// newBroker returns a broker closed at the end of t.
func newBroker(t *testing.T, cfg amqp.Config) *amqp.Broker {
	t.Helper()
	b, err := amqp.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// queueDepth returns the number of ready messages in queue (a passive
// declare), -1 when it does not exist.
func queueDepth(t *testing.T, url, queue string) int {
	t.Helper()
	c, err := amqp091.Dial(url)
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return q.Messages
}

var _ = broker.ErrClosed
