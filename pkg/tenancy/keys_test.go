package tenancy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func ns(name string, ann map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
}

func TestCheckKeys(t *testing.T) {
	r := DefaultRules()
	store := &v1alpha1.SecretStoreSpec{PermittedKeys: []string{"${namespace}/.*", "shared/public/.*"}}
	for _, tc := range []struct {
		name    string
		ns      *corev1.Namespace
		keys    []string
		wantErr string
	}{
		{"own prefix", ns("team-a", nil), []string{"team-a/db", "shared/public/ca"}, ""},
		{"other tenant's prefix", ns("team-a", nil), []string{"team-a/db", "team-b/db"}, `remote key "team-b/db" is not permitted by spec.permittedKeys of SecretStore "s"`},
		{"whole-key match, not substring", ns("team-a", nil), []string{"x/team-a/db"}, `"x/team-a/db"`},
		// The namespace name is quoted: "team.a" must not match "teamXa/...".
		{"namespace is quoted", ns("team.a", nil), []string{"teamXa/db"}, `"teamXa/db"`},
		{"namespace annotation narrows", ns("team-a", map[string]string{DefaultPermittedKeyAnnotation: "team-a/app/.*"}), []string{"team-a/db"},
			`remote key "team-a/db" is not permitted in namespace "team-a" by its externalsecrets.kubernetes-client.io/permitted-key-name annotation`},
		{"namespace annotation admits", ns("team-a", map[string]string{DefaultPermittedKeyAnnotation: "team-a/app/.*"}), []string{"team-a/app/db"}, ""},
		{"bad annotation regex", ns("team-a", map[string]string{DefaultPermittedKeyAnnotation: "("}), []string{"team-a/db"}, "invalid externalsecrets.kubernetes-client.io/permitted-key-name annotation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.CheckKeys(store, `SecretStore "s"`, tc.ns, tc.keys)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want permitted, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
			}
		})
	}
	if err := (Rules{}).CheckKeys(&v1alpha1.SecretStoreSpec{}, "s", ns("a", map[string]string{DefaultPermittedKeyAnnotation: "none"}), []string{"anything"}); err != nil {
		t.Errorf("with the annotation check off and no permittedKeys every key is permitted: %v", err)
	}
}

func TestCheckRole(t *testing.T) {
	r := DefaultRules()
	annotated := ns("team-a", map[string]string{DefaultPermittedRoleAnnotation: "arn:aws:iam::123456789012:role/team-a-.*"})
	if err := r.CheckRole("arn:aws:iam::123456789012:role/team-a-reader", "role", annotated); err != nil {
		t.Errorf("permitted role denied: %v", err)
	}
	err := r.CheckRole("arn:aws:iam::123456789012:role/admin", "spec.provider.aws.role", annotated)
	if err == nil || !strings.Contains(err.Error(), `spec.provider.aws.role "arn:aws:iam::123456789012:role/admin" is not permitted in namespace "team-a" by its iam.amazonaws.com/permitted annotation`) {
		t.Errorf("forbidden role: got %v", err)
	}
	if err := r.CheckRole("arn:aws:iam::123456789012:role/admin", "role", ns("free", nil)); err != nil {
		t.Errorf("a namespace without the annotation may use any role (IAM decides): %v", err)
	}
}

func TestValidateStore(t *testing.T) {
	spec := &v1alpha1.SecretStoreSpec{
		PermittedKeys: []string{"${namespace}/.*", "(unclosed"},
		Conditions:    []v1alpha1.ClusterSecretStoreCondition{{NamespaceRegexes: []string{"ok-.*", "*bad"}}},
	}
	errs := ValidateStore(spec, field.NewPath("spec"))
	got := errs.ToAggregate().Error()
	for _, want := range []string{"spec.permittedKeys[1]", "spec.conditions[0].namespaceRegexes[1]"} {
		if !strings.Contains(got, want) {
			t.Errorf("want an error at %s, got %s", want, got)
		}
	}
	if len(errs) != 2 {
		t.Errorf("want exactly 2 errors, got %d: %s", len(errs), got)
	}
}
