package secretsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// The sync's Google identity: a namespaced store's own key only; keyhook's
// application default credentials only for a ClusterSecretStore, and then
// only within the store's project.
func TestGoogleIdentityOfTheSync(t *testing.T) {
	srv := gcpsmtest.New(gcpsmtest.Options{ProjectID: "shop-prod"})
	t.Cleanup(srv.Close)
	const keyhook = "keyhook@platform.iam.gserviceaccount.com"
	srv.Allow(keyhook, "*")
	srv.Put("db", []byte("v"))
	file := filepath.Join(t.TempDir(), "adc.json")
	if err := os.WriteFile(file, srv.ServiceAccountKey(keyhook), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", file) // keyhook's own identity

	factory := Providers(nil, fake.NewClientBuilder().WithObjects(&corev1.Secret{}).Build())
	source := func(kind v1alpha1.SecretStoreKind) *resolve.Source {
		return &resolve.Source{
			ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}},
			StoreKind:      kind, StoreName: "gcp",
			Store: &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{
				ProjectID: "shop-prod", Endpoint: srv.Addr(), CABundle: srv.CABundle(),
			}}},
		}
	}

	_, err := factory(context.Background(), source(v1alpha1.SecretStoreKindNamespaced))
	if !errors.Is(err, fetch.ErrAccessDenied) || !strings.Contains(err.Error(), "auth.secretRef") {
		t.Fatalf("a namespaced store without a key: err = %v, want a refusal naming auth.secretRef", err)
	}

	p, err := factory(context.Background(), source(v1alpha1.SecretStoreKindCluster))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeProvider(p) })
	if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil {
		t.Fatalf("the store's project: %v", err)
	}
	before := len(srv.Calls())
	_, err = p.GetSecret(context.Background(), fetch.Ref{Key: "projects/billing-prod/secrets/db"})
	if !errors.Is(err, fetch.ErrAccessDenied) || !strings.Contains(err.Error(), "another project") {
		t.Errorf("another project through a ClusterSecretStore: err = %v, want a refusal naming another project", err)
	}
	if n := len(srv.Calls()) - before; n != 0 {
		t.Errorf("%d calls for another project reached Google; keyhook's identity must not even ask", n)
	}
}
