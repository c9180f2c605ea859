package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker/memory"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate with common name cn into dir, and returns the client's
// tls.Certificate and the CA pool.
func testPKI(t *testing.T, dir, cn string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "console test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	write := func(name string, b []byte) { require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600)) }
	write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	sc, sk := issue(2, "console", x509.ExtKeyUsageServerAuth)
	write("server.pem", sc)
	write("server.key", sk)
	cc, ck := issue(3, cn, x509.ExtKeyUsageClientAuth)
	client, err := tls.X509KeyPair(cc, ck)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return client, pool
}

// TestServeClientCertificates serves on a non-loopback address with
// client certificates instead of a token: a client with a certificate
// from the CA gets in as its common name, one without is refused.
func TestServeClientCertificates(t *testing.T) {
	dir := t.TempDir()
	client, pool := testPKI(t, dir, "ada")
	b, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	name := "console-" + randomHex()
	t.Cleanup(registerMemory(name, b))
	out := lineWriter{lines: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	env := map[string]string{"HUBCTL_BROKER": "memory://" + name, "HUBCTL_CONSOLE_TLS_CA": filepath.Join(dir, "ca.pem")}
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "0.0.0.0:0",
			"--console-tls-cert", filepath.Join(dir, "server.pem"), "--console-tls-key", filepath.Join(dir, "server.key")},
			strings.NewReader(""), out, io.Discard, func(k string) string { return env[k] })
	}()
	var base string
	select {
	case line := <-out.lines:
		m := regexp.MustCompile(`console on https://.*:(\d+)/`).FindStringSubmatch(line)
		require.NotNil(t, m, line)
		base = "https://127.0.0.1:" + m[1]
	case code := <-done:
		t.Fatalf("serve exited with %d", code)
	case <-time.After(waitFor):
		t.Fatal("serve never started")
	}
	get := func(certs []tls.Certificate) (*http.Response, string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: waitFor}
		resp, err := c.Get(base + "/")
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, string(body), err
	}
	resp, body, err := get([]tls.Certificate{client})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "cert:ada from 127.0.0.1")
	require.Contains(t, resp.Header.Get("Strict-Transport-Security"), "max-age")
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			require.True(t, c.Secure, "a Secure cookie over HTTPS")
		}
	}
	_, _, err = get(nil)
	require.Error(t, err, "no client certificate, no console")
	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code)
	case <-time.After(waitFor):
		t.Fatal("serve did not stop")
	}
}

func TestTopicSpecs(t *testing.T) {
	cn := conn{dlqSuffix: ".dlq", idle: time.Second, maxScan: 10}
	sf := serveFlags{listen: serveListenDefault, sample: time.Second, history: 10}
	require.NoError(t, sf.topics.Set("records:normalise, audit"))
	require.NoError(t, sf.topics.Set("jobs"))
	cfg, err := sf.config(cn, func(string) string { return "" })
	require.NoError(t, err)
	require.Equal(t, []topicSpec{{topic: "records", groups: []string{"normalise", "audit"}}, {topic: "jobs"}}, cfg.topics)
	require.True(t, cfg.loopback)
}
