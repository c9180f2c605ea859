package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/internal/itest"
)

// TestIngestClientCertificates runs the ingest binary over HTTPS with
// client certificates as credentials: a verified certificate with a grant
// may post, a request without credentials is refused, and the probes work
// without a certificate.
func TestIngestClientCertificates(t *testing.T) {
	bins := buildServices(t)
	dir := t.TempDir()
	ca := itest.NewCA(t, "harvest test CA")
	serverCert, serverKey := ca.Issue(t, "127.0.0.1")
	clientCert, clientKey := ca.Issue(t, "harvester-1")
	grants := itest.WriteFile(t, dir, "grants.json", []byte(`{"harvester-1": {"scopes": ["records:write"], "tenant": "acme"}}`))

	ingest := start(t, "ingest", bins+"/ingest", []string{"HUB_BROKER=memory", "HUB_LISTEN=127.0.0.1:0", "HUB_LOG_LEVEL=info"},
		"-tls-cert", itest.WriteFile(t, dir, "server.pem", serverCert),
		"-tls-key", itest.WriteFile(t, dir, "server-key.pem", serverKey),
		"-tls-client-ca", itest.WriteFile(t, dir, "ca.pem", ca.PEM),
		"-client-certs", grants)
	base := strings.Replace(ingest.addr, "http://", "https://", 1)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	pair, err := tls.X509KeyPair(clientCert, clientKey)
	require.NoError(t, err)
	withCert := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	anonymous := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	t.Cleanup(withCert.CloseIdleConnections)
	t.Cleanup(anonymous.CloseIdleConnections)
	certClient := client{t: t, c: &http.Client{Transport: withCert, Timeout: 10 * time.Second}}
	anonClient := client{t: t, c: &http.Client{Transport: anonymous, Timeout: 10 * time.Second}}

	eventually(t, 20*time.Second, "ingest ready over HTTPS", func() bool {
		status, _ := anonClient.do("GET", base+"/readyz", "", "", "")
		return status == http.StatusOK
	})
	record := `{"id":"ds-1","source":"gov-datasets","title":"Broadband coverage in Wales, 2024"}`
	status, body := anonClient.do("POST", base+"/v1/records", "application/json", "", record)
	require.Equal(t, http.StatusUnauthorized, status, body)
	status, body = certClient.do("POST", base+"/v1/records", "application/json", "", record)
	require.Equal(t, http.StatusAccepted, status, body)

	require.NoError(t, ingest.stop(t, syscall.SIGTERM))
}
