package e2e

import (
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestVaultOnlyAgent runs the init-agent built with the Vault provider alone
// (make build's keyhook-init-agent-vault, the init-agent-vault image) as the
// kubelet would for an injected pod of a Vault store: it writes the files
// from the real Vault. The AWS-only build, given the same pod, fails at once
// with a line that says which image to use, and without the value.
func TestVaultOnlyAgent(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "vaultonly")
	password := secretValue(t, "pw")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": password}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	pod := plainPod(ns, "web", map[string]string{"keyhook.dev/inject": "db"}, nil)
	pod.Spec.ServiceAccountName = "app"
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(pod) {
		t.Fatal("pod not injected")
	}
	vaultBin, err := framework.AgentBinary(workDir, "vault")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	run, err := framework.RunAgent(ctx, cluster, vaultBin, pod, root)
	if err != nil {
		t.Fatal(err)
	}
	if run.Err != nil {
		t.Fatalf("the Vault-only agent failed: %v\n%s", run.Err, run.Output)
	}
	wantFiles(t, root, map[string]string{"db/password": password})

	awsBin, err := framework.AgentBinary(workDir, "aws")
	if err != nil {
		t.Fatal(err)
	}
	run, err = framework.RunAgent(ctx, cluster, awsBin, pod, t.TempDir(), "--deadline=30s")
	if err != nil {
		t.Fatal(err)
	}
	if run.Err == nil {
		t.Fatalf("the AWS-only agent served a Vault store:\n%s", run.Output)
	}
	for _, want := range []string{"built without the vault provider", "--agent-image-vault"} {
		if !strings.Contains(run.Output, want) {
			t.Errorf("the AWS-only agent's failure does not say %q:\n%s", want, run.Output)
		}
	}
	if strings.Contains(run.Output, "retrying") {
		t.Errorf("a provider missing from the build is retried; it is permanent:\n%s", run.Output)
	}
	if strings.Contains(run.Output, password) {
		t.Error("the agent's output holds the value")
	}
}
