package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/keyhook/keyhook/pkg/webhookconfig"
	"github.com/keyhook/keyhook/tests/framework"
)

// certManagerModule provides the API types the manifests are decoded with and
// the CRDs the API server checks them against: the version pinned in go.mod.
const certManagerModule = "github.com/cert-manager/cert-manager"

// TestCertManagerManifests checks keyhook's cert-manager install
// (kubectl apply -k manifests/) as it ships:
//
//   - every object decodes strictly (unknown fields are errors) into its API
//     type, cert-manager's from the pinned cert-manager module;
//   - both webhook registrations call the Service of manifests/ and carry
//     cert-manager.io/inject-ca-from naming a Certificate of manifests/, and
//     no caBundle of their own for the cainjector to fight over;
//   - that Certificate is the end of the chain self-signed Issuer → CA
//     Certificate (isCA, ECDSA P-256, about a year) → CA Issuer (from the CA's
//     Secret) → serving Certificate, and the chain is every cert-manager
//     object there is; the CA is renewed before the last serving certificate
//     it signed could outlive it;
//   - the serving certificate is for exactly the Service's DNS names, and its
//     Secret is what the Deployment behind that Service mounts at --cert-dir;
//   - with cert-manager's CRDs installed from the module, the real API server
//     accepts every object (server-side apply, dry run), and the
//     registrations it returns still name a Certificate it accepted.
func TestCertManagerManifests(t *testing.T) {
	ctx := testContext(t)
	m := renderManifests(t)

	// The registrations: where the apiserver calls, and whose CA it trusts.
	var certs, services []string
	check := func(kind string, meta metav1.ObjectMeta, clientConfigs []admissionregistrationv1.WebhookClientConfig) {
		ref, ok := meta.Annotations[webhookconfig.InjectCAFrom]
		if !ok {
			t.Errorf("%s %s has no %s annotation: cert-manager would never fill its caBundle in", kind, meta.Name, webhookconfig.InjectCAFrom)
			return
		}
		if _, ok := m.certificates[ref]; !ok {
			t.Errorf("%s %s: %s: %q names no Certificate of manifests/ (have %v)", kind, meta.Name, webhookconfig.InjectCAFrom, ref, keys(m.certificates))
		}
		certs = appendNew(certs, ref)
		for i, cc := range clientConfigs {
			switch {
			case cc.Service == nil:
				t.Errorf("%s %s: webhook %d is not called through a Service: the serving certificate names a Service", kind, meta.Name, i)
				continue
			case len(cc.CABundle) > 0:
				t.Errorf("%s %s: webhook %d has a caBundle of its own; the cainjector owns it", kind, meta.Name, i)
			}
			services = appendNew(services, cc.Service.Namespace+"/"+cc.Service.Name)
		}
	}
	if len(m.mutating) != 1 || len(m.validating) != 1 {
		t.Fatalf("manifests/ has %d MutatingWebhookConfigurations and %d ValidatingWebhookConfigurations; want one of each", len(m.mutating), len(m.validating))
	}
	var ccs []admissionregistrationv1.WebhookClientConfig
	for _, w := range m.mutating[0].Webhooks {
		ccs = append(ccs, w.ClientConfig)
	}
	check("MutatingWebhookConfiguration", m.mutating[0].ObjectMeta, ccs)
	ccs = nil
	for _, w := range m.validating[0].Webhooks {
		ccs = append(ccs, w.ClientConfig)
	}
	check("ValidatingWebhookConfiguration", m.validating[0].ObjectMeta, ccs)
	if len(certs) != 1 || len(services) != 1 {
		t.Fatalf("the registrations name the Certificates %v and the Services %v; want one of each", certs, services)
	}
	svc, ok := m.services[services[0]]
	if !ok {
		t.Fatalf("the registrations call Service %s, which manifests/ does not have (have %v)", services[0], keys(m.services))
	}
	serving := m.certificates[certs[0]]
	if serving == nil {
		t.FailNow() // reported above
	}

	// The chain, walked up from the serving certificate.
	caIssuer := m.issuerOf(t, serving)
	if caIssuer.Spec.CA == nil {
		t.Fatalf("Certificate %s is issued by Issuer %s, which is not a CA Issuer", serving.Name, caIssuer.Name)
	}
	var caCert *cmapi.Certificate
	for _, c := range m.certificates {
		if c.Namespace == caIssuer.Namespace && c.Spec.SecretName == caIssuer.Spec.CA.SecretName {
			caCert = c
		}
	}
	if caCert == nil {
		t.Fatalf("no Certificate of manifests/ writes Secret %s/%s, which CA Issuer %s signs with", caIssuer.Namespace, caIssuer.Spec.CA.SecretName, caIssuer.Name)
	}
	root := m.issuerOf(t, caCert)
	if root.Spec.SelfSigned == nil {
		t.Errorf("CA Certificate %s is issued by Issuer %s, which is not self-signed", caCert.Name, root.Name)
	}
	if !caCert.Spec.IsCA {
		t.Errorf("Certificate %s (the Secret of CA Issuer %s) is not isCA: what it signs would not verify", caCert.Name, caIssuer.Name)
	}
	if serving.Spec.IsCA {
		t.Errorf("serving Certificate %s is isCA", serving.Name)
	}
	for _, c := range []*cmapi.Certificate{caCert, serving} {
		if pk := c.Spec.PrivateKey; pk == nil || pk.Algorithm != cmapi.ECDSAKeyAlgorithm || pk.Size != 256 {
			t.Errorf("Certificate %s: privateKey %+v; want ECDSA P-256", c.Name, pk)
		}
	}
	caLife, caRenew := lifetime(t, caCert)
	servingLife, servingRenew := lifetime(t, serving)
	if caLife < 360*24*time.Hour || caLife > 370*24*time.Hour {
		t.Errorf("CA Certificate %s lives %s; want about a year", caCert.Name, caLife)
	}
	if caRenew < servingLife {
		t.Errorf("CA Certificate %s is renewed %s before it expires, less than the %s a serving certificate lives: one signed just before the renewal would outlive its CA", caCert.Name, caRenew, servingLife)
	}
	if servingRenew < 7*24*time.Hour {
		t.Errorf("serving Certificate %s is renewed only %s before it expires; leave cert-manager a week to retry", serving.Name, servingRenew)
	}
	if u := serving.Spec.Usages; len(u) > 0 && !slices.Contains(u, cmapi.UsageServerAuth) {
		t.Errorf("serving Certificate %s: usages %v lack %q", serving.Name, u, cmapi.UsageServerAuth)
	}
	chain := []string{"Issuer " + root.Name, "Certificate " + caCert.Name, "Issuer " + caIssuer.Name, "Certificate " + serving.Name}
	var all []string
	for k := range m.issuers {
		all = append(all, "Issuer "+strings.SplitN(k, "/", 2)[1])
	}
	for k := range m.certificates {
		all = append(all, "Certificate "+strings.SplitN(k, "/", 2)[1])
	}
	if diff := cmp.Diff(sorted(chain), sorted(all)); diff != "" {
		t.Errorf("cert-manager objects of manifests/ that are not the chain %v (-chain +manifests):\n%s", chain, diff)
	}
	t.Logf("chain: %s", strings.Join(chain, " → "))

	// The serving certificate against the Service and the Deployment.
	wantDNS := []string{svc.Name + "." + svc.Namespace + ".svc", svc.Name + "." + svc.Namespace + ".svc.cluster.local"}
	if diff := cmp.Diff(sorted(wantDNS), sorted(serving.Spec.DNSNames)); diff != "" {
		t.Errorf("serving Certificate %s: dnsNames are not those of Service %s/%s (-want +got):\n%s", serving.Name, svc.Namespace, svc.Name, diff)
	}
	dep := m.deploymentBehind(t, svc)
	if dep.Namespace != serving.Namespace {
		t.Errorf("serving Certificate is in namespace %s, Deployment %s in %s: a pod mounts only Secrets of its own namespace", serving.Namespace, dep.Name, dep.Namespace)
	}
	if got := tlsSecret(t, dep); got != serving.Spec.SecretName {
		t.Errorf("Deployment %s mounts Secret %q at its --cert-dir; serving Certificate %s writes %q", dep.Name, got, serving.Name, serving.Spec.SecretName)
	}
	if t.Failed() {
		return
	}

	// The real API server, with cert-manager's own CRDs.
	installCertManagerCRDs(ctx, t)
	applied := map[string]*unstructured.Unstructured{}
	for _, u := range m.objects {
		opts := []client.ApplyOption{client.FieldOwner("keyhook-e2e"), client.ForceOwnership}
		// The Namespace is applied for real, and left in place as
		// TestManifestsApply leaves it: a dry run cannot hold objects inside
		// a namespace that is only dry-run created.
		if u.GetKind() != "Namespace" {
			opts = append(opts, client.DryRunAll)
		}
		u := u.DeepCopy()
		if err := cluster.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), opts...); err != nil {
			t.Errorf("server-side apply (dry run) of %s %s: %v", u.GetKind(), objKey(u), err)
			continue
		}
		applied[u.GetKind()+" "+objKey(u)] = u
	}
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		for k, u := range applied {
			if !strings.HasPrefix(k, kind+" ") {
				continue
			}
			ref := u.GetAnnotations()[webhookconfig.InjectCAFrom]
			if _, ok := applied["Certificate "+ref]; !ok {
				t.Errorf("%s %s as the API server would store it: %s is %q, not a Certificate it accepted", kind, u.GetName(), webhookconfig.InjectCAFrom, ref)
			}
		}
	}
}

// TestManifestsHighAvailability checks that the webhook survives losing a
// pod or a node: two replicas, spread over nodes, and a PodDisruptionBudget
// that lets a drain take one of them but never both.
func TestManifestsHighAvailability(t *testing.T) {
	m := renderManifests(t)
	if len(m.mutating) != 1 || len(m.mutating[0].Webhooks) == 0 || m.mutating[0].Webhooks[0].ClientConfig.Service == nil {
		t.Fatal("manifests/ has no MutatingWebhookConfiguration calling a Service")
	}
	ref := m.mutating[0].Webhooks[0].ClientConfig.Service
	svc, ok := m.services[ref.Namespace+"/"+ref.Name]
	if !ok {
		t.Fatalf("manifests/ has no Service %s/%s", ref.Namespace, ref.Name)
	}
	dep := m.deploymentBehind(t, svc)
	const replicas = 2
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != replicas {
		t.Errorf("Deployment %s: replicas %v; want %d", dep.Name, ptrString(dep.Spec.Replicas), replicas)
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)

	var pdbs []string
	for _, pdb := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: %v", pdb.Name, err)
		}
		if pdb.Namespace != dep.Namespace || sel.Empty() || !sel.Matches(podLabels) {
			continue
		}
		pdbs = append(pdbs, pdb.Name)
		if got := disruptionsAllowed(t, pdb, replicas); got != 1 {
			t.Errorf("PodDisruptionBudget %s allows %d of %d healthy webhook pods to be evicted; want 1: none blocks every drain, both is an outage", pdb.Name, got, replicas)
		}
	}
	if len(pdbs) != 1 {
		t.Errorf("PodDisruptionBudgets selecting the pods of Deployment %s: %v; want one", dep.Name, pdbs)
	}

	spread := false
	if a := dep.Spec.Template.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
		for _, term := range terms {
			sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			if err != nil {
				t.Fatalf("Deployment %s: anti-affinity: %v", dep.Name, err)
			}
			ownNamespace := len(term.Namespaces) == 0 && term.NamespaceSelector == nil
			if term.TopologyKey == corev1.LabelHostname && ownNamespace && !sel.Empty() && sel.Matches(podLabels) {
				spread = true
			}
		}
	}
	if !spread {
		t.Errorf("Deployment %s: no pod anti-affinity on %s against its own pods: both replicas may land on one node", dep.Name, corev1.LabelHostname)
	}
}

// manifests is manifests/ as kubectl kustomize renders it: every object as
// applied, and the kinds the tests look into decoded into their API types.
type manifests struct {
	objects      []*unstructured.Unstructured
	issuers      map[string]*cmapi.Issuer      // by namespace/name
	certificates map[string]*cmapi.Certificate // by namespace/name
	services     map[string]*corev1.Service    // by namespace/name
	deployments  []*appsv1.Deployment
	pdbs         []*policyv1.PodDisruptionBudget
	mutating     []*admissionregistrationv1.MutatingWebhookConfiguration
	validating   []*admissionregistrationv1.ValidatingWebhookConfiguration
}

// renderManifests renders manifests/ with the kubectl of the test
// environment and decodes every object strictly: a field the API type does
// not have, a typo in a manifest, fails the test here rather than being
// dropped by the API server.
func renderManifests(t *testing.T) *manifests {
	t.Helper()
	kubectl := filepath.Join(os.Getenv("KEYHOOK_TESTENV"), "kubectl")
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(framework.RepoRoot(), "manifests")).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w\n%s", err, exit.Stderr)
		}
		t.Fatalf("kubectl kustomize manifests: %v", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, cmapi.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	m := &manifests{
		issuers:      map[string]*cmapi.Issuer{},
		certificates: map[string]*cmapi.Certificate{},
		services:     map[string]*corev1.Service{},
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("manifests/: %v\n%s", err, doc)
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("manifests/: %s %s does not decode into its API type: %v", u.GetKind(), objKey(u), err)
		}
		m.objects = append(m.objects, u)
		switch o := obj.(type) {
		case *cmapi.Issuer:
			m.issuers[objKey(o)] = o
		case *cmapi.Certificate:
			m.certificates[objKey(o)] = o
		case *corev1.Service:
			m.services[objKey(o)] = o
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			m.mutating = append(m.mutating, o)
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			m.validating = append(m.validating, o)
		default:
			if u.GroupVersionKind().Group == cmapi.SchemeGroupVersion.Group {
				t.Errorf("manifests/: %s %s: a cert-manager kind this test does not check", u.GetKind(), objKey(u))
			}
		}
	}
	return m
}

// issuerOf is the Issuer that issues c; manifests/ uses namespaced Issuers
// only, so that keyhook's CA is keyhook's alone.
func (m *manifests) issuerOf(t *testing.T, c *cmapi.Certificate) *cmapi.Issuer {
	t.Helper()
	ref := c.Spec.IssuerRef
	if (ref.Kind != "" && ref.Kind != cmapi.IssuerKind) || (ref.Group != "" && ref.Group != cmapi.SchemeGroupVersion.Group) {
		t.Fatalf("Certificate %s: issuerRef %+v; want an Issuer of cert-manager.io", c.Name, ref)
	}
	iss, ok := m.issuers[c.Namespace+"/"+ref.Name]
	if !ok {
		t.Fatalf("Certificate %s is issued by Issuer %s/%s, which manifests/ does not have (have %v)", c.Name, c.Namespace, ref.Name, keys(m.issuers))
	}
	return iss
}

// deploymentBehind is the one Deployment whose pods svc sends traffic to,
// and checks that the port svc targets is one its pods serve.
func (m *manifests) deploymentBehind(t *testing.T, svc *corev1.Service) *appsv1.Deployment {
	t.Helper()
	var found []*appsv1.Deployment
	for _, d := range m.deployments {
		if d.Namespace == svc.Namespace && len(svc.Spec.Selector) > 0 &&
			labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("Service %s/%s selects the pods of %d Deployments; want one", svc.Namespace, svc.Name, len(found))
	}
	d := found[0]
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.Type != intstr.String {
			continue
		}
		served := false
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				served = served || cp.Name == p.TargetPort.StrVal
			}
		}
		if !served {
			t.Errorf("Service %s targets port %q, which no container of Deployment %s names", svc.Name, p.TargetPort.StrVal, d.Name)
		}
	}
	return d
}

// tlsSecret is the Secret mounted where the webhook container of d reads
// its serving certificate (--cert-dir).
func tlsSecret(t *testing.T, d *appsv1.Deployment) string {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, arg := range c.Args {
			dir, ok := strings.CutPrefix(arg, "--cert-dir=")
			if !ok {
				continue
			}
			for _, vm := range c.VolumeMounts {
				if filepath.Clean(vm.MountPath) != filepath.Clean(dir) {
					continue
				}
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Name == vm.Name && v.Secret != nil {
						return v.Secret.SecretName
					}
				}
				t.Fatalf("Deployment %s: volume %q mounted at --cert-dir %s is not a Secret", d.Name, vm.Name, dir)
			}
			t.Fatalf("Deployment %s: container %s: nothing is mounted at --cert-dir %s", d.Name, c.Name, dir)
		}
	}
	t.Fatalf("Deployment %s: no container has --cert-dir", d.Name)
	return ""
}

// lifetime is how long c lives and how long before its expiry cert-manager
// renews it; both must be explicit, not cert-manager's defaults.
func lifetime(t *testing.T, c *cmapi.Certificate) (life, renewBefore time.Duration) {
	t.Helper()
	if c.Spec.Duration == nil || c.Spec.RenewBefore == nil {
		t.Fatalf("Certificate %s: duration %v, renewBefore %v; set both", c.Name, c.Spec.Duration, c.Spec.RenewBefore)
	}
	life, renewBefore = c.Spec.Duration.Duration, c.Spec.RenewBefore.Duration
	if renewBefore <= 0 || renewBefore >= life {
		t.Fatalf("Certificate %s: renewBefore %s is not within its duration %s", c.Name, renewBefore, life)
	}
	return life, renewBefore
}

// disruptionsAllowed is how many of healthy pods pdb lets the eviction API
// take, computed as the disruption controller does.
func disruptionsAllowed(t *testing.T, pdb *policyv1.PodDisruptionBudget, healthy int) int {
	t.Helper()
	switch {
	case pdb.Spec.MinAvailable != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, healthy, true)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: minAvailable: %v", pdb.Name, err)
		}
		return max(healthy-n, 0)
	case pdb.Spec.MaxUnavailable != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, healthy, true)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: maxUnavailable: %v", pdb.Name, err)
		}
		return min(n, healthy)
	}
	t.Fatalf("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", pdb.Name)
	return 0
}

// installCertManagerCRDs installs cert-manager.io's CRDs from the pinned
// cert-manager module (deploy/crds: controller-gen output, which its Helm
// chart wraps in templating; the schemas are the same).
func installCertManagerCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", certManagerModule)
	cmd.Dir = framework.RepoRoot()
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m %s: %v %q", certManagerModule, err, out)
	}
	files, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", cmapi.SchemeGroupVersion.Group+"_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cert-manager.io CRDs in %s/deploy/crds: %v", dir, err)
	}
	start := time.Now()
	crds, err := envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{Paths: files, ErrorIfPathMissing: true, MaxTime: time.Minute})
	if err != nil {
		t.Fatalf("installing cert-manager's CRDs from %s: %v", dir, err)
	}
	t.Logf("installed %d cert-manager CRDs from %s in %s", len(crds), dir, time.Since(start).Round(time.Millisecond))
	// The CRDs stay: they change nothing for the other tests (no cert-manager
	// object is ever created, only dry-run), InstallCRDs updates them on a
	// rerun, and deleting them could stall in the test apiserver's CRD
	// finalizer for over a minute (seen twice on a busy machine).
}

func objKey(o metav1.Object) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return sorted(ks)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
