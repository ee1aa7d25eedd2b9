package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// backdate: certificates are valid from a little before they are issued, so
// that an API server whose clock is behind keyhook's accepts them at once.
// It also dates the issue of a CA: NotBefore + backdate.
const backdate = 5 * time.Minute

// Plan is what Ensure decided the Secret must hold.
type Plan struct {
	// Data is the Secret's data: the input's, with what had to change.
	Data map[string][]byte
	// Reasons say what changed and why, for the log; empty when nothing
	// did.
	Reasons []string
	// Next is when something is due next: a renewal, an expired CA to
	// prune, a new CA past its propagation delay.
	Next time.Time
}

// Changed reports whether Data differs from the input.
func (p Plan) Changed() bool { return len(p.Reasons) > 0 }

// Ensure decides, at now, what the Secret with data must hold: no expired
// CA; a CA that is not due for renewal (a due one stays in the bundle next
// to its successor); and a serving certificate for c.Hosts that the bundle
// trusts and that is not due for renewal. c must be defaulted and valid.
//
// A serving certificate is signed by the newest CA. One that is due while
// the newest CA is younger than c.Propagation is renewed once the CA is old
// enough, if it stays valid until then: the API server must trust a
// certificate before any replica serves it.
func Ensure(now time.Time, c Config, data map[string][]byte) (Plan, error) {
	plan := Plan{Data: data}
	bundle := parseCertificates(data[CABundleKey])
	trusted := pruneExpired(bundle, now)
	bundleChanged := len(trusted) != len(bundle)
	if bundleChanged {
		plan.Reasons = append(plan.Reasons, fmt.Sprintf("%d expired CA(s) removed from the bundle", len(bundle)-len(trusted)))
	}

	caKey, _ := parsePrivateKey(data[CAKeyKey])
	signer := signerOf(trusted, caKey)
	var caReason string
	switch {
	case len(trusted) == 0:
		caReason = "no CA yet: issued one"
	case signer == nil:
		caReason = "ca.key belongs to no CA of the bundle: issued a new CA"
	case dueForRenewal(signer, now, c.CARenewBefore):
		caReason = "CA renewal due: issued a new CA next to the old one"
	}
	if caReason != "" {
		cert, key, err := newCA(now, c.CAValidity)
		if err != nil {
			return plan, err
		}
		trusted, signer, caKey, bundleChanged = append(trusted, cert), cert, key, true
		plan.Reasons = append(plan.Reasons, caReason)
	}
	next := renewAt(signer, c.CARenewBefore)
	for _, ca := range trusted {
		next = earliest(next, ca.NotAfter) // to prune it
	}

	serving, problem := checkServing(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey], trusted, c.Hosts, now)
	if problem == "" {
		published := issuedAt(signer).Add(c.Propagation)
		switch due := renewAt(serving, c.CertRenewBefore); {
		case now.Before(due):
			next = earliest(next, due)
		case !signedBy(serving, signer) && now.Before(published) && serving.NotAfter.After(published):
			next = earliest(next, published)
		default:
			problem = "serving certificate renewal due"
		}
	}
	var certPEM, keyPEM []byte
	if problem != "" {
		cert, key, err := newServing(now, c.CertValidity, c.Hosts, signer, caKey)
		if err != nil {
			return plan, err
		}
		if certPEM, keyPEM, err = encodeKeyPair(cert, key); err != nil {
			return plan, err
		}
		next = earliest(next, renewAt(cert, c.CertRenewBefore))
		plan.Reasons = append(plan.Reasons, problem+": issued a serving certificate")
	}
	plan.Next = next
	if !plan.Changed() {
		return plan, nil
	}

	plan.Data = maps.Clone(data)
	if plan.Data == nil {
		plan.Data = map[string][]byte{}
	}
	if bundleChanged {
		plan.Data[CABundleKey] = encodeCertificates(trusted)
	}
	if caReason != "" {
		der, err := x509.MarshalPKCS8PrivateKey(caKey)
		if err != nil {
			return plan, err
		}
		plan.Data[CAKeyKey] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	if certPEM != nil {
		plan.Data[corev1.TLSCertKey], plan.Data[corev1.TLSPrivateKeyKey] = certPEM, keyPEM
	}
	return plan, nil
}

// renewAt is when a certificate is due for renewal: renewBefore before it
// expires.
func renewAt(cert *x509.Certificate, renewBefore time.Duration) time.Time {
	return cert.NotAfter.Add(-renewBefore)
}

// dueForRenewal reports whether cert has less than renewBefore left at now.
func dueForRenewal(cert *x509.Certificate, now time.Time, renewBefore time.Duration) bool {
	return !now.Before(renewAt(cert, renewBefore))
}

// issuedAt is when a certificate of this package was issued.
func issuedAt(cert *x509.Certificate) time.Time { return cert.NotBefore.Add(backdate) }

// pruneExpired returns the certificates of cas that are still valid at now,
// in their order.
func pruneExpired(cas []*x509.Certificate, now time.Time) []*x509.Certificate {
	var live []*x509.Certificate
	for _, ca := range cas {
		if now.Before(ca.NotAfter) {
			live = append(live, ca)
		}
	}
	return live
}

// signerOf is the newest CA of cas whose public key is key's, or nil.
func signerOf(cas []*x509.Certificate, key *ecdsa.PrivateKey) *x509.Certificate {
	if key == nil {
		return nil
	}
	for i := len(cas) - 1; i >= 0; i-- {
		if pub, ok := cas[i].PublicKey.(*ecdsa.PublicKey); ok && pub.Equal(key.Public()) && cas[i].IsCA {
			return cas[i]
		}
	}
	return nil
}

func signedBy(cert, ca *x509.Certificate) bool { return cert.CheckSignatureFrom(ca) == nil }

// checkServing parses the serving certificate and key and returns the
// certificate, or why it must be replaced: it is missing or does not match
// its key, the bundle does not trust it at now, or it is not for hosts.
func checkServing(certPEM, keyPEM []byte, trusted []*x509.Certificate, hosts []string, now time.Time) (*x509.Certificate, string) {
	if len(certPEM) == 0 {
		return nil, "no serving certificate yet"
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "serving certificate and key do not parse or do not match"
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, "serving certificate does not parse"
		}
	}
	roots := x509.NewCertPool()
	for _, ca := range trusted {
		roots.AddCert(ca)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, "serving certificate not valid under the CA bundle"
	}
	var names []string
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if !sameSet(names, normalizeHosts(hosts)) {
		return nil, "serving certificate is not for the webhook's hosts"
	}
	return cert, ""
}

func normalizeHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		out = append(out, h)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// newCA issues a self-signed CA, valid for validity from now.
func newCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The issue time in the name tells the CAs of a bundle apart.
		Subject:               pkix.Name{CommonName: "keyhook-ca@" + now.UTC().Format(time.RFC3339)},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	return cert, key, err
}

// newServing issues a serving certificate for hosts, signed by ca, valid
// for validity from now but not beyond ca.
func newServing(now time.Time, validity time.Duration, hosts []string, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a serving key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-backdate),
		NotAfter:     earliest(now.Add(validity), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, err := sign(tmpl, ca, key.Public(), caKey)
	return cert, key, err
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// parseCertificates returns the certificates of a PEM bundle, skipping
// blocks that are not certificates or do not parse.
func parseCertificates(b []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return certs
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			certs = append(certs, cert)
		}
	}
}

// ParseBundle returns the certificates of a PEM bundle such as ca.crt.
func ParseBundle(b []byte) []*x509.Certificate { return parseCertificates(b) }

func encodeCertificates(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func parsePrivateKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if key, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if ec, ok := key.(*ecdsa.PrivateKey); ok {
			return ec, nil
		}
		return nil, errors.New("not an ECDSA key")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

func encodeKeyPair(cert *x509.Certificate, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SelfSigned issues a new CA and a serving certificate for hosts (DNS names
// or IP addresses) signed by it, both valid for validity from now: for
// servers that need TLS a client can be told to trust, such as test fakes.
// It returns the CA's certificate and the serving key pair, as PEM.
func SelfSigned(hosts []string, validity time.Duration) (caPEM, certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, nil, errors.New("no hosts")
	}
	now := time.Now()
	ca, caKey, err := newCA(now, validity)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, key, err := newServing(now, validity, hosts, ca, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM, keyPEM, err = encodeKeyPair(cert, key)
	if err != nil {
		return nil, nil, nil, err
	}
	return encodeCertificates([]*x509.Certificate{ca}), certPEM, keyPEM, nil
}
