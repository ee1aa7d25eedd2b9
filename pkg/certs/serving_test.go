package certs

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestServingCert: not ready without a Secret; serves the Secret's
// certificate, and a new one as soon as the Secret changes; keeps serving
// the last good one when the Secret is broken or gone.
func TestServingCert(t *testing.T) {
	ctx := context.Background()
	c := testConfig()
	cl := fake.NewClientBuilder().Build()
	s := &ServingCert{Reader: cl, Secret: c.Secret, Log: logr.Discard()}
	ready := func() error { return s.Ready(httptest.NewRequest("GET", "/readyz", nil)) }
	if err := ready(); err == nil {
		t.Fatal("ready without a Secret")
	}

	first, err := Ensure(time.Now(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Secret.Namespace, Name: c.Secret.Name}, Type: corev1.SecretTypeTLS, Data: first.Data}
	if err := cl.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := ready(); err != nil {
		t.Fatalf("not ready with a Secret: %v", err)
	}
	serial := func() string {
		t.Helper()
		cert, err := s.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return cert.Leaf.SerialNumber.String()
	}
	want := leafSerial(t, first.Data)
	if got := serial(); got != want {
		t.Fatalf("serving %s, want the Secret's %s", got, want)
	}

	// Renewed: served at the next handshake.
	c.CertRenewBefore = c.CertValidity - time.Nanosecond
	renewed, err := Ensure(time.Now(), c, first.Data)
	if err != nil || !renewed.Changed() {
		t.Fatalf("Ensure did not renew: %v %v", renewed.Reasons, err)
	}
	secret.Data = renewed.Data
	if err := cl.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	want = leafSerial(t, renewed.Data)
	if got := serial(); got != want {
		t.Fatalf("after the Secret changed: serving %s, want %s", got, want)
	}
	served, _ := s.GetCertificate(&tls.ClientHelloInfo{})
	if got, want := testutil.ToFloat64(ServingNotAfter), float64(served.Leaf.NotAfter.Unix()); got != want {
		t.Errorf("expiry metric %v, want the served certificate's %v", got, want)
	}

	// Broken, then gone: the last good certificate is still served.
	secret.Data = map[string][]byte{corev1.TLSCertKey: []byte("garbage"), corev1.TLSPrivateKeyKey: nil}
	if err := cl.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != want {
		t.Errorf("with a broken Secret: serving %s, want the last good %s", got, want)
	}
	if err := cl.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != want {
		t.Errorf("without the Secret: serving %s, want the last good %s", got, want)
	}
	if err := ready(); err != nil {
		t.Errorf("a replica serving a good certificate turned unready: %v", err)
	}
}

func leafSerial(t *testing.T, data map[string][]byte) string {
	t.Helper()
	pair, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.String()
}
