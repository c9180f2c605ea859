package platform

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/harvesthub/hub/broker"
)

// serverTLS returns the HTTP server's TLS configuration, or nil for plain
// HTTP when no certificate is configured.
//
// With -tls-client-ca the server verifies client certificates signed by
// that CA when a client presents one (tls.VerifyClientCertIfGiven): the
// ingest API then accepts a verified certificate as a credential (see
// api.ClientCertIdentity), while clients without one, such as the kubelet's
// probes, still connect and use API keys or tokens. Certificates and the CA
// are read again when their files change (broker.TLSFiles), so rotation
// needs no restart. Without -tls-client-ca the key pair is loaded once.
func serverTLS(c Config) (*tls.Config, error) {
	switch {
	case c.TLSCert == "" && c.TLSKey == "" && c.TLSClientCA == "":
		return nil, nil
	case c.TLSCert == "" || c.TLSKey == "":
		return nil, errors.New("platform: HTTPS needs both -tls-cert and -tls-key")
	case c.TLSClientCA == "":
		pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("platform: -tls-cert/-tls-key: %w", err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, nil
	}
	cfg, err := broker.TLSFiles{CA: c.TLSClientCA, Cert: c.TLSCert, Key: c.TLSKey}.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("platform: HTTPS with client certificates: %w", err)
	}
	perConn := cfg.GetConfigForClient
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := perConn(hello)
		if c != nil {
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, err
	}
	return cfg, nil
}
