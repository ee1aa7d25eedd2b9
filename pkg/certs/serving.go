package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ServingNotAfter is when the serving certificate this replica serves
// expires, for an alert well before it does (rotation failing silently).
var ServingNotAfter = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "keyhook_webhook_serving_certificate_expiry_timestamp_seconds",
	Help: "When the serving certificate of this replica (self-managed TLS) expires, in seconds since the epoch.",
})

// ServingMetrics are the collectors of a replica that serves with
// ServingCert, registered by the role that serves TLS, not on import.
func ServingMetrics() []prometheus.Collector { return []prometheus.Collector{ServingNotAfter} }

// ServingCert is the serving certificate of one replica, read from the
// Secret through a cache (Cache): every replica serves the certificate the
// leader last wrote, from the first TLS handshake after the cache saw it,
// without a restart and without writing files (the container's root file
// system is read-only).
//
// Use GetCertificate as the webhook server's tls.Config.GetCertificate,
// and Ready as a readiness check.
type ServingCert struct {
	// Reader reads the Secret; a cache, since every handshake reads it.
	Reader client.Reader
	// Secret holds tls.crt and tls.key.
	Secret types.NamespacedName
	// Log receives a line when a certificate is loaded or does not load.
	Log logr.Logger

	mu      sync.Mutex
	version string // resourceVersion of the Secret last parsed
	cert    *tls.Certificate
	certPEM []byte // what cert was parsed from
	keyPEM  []byte
}

// GetCertificate returns the Secret's certificate; while the Secret cannot
// be read or does not parse, the last one that did.
func (s *ServingCert) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := hello.Context()
	if ctx == nil { // a ClientHelloInfo not made by crypto/tls
		ctx = context.Background()
	}
	return s.load(ctx)
}

// Ready is a healthz.Checker: ready once a serving certificate is loaded.
func (s *ServingCert) Ready(req *http.Request) error {
	_, err := s.load(req.Context())
	return err
}

func (s *ServingCert) load(ctx context.Context) (*tls.Certificate, error) {
	secret := &corev1.Secret{}
	getErr := s.Reader.Get(ctx, s.Secret, secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	if getErr != nil {
		if s.cert != nil {
			return s.cert, nil
		}
		return nil, fmt.Errorf("no serving certificate yet: reading Secret %s: %w", s.Secret, getErr)
	}
	if secret.ResourceVersion == s.version {
		if s.cert == nil {
			return nil, fmt.Errorf("no serving certificate yet: Secret %s holds no valid one", s.Secret)
		}
		return s.cert, nil
	}
	s.version = secret.ResourceVersion
	certPEM, keyPEM := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
	if s.cert != nil && bytes.Equal(certPEM, s.certPEM) && bytes.Equal(keyPEM, s.keyPEM) {
		return s.cert, nil // the Secret changed elsewhere, e.g. its CA bundle
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && pair.Leaf == nil {
		err = errors.New("no certificate")
	}
	if err != nil {
		s.Log.Error(err, "serving certificate does not load; serving the previous one", "secret", s.Secret, "resourceVersion", secret.ResourceVersion, "previous", s.cert != nil)
		if s.cert != nil {
			return s.cert, nil
		}
		return nil, fmt.Errorf("no serving certificate yet: Secret %s holds no valid one: %w", s.Secret, err)
	}
	s.cert, s.certPEM, s.keyPEM = &pair, certPEM, keyPEM
	ServingNotAfter.Set(float64(pair.Leaf.NotAfter.Unix()))
	s.Log.Info("serving certificate loaded", "secret", s.Secret, "serial", pair.Leaf.SerialNumber.Text(16), "notAfter", pair.Leaf.NotAfter)
	return s.cert, nil
}
