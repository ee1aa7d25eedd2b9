package admission_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/resolve"
)

func validator(t *testing.T, objs ...client.Object) *keyhookadmission.Validator {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	return &keyhookadmission.Validator{Resolver: &resolve.Resolver{Reader: c}, Decoder: admission.NewDecoder(scheme)}
}

func validate(t *testing.T, v *keyhookadmission.Validator, kind string, obj client.Object) admission.Response {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return v.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Group: "keyhook.dev", Version: "v1alpha1", Kind: kind},
		Operation: admissionv1.Create, Name: obj.GetName(), Namespace: obj.GetNamespace(),
		Object: runtime.RawExtension{Raw: raw},
	}})
}

func ref(name, ns string) v1alpha1.SecretKeySelector {
	return v1alpha1.SecretKeySelector{Name: name, Namespace: ns, Key: "k"}
}

// A namespaced SecretStore that names a Secret of another namespace is
// denied, whatever field names it, with a message that names the field and
// says why and what to do; the store's own namespace or none is admitted,
// and a ClusterSecretStore may name any namespace.
func TestSecretStoreForeignSecretRefs(t *testing.T) {
	v := validator(t)
	vaultAuth := func(auth v1alpha1.VaultAuth) v1alpha1.SecretStoreSpec {
		return v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: "https://vault:8200", Auth: auth}}}
	}
	for _, tc := range []struct {
		name   string
		spec   v1alpha1.SecretStoreSpec
		denied []string // fields denied; none means admitted
	}{
		{"tokenSecretRef in another namespace", vaultAuth(v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Namespace: "team-b", Key: "token"}}),
			[]string{"spec.provider.vault.auth.tokenSecretRef.namespace"}},
		{"tokenSecretRef in its own namespace", vaultAuth(v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Namespace: "team-a", Key: "token"}}), nil},
		{"tokenSecretRef without a namespace", vaultAuth(v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Key: "token"}}), nil},
		{"appRole secretRef in another namespace", vaultAuth(v1alpha1.VaultAuth{AppRole: &v1alpha1.VaultAppRoleAuth{RoleID: "r", SecretRef: ref("approle", "kube-system")}}),
			[]string{"spec.provider.vault.auth.appRole.secretRef.namespace"}},
		{"AWS keys, two in other namespaces", v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{
			Service: v1alpha1.AWSSecretsManager, Region: "eu-west-1",
			Auth: v1alpha1.AWSAuth{SecretRef: &v1alpha1.AWSAuthSecretRef{AccessKeyID: ref("aws", "team-a"), SecretAccessKey: ref("aws", "team-b"), SessionToken: &v1alpha1.SecretKeySelector{Name: "aws", Namespace: "team-c", Key: "t"}}},
		}}}, []string{"spec.provider.aws.auth.secretRef.secretAccessKeySecretRef.namespace", "spec.provider.aws.auth.secretRef.sessionTokenSecretRef.namespace"}},
		{"Google key in another namespace", v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{
			ProjectID: "p", Auth: v1alpha1.GCPSMAuth{SecretRef: &v1alpha1.GCPSMAuthSecretRef{SecretAccessKey: ref("gcp", "team-b")}},
		}}}, []string{"spec.provider.gcpsm.auth.secretRef.secretAccessKeySecretRef.namespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := validate(t, v, "SecretStore", &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "s"}, Spec: tc.spec})
			msg := resp.Result.Message
			if len(tc.denied) == 0 {
				if !resp.Allowed {
					t.Fatalf("denied: %s", msg)
				}
				return
			}
			if resp.Allowed {
				t.Fatal("admitted")
			}
			if strings.Count(msg, "a namespaced SecretStore can only reference Secrets in its own namespace \"team-a\"") != len(tc.denied) {
				t.Errorf("denial %q does not say %d times why", msg, len(tc.denied))
			}
			for _, f := range tc.denied {
				if !strings.Contains(msg, f) || !strings.Contains(msg, "use a ClusterSecretStore") {
					t.Errorf("denial %q does not name %s and the fix", msg, f)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("denial %q is not one line", msg)
			}
		})
	}
	resp := validate(t, v, "ClusterSecretStore", &v1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec: vaultAuth(v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Namespace: "team-b", Key: "token"}})})
	if !resp.Allowed {
		t.Errorf("a ClusterSecretStore naming a Secret's namespace was denied: %s", resp.Result.Message)
	}
}

// A remote key written as the KV v2 API path of the store's mount is denied
// with what to write instead.
func TestExternalSecretKVv2APIPath(t *testing.T) {
	store := &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "vault"},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: "https://vault:8200", Path: "kv", Version: v1alpha1.VaultKVv2,
			Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "app"}},
		}}}}
	v := validator(t, store)
	es := func(key string, from ...v1alpha1.ExternalSecretDataFrom) *v1alpha1.ExternalSecret {
		return &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}, Spec: v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "vault"},
			Data:           []v1alpha1.ExternalSecretData{{SecretKey: "password", RemoteRef: v1alpha1.RemoteRef{Key: key, Property: "password"}}},
			DataFrom:       from,
		}}
	}
	if resp := validate(t, v, "ExternalSecret", es("team-a/db")); !resp.Allowed {
		t.Errorf("a key relative to the mount was denied: %s", resp.Result.Message)
	}
	resp := validate(t, v, "ExternalSecret", es("kv/data/team-a/db", v1alpha1.ExternalSecretDataFrom{Extract: &v1alpha1.ExternalSecretExtract{Key: "kv/metadata/team-a/api"}}))
	if resp.Allowed {
		t.Fatal("a KV v2 API path was admitted")
	}
	for _, want := range []string{
		`spec.data[0].remoteRef.key: Invalid value: "kv/data/team-a/db"`, `relative to the store's mount "kv"`, `write "team-a/db"`,
		`spec.dataFrom[0].extract.key: Invalid value: "kv/metadata/team-a/api"`, `write "team-a/api"`,
	} {
		if !strings.Contains(resp.Result.Message, want) {
			t.Errorf("denial %q does not say %q", resp.Result.Message, want)
		}
	}
}
