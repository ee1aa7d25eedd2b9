package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/keyhook/keyhook/pkg/webhookconfig"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestManifestsApply renders both installs (manifests/ with cert-manager,
// manifests/self-managed/ without) with the repo's kubectl and has the real
// API server validate every object (server-side dry run). cert-manager's
// kinds are left out here: TestCertManagerManifests installs its CRDs and
// checks them.
func TestManifestsApply(t *testing.T) {
	for _, dir := range []string{"manifests", "manifests/self-managed"} {
		t.Run(dir, func(t *testing.T) {
			out := kustomize(t, dir)
			var docs []string
			for _, doc := range strings.Split(out, "\n---\n") {
				switch {
				case strings.Contains(doc, "apiVersion: cert-manager.io/"):
				case strings.Contains(doc, "kind: Namespace\n"):
					// Created for real: a dry run cannot hold objects inside a
					// namespace that is only dry-run created.
					cmd := exec.Command(testKubectl(), "--kubeconfig="+cluster.Kubeconfig, "apply", "-f", "-")
					cmd.Stdin = strings.NewReader(doc)
					if res, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("creating keyhook's namespace: %v\n%s", err, res)
					}
				default:
					docs = append(docs, doc)
				}
			}
			cmd := exec.Command(testKubectl(), "--kubeconfig="+cluster.Kubeconfig, "apply", "--dry-run=server", "-f", "-")
			cmd.Stdin = strings.NewReader(strings.Join(docs, "\n---\n"))
			res, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("server-side dry run of %s failed: %v\n%s", dir, err, res)
			}
			for _, want := range []string{"deployment.apps/keyhook-webhook", "deployment.apps/keyhook-controller",
				"mutatingwebhookconfiguration.admissionregistration.k8s.io/keyhook", "validatingwebhookconfiguration.admissionregistration.k8s.io/keyhook",
				"poddisruptionbudget.policy/keyhook-webhook", "role.rbac.authorization.k8s.io/keyhook-webhook", "role.rbac.authorization.k8s.io/keyhook-controller",
				"clusterrole.rbac.authorization.k8s.io/keyhook-webhook", "clusterrole.rbac.authorization.k8s.io/keyhook-controller",
				"serviceaccount/keyhook-webhook", "serviceaccount/keyhook-controller",
				"validatingadmissionpolicy.admissionregistration.k8s.io/keyhook-namespace-labels", "validatingadmissionpolicybinding.admissionregistration.k8s.io/keyhook-namespace-labels",
				"validatingadmissionpolicy.admissionregistration.k8s.io/keyhook-pods", "validatingadmissionpolicybinding.admissionregistration.k8s.io/keyhook-pods",
				"validatingadmissionpolicy.admissionregistration.k8s.io/keyhook-mirror-pods", "validatingadmissionpolicybinding.admissionregistration.k8s.io/keyhook-mirror-pods"} {
				if !strings.Contains(string(res), want) {
					t.Errorf("dry run did not apply %s:\n%s", want, res)
				}
			}
		})
	}
}

// TestSelfManagedManifests checks what the self-managed install needs to
// come up without cert-manager: no cert-manager object or annotation, a
// webhook Deployment that does not wait for a mounted Secret, a controller
// Deployment that issues, each as its own ServiceAccount, and RBAC for the
// Secret and the registrations (names as the binaries' defaults:
// --cert-secret keyhook-system/keyhook-webhook-tls, --webhook-configuration
// keyhook): the controller writes them, the webhook only reads its Secret.
func TestSelfManagedManifests(t *testing.T) {
	out := kustomize(t, "manifests/self-managed")
	deploys := map[string]appsv1.Deployment{}
	roles := map[string]rbacv1.Role{}
	clusterRoles := map[string]rbacv1.ClusterRole{}
	registrations := 0
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta metav1.PartialObjectMetadata
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(meta.APIVersion, "cert-manager.io/") {
			t.Errorf("%s %s is a cert-manager object", meta.Kind, meta.Name)
		}
		switch meta.Kind {
		case "Deployment":
			var d appsv1.Deployment
			must(t, yaml.UnmarshalStrict([]byte(doc), &d))
			deploys[d.Name] = d
		case "Role":
			var r rbacv1.Role
			must(t, yaml.UnmarshalStrict([]byte(doc), &r))
			roles[r.Name] = r
		case "ClusterRole":
			var r rbacv1.ClusterRole
			must(t, yaml.UnmarshalStrict([]byte(doc), &r))
			clusterRoles[r.Name] = r
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			registrations++
			if meta.Name != "keyhook" {
				t.Errorf("%s is named %q, not the default --webhook-configuration keyhook", meta.Kind, meta.Name)
			}
			if _, ok := meta.Annotations["cert-manager.io/inject-ca-from"]; ok {
				t.Errorf("%s carries cert-manager's inject-ca-from", meta.Kind)
			}
			if strings.Contains(doc, "caBundle") {
				t.Errorf("%s ships a caBundle; keyhook writes it", meta.Kind)
			}
		}
	}
	if registrations != 2 {
		t.Errorf("%d webhook registrations, want 2", registrations)
	}
	for _, name := range []string{"keyhook-webhook", "keyhook-controller"} {
		spec := deploys[name].Spec.Template.Spec
		if len(spec.Containers) != 1 || !slices.Contains(spec.Containers[0].Args, "--tls-mode=self-managed") {
			t.Errorf("Deployment %s does not run --tls-mode=self-managed: %v", name, spec.Containers)
		}
		if spec.ServiceAccountName != name {
			t.Errorf("Deployment %s runs as ServiceAccount %q, want its own, %s", name, spec.ServiceAccountName, name)
		}
		for _, v := range spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "keyhook-webhook-tls" {
				t.Errorf("Deployment %s mounts keyhook-webhook-tls: its pods would not start before the Secret exists", name)
			}
		}
	}
	if !slices.Contains(deploys["keyhook-controller"].Spec.Template.Spec.Containers[0].Args, "--leader-elect=true") {
		t.Error("the controller Deployment does not run --leader-elect")
	}
	allows := func(rules []rbacv1.PolicyRule, resource, name, verb string) bool {
		for _, r := range rules {
			if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
				(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
				return true
			}
		}
		return false
	}
	for name, r := range roles {
		if r.Namespace != "keyhook-system" {
			t.Errorf("Role %s is in %q, not keyhook-system", name, r.Namespace)
		}
	}
	for _, verb := range []string{"get", "list", "watch", "create", "update"} {
		if !allows(roles["keyhook-controller"].Rules, "secrets", "keyhook-webhook-tls", verb) {
			t.Errorf("the controller's Role does not allow %s on Secret keyhook-webhook-tls", verb)
		}
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if !allows(roles["keyhook-webhook"].Rules, "secrets", "keyhook-webhook-tls", verb) {
			t.Errorf("the webhook's Role does not allow %s on Secret keyhook-webhook-tls", verb)
		}
	}
	// The webhook only reads: no rule of its anywhere grants a write.
	webhookRules := append(slices.Clone(roles["keyhook-webhook"].Rules), clusterRoles["keyhook-webhook"].Rules...)
	for _, r := range webhookRules {
		for _, verb := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch"}, verb) {
				t.Errorf("the webhook's RBAC grants %s on %v", verb, r.Resources)
			}
		}
	}
	if len(webhookRules) == 0 {
		t.Error("no RBAC for the webhook")
	}
	for _, res := range []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"} {
		if !allows(clusterRoles["keyhook-controller"].Rules, res, "keyhook", "patch") {
			t.Errorf("the controller's ClusterRole does not allow patching %s keyhook", res)
		}
	}
	if !allows(clusterRoles["keyhook-controller"].Rules, "serviceaccounts/token", "", "create") {
		t.Error("the controller's ClusterRole does not allow creating tokens (the sync logs in as a store's serviceAccountRef)")
	}
}

func kustomize(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command(testKubectl(), "kustomize", filepath.Join(framework.RepoRoot(), dir)).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return string(out)
}

func testKubectl() string { return filepath.Join(os.Getenv("KEYHOOK_TESTENV"), "kubectl") }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestManifestWebhooksAreGenerated guards against hand edits of the webhook
// registrations users install, both the plain ones and the cert-manager
// ones: they must be exactly what pkg/webhookconfig, which the tests
// register, builds.
func TestManifestWebhooksAreGenerated(t *testing.T) {
	for file, want := range map[string]any{
		"self-managed/mutatingwebhookconfiguration.yaml":   webhookconfig.Mutating(webhookconfig.Defaults()),
		"self-managed/validatingwebhookconfiguration.yaml": webhookconfig.Validating(webhookconfig.Defaults()),
		"certmanager/mutatingwebhookconfiguration.yaml":    webhookconfig.Mutating(webhookconfig.CertManager()),
		"certmanager/validatingwebhookconfiguration.yaml":  webhookconfig.Validating(webhookconfig.CertManager()),
	} {
		raw, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "manifests", file))
		if err != nil {
			t.Fatal(err)
		}
		var shipped, built map[string]any
		if err := yaml.Unmarshal(raw, &shipped); err != nil {
			t.Fatal(err)
		}
		b, err := yaml.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &built); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(built, shipped); diff != "" {
			t.Errorf("manifests/%s differs from pkg/webhookconfig; run make manifests (-built +shipped):\n%s", file, diff)
		}
	}
	// The ValidatingAdmissionPolicies, one file of both installs.
	raw, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "manifests", "webhook", webhookconfig.AdmissionPoliciesFile))
	if err != nil {
		t.Fatal(err)
	}
	var shipped, built []map[string]any
	for _, doc := range strings.Split(string(raw), "\n---\n")[1:] {
		var m map[string]any
		must(t, yaml.Unmarshal([]byte(doc), &m))
		shipped = append(shipped, m)
	}
	for _, p := range webhookconfig.AdmissionPolicies(webhookconfig.Defaults()) {
		for _, obj := range p.Objects() {
			b, err := yaml.Marshal(obj)
			must(t, err)
			var m map[string]any
			must(t, yaml.Unmarshal(b, &m))
			built = append(built, m)
		}
	}
	if diff := cmp.Diff(built, shipped); diff != "" {
		t.Errorf("manifests/webhook/%s differs from pkg/webhookconfig; run make manifests (-built +shipped):\n%s", webhookconfig.AdmissionPoliciesFile, diff)
	}
	// Both installs carry them, cluster-scoped (no namespace).
	for _, dir := range []string{"manifests", "manifests/self-managed"} {
		n := 0
		for _, doc := range strings.Split(kustomize(t, dir), "\n---\n") {
			var meta metav1.PartialObjectMetadata
			must(t, yaml.Unmarshal([]byte(doc), &meta))
			if strings.HasPrefix(meta.Kind, "ValidatingAdmissionPolicy") {
				n++
				if meta.Namespace != "" {
					t.Errorf("%s: %s %s has namespace %q", dir, meta.Kind, meta.Name, meta.Namespace)
				}
			}
		}
		if want := 2 * len(webhookconfig.AdmissionPolicies(webhookconfig.Defaults())); n != want {
			t.Errorf("%s installs %d ValidatingAdmissionPolicies and bindings, want %d", dir, n, want)
		}
	}
}
