package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/certs"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
)

// Webhook is the keyhook webhook binary, serving TLS on loopback and
// registered with the cluster's API server, running as its own
// ServiceAccount with the read-only RBAC of manifests/.
type Webhook struct {
	Proc        *Process
	URL         string // https://127.0.0.1:PORT
	MetricsURL  string
	CAPEM       []byte
	ConfigName  string
	certDir     string
	bin         string
	args        []string
	log         string
	port        int
	metricsPort int
	probePort   int
}

// WebhookOptions configure StartWebhook.
type WebhookOptions struct {
	// Binary is the keyhook-webhook binary.
	Binary string
	// AgentImage is passed as --agent-image.
	AgentImage string
	// Args are extra flags.
	Args []string
	// Unregistered skips the webhook configurations.
	Unregistered bool
	// Kubeconfig, when set, replaces the webhook's own identity
	// (Cluster.Identity) with another, e.g. the admin's.
	Kubeconfig string
	// Name names the log file; default keyhook-webhook.
	Name string
	// SelfManagedTLS starts the webhook with --tls-mode=self-managed: no
	// certificate is written for it; its configurations are registered
	// before it starts, without a caBundle, for a controller in
	// --tls-mode=self-managed (--webhook-service=127.0.0.1) to fill in; it
	// is ready once it serves the certificate the controller issued. Args
	// name --cert-secret.
	SelfManagedTLS bool
	// ConfigName names the webhook configurations; default keyhook-tests.
	ConfigName string
	// EditConfigs, when set, edits the configurations before they are
	// registered, e.g. to scope them to a test's namespace.
	EditConfigs func(*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration)
}

// StartWebhook issues a CA and a serving certificate for 127.0.0.1, starts
// the webhook with them, waits until it is ready and registers a
// MutatingWebhookConfiguration for it with the CA as caBundle. With
// SelfManagedTLS a controller issues them. It runs as the webhook's own
// ServiceAccount (Cluster.Identity) and installs the
// ValidatingAdmissionPolicies of manifests/ (webhookconfig.AdmissionPolicies)
// along with the registrations, as an install does.
func StartWebhook(ctx context.Context, c *Cluster, dir string, opts WebhookOptions) (*Webhook, error) {
	w := &Webhook{certDir: filepath.Join(dir, "webhook-tls"), ConfigName: opts.ConfigName, bin: opts.Binary}
	if w.ConfigName == "" {
		w.ConfigName = "keyhook-tests"
	}
	var err error
	tlsArgs := []string{"--cert-dir=" + w.certDir}
	if opts.SelfManagedTLS {
		tlsArgs = []string{"--tls-mode=self-managed"}
	} else if w.CAPEM, err = writeServingCert(w.certDir); err != nil {
		return nil, err
	}
	for _, p := range []*int{&w.port, &w.metricsPort, &w.probePort} {
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	w.URL = fmt.Sprintf("https://127.0.0.1:%d", w.port)
	w.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", w.metricsPort)
	name := opts.Name
	if name == "" {
		name = "keyhook-webhook"
	}
	w.log = filepath.Join(dir, name+".log")
	kubeconfig := opts.Kubeconfig
	if kubeconfig == "" {
		if kubeconfig, err = c.Identity(ctx, dir, RoleWebhook); err != nil {
			return nil, fmt.Errorf("the webhook's identity: %w", err)
		}
	}
	w.args = append([]string{
		"--kubeconfig=" + kubeconfig,
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + itoa(w.port),
		"--metrics-bind-address=127.0.0.1:" + itoa(w.metricsPort),
		"--health-probe-bind-address=127.0.0.1:" + itoa(w.probePort),
		"--agent-image=" + opts.AgentImage,
	}, append(tlsArgs, opts.Args...)...)
	register := func() error {
		o := WebhookConfigOptions(w.ConfigName, w.URL, w.CAPEM)
		m, v := webhookconfig.Mutating(o), webhookconfig.Validating(o)
		if opts.EditConfigs != nil {
			opts.EditConfigs(m, v)
		}
		if err := c.Client.Create(ctx, m); err != nil {
			return err
		}
		if err := c.Client.Create(ctx, v); err != nil {
			return err
		}
		return installAdmissionPolicies(ctx, c, o)
	}
	if opts.SelfManagedTLS && !opts.Unregistered {
		if err := register(); err != nil {
			return nil, err
		}
	}
	if err := w.Start(ctx); err != nil {
		return nil, err
	}
	if !opts.SelfManagedTLS && !opts.Unregistered {
		if err := register(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Unregister deletes the webhook's configurations and admission policies.
func (w *Webhook) Unregister(ctx context.Context, c *Cluster) error {
	objs := []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}}
	for _, obj := range objs {
		obj.SetName(w.ConfigName)
	}
	for _, p := range webhookconfig.AdmissionPolicies(WebhookConfigOptions(w.ConfigName, w.URL, nil)) {
		objs = append(objs, p.Binding, p.Policy)
	}
	for _, obj := range objs {
		if err := c.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// installAdmissionPolicies creates the ValidatingAdmissionPolicies of o and
// waits until the API server enforces them: a dry-run create, by the admin,
// of a namespace that carries keyhook.dev/injection is denied.
func installAdmissionPolicies(ctx context.Context, c *Cluster, o webhookconfig.Options) error {
	for _, p := range webhookconfig.AdmissionPolicies(o) {
		if err := c.Client.Create(ctx, p.Policy); err != nil {
			return fmt.Errorf("creating ValidatingAdmissionPolicy %s: %w", p.Policy.Name, err)
		}
		if err := c.Client.Create(ctx, p.Binding); err != nil {
			return fmt.Errorf("creating ValidatingAdmissionPolicyBinding %s: %w", p.Binding.Name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return WaitFor(wctx, 100*time.Millisecond, func() (bool, error) {
		probe := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "vap-probe-", Labels: map[string]string{annotations.Injection: annotations.InjectionDefault}}}
		err := c.Client.Create(ctx, probe, client.DryRunAll)
		if err == nil {
			return false, errors.New("ValidatingAdmissionPolicy " + o.Name + "-namespace-labels not in force yet")
		}
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), err
	})
}

// ServedCertificate is the certificate the webhook presents in a new TLS
// handshake now. It is read, not verified.
func (w *Webhook) ServedCertificate() (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", w.port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the certificate, trusts nothing
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// Start starts (or restarts) the webhook process and waits until it is ready.
func (w *Webhook) Start(ctx context.Context) error {
	var err error
	if w.Proc, err = Start("keyhook-webhook", w.log, os.Environ(), w.bin, w.args...); err != nil {
		return err
	}
	return waitReady(ctx, w.Proc, w.probePort)
}

// Stop stops the webhook process; its configuration stays registered.
func (w *Webhook) Stop() error { return w.Proc.Stop(10 * time.Second) }

// Kill kills the process at once, as a node failure would.
func (w *Webhook) Kill() { w.Proc.Kill() }

// WebhookConfigOptions are the options of manifests/ (pkg/webhookconfig),
// with the webhook reached at baseURL, trusted through caBundle, and
// registered under name.
func WebhookConfigOptions(name, baseURL string, caBundle []byte) webhookconfig.Options {
	o := webhookconfig.Defaults()
	o.Name = name
	o.Annotations = nil
	o.ClientConfig = func(path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(baseURL + path), CABundle: caBundle}
	}
	return o
}

// writeServingCert writes a new CA's certificate and a serving certificate for
// 127.0.0.1 and localhost signed by it (tls.crt, tls.key) into dir, and
// returns the CA's PEM.
func writeServingCert(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caPEM, certPEM, keyPEM, err := certs.SelfSigned([]string{"127.0.0.1", "localhost"}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	return caPEM, nil
}
