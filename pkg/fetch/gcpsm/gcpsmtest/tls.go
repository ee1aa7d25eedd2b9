package gcpsmtest

import (
	"crypto/tls"
	"time"

	keyhookcerts "github.com/keyhook/keyhook/pkg/certs"
)

// certs is a throwaway CA and one serving certificate it signed, valid for
// 127.0.0.1, ::1 and localhost.
type certs struct {
	caPEM []byte
	leaf  tls.Certificate
}

// newCerts makes a fresh CA per server, so that a client trusting one
// server's CA does not trust another's (tests of untrusted servers rely on
// that). ECDSA keeps it fast.
func newCerts() (certs, error) {
	caPEM, certPEM, keyPEM, err := keyhookcerts.SelfSigned([]string{"127.0.0.1", "::1", "localhost"}, 24*time.Hour)
	if err != nil {
		return certs{}, err
	}
	leaf, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return certs{}, err
	}
	return certs{caPEM: caPEM, leaf: leaf}, nil
}
