package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// TLSFiles names the PEM files of a mutual-TLS identity. The files are read
// again when they change on disk (their modification time or size differs
// from the last read), so rotated certificates take effect at the next
// handshake without a restart. A rotation that leaves the files unreadable
// or mismatched for a moment (the key written after the certificate) keeps
// the previous material until the pair loads again.
type TLSFiles struct {
	// CA is the PEM file of the certificate authorities that sign the peer's
	// certificate. Empty means the system pool (clients only; ServerConfig
	// requires it).
	CA string
	// Cert and Key are the PEM files of this side's certificate chain and
	// private key. Both or neither must be set; a server needs both.
	Cert string
	Key  string
	// ServerName is the name the client verifies in the server's certificate
	// and sends as SNI. Empty means the host the client dials, which the
	// dialer sets on the returned config (amqp091 and net/http do).
	ServerName string
}

// Config returns a client configuration: TLS 1.2 or newer, the server
// verified against CA (or the system pool when CA is empty) and the client
// certificate from Cert and Key. Both are read again when their files change.
// It returns an error when a file is missing, unreadable or when Cert and Key
// do not match.
func (f TLSFiles) Config() (*tls.Config, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("broker: TLS Cert and Key must be set together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.Cert != "" {
		kp := &keyPair{certFile: f.Cert, keyFile: f.Key}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		}
	}
	if f.CA != "" {
		ca := &caPool{file: f.CA}
		if _, err := ca.get(); err != nil {
			return nil, err
		}
		// The roots can change between handshakes, which RootCAs cannot
		// express: the standard verification is replaced by the same
		// verification against the pool current at each handshake.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			// No SNI is sent for an IP address: fall back to the name the
			// dialer set on this config (amqp091 and net/http set it to
			// the host they dial).
			if cs.ServerName == "" {
				cs.ServerName = cfg.ServerName
			}
			return verifyServer(cs, ca)
		}
	}
	return cfg, nil
}

// ServerConfig returns a server configuration that requires and verifies a
// client certificate signed by CA, and presents Cert and Key: TLS 1.2 or
// newer, every file read again when it changes. CA, Cert and Key are
// required.
func (f TLSFiles) ServerConfig() (*tls.Config, error) {
	switch {
	case f.CA == "":
		return nil, errors.New("broker: TLS server needs CA to verify client certificates")
	case f.Cert == "" || f.Key == "":
		return nil, errors.New("broker: TLS server needs Cert and Key")
	}
	kp := &keyPair{certFile: f.Cert, keyFile: f.Key}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	ca := &caPool{file: f.CA}
	if _, err := ca.get(); err != nil {
		return nil, err
	}
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get()
		},
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool, err := ca.get()
		if err != nil {
			return nil, err
		}
		c := base.Clone()
		c.ClientCAs = pool
		return c, nil
	}
	// ClientCAs of the returned config is only a fallback for callers that
	// drop GetConfigForClient; handshakes use the pool current at the time.
	cfg.ClientCAs, _ = ca.get()
	return cfg, nil
}

func verifyServer(cs tls.ConnectionState, ca *caPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("broker: TLS server sent no certificate")
	}
	if cs.ServerName == "" {
		return errors.New("broker: TLS ServerName is empty; set TLSFiles.ServerName")
	}
	pool, err := ca.get()
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		DNSName:       cs.ServerName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("broker: TLS server certificate: %w", err)
	}
	return nil
}

// stamp identifies a version of a file on disk.
type stamp struct {
	mod  time.Time
	size int64
}

func statFile(what, name string) (stamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return stamp{}, fmt.Errorf("broker: TLS %s file: %w", what, err)
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// keyPair caches a certificate and key, reloaded when either file changes.
type keyPair struct {
	certFile, keyFile string

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp stamp
	keyStamp  stamp
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, err := statFile("Cert", k.certFile)
	if err == nil {
		var ks stamp
		if ks, err = statFile("Key", k.keyFile); err == nil {
			if k.cert != nil && cs == k.certStamp && ks == k.keyStamp {
				return k.cert, nil
			}
			var c tls.Certificate
			if c, err = tls.LoadX509KeyPair(k.certFile, k.keyFile); err == nil {
				k.cert, k.certStamp, k.keyStamp = &c, cs, ks
				return k.cert, nil
			}
			err = fmt.Errorf("broker: TLS Cert %s and Key %s: %w", k.certFile, k.keyFile, err)
		}
	}
	if k.cert != nil {
		return k.cert, nil // mid-rotation: keep the last good pair
	}
	return nil, err
}

// caPool caches a CA pool, reloaded when its file changes.
type caPool struct {
	file string

	mu    sync.Mutex
	pool  *x509.CertPool
	stamp stamp
}

func (c *caPool) get() (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := statFile("CA", c.file)
	if err == nil {
		if c.pool != nil && st == c.stamp {
			return c.pool, nil
		}
		var pem []byte
		if pem, err = os.ReadFile(c.file); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				c.pool, c.stamp = pool, st
				return pool, nil
			}
			err = fmt.Errorf("broker: TLS CA file %s holds no PEM certificate", c.file)
		} else {
			err = fmt.Errorf("broker: TLS CA file: %w", err)
		}
	}
	if c.pool != nil {
		return c.pool, nil
	}
	return nil, err
}
