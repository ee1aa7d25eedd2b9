package gcpsm_test

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/store/gcpsm"
)

type keyCreds struct{}

func (keyCreds) ServiceAccountToken(context.Context, *v1alpha1.ServiceAccountSelector, string) (string, error) {
	return "", errors.New("Google stores use no Kubernetes token")
}

func (keyCreds) SecretValue(context.Context, v1alpha1.SecretKeySelector, string) (string, error) {
	return `{"type":"service_account"}`, nil
}

// The health probe skips exactly the stores the sync cannot log in with
// (AgentOnly), and the sync uses keyhook's own identity for a
// ClusterSecretStore only, and then within the store's project.
func TestAgentOnlyIsWhereTheSyncRefuses(t *testing.T) {
	withKey := v1alpha1.GCPSMAuth{SecretRef: &v1alpha1.GCPSMAuthSecretRef{SecretAccessKey: v1alpha1.SecretKeySelector{Name: "gcp", Key: "key.json"}}}
	for _, tc := range []struct {
		kind          v1alpha1.SecretStoreKind
		auth          v1alpha1.GCPSMAuth
		wantRefused   bool
		wantOwnProj   bool
		wantKeyInConf bool
	}{
		{v1alpha1.SecretStoreKindNamespaced, v1alpha1.GCPSMAuth{}, true, false, false},
		{v1alpha1.SecretStoreKindNamespaced, withKey, false, false, true},
		{v1alpha1.SecretStoreKindCluster, v1alpha1.GCPSMAuth{}, false, true, false},
		{v1alpha1.SecretStoreKindCluster, withKey, false, true, true},
	} {
		spec := &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{ProjectID: "shop", Auth: tc.auth}}}
		src := &driver.Source{
			ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}},
			StoreKind:      tc.kind, StoreName: "gcp", Store: spec,
		}
		name := string(tc.kind) + " with key " + map[bool]string{true: "yes", false: "no"}[tc.auth.SecretRef != nil]
		cfg, err := gcpsm.Provider{}.SyncConfig(context.Background(), src, keyCreds{})
		if refused := errors.Is(err, fetch.ErrAccessDenied); refused != tc.wantRefused || (err != nil && !refused) {
			t.Errorf("%s: sync err = %v, want refused %v", name, err, tc.wantRefused)
		}
		if agentOnly := (gcpsm.Provider{}).AgentOnly(tc.kind, spec) != ""; agentOnly != tc.wantRefused {
			t.Errorf("%s: AgentOnly = %v, want %v", name, agentOnly, tc.wantRefused)
		}
		if err != nil {
			continue
		}
		if cfg.OwnProjectOnly != tc.wantOwnProj || cfg.ProjectID != "shop" || (len(cfg.CredentialsJSON) > 0) != tc.wantKeyInConf {
			t.Errorf("%s: config = %+v", name, cfg)
		}
	}
}
