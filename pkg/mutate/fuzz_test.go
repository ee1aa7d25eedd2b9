package mutate

import (
	"encoding/json"
	"errors"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// Bits of FuzzApply's shape: what the pod and its ExternalSecrets look like
// beyond the annotations.
const (
	shapeInitContainer  = 1 << iota // the pod has an init container of its own
	shapeFSGroup                    // the pod sets fsGroup
	shapeAppMount                   // the app container mounts a volume at appMount
	shapeReservedName               // the pod names a container keyhook-agent
	shapeReservedVolume             // the pod has a volume named keyhook-secrets
	shapeSidecar                    // the pod has a second app container
	shapeNoSecret                   // the first ExternalSecret has creationPolicy None
	shapeTokenAuth                  // the stores authenticate with a token Secret
)

// FuzzApply drives the whole pipeline — Parse, then Apply to a pod of any of
// a few shapes — and checks what the README and Apply's contract promise:
// Apply refuses exactly the pods it must (a reserved name, a mount in the
// way, secret mode without a Secret), with a *PodError; it accepts every
// other pod; applying its result again changes nothing (the whole pod is
// compared); the patch, applied to the pod as the API server sent it, gives
// exactly Apply's result, and so do the operations Ops records for the pod
// decoded as a PodView; and in files mode the agent accepts the plan.
func FuzzApply(f *testing.F) {
	for _, s := range []struct {
		inject, mountPath, mode, appMount string
		shape                             uint8
	}{
		{"db", "/etc/secrets", "files", "/data", 0},
		{"db,api", "", "", "/data", shapeInitContainer | shapeFSGroup | shapeSidecar},
		{"db", "/etc/secrets", "", "/etc/secrets/app", shapeAppMount},
		{"db", "/etc", "", "/etc/secrets", shapeAppMount},
		{"db", "/etc/secrets", "", "/etc/secretsx", shapeAppMount},
		{"db", "/etc/secrets", "", "/etc//secrets/", shapeAppMount},
		{"db", "/etc/secrets", "", "/etc/secrets/../secrets/x", shapeAppMount},
		{"db", "", "", "", shapeReservedName},
		{"db", "", "", "", shapeReservedVolume},
		{"db,api", "/s", "secret", "", shapeInitContainer | shapeSidecar},
		{"db", "/s", "secret", "", shapeNoSecret},
		{"db", "/s", "files", "", shapeNoSecret | shapeTokenAuth},
		{"db,api,db", "/var/run/secrets/keyhook", "files", "/var/run/secrets/keyhook", shapeAppMount | shapeTokenAuth},
	} {
		f.Add(s.inject, s.mountPath, s.mode, s.appMount, s.shape)
	}
	f.Fuzz(func(t *testing.T, inject, mountPath, mode, appMount string, shape uint8) {
		if !utf8.ValidString(inject + mountPath + mode + appMount) {
			// A pod reaches keyhook as JSON, where every string is valid
			// UTF-8 (the API server's encoder replaces invalid bytes), so
			// such a pod is never sent, and its patch, applied to its JSON,
			// could not give Apply's result.
			return
		}
		ann := map[string]string{"keyhook.dev/inject": inject}
		if mountPath != "" {
			ann["keyhook.dev/mount-path"] = mountPath
		}
		if mode != "" {
			ann["keyhook.dev/inject-mode"] = mode
		}
		req, err := Parse("team-a", ann)
		if err != nil || req == nil {
			return // FuzzParseAnnotations checks Parse's refusals
		}
		for _, n := range req.Names {
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Fatalf("accepted invalid name %q from %q", n, inject)
			}
		}

		pod := newPod()
		pod.Annotations = ann
		has := func(bit uint8) bool { return shape&bit != 0 }
		if has(shapeInitContainer) {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: "migrate", Image: "migrate:1"})
		}
		if has(shapeFSGroup) {
			withFSGroup(2000)(pod)
		}
		mountInTheWay := false
		if has(shapeAppMount) && path.IsAbs(appMount) {
			withMount(appMount)(pod)
			// The directory the runtime would mount at, compared by its
			// cleaned form: the same directory, or one inside keyhook's.
			clean := path.Clean(appMount)
			mountInTheWay = clean == req.MountPath || strings.HasPrefix(clean, req.MountPath+"/")
		}
		if has(shapeSidecar) {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "sidecar", Image: "sidecar:1"})
		}
		if has(shapeReservedName) {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: AgentContainerName, Image: "mine:1"})
		}
		if has(shapeReservedVolume) {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: SecretsVolumeName})
		}
		srcs := make([]*resolve.Source, 0, len(req.Names))
		for i, n := range req.Names {
			src := newSource(n)
			if has(shapeTokenAuth) {
				withTokenAuth(v1alpha1.SecretStoreKindNamespaced)(src)
			}
			if i == 0 && has(shapeNoSecret) {
				src.ExternalSecret.Spec.Target.CreationPolicy = v1alpha1.CreationPolicyNone
			}
			srcs = append(srcs, src)
		}
		in := pod.DeepCopy()

		out, err := Apply(pod, testConfig, req, srcs)
		mustRefuse := has(shapeReservedName) || has(shapeReservedVolume) || mountInTheWay ||
			(req.Mode == v1alpha1.InjectionModeSecret && has(shapeNoSecret))
		var podErr *PodError
		switch {
		case err != nil && !errors.As(err, &podErr):
			t.Fatalf("Apply failed with an error that is not the pod's (%T): %v", err, err)
		case err != nil && !mustRefuse:
			t.Fatalf("Apply refused a pod it must inject: %v", err)
		case err == nil && mustRefuse:
			t.Fatalf("Apply injected a pod it must refuse (shape %08b, mount %q, app mount %q)", shape, req.MountPath, appMount)
		}
		if diff := cmp.Diff(in, pod); diff != "" {
			t.Fatalf("Apply changed its input (-before +after):\n%s", diff)
		}
		checkOps(t, pod, out, err, req, srcs)
		if err != nil {
			return
		}

		again, err := Apply(out, testConfig, req, srcs)
		if err != nil {
			t.Fatalf("Apply refused its own result: %v", err)
		}
		if diff := cmp.Diff(out, again); diff != "" {
			t.Fatalf("Apply is not idempotent (-once +twice):\n%s", diff)
		}

		raw, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := Patch(raw, pod, out)
		if err != nil {
			t.Fatalf("Patch: %v", err)
		}
		opsJSON, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		p, err := jsonpatchapply.DecodePatch(opsJSON)
		if err != nil {
			t.Fatalf("Patch wrote a patch that does not decode: %v\n%s", err, opsJSON)
		}
		patchedRaw, err := p.Apply(raw)
		if err != nil {
			t.Fatalf("Patch wrote a patch that does not apply: %v\n%s", err, opsJSON)
		}
		var patched corev1.Pod
		if err := json.Unmarshal(patchedRaw, &patched); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(out, &patched); diff != "" {
			t.Fatalf("the patch applied to the pod differs from Apply's result (-Apply +patched):\n%s", diff)
		}
		// Re-admitted (the API server reinvokes webhooks), the injected pod
		// needs no patch.
		if ops, err := Patch(patchedRaw, &patched, again); err != nil || len(ops) != 0 {
			t.Fatalf("re-admitting the injected pod patches it again: %v, %v", ops, err)
		}

		if req.Mode != v1alpha1.InjectionModeSecret {
			if _, err := plan.Decode(out.Spec.InitContainers[0].Env[0].Value); err != nil {
				t.Fatalf("Apply wrote a plan the agent rejects: %v", err)
			}
		}
	})
}
