package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

var (
	t0    = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	hosts = []string{"keyhook-webhook.keyhook-system.svc", "127.0.0.1"}
	day   = 24 * time.Hour
)

// testConfig: CAs live 90 days and are replaced with 30 left; serving
// certificates live 10 days and are renewed with 3 left; a new CA signs a
// minute after it was issued.
func testConfig() Config {
	return Config{
		Secret:               types.NamespacedName{Namespace: "keyhook-system", Name: "keyhook-webhook-tls"},
		WebhookConfiguration: "keyhook",
		Hosts:                hosts,
		CAValidity:           90 * day,
		CARenewBefore:        30 * day,
		CertValidity:         10 * day,
		CertRenewBefore:      3 * day,
		Propagation:          time.Minute,
	}
}

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func mustCA(t *testing.T, issued time.Time) authority {
	t.Helper()
	cert, key, err := newCA(issued, 90*day)
	if err != nil {
		t.Fatal(err)
	}
	return authority{cert, key}
}

// secretData builds the data of a Secret from option functions.
func secretData(t *testing.T, opts ...func(t *testing.T, d map[string][]byte)) map[string][]byte {
	t.Helper()
	d := map[string][]byte{}
	for _, o := range opts {
		o(t, d)
	}
	return d
}

func withBundle(cas ...authority) func(*testing.T, map[string][]byte) {
	return func(_ *testing.T, d map[string][]byte) {
		var certs []*x509.Certificate
		for _, ca := range cas {
			certs = append(certs, ca.cert)
		}
		d[CABundleKey] = encodeCertificates(certs)
	}
}

func withCAKey(ca authority) func(*testing.T, map[string][]byte) {
	return func(t *testing.T, d map[string][]byte) {
		_, keyPEM, err := encodeKeyPair(ca.cert, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		d[CAKeyKey] = keyPEM
	}
}

func withServing(ca authority, issued time.Time, names []string) func(*testing.T, map[string][]byte) {
	return func(t *testing.T, d map[string][]byte) {
		cert, key, err := newServing(issued, 10*day, names, ca.cert, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		d[corev1.TLSCertKey], d[corev1.TLSPrivateKeyKey], err = encodeKeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
	}
}

func withRaw(key, value string) func(*testing.T, map[string][]byte) {
	return func(_ *testing.T, d map[string][]byte) { d[key] = []byte(value) }
}

// outcome is what a Plan means, in names: CAs by their common name.
type outcome struct {
	Reasons []string
	// Bundle is ca.crt, oldest first.
	Bundle []string
	// Signer is the CA of ca.key.
	Signer string
	// ServedBy is the CA that signed tls.crt; Names its SANs.
	ServedBy string
	Names    []string
	// Serving, CAKey, BundleBytes: whether each is byte for byte the input.
	ServingKept, CAKeyKept, BundleKept bool
	Next                               time.Time
}

func describe(t *testing.T, in map[string][]byte, p Plan) outcome {
	t.Helper()
	o := outcome{Reasons: p.Reasons, Next: p.Next}
	bundle := parseCertificates(p.Data[CABundleKey])
	for _, ca := range bundle {
		o.Bundle = append(o.Bundle, ca.Subject.CommonName)
	}
	key, err := parsePrivateKey(p.Data[CAKeyKey])
	if err != nil {
		t.Fatalf("ca.key: %v", err)
	}
	if s := signerOf(bundle, key); s != nil {
		o.Signer = s.Subject.CommonName
	}
	cert, problem := checkServing(p.Data[corev1.TLSCertKey], p.Data[corev1.TLSPrivateKeyKey], bundle, hosts, p.Next.Add(-time.Second))
	if problem != "" {
		t.Fatalf("the planned serving certificate is not good until Next: %s", problem)
	}
	o.ServedBy = cert.Issuer.CommonName
	o.Names = append(append(o.Names, cert.DNSNames...), ipStrings(cert.IPAddresses)...)
	o.ServingKept = bytes.Equal(in[corev1.TLSCertKey], p.Data[corev1.TLSCertKey]) && bytes.Equal(in[corev1.TLSPrivateKeyKey], p.Data[corev1.TLSPrivateKeyKey])
	o.CAKeyKept = bytes.Equal(in[CAKeyKey], p.Data[CAKeyKey])
	o.BundleKept = bytes.Equal(in[CABundleKey], p.Data[CABundleKey])
	return o
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

func name(at time.Time) string { return "keyhook-ca@" + at.UTC().Format(time.RFC3339) }

func TestEnsure(t *testing.T) {
	old := mustCA(t, t0)              // due for renewal from t0+60d, expires t0+90d
	next := mustCA(t, t0.Add(61*day)) // its successor
	foreign := mustCA(t, t0.Add(time.Hour))
	served := []string{"keyhook-webhook.keyhook-system.svc", "127.0.0.1"}

	for _, tc := range []struct {
		name string
		now  time.Time
		data map[string][]byte
		want outcome
	}{{
		name: "empty Secret: a CA and a serving certificate",
		now:  t0,
		data: nil,
		want: outcome{
			Reasons:  []string{"no CA yet: issued one", "no serving certificate yet: issued a serving certificate"},
			Bundle:   []string{name(t0)},
			Signer:   name(t0),
			ServedBy: name(t0),
			Names:    served,
			Next:     t0.Add(7 * day),
		},
	}, {
		name: "current: nothing to do until the serving certificate is due",
		now:  t0.Add(2 * day),
		data: secretData(t, withBundle(old), withCAKey(old), withServing(old, t0.Add(day), hosts)),
		want: outcome{
			Bundle: []string{name(t0)}, Signer: name(t0), ServedBy: name(t0), Names: served,
			ServingKept: true, CAKeyKept: true, BundleKept: true,
			Next: t0.Add(8 * day),
		},
	}, {
		name: "serving certificate due: renewed by the same CA",
		now:  t0.Add(8 * day),
		data: secretData(t, withBundle(old), withCAKey(old), withServing(old, t0.Add(day), hosts)),
		want: outcome{
			Reasons: []string{"serving certificate renewal due: issued a serving certificate"},
			Bundle:  []string{name(t0)}, Signer: name(t0), ServedBy: name(t0), Names: served,
			CAKeyKept: true, BundleKept: true,
			Next: t0.Add(15 * day),
		},
	}, {
		name: "CA due: a new CA joins the bundle, the serving certificate stays",
		now:  t0.Add(61 * day),
		data: secretData(t, withBundle(old), withCAKey(old), withServing(old, t0.Add(60*day), hosts)),
		want: outcome{
			Reasons:  []string{"CA renewal due: issued a new CA next to the old one"},
			Bundle:   []string{name(t0), name(t0.Add(61 * day))},
			Signer:   name(t0.Add(61 * day)),
			ServedBy: name(t0), Names: served,
			ServingKept: true,
			Next:        t0.Add(67 * day),
		},
	}, {
		name: "serving certificate due right after a CA rotation: waits until the API server has the new CA",
		now:  t0.Add(61*day + 10*time.Second),
		data: secretData(t, withBundle(old, next), withCAKey(next), withServing(old, t0.Add(54*day), hosts)),
		want: outcome{
			Bundle: []string{name(t0), name(t0.Add(61 * day))}, Signer: name(t0.Add(61 * day)),
			ServedBy: name(t0), Names: served,
			ServingKept: true, CAKeyKept: true, BundleKept: true,
			Next: t0.Add(61*day + time.Minute),
		},
	}, {
		name: "serving certificate due after the propagation delay: signed by the new CA",
		now:  t0.Add(61*day + time.Minute),
		data: secretData(t, withBundle(old, next), withCAKey(next), withServing(old, t0.Add(54*day), hosts)),
		want: outcome{
			Reasons: []string{"serving certificate renewal due: issued a serving certificate"},
			Bundle:  []string{name(t0), name(t0.Add(61 * day))}, Signer: name(t0.Add(61 * day)),
			ServedBy: name(t0.Add(61 * day)), Names: served,
			CAKeyKept: true, BundleKept: true,
			Next: t0.Add(61*day + time.Minute + 7*day),
		},
	}, {
		name: "old CA expired: pruned from the bundle",
		now:  t0.Add(90 * day),
		data: secretData(t, withBundle(old, next), withCAKey(next), withServing(next, t0.Add(88*day), hosts)),
		want: outcome{
			Reasons: []string{"1 expired CA(s) removed from the bundle"},
			Bundle:  []string{name(t0.Add(61 * day))}, Signer: name(t0.Add(61 * day)),
			ServedBy: name(t0.Add(61 * day)), Names: served,
			ServingKept: true, CAKeyKept: true,
			Next: t0.Add(95 * day),
		},
	}, {
		name: "hosts changed: a certificate for the new ones",
		now:  t0.Add(2 * day),
		data: secretData(t, withBundle(old), withCAKey(old), withServing(old, t0.Add(day), []string{"keyhook-webhook.other.svc"})),
		want: outcome{
			Reasons: []string{"serving certificate is not for the webhook's hosts: issued a serving certificate"},
			Bundle:  []string{name(t0)}, Signer: name(t0), ServedBy: name(t0), Names: served,
			CAKeyKept: true, BundleKept: true,
			Next: t0.Add(9 * day),
		},
	}, {
		name: "ca.key lost: a new CA, the old one stays trusted and its certificate served",
		now:  t0.Add(2 * day),
		data: secretData(t, withBundle(old), withRaw(CAKeyKey, "garbage"), withServing(old, t0.Add(day), hosts)),
		want: outcome{
			Reasons:  []string{"ca.key belongs to no CA of the bundle: issued a new CA"},
			Bundle:   []string{name(t0), name(t0.Add(2 * day))},
			Signer:   name(t0.Add(2 * day)),
			ServedBy: name(t0), Names: served,
			ServingKept: true,
			Next:        t0.Add(8 * day),
		},
	}, {
		name: "serving certificate of a CA not in the bundle: replaced",
		now:  t0.Add(2 * day),
		data: secretData(t, withBundle(old), withCAKey(old), withServing(foreign, t0.Add(day), hosts)),
		want: outcome{
			Reasons: []string{"serving certificate not valid under the CA bundle: issued a serving certificate"},
			Bundle:  []string{name(t0)}, Signer: name(t0), ServedBy: name(t0), Names: served,
			CAKeyKept: true, BundleKept: true,
			Next: t0.Add(9 * day),
		},
	}, {
		name: "serving key does not match: replaced",
		now:  t0.Add(2 * day),
		data: func() map[string][]byte {
			d := secretData(t, withBundle(old), withCAKey(old), withServing(old, t0.Add(day), hosts))
			other := secretData(t, withServing(old, t0.Add(day), hosts))
			d[corev1.TLSPrivateKeyKey] = other[corev1.TLSPrivateKeyKey]
			return d
		}(),
		want: outcome{
			Reasons: []string{"serving certificate and key do not parse or do not match: issued a serving certificate"},
			Bundle:  []string{name(t0)}, Signer: name(t0), ServedBy: name(t0), Names: served,
			CAKeyKept: true, BundleKept: true,
			Next: t0.Add(9 * day),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Ensure(tc.now, testConfig(), tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, describe(t, tc.data, p)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !p.Changed() && !equalData(tc.data, p.Data) {
				t.Errorf("unchanged plan with changed data")
			}
		})
	}
}

func equalData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestEnsureConverges runs Ensure at the times it asks for, across two CA
// lifetimes: at every step the serving certificate is valid under the
// bundle the API server had before the step, which is what makes rotation
// invisible to admissions.
func TestEnsureConverges(t *testing.T) {
	c := testConfig()
	now := t0
	var data map[string][]byte
	var cas, servings int
	seenCAs := map[string]bool{}
	for now.Before(t0.Add(200 * day)) {
		before := parseCertificates(data[CABundleKey])
		p, err := Ensure(now, c, data)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Next.After(now) {
			t.Fatalf("at %s: Next %s is not in the future", now, p.Next)
		}
		if data != nil && p.Changed() {
			// What replicas serve after this step must be trusted by the
			// bundle published before it.
			if _, problem := checkServing(p.Data[corev1.TLSCertKey], p.Data[corev1.TLSPrivateKeyKey], before, hosts, now); problem != "" {
				t.Fatalf("at %s (%s): the new serving certificate is not trusted by the previous bundle: %s", now.Sub(t0), strings.Join(p.Reasons, "; "), problem)
			}
		}
		for _, ca := range parseCertificates(p.Data[CABundleKey]) {
			if !seenCAs[ca.Subject.CommonName] {
				seenCAs[ca.Subject.CommonName] = true
				cas++
			}
		}
		if data == nil || !bytes.Equal(data[corev1.TLSCertKey], p.Data[corev1.TLSCertKey]) {
			servings++
		}
		if n := len(parseCertificates(p.Data[CABundleKey])); n > 2 {
			t.Fatalf("at %s: %d CAs in the bundle", now.Sub(t0), n)
		}
		data, now = p.Data, p.Next
	}
	t.Logf("in 200 days: %d CAs, %d serving certificates", cas, servings)
	// 200 days: CAs at 0, 60, 120, 180 days; a serving certificate every 7.
	if cas != 4 || servings < 28 {
		t.Errorf("in 200 days: %d CAs and %d serving certificates, want 4 and about 29", cas, servings)
	}
}

func TestDueForRenewal(t *testing.T) {
	ca := mustCA(t, t0) // expires t0+90d
	for _, tc := range []struct {
		name        string
		now         time.Time
		renewBefore time.Duration
		want        bool
	}{
		{"fresh", t0, 30 * day, false},
		{"just before the window", t0.Add(60*day - time.Nanosecond), 30 * day, false},
		{"window opens", t0.Add(60 * day), 30 * day, true},
		{"expired", t0.Add(100 * day), 30 * day, true},
	} {
		if got := dueForRenewal(ca.cert, tc.now, tc.renewBefore); got != tc.want {
			t.Errorf("%s: dueForRenewal = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPruneExpired(t *testing.T) {
	a, b := mustCA(t, t0), mustCA(t, t0.Add(10*day))
	names := func(cas []*x509.Certificate) []string {
		var s []string
		for _, c := range cas {
			s = append(s, c.Subject.CommonName)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		want []string
	}{
		{"both valid", t0.Add(89 * day), []string{name(t0), name(t0.Add(10 * day))}},
		{"the first expires", t0.Add(90 * day), []string{name(t0.Add(10 * day))}},
		{"both expired", t0.Add(100 * day), nil},
	} {
		if diff := cmp.Diff(tc.want, names(pruneExpired([]*x509.Certificate{a.cert, b.cert}, tc.now))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestCertificates(t *testing.T) {
	ca := mustCA(t, t0)
	if !ca.cert.IsCA || !ca.cert.MaxPathLenZero || ca.cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, MaxPathLenZero %v, key usage %v", ca.cert.IsCA, ca.cert.MaxPathLenZero, ca.cert.KeyUsage)
	}
	if got, want := ca.cert.NotAfter, t0.Add(90*day); !got.Equal(want) {
		t.Errorf("CA NotAfter %s, want %s", got, want)
	}
	cert, _, err := newServing(t0, 10*day, hosts, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		DNSNames, IPs []string
		ExtKeyUsage   []x509.ExtKeyUsage
		IsCA          bool
		NotBefore     time.Time
		NotAfter      time.Time
		Issuer        string
	}
	want := view{
		DNSNames:    []string{"keyhook-webhook.keyhook-system.svc"},
		IPs:         []string{"127.0.0.1"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:   t0.Add(-backdate),
		NotAfter:    t0.Add(10 * day),
		Issuer:      name(t0),
	}
	got := view{cert.DNSNames, ipStrings(cert.IPAddresses), cert.ExtKeyUsage, cert.IsCA, cert.NotBefore, cert.NotAfter, cert.Issuer.CommonName}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("serving certificate (-want +got):\n%s", diff)
	}
	// Never valid beyond its CA.
	late, _, err := newServing(t0.Add(85*day), 10*day, hosts, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if !late.NotAfter.Equal(ca.cert.NotAfter) {
		t.Errorf("a certificate issued 5 days before its CA expires is valid until %s, want the CA's %s", late.NotAfter, ca.cert.NotAfter)
	}
}

func TestValidate(t *testing.T) {
	valid := Config{
		Secret:               types.NamespacedName{Namespace: "keyhook-system", Name: "keyhook-webhook-tls"},
		WebhookConfiguration: "keyhook",
		Hosts:                []string{"keyhook-webhook.keyhook-system.svc", "localhost", "::1"},
		CAValidity:           DefaultCAValidity,
		CertValidity:         DefaultCertValidity,
	}.WithDefaults()
	if err := valid.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if valid.CARenewBefore != DefaultCAValidity/3 || valid.CertRenewBefore != DefaultCertValidity/3 || valid.Propagation != time.Minute {
		t.Errorf("defaults: CA renew %s, cert renew %s, propagation %s", valid.CARenewBefore, valid.CertRenewBefore, valid.Propagation)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		says string
	}{
		{"no secret name", func(c *Config) { c.Secret = ParseSecretRef("keyhook-system") }, "--cert-secret"},
		{"bad host", func(c *Config) { c.Hosts = []string{"not a host"} }, `--webhook-service "not a host"`},
		{"no hosts", func(c *Config) { c.Hosts = nil }, "--webhook-service must name"},
		{"renew before longer than validity", func(c *Config) { c.CertRenewBefore = c.CertValidity }, "--cert-renew-before"},
		{"CA renewed too late to outlive its certificates", func(c *Config) { c.CARenewBefore = c.CertValidity }, "must be longer than --cert-validity"},
		{"no webhook configuration", func(c *Config) { c.WebhookConfiguration = "" }, "--webhook-configuration"},
	} {
		c := valid
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Validate() = %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
}

func TestSelfSigned(t *testing.T) {
	caPEM, certPEM, keyPEM, err := SelfSigned([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA in caPEM")
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
		t.Error("valid for a host it was not issued for")
	}
	if _, _, _, err := SelfSigned(nil, time.Hour); err == nil {
		t.Error("issued without hosts")
	}
}
