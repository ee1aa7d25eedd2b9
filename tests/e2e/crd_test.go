package e2e

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// TestClusterInjectionPolicySelectorValidation: the API server refuses a
// ClusterInjectionPolicy whose namespaceSelector or podSelector would not
// parse (an operator without the values it needs, with values it takes
// none of, or no operator at all): an enforcing policy's namespaceSelector
// alone enforces the namespaces, so a podSelector that does not parse must
// not get that far. Valid selectors of every operator are accepted.
func TestClusterInjectionPolicySelectorValidation(t *testing.T) {
	ctx := testContext(t)
	req := func(op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpExists}, {Key: "batch", Operator: op, Values: values},
		}}
	}
	policy := func(nsSel, podSel *metav1.LabelSelector) *v1alpha1.ClusterInjectionPolicy {
		return &v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{GenerateName: "selector-"}, Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: nsSel, PodSelector: podSel, Inject: []string{"db"}, Enforce: true,
		}}
	}
	const says = "every matchExpressions operator is In or NotIn with at least one value, or Exists or DoesNotExist with none"
	for _, tc := range []struct {
		name  string
		p     *v1alpha1.ClusterInjectionPolicy
		field string
	}{
		{"podSelector In without values", policy(nil, req(metav1.LabelSelectorOpIn)), "spec.podSelector"},
		{"podSelector NotIn without values", policy(nil, req(metav1.LabelSelectorOpNotIn)), "spec.podSelector"},
		{"podSelector Exists with values", policy(nil, req(metav1.LabelSelectorOpExists, "yes")), "spec.podSelector"},
		{"podSelector DoesNotExist with values", policy(nil, req(metav1.LabelSelectorOpDoesNotExist, "yes")), "spec.podSelector"},
		{"podSelector with an operator that does not exist", policy(nil, req("Bogus", "yes")), "spec.podSelector"},
		{"namespaceSelector In without values", policy(req(metav1.LabelSelectorOpIn), nil), "spec.namespaceSelector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cluster.Client.Create(ctx, tc.p)
			if err == nil {
				_ = cluster.Client.Delete(ctx, tc.p)
				t.Fatal("the API server accepted the policy")
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), says) {
				t.Errorf("want the CRD's validation to refuse %s saying %q, got %v", tc.field, says, err)
			}
		})
	}
	for _, sel := range []*metav1.LabelSelector{
		req(metav1.LabelSelectorOpIn, "yes"), req(metav1.LabelSelectorOpNotIn, "yes", "no"), req(metav1.LabelSelectorOpDoesNotExist),
		{MatchLabels: map[string]string{"tier": "web"}}, {},
	} {
		if err := cluster.Client.Create(ctx, policy(sel, sel), client.DryRunAll); err != nil {
			t.Errorf("a valid selector %v was refused: %v", sel, err)
		}
	}
}
