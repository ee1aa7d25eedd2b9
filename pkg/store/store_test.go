package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/store"
)

// The defaults each provider applies in code are the ones the CRDs (from
// the kubebuilder markers) write: a store the API server defaulted and one
// built in memory read the same.
func TestDefaultsMatchTheCRD(t *testing.T) {
	for _, file := range []string{"keyhook.dev_secretstores.yaml", "keyhook.dev_clustersecretstores.yaml"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "manifests", "crd", file))
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(raw, crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Schema == nil {
			t.Fatalf("%s: want one version with a schema", file)
		}
		providers := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["provider"].Properties
		if len(providers) != len(store.All()) {
			t.Errorf("%s: %d providers in spec.provider, %d in store.All", file, len(providers), len(store.All()))
		}
		for _, p := range store.All() {
			schema, ok := providers[p.Name()]
			if !ok {
				t.Errorf("%s: no spec.provider.%s", file, p.Name())
				continue
			}
			got := map[string]string{}
			collectDefaults(t, schema, "", got)
			if diff := cmp.Diff(p.Defaults(), got); diff != "" {
				t.Errorf("%s: defaults of spec.provider.%s (-code +CRD):\n%s", file, p.Name(), diff)
			}
		}
	}
}

func collectDefaults(t *testing.T, s apiextensionsv1.JSONSchemaProps, path string, out map[string]string) {
	if s.Default != nil {
		var v string
		if err := yaml.Unmarshal(s.Default.Raw, &v); err != nil {
			t.Errorf("default of %s is not a string: %s", path, s.Default.Raw)
		}
		out[path] = v
	}
	for name, p := range s.Properties {
		collectDefaults(t, p, strings.TrimPrefix(path+"."+name, "."), out)
	}
}

// Every store spec of one provider is that provider's, and of no other.
func TestForFindsTheOneProvider(t *testing.T) {
	for _, tc := range []struct {
		spec v1alpha1.SecretStoreSpec
		want string
	}{
		{v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{}}}, "vault"},
		{v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{}}}, "aws"},
		{v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{}}}, "gcpsm"},
	} {
		p := store.For(&tc.spec)
		if p == nil || p.Name() != tc.want {
			t.Errorf("For(%s store) = %v", tc.want, p)
		}
	}
	if p := store.For(&v1alpha1.SecretStoreSpec{}); p != nil {
		t.Errorf("For(a store of no provider) = %s, want nil", p.Name())
	}
}
