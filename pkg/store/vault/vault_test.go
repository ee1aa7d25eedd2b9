package vault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/store/vault"
)

// fakeCreds hands out a token per (service account, audience) and a value
// per Secret key, recording what was asked.
type fakeCreds struct{ asked []string }

func (f *fakeCreds) ServiceAccountToken(_ context.Context, ref *v1alpha1.ServiceAccountSelector, aud string) (string, error) {
	sa := "default"
	if ref != nil {
		sa = ref.Name
	}
	f.asked = append(f.asked, "token "+sa+" "+aud)
	return "jwt-of-" + sa, nil
}

func (f *fakeCreds) SecretValue(_ context.Context, ref v1alpha1.SecretKeySelector, what string) (string, error) {
	f.asked = append(f.asked, "secret "+ref.Name+"/"+ref.Key+" ("+what+")")
	return "value-of-" + ref.Name, nil
}

// podCreds is driver.PodCredentials as the webhook's plan builder answers.
type podCreds struct{}

func (podCreds) Token(aud string) string { return "/token/" + aud }
func (podCreds) SecretEnv(_ *driver.Source, ref v1alpha1.SecretKeySelector, _, _ string) (string, error) {
	return "ENV_" + ref.Name, nil
}

func source(v *v1alpha1.VaultProvider) *driver.Source {
	return &driver.Source{
		ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}},
		StoreKind:      v1alpha1.SecretStoreKindNamespaced, StoreName: "vault",
		Store: &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: v}},
	}
}

// A store that leaves every optional field empty gets the same defaults in
// the sync's login and in the agent's plan: the ones the CRD writes.
func TestEmptyFieldsGetTheDefaultsInSyncAndPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		auth      v1alpha1.VaultAuth
		wantSync  vault.Config
		wantAsked []string
		wantPlan  *plan.Vault
	}{
		{
			name:      "kubernetes",
			auth:      v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "app"}},
			wantSync:  vault.Config{Server: "https://vault:8200", Mount: "secret", KVVersion: 2, Kubernetes: &vault.KubernetesAuth{MountPath: "kubernetes", Role: "app", JWT: "jwt-of-default"}},
			wantAsked: []string{"token default vault"},
			wantPlan:  &plan.Vault{Server: "https://vault:8200", Path: "secret", KVVersion: 2, Kubernetes: &plan.VaultKubernetes{MountPath: "kubernetes", Role: "app", TokenPath: "/token/vault"}},
		},
		{
			name:      "jwt",
			auth:      v1alpha1.VaultAuth{JWT: &v1alpha1.VaultJWTAuth{Role: "app", ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "sync"}}},
			wantSync:  vault.Config{Server: "https://vault:8200", Mount: "secret", KVVersion: 2, JWT: &vault.KubernetesAuth{MountPath: "jwt", Role: "app", JWT: "jwt-of-sync"}},
			wantAsked: []string{"token sync vault"},
			wantPlan:  &plan.Vault{Server: "https://vault:8200", Path: "secret", KVVersion: 2, JWT: &plan.VaultKubernetes{MountPath: "jwt", Role: "app", TokenPath: "/token/vault"}},
		},
		{
			name:      "approle",
			auth:      v1alpha1.VaultAuth{AppRole: &v1alpha1.VaultAppRoleAuth{RoleID: "r", SecretRef: v1alpha1.SecretKeySelector{Name: "ar", Key: "id"}}},
			wantSync:  vault.Config{Server: "https://vault:8200", Mount: "secret", KVVersion: 2, AppRole: &vault.AppRoleAuth{MountPath: "approle", RoleID: "r", SecretID: "value-of-ar"}},
			wantAsked: []string{"secret ar/id (AppRole secret id)"},
			wantPlan:  &plan.Vault{Server: "https://vault:8200", Path: "secret", KVVersion: 2, AppRole: &plan.VaultAppRole{MountPath: "approle", RoleID: "r", SecretIDEnv: "ENV_ar"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &v1alpha1.VaultProvider{Server: "https://vault:8200", Auth: *tc.auth.DeepCopy()}
			creds := &fakeCreds{}
			got, err := vault.Provider{}.SyncConfig(context.Background(), source(spec), creds)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantSync, got); diff != "" {
				t.Errorf("sync config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAsked, creds.asked); diff != "" {
				t.Errorf("credentials asked for (-want +got):\n%s", diff)
			}
			var ps plan.Store
			if err := (vault.Provider{}).Plan(source(spec), podCreds{}, &ps); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantPlan, ps.Vault); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(&v1alpha1.VaultProvider{Server: "https://vault:8200", Auth: tc.auth}, spec); diff != "" {
				t.Errorf("defaulting changed the store it was given (-want +got):\n%s", diff)
			}
		})
	}
}

// A KV version the CRD does not admit is refused alike by the sync and the
// plan (the sync used to read it as v2, the plan refused it).
func TestUnknownKVVersionIsRefusedBySyncAndPlan(t *testing.T) {
	spec := &v1alpha1.VaultProvider{Server: "https://vault:8200", Version: "v3", Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "app"}}}
	if _, err := (vault.Provider{}).SyncConfig(context.Background(), source(spec), &fakeCreds{}); !errors.Is(err, fetch.ErrInvalid) {
		t.Errorf("sync: err = %v, want one wrapping fetch.ErrInvalid", err)
	}
	var ps plan.Store
	if err := (vault.Provider{}).Plan(source(spec), podCreds{}, &ps); err == nil {
		t.Errorf("plan: no error, plan %+v", ps.Vault)
	}
}
