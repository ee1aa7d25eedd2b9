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
			for _, want := range []string{"deployment.apps/keyhook", "mutatingwebhookconfiguration.admissionregistration.k8s.io/keyhook",
				"validatingwebhookconfiguration.admissionregistration.k8s.io/keyhook", "poddisruptionbudget.policy/keyhook", "role.rbac.authorization.k8s.io/keyhook",
				"validatingadmissionpolicy.admissionregistration.k8s.io/keyhook-namespace-labels", "validatingadmissionpolicybinding.admissionregistration.k8s.io/keyhook-namespace-labels",
				"validatingadmissionpolicy.admissionregistration.k8s.io/keyhook-pods", "validatingadmissionpolicybinding.admissionregistration.k8s.io/keyhook-pods"} {
				if !strings.Contains(string(res), want) {
					t.Errorf("dry run did not apply %s:\n%s", want, res)
				}
			}
		})
	}
}

// TestSelfManagedManifests checks what the self-managed install needs to
// come up without cert-manager: no cert-manager object or annotation, a
// Deployment that does not wait for a mounted Secret, and RBAC for the
// Secret and the registrations keyhook writes (names as cmd/webhook's
// defaults: --cert-secret keyhook-system/keyhook-webhook-tls,
// --webhook-configuration keyhook).
func TestSelfManagedManifests(t *testing.T) {
	out := kustomize(t, "manifests/self-managed")
	var deploy appsv1.Deployment
	var role rbacv1.Role
	var clusterRole rbacv1.ClusterRole
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
			must(t, yaml.UnmarshalStrict([]byte(doc), &deploy))
		case "Role":
			must(t, yaml.UnmarshalStrict([]byte(doc), &role))
		case "ClusterRole":
			must(t, yaml.UnmarshalStrict([]byte(doc), &clusterRole))
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
	spec := deploy.Spec.Template.Spec
	if len(spec.Containers) != 1 || !slices.Contains(spec.Containers[0].Args, "--tls-mode=self-managed") {
		t.Errorf("the Deployment does not run --tls-mode=self-managed: %v", spec.Containers)
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "keyhook-webhook-tls" {
			t.Error("the Deployment mounts keyhook-webhook-tls: its pods would not start before the Secret exists")
		}
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
	if role.Namespace != "keyhook-system" {
		t.Errorf("the Role is in %q, not keyhook-system", role.Namespace)
	}
	for _, verb := range []string{"get", "list", "watch", "create", "update"} {
		if !allows(role.Rules, "secrets", "keyhook-webhook-tls", verb) {
			t.Errorf("the Role does not allow %s on Secret keyhook-webhook-tls", verb)
		}
	}
	for _, res := range []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"} {
		if !allows(clusterRole.Rules, res, "keyhook", "patch") {
			t.Errorf("the ClusterRole does not allow patching %s keyhook", res)
		}
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
		if n != 4 {
			t.Errorf("%s installs %d ValidatingAdmissionPolicies and bindings, want 4", dir, n)
		}
	}
}
