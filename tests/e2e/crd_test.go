package e2e

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// TestCRDValidation checks that the API server itself rejects bad objects,
// with messages that name the field.
func TestCRDValidation(t *testing.T) {
	ctx := testContext(t)
	ns, err := cluster.Namespace(ctx, "crd", nil)
	if err != nil {
		t.Fatal(err)
	}
	vaultStore := func(mod func(*v1alpha1.VaultProvider)) *v1alpha1.SecretStore {
		v := &v1alpha1.VaultProvider{Server: "https://vault:8200", Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "r"}}}
		mod(v)
		return &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "s-"},
			Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: v}}}
	}
	for _, tc := range []struct {
		name string
		obj  interface {
			GetName() string
		}
		want []string
	}{
		{"ExternalSecret reading nothing", externalSecret(ns, "empty", v1alpha1.ExternalSecretSpec{}),
			[]string{"set data or dataFrom"}},
		{"bad store kind", externalSecret(ns, "kind", v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "s", Kind: "VaultStore"},
			Data:           []v1alpha1.ExternalSecretData{data("k", "a", "", "")},
		}), []string{"spec.secretStoreRef.kind", `"VaultStore"`, "SecretStore", "ClusterSecretStore"}},
		{"secretKey that is not a file name", externalSecret(ns, "key", v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("../etc/passwd", "a", "", "")},
		}), []string{"spec.data[0].secretKey"}},
		{"version that no provider has", externalSecret(ns, "version", v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("k", "a", "", "v 1")},
		}), []string{"spec.data[0].remoteRef.version"}},
		{"duplicate secretKey", externalSecret(ns, "dup", v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("k", "a", "", ""), data("k", "b", "", "")},
		}), []string{"spec.data[1]", "Duplicate value"}},
		{"KV version 3", vaultStore(func(v *v1alpha1.VaultProvider) { v.Version = "v3" }),
			[]string{"spec.provider.vault.version", `"v3"`}},
		{"server without scheme", vaultStore(func(v *v1alpha1.VaultProvider) { v.Server = "vault:8200" }),
			[]string{"spec.provider.vault.server"}},
		{"two auth methods", vaultStore(func(v *v1alpha1.VaultProvider) {
			v.Auth.TokenSecretRef = &v1alpha1.SecretKeySelector{Name: "t", Key: "token"}
		}), []string{"spec.provider.vault.auth", "at most 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			switch o := tc.obj.(type) {
			case *v1alpha1.ExternalSecret:
				err = cluster.Client.Create(ctx, o)
			case *v1alpha1.SecretStore:
				err = cluster.Client.Create(ctx, o)
			}
			if err == nil {
				t.Fatal("the API server accepted the object")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
