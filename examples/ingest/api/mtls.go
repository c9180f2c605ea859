package api

import "net/http"

// ClientCertIdentity returns the subject common name of the client
// certificate the TLS handshake of r verified, or "" when r did not come
// over TLS or its certificate was not verified against the server's client
// CAs (tls.Config.ClientAuth must be tls.VerifyClientCertIfGiven or
// tls.RequireAndVerifyClientCert, as broker.TLSFiles.ServerConfig sets).
// An unverified certificate (tls.RequireAnyClientCert) never counts.
func ClientCertIdentity(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}
