package mutate

import (
	"encoding/json"
	"errors"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// checkOps checks Ops against Apply for pod: for a Fresh pod, decoded from
// its JSON as the webhook decodes it, Ops fails exactly when Apply fails
// (applyErr), with the same error, and its patch applied to the pod's JSON
// gives exactly Apply's result (want) with adds only; for any other pod Ops
// refuses with ErrNotFresh.
func checkOps(t *testing.T, pod, want *corev1.Pod, applyErr error, req *Request, sources []*resolve.Source) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	view, err := DecodePod(raw)
	if err != nil {
		t.Fatalf("DecodePod: %v\n%s", err, raw)
	}
	if diff := cmp.Diff(ViewOf(pod), view); diff != "" {
		t.Fatalf("DecodePod differs from ViewOf (-ViewOf +DecodePod):\n%s", diff)
	}
	ops, err := Ops(view, testConfig, req, sources)
	if !view.Fresh() {
		if !errors.Is(err, ErrNotFresh) {
			t.Fatalf("Ops on a pod with keyhook's names: %v, want ErrNotFresh", err)
		}
		return
	}
	switch {
	case applyErr != nil && err == nil:
		t.Fatalf("Apply refused the pod (%v), Ops did not", applyErr)
	case applyErr == nil && err != nil:
		t.Fatalf("Ops refused a pod Apply injects: %v", err)
	case err != nil:
		var a, o *PodError
		if errors.As(applyErr, &a) != errors.As(err, &o) || err.Error() != applyErr.Error() {
			t.Fatalf("Ops refused with %T %q, Apply with %T %q", err, err, applyErr, applyErr)
		}
		return
	}
	b, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Operation != "add" {
			t.Fatalf("operation %s %s; want only adds\n%s", op.Operation, op.Path, b)
		}
	}
	p, err := jsonpatchapply.DecodePatch(b)
	if err != nil {
		t.Fatal(err)
	}
	patchedRaw, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("the patch of Ops does not apply: %v\n%s", err, b)
	}
	var patched corev1.Pod
	if err := json.Unmarshal(patchedRaw, &patched); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &patched); diff != "" {
		t.Fatalf("the patch of Ops applied to the pod differs from Apply's result (-Apply +patched):\n%s\npatch: %s", diff, b)
	}
}

// TestOps checks the patch Ops records against Apply's result for pods of
// every shape the patch treats differently: with and without annotations,
// init containers, volumes, mounts, in files and secret mode; and that a
// pod carrying keyhook's names is left to Apply and Patch.
func TestOps(t *testing.T) {
	secretMode := func(r *Request) { r.Mode = v1alpha1.InjectionModeSecret }
	for name, tc := range map[string]struct {
		pod     *corev1.Pod
		mode    func(*Request)
		sources []*resolve.Source
	}{
		"a pod with mounts and annotations": {pod: newPod()},
		"the benchmarks' pod":               {pod: fixture.Pod("team-a")},
		"init containers, one with mounts, and volumes": {pod: newPod(withInit("migrate"), withInit("seed"), func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access"}, {Name: "config"}}
			p.Spec.InitContainers[1].VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/config"}}
		})},
		"nothing to append to": {pod: newPod(func(p *corev1.Pod) {
			p.Annotations = nil
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "s:1"})
			p.Spec.Containers[0].VolumeMounts = nil
		})},
		"already marked injected, without keyhook's parts": {pod: newPod(func(p *corev1.Pod) { p.Annotations["keyhook.dev/status"] = "injected" })},
		"the user of the first container, two stores": {pod: newPod(withFSGroup(3000), func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1234)}
		}), sources: []*resolve.Source{newSource("db"), newSource("api", withAudience("openbao"))}},
		"secret mode, init containers, fsGroup": {pod: newPod(withInit("migrate"), withFSGroup(2000)), mode: secretMode,
			sources: []*resolve.Source{newSource("db"), newSource("api")}},
		"secret mode without a Secret": {pod: newPod(), mode: secretMode, sources: []*resolve.Source{func() *resolve.Source {
			s := newSource("db")
			s.ExternalSecret.Spec.Target.CreationPolicy = v1alpha1.CreationPolicyNone
			return s
		}()}},
		"a mount in keyhook's way":               {pod: newPod(withMount("/var/run/secrets/keyhook/db"))},
		"a token Secret of a ClusterSecretStore": {pod: newPod(), sources: []*resolve.Source{newSource("db", withTokenAuth(v1alpha1.SecretStoreKindCluster))}},
		"keyhook's volume name":                  {pod: newPod(func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: SecretsVolumeName}) })},
		"keyhook's container name":               {pod: newPod(func(p *corev1.Pod) { p.Spec.Containers[0].Name = AgentContainerName })},
		"a secret-mode volume name": {pod: newPod(func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: SecretModeVolumeName("x")})
		})},
	} {
		t.Run(name, func(t *testing.T) {
			tc.pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
			req, err := Parse(tc.pod.Namespace, map[string]string{"keyhook.dev/inject": "db"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.mode != nil {
				tc.mode(req)
			}
			if tc.sources == nil {
				tc.sources = []*resolve.Source{newSource("db")}
			}
			req.Names = nil
			for _, s := range tc.sources {
				req.Names = append(req.Names, s.ExternalSecret.Name)
			}
			out, err := Apply(tc.pod, testConfig, req, tc.sources)
			checkOps(t, tc.pod, out, err, req, tc.sources)
		})
	}
}

// TestOpsAppendsOnly checks the operations of a real injection into a pod
// that already has annotations, init containers, volumes and mounts: one
// annotation key, the agent before the pod's init containers, list elements
// at the end, as TestPatchAppendsOnly checks of Patch.
func TestOpsAppendsOnly(t *testing.T) {
	pod := newPod(withInit("migrate"))
	pod.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access"}}
	pod.Spec.InitContainers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
	req, err := Parse(pod.Namespace, pod.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := Ops(ViewOf(pod), testConfig, req, []*resolve.Source{newSource("db")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, op := range ops {
		got = append(got, op.Operation+" "+op.Path)
	}
	want := []string{
		"add /metadata/annotations/keyhook.dev~1status",
		"add /spec/initContainers/0", // the agent
		"add /spec/initContainers/1/volumeMounts/-",
		"add /spec/volumes/-", // secrets
		"add /spec/volumes/-", // token
		"add /spec/containers/0/volumeMounts/-",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
}
