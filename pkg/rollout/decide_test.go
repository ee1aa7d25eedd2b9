package rollout

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/injection"
)

func TestSelectionFor(t *testing.T) {
	re := func(p ...string) []*regexp.Regexp {
		var out []*regexp.Regexp
		for _, x := range p {
			out = append(out, regexp.MustCompile("^"+x+"$"))
		}
		return out
	}
	both := TypeSelection{Auto: true}
	for _, tc := range []struct {
		name               string
		workload, template map[string]string
		want               Selection
		wantOK             bool
	}{
		{name: "nothing", workload: map[string]string{"other": "x"}},
		{name: "keyhook auto", workload: map[string]string{"keyhook.dev/rollout": "auto"}, want: Selection{All: true}, wantOK: true},
		{name: "keyhook list", workload: map[string]string{"keyhook.dev/rollout": "db, api ,"}, want: Selection{ExternalSecrets: map[string]bool{"db": true, "api": true}}, wantOK: true},
		{name: "reloader auto follows both kinds", workload: map[string]string{"reloader.stakater.com/auto": "true"}, want: Selection{Secrets: both, ConfigMaps: both}, wantOK: true},
		{name: "reloader secret auto", workload: map[string]string{"secret.reloader.stakater.com/auto": "True"}, want: Selection{Secrets: both}, wantOK: true},
		{name: "reloader configmap auto", workload: map[string]string{"configmap.reloader.stakater.com/auto": "1"}, want: Selection{ConfigMaps: both}, wantOK: true},
		{name: "reloader auto false", workload: map[string]string{"reloader.stakater.com/auto": "false"}},
		{name: "typed auto wins over auto false", workload: map[string]string{"reloader.stakater.com/auto": "false", "secret.reloader.stakater.com/auto": "true"}, want: Selection{Secrets: both}, wantOK: true},
		{name: "reload lists are patterns", workload: map[string]string{"secret.reloader.stakater.com/reload": "a,b-.*", "configmap.reloader.stakater.com/reload": "cfg"},
			want: Selection{Secrets: TypeSelection{Reload: re("a", "b-.*")}, ConfigMaps: TypeSelection{Reload: re("cfg")}}, wantOK: true},
		{name: "search", workload: map[string]string{"reloader.stakater.com/search": "true"}, want: Selection{Secrets: TypeSelection{Search: true}, ConfigMaps: TypeSelection{Search: true}}, wantOK: true},
		{name: "pod template read when the workload has none", template: map[string]string{"reloader.stakater.com/auto": "true"}, want: Selection{Secrets: both, ConfigMaps: both}, wantOK: true},
		{name: "the workload's win over the template's, per kind", workload: map[string]string{"secret.reloader.stakater.com/reload": "a"}, template: map[string]string{"configmap.reloader.stakater.com/auto": "true", "secret.reloader.stakater.com/auto": "true"},
			want: Selection{Secrets: TypeSelection{Reload: re("a")}, ConfigMaps: both}, wantOK: true},
		{name: "exclusions from the workload", workload: map[string]string{"reloader.stakater.com/auto": "true", "secrets.exclude.reloader.stakater.com/reload": "x, y"},
			want: Selection{Secrets: TypeSelection{Auto: true, Exclude: map[string]bool{"x": true, "y": true}}, ConfigMaps: both}, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, errs := SelectionFor(tc.workload, tc.template)
			if ok != tc.wantOK || len(errs) > 0 {
				t.Fatalf("ok = %v, errs %v, want %v", ok, errs, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b *regexp.Regexp) bool { return a.String() == b.String() })); diff != "" {
				t.Errorf("selection (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, errs := SelectionFor(map[string]string{"secret.reloader.stakater.com/reload": "ok,bad("}, nil); len(errs) != 1 {
		t.Errorf("a reload pattern that does not compile gave errors %v, want one", errs)
	}
}

func TestReferencesOf(t *testing.T) {
	ref := func(n string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: n} }
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("env-init"), Key: "k"}}},
			{Name: "I", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("cm-init")}}},
		}}},
		Containers: []corev1.Container{{
			Env:     []corev1.EnvVar{{Name: "B", Value: "literal"}, {Name: "C", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("cm-env")}}}},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("env-from")}}, {ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("cm-env-from")}}},
		}},
		Volumes: []corev1.Volume{
			{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "volume"}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("cm-volume")}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: ref("projected")}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: ref("cm-projected")}},
			}}}},
		},
	}
	want := References{
		Secrets:    map[string]bool{"env-init": true, "env-from": true, "volume": true, "projected": true},
		ConfigMaps: map[string]bool{"cm-init": true, "cm-env": true, "cm-env-from": true, "cm-volume": true, "cm-projected": true},
	}
	if diff := cmp.Diff(want, ReferencesOf(spec)); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
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

func plain(name, hash string, ann ...string) *corev1.Secret {
	a := map[string]string{contentHashKey: hash}
	for i := 0; i+1 < len(ann); i += 2 {
		a[ann[i]] = ann[i+1]
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Annotations: a}}
}

func configMap(name, hash string, ann ...string) *corev1.ConfigMap {
	s := plain(name, hash, ann...)
	return &corev1.ConfigMap{ObjectMeta: s.ObjectMeta}
}

func TestCurrent(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"keyhook.dev/inject": "files,pending,synced"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "api"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "unmanaged"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "ignored"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "marked"}}},
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			}}},
		},
	}
	secrets := map[string]*corev1.Secret{"db": managed("db", "db-es", "h-db"), "api": managed("api", "api-es", "h-api"), "other": managed("other", "o", "h-other"),
		"unmanaged":     plain("unmanaged", "sha256:u"),
		"ignored":       plain("ignored", "sha256:i", "reloader.stakater.com/ignore", "true"),
		"marked":        plain("marked", "sha256:m", "reloader.stakater.com/match", "true"),
		"synced-target": managed("synced-target", "synced", "h-synced"),
		// Its Secret before spec.target.name changed: stale, never followed.
		"synced-old": managed("synced-old", "synced", "h-stale")}
	configMaps := map[string]*corev1.ConfigMap{"cfg": configMap("cfg", "sha256:c"), "unused": configMap("unused", "sha256:x")}
	synced := withVersions("synced", nil) // creationPolicy Owner: followed by its Secret
	synced.Spec.Target.Name = "synced-target"
	ess := map[string]*v1alpha1.ExternalSecret{
		"files":     withVersions("files", map[string]string{"app/x": "3"}),
		"pending":   withVersions("pending", nil), // not synced yet
		"synced":    synced,
		"by-policy": withVersions("by-policy", map[string]string{"app/y": "1"}),
	}
	st := State{Secrets: secrets, ConfigMaps: configMaps, ExternalSecrets: ess}
	filesDigest := versionDigest(map[string]string{"app/x": "3"})
	cv := func(name string) string { return contentVersion(secrets[name]) }
	cm := func(name string) string { return contentVersion(configMaps[name]) }
	auto := TypeSelection{Auto: true}
	for _, tc := range []struct {
		name string
		sel  Selection
		in   injection.Inputs
		want map[string]string
	}{
		{"auto follows every referenced Secret and ConfigMap and injected ExternalSecrets", Selection{All: true}, injection.Inputs{},
			map[string]string{"secret/db": cv("db"), "secret/api": cv("api"), "secret/unmanaged": cv("unmanaged"), "secret/marked": cv("marked"), "configmap/cfg": cm("cfg"),
				"externalsecret/files": filesDigest, "externalsecret/synced": cv("synced-target")}},
		{"auto follows what a ClusterInjectionPolicy injects", Selection{All: true}, injection.Inputs{
			Policies: []v1alpha1.ClusterInjectionPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.ClusterInjectionPolicySpec{Inject: []string{"by-policy"}}}}},
			map[string]string{"secret/db": cv("db"), "secret/api": cv("api"), "secret/unmanaged": cv("unmanaged"), "secret/marked": cv("marked"), "configmap/cfg": cm("cfg"),
				"externalsecret/files": filesDigest, "externalsecret/synced": cv("synced-target"), "externalsecret/by-policy": versionDigest(map[string]string{"app/y": "1"})}},
		{"Reloader auto follows referenced Secrets and ConfigMaps, not ignored ones", Selection{Secrets: auto, ConfigMaps: auto}, injection.Inputs{},
			map[string]string{"secret/db": cv("db"), "secret/api": cv("api"), "secret/unmanaged": cv("unmanaged"), "secret/marked": cv("marked"), "configmap/cfg": cm("cfg")}},
		{"Reloader secret auto with an exclusion", Selection{Secrets: TypeSelection{Auto: true, Exclude: map[string]bool{"db": true}}}, injection.Inputs{},
			map[string]string{"secret/api": cv("api"), "secret/unmanaged": cv("unmanaged"), "secret/marked": cv("marked")}},
		{"Reloader search follows the referenced ones marked match", Selection{Secrets: TypeSelection{Search: true}}, injection.Inputs{},
			map[string]string{"secret/marked": cv("marked")}},
		{"a list of ExternalSecrets follows their Secrets and injections", Selection{ExternalSecrets: map[string]bool{"db-es": true, "files": true}}, injection.Inputs{},
			map[string]string{"secret/db": cv("db"), "externalsecret/files": filesDigest}},
		{"Reloader's reload list names Secrets and ConfigMaps, referenced or not", Selection{
			Secrets:    TypeSelection{Reload: []*regexp.Regexp{regexp.MustCompile("^other$"), regexp.MustCompile("^missing$")}},
			ConfigMaps: TypeSelection{Reload: []*regexp.Regexp{regexp.MustCompile("^un.*$")}}}, injection.Inputs{},
			map[string]string{"secret/other": cv("other"), "configmap/unused": cm("unused")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := st
			st.Injection = tc.in
			if diff := cmp.Diff(tc.want, Current(tc.sel, "ns", tmpl, st)); diff != "" {
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

func TestTrack(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	timing := Timing{Quiet: 2 * time.Second, Debounce: 10 * time.Second}
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	for _, tc := range []struct {
		name    string
		pending *Pending
		inputs  string
		now     time.Time
		want    Pending
		wantDue time.Time
	}{
		{"first change: due after the quiet period", nil, "a", t0, Pending{Since: t0, Seen: t0, Inputs: "a"}, sec(2)},
		{"same inputs again: nothing moves", &Pending{Since: t0, Seen: t0, Inputs: "a"}, "a", sec(1), Pending{Since: t0, Seen: t0, Inputs: "a"}, sec(2)},
		{"another change restarts the quiet period", &Pending{Since: t0, Seen: t0, Inputs: "a"}, "b", sec(1), Pending{Since: t0, Seen: sec(1), Inputs: "b"}, sec(3)},
		{"the first change bounds the wait", &Pending{Since: t0, Seen: sec(8), Inputs: "a"}, "b", sec(9), Pending{Since: t0, Seen: sec(9), Inputs: "b"}, sec(10)},
		{"waiting survives", &Pending{Since: t0, Seen: t0, Inputs: "a", Waiting: true}, "a", sec(5), Pending{Since: t0, Seen: t0, Inputs: "a", Waiting: true}, sec(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, due := Track(tc.pending, tc.inputs, tc.now, timing)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("pending (-want +got):\n%s", diff)
			}
			if !due.Equal(tc.wantDue) {
				t.Errorf("due %s, want %s", due, tc.wantDue)
			}
			if round := ParsePending(got.Encode()); round == nil || !round.Since.Equal(got.Since) || !round.Seen.Equal(got.Seen) || round.Inputs != got.Inputs || round.Waiting != got.Waiting {
				t.Errorf("pending does not survive its annotation: %+v", round)
			}
		})
	}
}

func TestReason(t *testing.T) {
	if got := Reason([]string{"secret/a", "configmap/b", "secret/c"}); got != "configmap+secret" {
		t.Errorf("Reason = %q", got)
	}
}

// The cache holds no data: the transformed Secret has a hash where the data
// was, and none of the annotations that may copy it.
func TestStripData(t *testing.T) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "u", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"password":"aHVudGVyMg=="}}`, "reloader.stakater.com/match": "true"}},
		Data: map[string][]byte{"password": []byte("hunter2")},
	}
	out, err := StripData(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	want := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "u", ResourceVersion: "7",
		Annotations: map[string]string{"reloader.stakater.com/match": "true", contentHashKey: "sha256:" + dataHash(s.Data, nil)}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stripped Secret (-want +got):\n%s", diff)
	}
	other := s.DeepCopy()
	other.Data["password"] = []byte("hunter3")
	o, _ := StripData(other)
	if contentVersion(o.(*corev1.Secret)) == contentVersion(got) {
		t.Error("a data change does not change the content version")
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}, BinaryData: map[string][]byte{"b": {1}}}
	oc, _ := StripData(cm)
	if c := oc.(*corev1.ConfigMap); c.Data != nil || c.BinaryData != nil || c.Annotations[contentHashKey] == "" {
		t.Errorf("stripped ConfigMap %+v", c)
	}
	// Keys and values cannot run into each other.
	if dataHash(map[string][]byte{"ab": []byte("c")}, nil) == dataHash(map[string][]byte{"a": []byte("bc")}, nil) {
		t.Error("dataHash is ambiguous")
	}
}
