package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestVaultAuthMethods reads from Vault through each remaining auth method
// and a KV v1 engine, in both paths: the sync and an injected pod.
//   - jwt: the pod's projected token, validated by Vault with the cluster's
//     signing key (no TokenReview), bound to the "app" service account;
//   - approle: role id in the store, secret id from a Secret of the namespace;
//   - token (from a Secret) against a KV v1 mount.
func TestVaultAuthMethods(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "vault-auth")
	if err := vault.JWTRole(ctx, ns+"-jwt", ns, "app", "vault", ns+"/*"); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := vault.AppRole(ctx, ns+"-approle", ns+"/*")
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.KV1(ctx, "kv1"); err != nil {
		t.Fatal(err)
	}
	token, err := vault.PolicyToken(ctx, ns+"-kv1", "kv1/"+ns+"/*")
	if err != nil {
		t.Fatal(err)
	}
	password, legacy := secretValue(t, "password"), secretValue(t, "legacy")
	if err := vault.Put(ctx, ns+"/app", map[string]any{"password": password}); err != nil {
		t.Fatal(err)
	}
	if err := vault.PutKV1(ctx, "kv1", ns+"/legacy", map[string]any{"token": legacy}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault-creds"},
		StringData: map[string]string{"secret-id": secretID, "token": token},
	}); err != nil {
		t.Fatal(err)
	}
	stores := map[string]*v1alpha1.VaultProvider{
		"jwt": {Path: "secret", Auth: v1alpha1.VaultAuth{JWT: &v1alpha1.VaultJWTAuth{
			Role: ns + "-jwt", ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "app"},
		}}},
		"approle": {Path: "secret", Auth: v1alpha1.VaultAuth{AppRole: &v1alpha1.VaultAppRoleAuth{
			RoleID: roleID, SecretRef: v1alpha1.SecretKeySelector{Name: "vault-creds", Key: "secret-id"},
		}}},
		"kv1": {Path: "kv1", Version: v1alpha1.VaultKVv1, Auth: v1alpha1.VaultAuth{
			TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-creds", Key: "token"},
		}},
	}
	for name, p := range stores {
		p.Server = vault.Addr
		if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: p}},
		}); err != nil {
			t.Fatalf("store %s: %v", name, err)
		}
		remote, property := ns+"/app", "password"
		if name == "kv1" {
			remote, property = ns+"/legacy", "token"
		}
		if err := cluster.Client.Create(ctx, externalSecret(ns, "via-"+name, v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: name, Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("value", remote, property, "")},
		})); err != nil {
			t.Fatal(err)
		}
	}

	// Versions the store's engine cannot have are refused at admission.
	for store, version := range map[string]string{"kv1": "2", "jwt": "latest"} {
		err := cluster.Client.Create(ctx, externalSecret(ns, "bad-version-"+store, v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: store, Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("value", ns+"/app", "", version)},
		}))
		wantDenied(t, err, "spec.data[0].remoteRef.version", map[string]string{"kv1": "KV v1 engine has no versions", "jwt": "positive number"}[store])
	}

	// The sync, one Secret per auth method.
	want := map[string]string{"via-jwt": password, "via-approle": password, "via-kv1": legacy}
	for name, v := range want {
		waitForSecret(ctx, t, ns, name, func(s *corev1.Secret) bool { return string(s.Data["value"]) == v })
	}

	// Injection: the agent logs in once per store, as the pod.
	pod := plainPod(ns, "web", map[string]string{"keyhook.dev/inject": "via-jwt,via-approle,via-kv1"}, nil)
	pod.Spec.ServiceAccountName = "app"
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(pod) {
		t.Fatal("pod not injected")
	}
	_, root := runAgent(ctx, t, pod)
	files := map[string]string{}
	for name, v := range want {
		files[name+"/value"] = v
	}
	wantFiles(t, root, files)
	// The pod spec carries the secret id and token only as secretKeyRefs.
	for _, c := range pod.Spec.InitContainers {
		for _, e := range c.Env {
			if e.Value == secretID || e.Value == token {
				t.Errorf("init container env %s holds a credential literally", e.Name)
			}
		}
	}

	// The jwt role is bound to "app": a pod of another service account is
	// refused by Vault, and the agent says so.
	other := plainPod(ns, "intruder", map[string]string{"keyhook.dev/inject": "via-jwt"}, nil)
	if err := cluster.Client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	run, err := framework.RunAgent(ctx, cluster, agentBin, other, t.TempDir(), "--deadline=5s")
	if err != nil {
		t.Fatal(err)
	}
	if run.Err == nil {
		t.Fatal("a pod of another service account read through the jwt role")
	}
	if !strings.Contains(run.Output, "via-jwt") {
		t.Errorf("agent failure does not name the ExternalSecret:\n%s", run.Output)
	}
	_ = cluster.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: other.Name}}, client.GracePeriodSeconds(0))

	assertNoValues(ctx, t, ns, password, legacy, secretID, token)
	if strings.Contains(run.Output, password) || strings.Contains(run.Output, secretID) {
		t.Error("agent output contains a secret value or credential")
	}
}
