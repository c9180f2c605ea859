package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

// writeCert writes name.pem and name.key signed by parent (self-signed CA
// when parent is nil) into dir and returns the certificate and key.
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return cert, key
}

// TestMutualTLS: a kfake cluster that requires client certificates of its
// CA accepts the broker with broker.TLSFiles, and refuses a client of
// another CA.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "server", ca, caKey)
	writeCert(t, dir, "client", ca, caKey)
	other, otherKey := writeCert(t, dir, "other-ca", nil, nil)
	writeCert(t, dir, "other-client", other, otherKey)
	f := func(name string) string { return filepath.Join(dir, name) }

	srv, err := broker.TLSFiles{CA: f("ca.pem"), Cert: f("server.pem"), Key: f("server.key")}.ServerConfig()
	require.NoError(t, err)
	addrs := newCluster(t, kfake.TLS(srv))

	good := newBroker(t, addrs, func(c *kafka.Config) {
		c.TLS = &broker.TLSFiles{CA: f("ca.pem"), Cert: f("client.pem"), Key: f("client.key")}
	})
	topic := unique("tls")
	require.NoError(t, good.Publish(topic, msg("a")))
	ch, err := good.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	m := receive(t, ch)
	require.Equal(t, "a", m.UUID)
	m.Ack()

	bad := newBroker(t, addrs, func(c *kafka.Config) {
		c.TLS = &broker.TLSFiles{CA: f("ca.pem"), Cert: f("other-client.pem"), Key: f("other-client.key")}
		c.RequestTimeout = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.Error(t, bad.Ping(ctx), "a certificate of another CA must be refused")
}
