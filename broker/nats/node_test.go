package nats_test

import (
	"bufio"
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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/internal/testenv"
)

// node is a private nats-server with JetStream on a port of its own, for
// the tests that stop a server or configure TLS. The shared server on
// 127.0.0.1:4222 is never touched.
type node struct {
	t    *testing.T
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

// startNode starts a private server with extra arguments; it is killed
// when t ends. Without the nats-server binary the test is skipped (or
// fails when integration servers are required).
func startNode(t *testing.T, extra ...string) *node {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		msg := "nats-server is not installed (apt-get install nats-server); the private-node tests need it"
		if testenv.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	n := &node{t: t, port: port, dir: t.TempDir()}
	n.args = append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", filepath.Join(n.dir, "js")}, extra...)
	n.cmd = exec.Command(bin, n.args...)
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// start runs the server (again) and waits, at most 10s, until it accepts
// connections and says INFO.
func (n *node) start() {
	n.t.Helper()
	if n.cmd.Process != nil {
		n.cmd = exec.Command(n.cmd.Path, n.args...)
	}
	require.NoError(n.t, n.cmd.Start())
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			if strings.HasPrefix(line, "INFO") {
				return
			}
		}
		require.True(n.t, time.Now().Before(deadline), "private nats-server on port %d not ready within 10s", n.port)
		time.Sleep(50 * time.Millisecond) // polling a process we started; no event to wait on
	}
}

// stop kills the server and waits for it; safe twice.
func (n *node) stop() {
	if n.cmd.Process == nil || n.cmd.ProcessState != nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_, _ = n.cmd.Process.Wait()
	n.cmd.ProcessState = &os.ProcessState{}
}

var serial atomic.Int64

// writeCerts writes ca.pem, server.pem/.key, client.pem/.key and
// other-client.pem/.key (issued by another CA) into dir.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	ca, caKey, caPEM := newCert(t, nil, nil, "hub test CA", true)
	other, otherKey, _ := newCert(t, nil, nil, "hub other CA", true)
	files := map[string][]byte{"ca.pem": caPEM}
	for _, c := range []struct {
		name   string
		parent *x509.Certificate
		key    *ecdsa.PrivateKey
	}{{"server", ca, caKey}, {"client", ca, caKey}, {"other-client", other, otherKey}} {
		_, key, certPEM := newCert(t, c.parent, c.key, c.name, false)
		der, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		files[c.name+".pem"] = certPEM
		files[c.name+".key"] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
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
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
