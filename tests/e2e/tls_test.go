package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/certs"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestSelfManagedTLS installs keyhook as manifests/self-managed/ does — a
// controller that issues and a webhook that serves, each as its own
// ServiceAccount with the RBAC of manifests/, the Secret
// keyhook-system/keyhook-webhook-tls and the configurations "keyhook" that
// RBAC names — with no certificate at all: no Secret, and webhook
// configurations without a caBundle. The controller issues its CA and
// serving certificate and publishes the CA; the webhook serves the
// certificate and the API server calls it. Then, with lifetimes of seconds,
// the controller rotates the serving certificate several times and the CA
// once, while pods and ExternalSecrets are created through the API server
// against entries that fail closed: not one admission may fail, and neither
// process is ever restarted.
func TestSelfManagedTLS(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "tls")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "pw")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	// The defaults of both binaries, which the RBAC of manifests/ names.
	secretKey := client.ObjectKey{Namespace: framework.Namespace, Name: "keyhook-webhook-tls"}
	deleteSecret := func() {
		if err := cluster.Client.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretKey.Namespace, Name: secretKey.Name}}); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting the certificate Secret: %v", err)
		}
	}
	deleteSecret() // left by an earlier run in this cluster
	t.Cleanup(deleteSecret)
	if err := cluster.Client.Get(ctx, secretKey, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the certificate Secret exists before keyhook starts: %v", err)
	}
	// This keyhook's entries see only this test's objects, and fail closed:
	// an admission it cannot answer fails.
	testLabel := map[string]string{"keyhook.dev/tls-test": ns}
	scope := func(m *admissionregistrationv1.MutatingWebhookConfiguration, v *admissionregistrationv1.ValidatingWebhookConfiguration) {
		var optIn []admissionregistrationv1.MutatingWebhook
		for _, w := range m.Webhooks {
			if w.Name == "pods.keyhook.dev" {
				w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
				w.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
				optIn = append(optIn, w)
			}
		}
		m.Webhooks = optIn
		for i := range v.Webhooks {
			v.Webhooks[i].ObjectSelector = &metav1.LabelSelector{MatchLabels: testLabel}
			v.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		}
	}
	webhookBin, _, err := framework.Binaries(workDir)
	if err != nil {
		t.Fatal(err)
	}
	controllerBin, err := framework.ControllerBinary(workDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(workDir, ns) // kept when the package fails
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The issuer alone: the package's controller syncs and labels.
	// CA: 10 s, replaced with 5 s left; serving certificates: 4 s, renewed
	// with 2 s left; a new CA signs after 1 s (half of 2 s).
	issuer, err := framework.StartController(ctx, cluster, dir, framework.ControllerOptions{
		Binary: controllerBin, Name: "tls-controller",
		Args: []string{
			"--enable-sync=false", "--enable-policy=false", "--tls-mode=self-managed", "--webhook-service=127.0.0.1,localhost",
			"--ca-validity=10s", "--ca-renew-before=5s", "--cert-validity=4s", "--cert-renew-before=2s",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = issuer.Stop() })
	w, err := framework.StartWebhook(ctx, cluster, dir, framework.WebhookOptions{
		Binary: webhookBin, AgentImage: agentImage, Name: "tls", ConfigName: "keyhook",
		SelfManagedTLS: true, EditConfigs: scope,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Stop()
		if err := w.Unregister(context.Background(), cluster); err != nil {
			t.Errorf("unregistering: %v", err)
		}
	})
	proc, issuerProc := w.Proc, issuer.Proc

	// The webhook's being ready means serving a certificate: the one of the
	// Secret, under the CA that is now every entry's caBundle.
	secret := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, secretKey, secret); err != nil {
		t.Fatalf("the webhook is ready but the controller wrote no Secret: %v", err)
	}
	if secret.Type != corev1.SecretTypeTLS || len(secret.Data[certs.CABundleKey]) == 0 {
		t.Fatalf("Secret %s: type %s, keys %v; want kubernetes.io/tls with ca.crt", secretKey, secret.Type, tlsDataKeys(secret.Data))
	}
	waitCABundles(ctx, t, w.ConfigName, secretKey)
	served, err := w.ServedCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := served.Verify(x509.VerifyOptions{Roots: caPool(secret.Data[certs.CABundleKey]), DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("the served certificate is not valid for 127.0.0.1 under the Secret's CA: %v", err)
	}

	// The API server calls it: a pod is injected, with this keyhook's
	// entry failing closed. The API server may take a moment to see the new
	// caBundle.
	calls := tlsWebhookRequests(t, w, "/mutate-v1-pod")
	var pod *corev1.Pod
	err = framework.WaitFor(ctx, 50*time.Millisecond, func() (bool, error) {
		pod = plainPod(ns, "first", map[string]string{"keyhook.dev/inject": "db"}, nil)
		err := cluster.Client.Create(ctx, pod)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("no pod admitted through the self-managed webhook: %v", err)
	}
	if !hasAgent(pod) {
		t.Errorf("the admitted pod is not injected")
	}
	if after := tlsWebhookRequests(t, w, "/mutate-v1-pod"); after <= calls {
		t.Errorf("the API server admitted the pod without calling this keyhook (requests %d → %d)", calls, after)
	}

	// Rotation under load.
	firstCA := tlsLeafIssuer(t, secret)
	var (
		mu       sync.Mutex
		admitted int
		failures []error
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var obj client.Object = plainPod(ns, "load", map[string]string{"keyhook.dev/inject": "db"}, nil)
			if i%4 == 3 {
				es := externalSecret(ns, "", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})
				es.GenerateName, es.Labels = "load-", testLabel
				obj = es
			}
			err := cluster.Client.Create(ctx, obj)
			mu.Lock()
			if err != nil {
				failures = append(failures, fmt.Errorf("%T at %s: %w", obj, time.Now().Format("15:04:05.000"), err))
			} else {
				admitted++
			}
			mu.Unlock()
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	defer stopLoad()

	// Until the first CA has been replaced, has expired and left the
	// bundle, the serving certificate has moved to a newer CA, and the
	// webhook serves the Secret's latest certificate.
	servedSerials := map[string]bool{served.SerialNumber.String(): true}
	sawTwoCAs := false
	var untrusted []error
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = framework.WaitFor(rctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(rctx, secretKey, secret); err != nil {
			return false, err
		}
		bundle := certs.ParseBundle(secret.Data[certs.CABundleKey])
		sawTwoCAs = sawTwoCAs || len(bundle) == 2
		cert, err := w.ServedCertificate()
		if err != nil {
			return false, err
		}
		servedAt := time.Now()
		servedSerials[cert.SerialNumber.String()] = true
		// What it serves, the API server trusts: the caBundle, read after
		// the handshake, holds the certificate's CA.
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := cluster.Client.Get(rctx, client.ObjectKey{Name: w.ConfigName}, m); err != nil {
			return false, err
		}
		published := m.Webhooks[0].ClientConfig.CABundle
		if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool(published), DNSName: "127.0.0.1", CurrentTime: servedAt}); err != nil {
			untrusted = append(untrusted, fmt.Errorf("served certificate %s of %s not trusted by the caBundle %v: %w", cert.SerialNumber.Text(16), cert.Issuer.CommonName, caNames(certs.ParseBundle(published)), err))
		}
		// With these lifetimes the next CA joins as the first expires: the
		// bundle always holds two from then on.
		pruned := !slices.Contains(caNames(bundle), firstCA)
		movedOn := cert.Issuer.CommonName != firstCA
		return pruned && movedOn && sawTwoCAs && len(servedSerials) >= 3 && cert.Equal(tlsLeaf(t, secret)), nil
	})
	stopLoad()
	if err != nil {
		t.Errorf("rotation did not complete: served %d certificates, saw two CAs: %v, bundle %v, serving issuer %s (first CA %s): %v",
			len(servedSerials), sawTwoCAs, caNames(certs.ParseBundle(secret.Data[certs.CABundleKey])), tlsLeafIssuer(t, secret), firstCA, err)
	}
	waitCABundles(ctx, t, w.ConfigName, secretKey)

	for _, err := range untrusted {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("across the rotation: %d admissions, %d served certificates, %d failures", admitted, len(servedSerials), len(failures))
	for i, f := range failures {
		if i == 5 {
			t.Errorf("... and %d more", len(failures)-5)
			break
		}
		t.Errorf("admission failed during rotation: %v", f)
	}
	if admitted == 0 {
		t.Errorf("nothing was admitted during the rotation")
	}
	if w.Proc != proc || proc.Exited() {
		t.Errorf("the webhook process was restarted or exited:\n%s", proc.Output())
	}
	if issuer.Proc != issuerProc || issuerProc.Exited() {
		t.Errorf("the controller process was restarted or exited:\n%s", issuerProc.Output())
	}
}

// waitBundlesPublished waits until every entry of both configurations has
// the Secret's ca.crt as caBundle.
func waitCABundles(ctx context.Context, t *testing.T, name string, secretKey client.ObjectKey) {
	t.Helper()
	var last string
	err := framework.WaitFor(ctx, 50*time.Millisecond, func() (bool, error) {
		secret := &corev1.Secret{}
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		for _, obj := range []client.Object{m, v} {
			if err := cluster.Client.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
				return false, err
			}
		}
		if err := cluster.Client.Get(ctx, secretKey, secret); err != nil {
			return false, err
		}
		var bundles [][]byte
		for _, e := range m.Webhooks {
			bundles = append(bundles, e.ClientConfig.CABundle)
		}
		for _, e := range v.Webhooks {
			bundles = append(bundles, e.ClientConfig.CABundle)
		}
		for _, b := range bundles {
			if !bytes.Equal(b, secret.Data[certs.CABundleKey]) {
				last = fmt.Sprintf("caBundle %v, Secret's ca.crt %v", caNames(certs.ParseBundle(b)), caNames(certs.ParseBundle(secret.Data[certs.CABundleKey])))
				return false, nil
			}
		}
		return len(bundles) == 2, nil
	})
	if err != nil {
		t.Fatalf("the caBundles of %s never became the Secret's ca.crt (%s): %v", name, last, err)
	}
}

// webhookRequests is the webhook's count of answered requests on path.
func tlsWebhookRequests(t *testing.T, w *framework.Webhook, path string) int {
	t.Helper()
	resp, err := http.Get(w.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^controller_runtime_webhook_requests_total\{code="200",webhook="` + regexp.QuoteMeta(path) + `"\} (\d+)`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func tlsLeaf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	c := certs.ParseBundle(s.Data[corev1.TLSCertKey])
	if len(c) == 0 {
		t.Fatalf("Secret %s/%s has no tls.crt", s.Namespace, s.Name)
	}
	return c[0]
}

func tlsLeafIssuer(t *testing.T, s *corev1.Secret) string { return tlsLeaf(t, s).Issuer.CommonName }

func caPool(pemBundle []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemBundle)
	return p
}

func caNames(cs []*x509.Certificate) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Subject.CommonName)
	}
	return s
}

func tlsDataKeys(m map[string][]byte) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return s
}
