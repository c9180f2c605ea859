package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/hubtest"
)

// pki is a test certificate authority.
type pki struct {
	t      *testing.T
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	serial int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &pki{t: t, caCert: cert, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}
}

// issue returns a certificate for cn signed by the CA (or self-signed).
func (p *pki) issue(cn string, server, selfSigned bool) (certPEM, keyPEM []byte) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(p.t, err)
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	parent, signer := p.caCert, p.caKey
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(p.t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(p.t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (p *pki) client(t *testing.T, certPEM, keyPEM []byte) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{c}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// A server whose TLS configuration comes from broker.TLSFiles accepts a
// client certificate listed in Config.ClientCerts as a credential.
func TestClientCertCredential(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, b, 0o600))
		return path
	}
	srvCert, srvKey := p.issue("ingest", true, false)
	files := broker.TLSFiles{CA: write("ca.pem", p.caPEM), Cert: write("srv.pem", srvCert), Key: write("srv-key.pem", srvKey)}
	tlsCfg, err := files.ServerConfig()
	require.NoError(t, err)

	th := hubtest.New(t)
	s, err := api.New(api.Config{Hub: th.Hub, Keys: api.NewKeyStore(), ClientCerts: map[string]api.Grant{
		"partner-a": {Scopes: []string{api.ScopeWrite}, Tenant: "partner-a"},
		"auditor":   {Scopes: []string{"records:read"}},
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.TLS = tlsCfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	t.Cleanup(srv.Close)

	for _, tt := range []struct {
		name   string
		cn     string
		status int
	}{
		{"listed with records:write", "partner-a", http.StatusAccepted},
		{"listed without the scope", "auditor", http.StatusForbidden},
		{"verified but not listed", "stranger", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cert, key := p.issue(tt.cn, false, false)
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/records", strings.NewReader(validRecord))
			require.NoError(t, err)
			req.Header.Set("Content-Type", ctJSON)
			resp, err := p.client(t, cert, key).Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.Equal(t, tt.status, resp.StatusCode, "body: %s", body)
		})
	}
	got := hubtest.Published[recordsIngested](t, th, topicIngested)
	require.Len(t, got, 1)
	require.Equal(t, "partner-a", got[0].Tenant)

	// Without a client certificate the handshake itself fails.
	_, err = p.client(t, nil, nil).Get(srv.URL + "/v1/records")
	require.Error(t, err)
}

func TestClientCertIdentity(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "cn="+api.ClientCertIdentity(r))
	})
	get := func(t *testing.T, c *http.Client, url string) string {
		t.Helper()
		resp, err := c.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	p := newPKI(t)
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	for _, tt := range []struct {
		name       string
		clientAuth tls.ClientAuthType
		selfSigned bool
		want       string
	}{
		{"verified", tls.RequireAndVerifyClientCert, false, "cn=partner-a"},
		{"verified if given", tls.VerifyClientCertIfGiven, false, "cn=partner-a"},
		{"presented but not verified", tls.RequireAnyClientCert, true, "cn="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(echo)
			srv.TLS = &tls.Config{ClientAuth: tt.clientAuth, ClientCAs: pool}
			srv.StartTLS()
			defer srv.Close()
			cert, key := p.issue("partner-a", false, tt.selfSigned)
			c, err := tls.X509KeyPair(cert, key)
			require.NoError(t, err)
			tr := srv.Client().Transport.(*http.Transport).Clone()
			// Sent even when it is not signed by a CA the server names.
			tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
			defer tr.CloseIdleConnections()
			require.Equal(t, tt.want, get(t, &http.Client{Transport: tr}, srv.URL))
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		srv := httptest.NewServer(echo)
		defer srv.Close()
		require.Equal(t, "cn=", get(t, srv.Client(), srv.URL))
	})
}
