package mutate

import (
	"encoding/json"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/resolve"
)

// TestPatch checks that the patch, applied to the pod as the API server
// sent it, yields exactly Apply's result, for every kind of change Apply
// makes and for a change it never makes (the generic diff then).
func TestPatch(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}},
				{Name: "sidecar", Image: "sidecar:1"},
			}},
		}
	}
	for name, change := range map[string]func(in, out *corev1.Pod){
		"annotations added to a pod without any": func(_, out *corev1.Pod) {
			out.Annotations = map[string]string{"keyhook.dev/status": "injected", "a/b~c": "x"}
		},
		"annotations changed": func(in, out *corev1.Pod) {
			in.Annotations = map[string]string{"keyhook.dev/inject": "db"}
			out.Annotations = map[string]string{"keyhook.dev/inject": "db", "keyhook.dev/status": "injected"}
		},
		"init container before the user's, volumes, one container's mounts": func(in, out *corev1.Pod) {
			in.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m:1"}}
			in.Spec.Volumes = []corev1.Volume{{Name: "data"}}
			out.Spec.InitContainers = []corev1.Container{{Name: "keyhook-agent", Image: "agent:1"}, {Name: "migrate", Image: "m:1"}}
			out.Spec.Volumes = []corev1.Volume{{Name: "data"}, {Name: SecretsVolumeName}}
			out.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: SecretsVolumeName, MountPath: "/var/run/secrets/keyhook", ReadOnly: true}}
		},
		"security context set": func(_, out *corev1.Pod) {
			out.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)}
		},
		"keyhook's parts removed": func(in, out *corev1.Pod) {
			in.Annotations = map[string]string{"keyhook.dev/status": "injected"}
			in.Spec.InitContainers = []corev1.Container{{Name: "keyhook-agent"}}
			in.Spec.Volumes = []corev1.Volume{{Name: SecretsVolumeName}}
		},
		"a change Apply never makes falls back to the diff": func(_, out *corev1.Pod) {
			out.Labels = map[string]string{"x": "y"}
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: "third"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			in, out := base(), base()
			change(in, out)
			raw, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			ops, err := Patch(raw, in, out)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(ops)
			if err != nil {
				t.Fatal(err)
			}
			p, err := jsonpatchapply.DecodePatch(b)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := p.Apply(raw)
			if err != nil {
				t.Fatalf("patch %s does not apply: %v", b, err)
			}
			got := &corev1.Pod{}
			if err := json.Unmarshal(patched, got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(out, got); diff != "" {
				t.Errorf("patched pod differs from Apply's (-want +got):\n%s\npatch: %s", diff, b)
			}
		})
	}
}

// TestPatchAppendsOnly checks the patch of a real injection, into a pod that
// already has annotations, init containers, volumes and mounts: every
// operation adds (an annotation key, the agent before the pod's init
// containers, list elements at the end), none replaces or sets a part
// whole, and applied it yields Apply's pod.
func TestPatchAppendsOnly(t *testing.T) {
	pod := newPod(withInit("migrate"))
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	pod.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access"}}
	pod.Spec.InitContainers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
	req, err := Parse(pod.Namespace, pod.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Apply(pod, testConfig, req, []*resolve.Source{newSource("db")})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := Patch(raw, pod, out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"/metadata/annotations/keyhook.dev~1status": 1,
		"/spec/initContainers/0":                    1, // the agent
		"/spec/initContainers/1/volumeMounts/-":     1,
		"/spec/volumes/-":                           2, // secrets and token
		"/spec/containers/0/volumeMounts/-":         1,
	}
	got := map[string]int{}
	for _, op := range ops {
		if op.Operation != "add" {
			t.Errorf("operation %s %s; want only adds", op.Operation, op.Path)
		}
		got[op.Path]++
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("patch paths (-want +got):\n%s", diff)
	}
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatchapply.DecodePatch(b)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch %s does not apply: %v", b, err)
	}
	applied := &corev1.Pod{}
	if err := json.Unmarshal(patched, applied); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(out, applied); diff != "" {
		t.Errorf("patched pod differs from Apply's (-want +got):\n%s", diff)
	}
}
