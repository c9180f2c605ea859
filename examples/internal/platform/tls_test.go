package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/internal/itest"
)

func TestHTTPSWithOptionalClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := itest.NewCA(t, "harvest test CA")
	serverCert, serverKey := ca.Issue(t, "127.0.0.1")
	clientCert, clientKey := ca.Issue(t, "harvester-1")
	rogue := itest.NewCA(t, "rogue CA")
	rogueCert, rogueKey := rogue.Issue(t, "intruder")

	cfg := testConfig()
	cfg.TLSCert = itest.WriteFile(t, dir, "server.pem", serverCert)
	cfg.TLSKey = itest.WriteFile(t, dir, "server-key.pem", serverKey)
	cfg.TLSClientCA = itest.WriteFile(t, dir, "ca.pem", ca.PEM)
	rt, err := New(context.Background(), cfg, io.Discard)
	require.NoError(t, err)
	rt.Mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			_, _ = io.WriteString(w, r.TLS.VerifiedChains[0][0].Subject.CommonName)
		}
	})
	addr, err := rt.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	client := func(certPEM, keyPEM []byte) (*http.Client, func()) {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			require.NoError(t, err)
			// Always send it, even when its issuer is not among the
			// server's acceptable CAs (a static Certificates list would
			// be withheld then).
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		tr := &http.Transport{TLSClientConfig: tc}
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}, tr.CloseIdleConnections
	}
	base := "https://" + addr.String()

	anon, closeAnon := client(nil, nil)
	defer closeAnon()
	status, _ := get(t, anon, base+"/healthz")
	require.Equal(t, http.StatusOK, status, "probes connect without a client certificate")
	status, who := get(t, anon, base+"/whoami")
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, who)

	known, closeKnown := client(clientCert, clientKey)
	defer closeKnown()
	_, who = get(t, known, base+"/whoami")
	require.Equal(t, "harvester-1", who, "a verified client certificate identifies the caller")

	intruder, closeIntruder := client(rogueCert, rogueKey)
	defer closeIntruder()
	_, err = intruder.Get(base + "/whoami")
	require.Error(t, err, "a certificate from another CA is refused")

	plain := &http.Client{Timeout: 5 * time.Second}
	res, err := plain.Get("http://" + addr.String() + "/healthz")
	if err == nil {
		res.Body.Close()
		require.Equal(t, http.StatusBadRequest, res.StatusCode, "plain HTTP to the HTTPS port")
	}
	plain.CloseIdleConnections()
}

func TestTLSSettingsValidated(t *testing.T) {
	c := testConfig()
	c.TLSCert = "cert.pem"
	require.ErrorContains(t, c.Validate(), "both -tls-cert and -tls-key")
	c = testConfig()
	c.TLSClientCA = "ca.pem"
	require.ErrorContains(t, c.Validate(), "-tls-client-ca needs")
	c = testConfig()
	c.TLSCert, c.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	_, err := New(context.Background(), c, io.Discard)
	require.ErrorContains(t, err, "-tls-cert")
}
