package secretsync

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cached is s as the controller's cache holds it.
func cached(t *testing.T, s *corev1.Secret) *corev1.Secret {
	t.Helper()
	out, err := StripSecretData(s.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	return out.(*corev1.Secret)
}

// TestStripSecretData: the cache's copy of a managed Secret keeps its
// metadata and type, holds no value and no managedFields, and carries a
// digest of the data computed from the data, not taken from the object.
func TestStripSecretData(t *testing.T) {
	data := map[string][]byte{"password": []byte("hunter2")}
	in := Desired(es(), data)
	in.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "keyhook", Operation: metav1.ManagedFieldsOperationUpdate}}
	in.ResourceVersion, in.UID = "7", "uid-s"
	in.Annotations[cachedDataHashKey] = "forged"
	want := Desired(es(), data)
	want.ResourceVersion, want.UID = "7", "uid-s"
	want.Data = nil
	want.Annotations[cachedDataHashKey] = DataHash(data)
	if diff := cmp.Diff(want, cached(t, in)); diff != "" {
		t.Errorf("cached Secret (-want +got):\n%s", diff)
	}
	cm := &corev1.ConfigMap{Data: map[string]string{"k": "v"}}
	if out, err := StripSecretData(cm); err != nil || out != any(cm) || cm.Data["k"] != "v" {
		t.Errorf("StripSecretData changed an object that is not a Secret: %v, %v", out, err)
	}
}

// TestUpToDateFromCache: the sync tells an edited Secret from a current one
// by the cache's digest alone.
func TestUpToDateFromCache(t *testing.T) {
	data := map[string][]byte{"password": []byte("p")}
	current := Desired(es(), data)
	edited := current.DeepCopy()
	edited.Data["password"] = []byte("changed by hand")
	added := current.DeepCopy()
	added.Data["extra"] = []byte("x")
	for _, tc := range []struct {
		name     string
		existing *corev1.Secret
		want     bool
	}{
		{"as written", current, true},
		{"value edited by hand", edited, false},
		{"key added by hand", added, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UpToDate(cached(t, tc.existing), es(), data); got != tc.want {
				t.Errorf("UpToDate = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestUpdatedCarriesNoCacheKey: a Secret from the cache written back has
// the desired data and keyhook's keys, keeps others' labels and
// annotations, and does not carry the cache's digest to the API server.
func TestUpdatedCarriesNoCacheKey(t *testing.T) {
	old := Desired(es(), map[string][]byte{"password": []byte("old")})
	old.Labels["team"] = "a"
	old.Annotations["note"] = "kept"
	old.ResourceVersion = "7"
	desired := Desired(es(), map[string][]byte{"password": []byte("new")})
	want := desired.DeepCopy()
	want.Labels["team"] = "a"
	want.Annotations["note"] = "kept"
	want.ResourceVersion = "7"
	if diff := cmp.Diff(want, updated(cached(t, old), desired)); diff != "" {
		t.Errorf("updated Secret (-want +got):\n%s", diff)
	}
}
