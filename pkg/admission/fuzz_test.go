package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	jsonpatchv2 "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// fuzzInjector is the pod injector over a fake cluster with namespace
// team-a and, in it, ExternalSecrets that inject, that are denied, and that
// are denied in secret mode only; and ClusterInjectionPolicies that select
// pods by the label "policy".
func fuzzInjector(t testing.TB) *keyhookadmission.PodInjector {
	t.Helper()
	scheme := testScheme(t)
	vault := func(auth v1alpha1.VaultAuth) v1alpha1.SecretStoreSpec {
		return v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: "https://vault:8200", Path: "secret", Version: v1alpha1.VaultKVv2, Auth: auth,
		}}}
	}
	k8sAuth := func(aud string) v1alpha1.VaultAuth {
		return v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{MountPath: "kubernetes", Role: "app", Audience: aud}}
	}
	es := func(name string, ref v1alpha1.SecretStoreRef, policy v1alpha1.CreationPolicy) *v1alpha1.ExternalSecret {
		return &v1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name},
			Spec: v1alpha1.ExternalSecretSpec{
				SecretStoreRef: ref,
				Target:         v1alpha1.ExternalSecretTarget{CreationPolicy: policy},
				Data:           []v1alpha1.ExternalSecretData{{SecretKey: "password", RemoteRef: v1alpha1.RemoteRef{Key: "team-a/" + name, Property: "password"}}},
			},
		}
	}
	policy := func(name, label string, inject []string, mode v1alpha1.InjectionMode, enforce bool) *v1alpha1.ClusterInjectionPolicy {
		return &v1alpha1.ClusterInjectionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.ClusterInjectionPolicySpec{
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"policy": label}},
				Inject:      inject, Mode: mode, Enforce: enforce,
			},
		}
	}
	store := v1alpha1.SecretStoreRef{Name: "vault"}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}},
		&v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "vault"}, Spec: vault(k8sAuth("vault"))},
		&v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "vault-token"}, Spec: vault(v1alpha1.VaultAuth{
			TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Key: "token"},
		})},
		&v1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "open"}, Spec: vault(k8sAuth("openbao"))},
		&v1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "team-b-only"}, Spec: func() v1alpha1.SecretStoreSpec {
			s := vault(k8sAuth("vault"))
			s.Conditions = []v1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"team-b"}}}
			return s
		}()},
		&v1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "token"}, Spec: vault(v1alpha1.VaultAuth{
			TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Namespace: "keyhook", Key: "token"},
		})},
		es("db", store, ""),
		es("api", store, v1alpha1.CreationPolicyOrphan),
		es("tok", v1alpha1.SecretStoreRef{Name: "vault-token"}, ""),
		es("none", store, v1alpha1.CreationPolicyNone),
		es("open", v1alpha1.SecretStoreRef{Name: "open", Kind: v1alpha1.SecretStoreKindCluster}, ""),
		es("shared", v1alpha1.SecretStoreRef{Name: "team-b-only", Kind: v1alpha1.SecretStoreKindCluster}, ""),
		es("cluster-token", v1alpha1.SecretStoreRef{Name: "token", Kind: v1alpha1.SecretStoreKindCluster}, ""),
		es("no-store", v1alpha1.SecretStoreRef{Name: "nope"}, ""),
		policy("default-api", "default", []string{"api", "missing"}, "", false),
		policy("enforce-db", "enforce", []string{"db"}, "", true),
		policy("secret-mode", "secret", []string{"open", "none"}, v1alpha1.InjectionModeSecret, false),
	}
	return &keyhookadmission.PodInjector{
		Resolver: &resolve.Resolver{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()},
		Config: mutate.Config{
			AgentImage:           "keyhook/agent:test",
			AgentImagePullPolicy: corev1.PullIfNotPresent,
			AgentArgs:            []string{"--deadline=2m0s"},
		},
	}
}

// quiet drops the injector's logs, which would drown the fuzzer's.
var quiet = zap.New(zap.WriteTo(io.Discard))

// shape reads the fuzzer's bytes as a sequence of small choices; once they
// run out every choice is 0.
type shape []byte

func (s *shape) pick(n int) int {
	if len(*s) == 0 {
		return 0
	}
	v := int((*s)[0]) % n
	*s = (*s)[1:]
	return v
}

var (
	// Volume, container and path names include keyhook's own, so that
	// pods that collide with what keyhook adds are tried too.
	fuzzVolumes    = []string{"data", "config", mutate.SecretsVolumeName, mutate.TokenVolumeName, mutate.SecretModeVolumeName("db"), "cache"}
	fuzzContainers = []string{"web", "sidecar", "migrate", mutate.AgentContainerName, "app", "proxy"}
	fuzzPaths      = []string{"/data", "/etc/secrets", annotations.DefaultMountPath, annotations.DefaultMountPath + "/db", "/var/run/secrets", "/etc/secrets-2", "/etc", mutate.TokenDir}
	// The keyhook keys that are not the three the fuzzer sets itself.
	fuzzOtherKeys = []string{annotations.Status, annotations.ForceSync, annotations.Rollout, annotations.SecretHash, annotations.Managed, "keyhook.dev/unknown"}
	fuzzLabels    = []string{"", "default", "enforce", "secret"}
)

// fuzzPod builds a pod that the apiserver would accept (unique container and
// volume names, mounts of existing volumes at distinct paths), with the
// keyhook annotations the fuzzer chose.
func fuzzPod(s shape, inject, mountPath, mode, other string) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Annotations: map[string]string{}},
	}
	if s.pick(2) == 0 {
		pod.Name = "web"
	} else {
		pod.GenerateName = "web-"
	}
	keys := s.pick(16)
	for i, kv := range []struct{ key, value string }{
		{annotations.Inject, inject}, {annotations.MountPath, mountPath}, {annotations.InjectMode, mode},
	} {
		if keys&(1<<i) != 0 {
			pod.Annotations[kv.key] = kv.value
		}
	}
	if keys&8 != 0 {
		pod.Annotations[fuzzOtherKeys[s.pick(len(fuzzOtherKeys))]] = other
	}
	if len(pod.Annotations) == 0 && s.pick(2) == 0 {
		pod.Annotations = nil
	}
	if l := fuzzLabels[s.pick(len(fuzzLabels))]; l != "" {
		pod.Labels = map[string]string{"policy": l}
	}
	if s.pick(3) == 0 {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)}
	}

	var volumes []string
	for range s.pick(4) {
		name := fuzzVolumes[s.pick(len(fuzzVolumes))]
		if !contains(volumes, name) {
			volumes = append(volumes, name)
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}
	}
	var containers []string
	container := func() corev1.Container {
		name := fuzzContainers[s.pick(len(fuzzContainers))]
		if contains(containers, name) {
			name = fmt.Sprintf("c%d", len(containers))
		}
		containers = append(containers, name)
		c := corev1.Container{Name: name, Image: name + ":1"}
		var paths []string
		for range s.pick(3) {
			if len(volumes) == 0 {
				break
			}
			p := fuzzPaths[s.pick(len(fuzzPaths))]
			if !contains(paths, p) {
				paths = append(paths, p)
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volumes[s.pick(len(volumes))], MountPath: p})
			}
		}
		return c
	}
	for range s.pick(3) {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, container())
	}
	for range 1 + s.pick(3) {
		pod.Spec.Containers = append(pod.Spec.Containers, container())
	}
	return pod
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// checkPod checks what the apiserver checks of names and references: one
// name per container and per volume, mounts of existing volumes at distinct
// paths. It returns what is wrong, or "".
func checkPod(pod *corev1.Pod) string {
	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if volumes[v.Name] {
			return fmt.Sprintf("two volumes named %q", v.Name)
		}
		volumes[v.Name] = true
	}
	containers := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == "" || containers[c.Name] {
			return fmt.Sprintf("container name %q is empty or used twice", c.Name)
		}
		containers[c.Name] = true
		paths := map[string]bool{}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				return fmt.Sprintf("container %q mounts volume %q, which does not exist", c.Name, m.Name)
			}
			if paths[m.MountPath] {
				return fmt.Sprintf("container %q mounts two volumes at %q", c.Name, m.MountPath)
			}
			paths[m.MountPath] = true
		}
	}
	if len(pod.Spec.Containers) == 0 {
		return "no containers"
	}
	return ""
}

func podRequest(t *testing.T, pod *corev1.Pod, ns string) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "fuzz",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Name:      pod.Name,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// admit sends pod and checks what every answer promises: a denial says why,
// nothing fails inside, and a patch applies to the pod and gives a pod the
// apiserver would accept. It returns the patched pod (nil when denied) and
// the number of patch operations.
func admit(t *testing.T, h *keyhookadmission.PodInjector, pod *corev1.Pod, ns string) (*corev1.Pod, int) {
	t.Helper()
	ctx := log.IntoContext(context.Background(), quiet)
	req := podRequest(t, pod, ns)
	resp := h.Handle(ctx, req)
	// What the API server receives: a patch type without a patch is
	// refused ("returned response.patchType but not response.patch").
	sent := resp
	if err := sent.Complete(req); err != nil {
		t.Fatal(err)
	}
	if sent.PatchType != nil && len(sent.Patch) == 0 {
		t.Fatal("response has a patch type but no patch; the API server refuses it")
	}
	if !resp.Allowed {
		if resp.Result == nil || resp.Result.Message == "" {
			t.Fatalf("denied without a message: %+v", resp.Result)
		}
		if resp.Result.Code != http.StatusForbidden {
			t.Fatalf("failed inside (code %d): %s", resp.Result.Code, resp.Result.Message)
		}
		if len(resp.Patches) > 0 {
			t.Fatalf("denied with a patch: %s", resp.Result.Message)
		}
		return nil, 0
	}
	if len(resp.Patches) == 0 {
		return pod, 0
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", resp.PatchType)
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("the patch does not decode: %v\n%s", err, ops)
	}
	raw, err := patch.Apply(req.Object.Raw)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\npod: %s\npatch: %s", err, req.Object.Raw, ops)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	out := &corev1.Pod{}
	if err := dec.Decode(out); err != nil {
		t.Fatalf("the patched pod does not decode: %v\n%s", err, raw)
	}
	if msg := checkPod(out); msg != "" {
		t.Fatalf("the patched pod is invalid: %s\npod: %s\npatched: %s", msg, req.Object.Raw, raw)
	}
	if out.Annotations[annotations.Status] != annotations.StatusInjected {
		t.Fatalf("patched pod has %s %q", annotations.Status, out.Annotations[annotations.Status])
	}
	return out, len(resp.Patches)
}

// FuzzAdmission sends random pods to the pod injector as CREATE requests:
// any keyhook annotations with any values, containers, init containers,
// volumes and mounts (some with keyhook's own names and paths), pod labels
// that ClusterInjectionPolicies select on. Every answer must say why it
// denies, and every patch must apply and give a valid pod that the injector
// then leaves as it is; and every answer is the one keyhook gave when it
// decoded the whole pod and diffed Apply's result (the patched pod
// compared), and ServeHTTP answers as controller-runtime's webhook.Admission.
func FuzzAdmission(f *testing.F) {
	for _, s := range []struct {
		inject, mountPath, mode, other string
		shape                          []byte
	}{
		{"db", "", "", "", []byte{0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1}},
		{"db,api,open", "/etc/secrets", "files", "", []byte{0, 3, 0, 0, 2, 0, 1, 1, 0, 2, 1, 3, 0}},
		{"db,open", "/etc/secrets", "secret", "injected", []byte{1, 15, 0, 0, 0, 2, 1, 2, 0, 1, 3, 0, 0}},
		{"none", "", "secret", "", []byte{0, 5, 0, 0, 1, 1, 2}},
		{"tok", "", "", "", []byte{0, 1, 0, 0}},
		{"cluster-token", "", "", "", []byte{0, 1, 0, 0}},
		{"shared", "", "", "", []byte{0, 1, 0, 0}},
		{"no-store,db", "", "", "", []byte{0, 1, 0, 0}},
		{"missing", "", "", "", []byte{0, 1, 0, 0}},
		{"team-b/db", "", "", "", []byte{0, 1, 0, 0}},
		{"false", "", "", "", []byte{0, 1, 2, 0}},
		{"", "", "", "", []byte{0, 0, 0}},
		{"", "", "", "", []byte{0, 0, 1, 1, 0}},
		{"db", "", "", "", []byte{1, 1, 2, 0, 1, 1, 0, 1, 3, 0}},
		{"", "", "", "", []byte{0, 0, 1, 3, 0}},
		{"open", "", "", "", []byte{0, 1, 1, 0}},
		{"db", "relative", "", "", []byte{0, 3}},
		{"db", "", "nope", "", []byte{0, 5}},
		{"db", "", "", "", []byte{0, 1, 0, 0, 1, 2, 0, 3, 2, 2, 0}},
		{"db", "", "", "", []byte{0, 1, 0, 0, 1, 1, 0, 1, 3, 0}},
		{"api", "/data", "", "", []byte{0, 3, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}},
	} {
		f.Add(s.inject, s.mountPath, s.mode, s.other, s.shape, false)
	}
	f.Add("db", "", "", "", []byte{0, 1, 0, 0}, true)
	h := fuzzInjector(f)
	full := fuzzInjector(f)
	keyhookadmission.FullDecode(full)
	f.Fuzz(func(t *testing.T, inject, mountPath, mode, other string, choices []byte, podNamespaceOnly bool) {
		pod := fuzzPod(shape(choices), inject, mountPath, mode, other)
		if msg := checkPod(pod); msg != "" {
			t.Fatalf("fuzzPod built an invalid pod: %s", msg)
		}
		ns := "team-a"
		if podNamespaceOnly {
			ns = "" // as for a request that names no namespace: the pod's is used
		}
		sameAsFullDecode(t, h, full, podRequest(t, pod, ns))
		sameReviewAsControllerRuntime(t, h, "application/json", reviewBody(t, "admission.k8s.io/v1", pod, ns), true)
		out, n := admit(t, h, pod, ns)
		if out == nil || n == 0 {
			return
		}
		sameAsFullDecode(t, h, full, podRequest(t, out, ns))
		for i, c := range pod.Spec.Containers {
			if got := out.Spec.Containers[i]; got.Name != c.Name || got.Image != c.Image {
				t.Fatalf("container %d was %s (%s), is %s (%s)", i, c.Name, c.Image, got.Name, got.Image)
			}
		}
		// Admitting the injected pod again changes nothing.
		again, n := admit(t, h, out, ns)
		if again == nil {
			t.Fatalf("the injected pod is denied when sent again")
		}
		if n != 0 {
			t.Fatalf("the injected pod is patched again (%d operations)", n)
		}
	})
}

// sameAsFullDecode checks that h answers req as full, the injector that
// decodes the whole pod and patches with Apply and Patch, does: the same
// decision, message and warnings, and a patch that gives the same pod.
func sameAsFullDecode(t *testing.T, h, full *keyhookadmission.PodInjector, req admission.Request) {
	t.Helper()
	ctx := log.IntoContext(context.Background(), quiet)
	got, want := h.Handle(ctx, req), full.Handle(ctx, req)
	if got.Allowed != want.Allowed || !reflect.DeepEqual(got.Result, want.Result) || !reflect.DeepEqual(got.Warnings, want.Warnings) {
		t.Fatalf("answer differs from the whole-pod decode's:\ngot  %v %+v %q\nwant %v %+v %q", got.Allowed, got.Result, got.Warnings, want.Allowed, want.Result, want.Warnings)
	}
	if (len(got.Patches) == 0) != (len(want.Patches) == 0) {
		t.Fatalf("%d patch operations, the whole-pod decode's %d", len(got.Patches), len(want.Patches))
	}
	if len(got.Patches) == 0 {
		return
	}
	if diff := cmp.Diff(patched(t, req.Object.Raw, want.Patches), patched(t, req.Object.Raw, got.Patches)); diff != "" {
		t.Fatalf("the patched pod differs from the whole-pod decode's (-full +view):\n%s", diff)
	}
}

// patched is raw with ops applied, decoded.
func patched(t *testing.T, raw []byte, ops []jsonpatchv2.Operation) *corev1.Pod {
	t.Helper()
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\n%s", err, b)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(out, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}
