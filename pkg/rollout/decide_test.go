package rollout

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func TestSelectionFor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		want   Selection
		wantOK bool
	}{
		{name: "nothing", ann: map[string]string{"other": "x"}},
		{name: "auto", ann: map[string]string{"keyhook.dev/rollout": "auto"}, want: Selection{AllSecrets: true, AllInjected: true}, wantOK: true},
		{name: "list", ann: map[string]string{"keyhook.dev/rollout": "db, api ,"}, want: Selection{ExternalSecrets: map[string]bool{"db": true, "api": true}}, wantOK: true},
		{name: "reloader auto", ann: map[string]string{"reloader.stakater.com/auto": "true"}, want: Selection{AllSecrets: true}, wantOK: true},
		{name: "reloader secret auto", ann: map[string]string{"secret.reloader.stakater.com/auto": "True"}, want: Selection{AllSecrets: true}, wantOK: true},
		{name: "reloader auto false", ann: map[string]string{"reloader.stakater.com/auto": "false"}},
		{name: "reloader reload list", ann: map[string]string{"secret.reloader.stakater.com/reload": "a,b"}, want: Selection{Secrets: map[string]bool{"a": true, "b": true}}, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SelectionFor(tc.ann)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("selection (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReferencedSecrets(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "env-init"}, Key: "k"}}}}}},
		Containers: []corev1.Container{{
			Env:     []corev1.EnvVar{{Name: "B", Value: "literal"}, {Name: "C", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env-from"}}}},
		}},
		Volumes: []corev1.Volume{
			{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "volume"}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "projected"}}}}}}},
		},
	}
	want := map[string]bool{"env-init": true, "env-from": true, "volume": true, "projected": true}
	if diff := cmp.Diff(want, ReferencedSecrets(spec)); diff != "" {
		t.Errorf("referenced Secrets (-want +got):\n%s", diff)
	}
}

func managed(name, owner, hash string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Annotations: map[string]string{
		"keyhook.dev/data-hash": hash, "keyhook.dev/external-secret": owner,
	}}}
}

func withVersions(name string, v map[string]string) *v1alpha1.ExternalSecret {
	return &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1alpha1.ExternalSecretStatus{Versions: v}}
}

func TestCurrent(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"keyhook.dev/inject": "files,pending,synced"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "api"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "unmanaged"}}},
			}}},
		},
	}
	secrets := map[string]*corev1.Secret{"db": managed("db", "db-es", "h-db"), "api": managed("api", "api-es", "h-api"), "other": managed("other", "o", "h-other"),
		"synced-target": managed("synced-target", "synced", "h-synced"),
		// Its Secret before spec.target.name changed: stale, never followed.
		"synced-old": managed("synced-old", "synced", "h-stale")}
	synced := withVersions("synced", nil) // creationPolicy Owner: followed by its Secret
	synced.Spec.Target.Name = "synced-target"
	ess := map[string]*v1alpha1.ExternalSecret{
		"files":   withVersions("files", map[string]string{"app/x": "3"}),
		"pending": withVersions("pending", nil), // not synced yet
		"synced":  synced,
	}
	filesDigest := versionDigest(map[string]string{"app/x": "3"})
	cv := func(name string) string { return contentVersion(secrets[name]) }
	for _, tc := range []struct {
		name string
		sel  Selection
		want map[string]string
	}{
		{"auto follows referenced managed Secrets and injected ExternalSecrets", Selection{AllSecrets: true, AllInjected: true},
			map[string]string{"secret/db": cv("db"), "secret/api": cv("api"), "externalsecret/files": filesDigest, "externalsecret/synced": cv("synced-target")}},
		{"Reloader auto follows Secrets only", Selection{AllSecrets: true},
			map[string]string{"secret/db": cv("db"), "secret/api": cv("api")}},
		{"a list of ExternalSecrets follows their Secrets and injections", Selection{ExternalSecrets: map[string]bool{"db-es": true, "files": true}},
			map[string]string{"secret/db": cv("db"), "externalsecret/files": filesDigest}},
		{"Reloader's reload list names Secrets, referenced or not", Selection{Secrets: map[string]bool{"other": true, "missing": true}},
			map[string]string{"secret/other": cv("other")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Current(tc.sel, "ns", tmpl, secrets, ess)); diff != "" {
				t.Errorf("current versions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name              string
		recorded, current map[string]string
		want              Decision
	}{
		{"first sight records, no rollout", nil, map[string]string{"secret/db": "1"},
			Decision{Record: map[string]string{"secret/db": "1"}}},
		{"unchanged", map[string]string{"secret/db": "1"}, map[string]string{"secret/db": "1"},
			Decision{Record: map[string]string{"secret/db": "1"}}},
		{"changed", map[string]string{"secret/db": "1", "secret/api": "a"}, map[string]string{"secret/db": "2", "secret/api": "a"},
			Decision{Record: map[string]string{"secret/db": "2", "secret/api": "a"}, Changed: []string{"secret/db"}}},
		{"a new source beside a changed one", map[string]string{"secret/db": "1"}, map[string]string{"secret/db": "2", "externalsecret/f": "v"},
			Decision{Record: map[string]string{"secret/db": "2", "externalsecret/f": "v"}, Changed: []string{"secret/db"}}},
		{"a deleted Secret keeps its version: no rollout", map[string]string{"secret/db": "1"}, map[string]string{},
			Decision{Record: map[string]string{"secret/db": "1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Decide(tc.recorded, tc.current), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := map[string]string{"secret/db": "abc", "externalsecret/x": "def"}
	if diff := cmp.Diff(r, ParseRecord(EncodeRecord(r))); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if got := ParseRecord("{not json"); len(got) != 0 {
		t.Errorf("malformed record parsed as %v", got)
	}
	if Hash(r) == Hash(map[string]string{"secret/db": "abd", "externalsecret/x": "def"}) {
		t.Error("different records hash alike")
	}
}

// What a workload records of a Secret is not its data hash, and changes with
// the content and with the Secret (a recreated Secret is a change).
func TestContentVersion(t *testing.T) {
	a := managed("db", "es", "hash-1")
	if got := contentVersion(a); got == "hash-1" || strings.Contains(got, "hash-1") {
		t.Errorf("contentVersion exposes the data hash: %q", got)
	}
	if contentVersion(a) != contentVersion(a.DeepCopy()) {
		t.Error("contentVersion is not deterministic")
	}
	b := managed("db", "es", "hash-2")
	if contentVersion(a) == contentVersion(b) {
		t.Error("a content change does not change contentVersion")
	}
	c := a.DeepCopy()
	c.UID = "another"
	if contentVersion(a) == contentVersion(c) {
		t.Error("a recreated Secret (new UID) has the same contentVersion")
	}
}
