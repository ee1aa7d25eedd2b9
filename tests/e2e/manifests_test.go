package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/keyhook/keyhook/pkg/webhookconfig"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestManifestsApply renders manifests/ with the repo's kubectl and has the
// real API server validate every object (server-side dry run). cert-manager's
// kinds are left out here: TestCertManagerManifests installs its CRDs and
// checks them.
func TestManifestsApply(t *testing.T) {
	kubectl := filepath.Join(os.Getenv("KEYHOOK_TESTENV"), "kubectl")
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(framework.RepoRoot(), "manifests")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize manifests: %v", err)
	}
	var docs []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		switch {
		case strings.Contains(doc, "apiVersion: cert-manager.io/"):
		case strings.Contains(doc, "kind: Namespace\n"):
			// Created for real: a dry run cannot hold objects inside a
			// namespace that is only dry-run created.
			cmd := exec.Command(kubectl, "--kubeconfig="+cluster.Kubeconfig, "apply", "-f", "-")
			cmd.Stdin = strings.NewReader(doc)
			if res, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("creating keyhook's namespace: %v\n%s", err, res)
			}
		default:
			docs = append(docs, doc)
		}
	}
	cmd := exec.Command(kubectl, "--kubeconfig="+cluster.Kubeconfig, "apply", "--dry-run=server", "-f", "-")
	cmd.Stdin = strings.NewReader(strings.Join(docs, "\n---\n"))
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("server-side dry run of manifests/ failed: %v\n%s", err, res)
	}
	for _, want := range []string{"deployment.apps/keyhook", "mutatingwebhookconfiguration.admissionregistration.k8s.io/keyhook", "poddisruptionbudget.policy/keyhook"} {
		if !strings.Contains(string(res), want) {
			t.Errorf("dry run did not apply %s:\n%s", want, res)
		}
	}
}

// TestManifestWebhooksAreGenerated guards against hand edits of the webhook
// registrations users install, both the plain ones and the cert-manager
// ones: they must be exactly what pkg/webhookconfig, which the tests
// register, builds.
func TestManifestWebhooksAreGenerated(t *testing.T) {
	for file, want := range map[string]any{
		"webhook/mutatingwebhookconfiguration.yaml":       webhookconfig.Mutating(webhookconfig.Defaults()),
		"webhook/validatingwebhookconfiguration.yaml":     webhookconfig.Validating(webhookconfig.Defaults()),
		"certmanager/mutatingwebhookconfiguration.yaml":   webhookconfig.Mutating(webhookconfig.CertManager()),
		"certmanager/validatingwebhookconfiguration.yaml": webhookconfig.Validating(webhookconfig.CertManager()),
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
}
