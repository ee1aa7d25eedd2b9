// Package certs is keyhook's self-managed TLS (--tls-mode=self-managed):
// keyhook issues its own CA and serving certificate, keeps them in one
// Secret, writes the CA bundle into its webhook configurations, rotates both
// well before they expire, and every replica serves the newest certificate
// without a restart.
//
// The Secret (type kubernetes.io/tls) holds:
//
//   - ca.crt: every CA the API server must trust, oldest first. It is the
//     caBundle of every entry of keyhook's webhook configurations. After a
//     CA rotation it holds the old and the new CA until the old one expires,
//     so that a replica still serving a certificate of the old CA is trusted.
//   - ca.key: the private key of the newest CA, which signs serving
//     certificates.
//   - tls.crt, tls.key: the serving certificate and its key.
//
// One leader (Reconciler) writes the Secret and the caBundles; every replica
// serves from the Secret through ServingCert, read from a cache that holds
// only that Secret and the two webhook configurations (Cache).
//
// Rotation never leaves the API server without trust in what a replica
// serves: a serving certificate is renewed with a third of its lifetime (by
// default) still to run, so replicas that load the new one a moment later
// still serve a valid one; a new CA joins the bundle next to the old one,
// signs serving certificates only after Config.Propagation, and the old CA
// leaves the bundle only once expired. Config.Validate makes the CA renew
// early enough that it outlives every serving certificate it signed.
package certs

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Keys of the Secret besides corev1.TLSCertKey and corev1.TLSPrivateKeyKey.
const (
	// CABundleKey holds the CAs the API server trusts, PEM, oldest first.
	CABundleKey = "ca.crt"
	// CAKeyKey holds the private key of the newest CA, PEM (PKCS #8).
	CAKeyKey = "ca.key"
)

// Defaults of the flags of cmd/webhook.
const (
	// DefaultCAValidity is how long a CA is valid: a year, so that the CA
	// rotation runs every year and is never an untested path.
	DefaultCAValidity = 365 * 24 * time.Hour
	// DefaultCertValidity is how long a serving certificate is valid.
	DefaultCertValidity = 90 * 24 * time.Hour
)

// Config is what the issuer needs, validated by Validate.
type Config struct {
	// Secret holds the CA and the serving certificate.
	Secret types.NamespacedName
	// WebhookConfiguration names the Mutating- and the
	// ValidatingWebhookConfiguration whose caBundles are kept current.
	WebhookConfiguration string
	// Hosts are the DNS names and IP addresses the serving certificate is
	// valid for: those of the webhook Service.
	Hosts []string
	// CAValidity is the lifetime of a CA.
	CAValidity time.Duration
	// CARenewBefore: a CA with less than this left is replaced. Zero means
	// a third of CAValidity.
	CARenewBefore time.Duration
	// CertValidity is the lifetime of a serving certificate.
	CertValidity time.Duration
	// CertRenewBefore: a serving certificate with less than this left is
	// renewed. Zero means a third of CertValidity.
	CertRenewBefore time.Duration
	// Propagation is how long a new CA is in the bundle before it signs a
	// serving certificate: the time the API server needs to see the new
	// caBundle. Zero means the smaller of a minute and half of
	// CertRenewBefore.
	Propagation time.Duration
}

// WithDefaults fills the zero durations that have defaults.
func (c Config) WithDefaults() Config {
	if c.CARenewBefore == 0 {
		c.CARenewBefore = c.CAValidity / 3
	}
	if c.CertRenewBefore == 0 {
		c.CertRenewBefore = c.CertValidity / 3
	}
	if c.Propagation == 0 {
		c.Propagation = min(time.Minute, c.CertRenewBefore/2)
	}
	return c
}

// Validate reports every problem of a defaulted Config, naming the flags of
// cmd/webhook.
func (c Config) Validate() error {
	var errs []error
	if c.Secret.Namespace == "" || c.Secret.Name == "" {
		errs = append(errs, fmt.Errorf("--cert-secret %q is not namespace/name", c.Secret))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(c.Secret.Name) {
			errs = append(errs, fmt.Errorf("--cert-secret name %q: %s", c.Secret.Name, msg))
		}
		for _, msg := range validation.IsDNS1123Label(c.Secret.Namespace) {
			errs = append(errs, fmt.Errorf("--cert-secret namespace %q: %s", c.Secret.Namespace, msg))
		}
	}
	if c.WebhookConfiguration == "" {
		errs = append(errs, errors.New("--webhook-configuration must not be empty"))
	}
	if len(c.Hosts) == 0 {
		errs = append(errs, errors.New("--webhook-service must name at least one DNS name or IP address"))
	}
	for _, h := range c.Hosts {
		if net.ParseIP(h) != nil {
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--webhook-service %q is neither an IP address nor a DNS name: %s", h, strings.Join(msgs, "; ")))
		}
	}
	if c.CAValidity <= 0 || c.CertValidity <= 0 {
		errs = append(errs, fmt.Errorf("--ca-validity (%s) and --cert-validity (%s) must be positive", c.CAValidity, c.CertValidity))
	}
	if c.CARenewBefore <= 0 || c.CARenewBefore >= c.CAValidity {
		errs = append(errs, fmt.Errorf("--ca-renew-before %s must be positive and shorter than --ca-validity %s", c.CARenewBefore, c.CAValidity))
	}
	if c.CertRenewBefore <= 0 || c.CertRenewBefore >= c.CertValidity {
		errs = append(errs, fmt.Errorf("--cert-renew-before %s must be positive and shorter than --cert-validity %s", c.CertRenewBefore, c.CertValidity))
	}
	// A CA replaced with more than a serving certificate's lifetime left
	// outlives every certificate it signed: no serving certificate is ever
	// cut short, and the old CA can stay in the bundle until it expires.
	if c.CARenewBefore <= c.CertValidity {
		errs = append(errs, fmt.Errorf("--ca-renew-before %s must be longer than --cert-validity %s, so that a CA outlives the certificates it signed", c.CARenewBefore, c.CertValidity))
	}
	if c.Propagation <= 0 || c.Propagation >= c.CertRenewBefore {
		errs = append(errs, fmt.Errorf("the CA propagation delay %s must be positive and shorter than --cert-renew-before %s", c.Propagation, c.CertRenewBefore))
	}
	return errors.Join(errs...)
}

// ParseSecretRef parses "namespace/name".
func ParseSecretRef(s string) types.NamespacedName {
	ns, name, _ := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

// secretType is the type of the Secret: tls.crt and tls.key are where every
// tool looks for them.
const secretType = corev1.SecretTypeTLS

// RBAC of self-managed TLS. The names are those of manifests/; change them
// with --cert-secret and --webhook-configuration. create cannot be limited
// to a name (the name is not known to the authorizer before the object
// exists), so it is granted in keyhook's namespace only. list and watch
// with resourceNames work because Cache selects by metadata.name.
// +kubebuilder:rbac:groups="",namespace=keyhook-system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=keyhook-system,resources=secrets,resourceNames=keyhook-webhook-tls,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,resourceNames=keyhook,verbs=get;list;watch;patch
