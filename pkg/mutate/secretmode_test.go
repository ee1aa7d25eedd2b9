package mutate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/resolve"
)

func TestApplySecretMode(t *testing.T) {
	pod := newPod(withInit("migrate"))
	pod.Annotations["keyhook.dev/inject-mode"] = "secret"
	req, err := Parse("team-a", pod.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	if req.Mode != v1alpha1.InjectionModeSecret {
		t.Fatalf("mode: got %q", req.Mode)
	}
	api := newSource("api")
	api.ExternalSecret.Spec.Target.Name = "api-credentials"
	out, err := Apply(pod, testConfig, &Request{Names: []string{"db", "api"}, MountPath: "/etc/secrets", Mode: req.Mode}, []*resolve.Source{newSource("db"), api})
	if err != nil {
		t.Fatal(err)
	}
	want := pod.DeepCopy()
	want.Annotations["keyhook.dev/status"] = "injected"
	dbVol, apiVol := SecretModeVolumeName("db"), SecretModeVolumeName("api")
	want.Spec.Volumes = []corev1.Volume{
		{Name: dbVol, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db", DefaultMode: ptr.To[int32](0o444), Optional: ptr.To(false)}}},
		{Name: apiVol, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "api-credentials", DefaultMode: ptr.To[int32](0o444), Optional: ptr.To(false)}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: dbVol, MountPath: "/etc/secrets/db", ReadOnly: true},
		{Name: apiVol, MountPath: "/etc/secrets/api", ReadOnly: true},
	}
	want.Spec.InitContainers[0].VolumeMounts = mounts
	want.Spec.Containers[0].VolumeMounts = append(want.Spec.Containers[0].VolumeMounts, mounts...)
	if diff := cmp.Diff(want, out); diff != "" {
		t.Fatalf("secret mode: no agent, one Secret volume per ExternalSecret (-want +got)\n%s", diff)
	}
	// What PodsInjected checks: Apply's pod delivers both; the pod
	// before, or with another Secret behind a volume, does not.
	targets := map[string]string{"db": "db", "api": "api-credentials"}
	if missing := NotDelivered(out, []string{"db", "api"}, targets); len(missing) != 0 {
		t.Errorf("NotDelivered of the injected pod: %v", missing)
	}
	if missing := NotDelivered(pod, []string{"db", "api"}, targets); !cmp.Equal(missing, []string{"db", "api"}) {
		t.Errorf("NotDelivered of the pod before injection: %v", missing)
	}
	if missing := NotDelivered(out, []string{"db", "api"}, map[string]string{"api": "api"}); !cmp.Equal(missing, []string{"api"}) {
		t.Errorf("NotDelivered of a pod mounting another Secret than the ExternalSecret's: %v", missing)
	}
	again, err := Apply(out, testConfig, &Request{Names: []string{"db", "api"}, MountPath: "/etc/secrets", Mode: req.Mode}, []*resolve.Source{newSource("db"), api})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(out, again); diff != "" {
		t.Errorf("applying twice must converge (-once +twice)\n%s", diff)
	}

	none := newSource("ephemeral")
	none.ExternalSecret.Spec.Target.CreationPolicy = v1alpha1.CreationPolicyNone
	_, err = Apply(newPod(), testConfig, &Request{Names: []string{"ephemeral"}, MountPath: "/etc/secrets", Mode: v1alpha1.InjectionModeSecret}, []*resolve.Source{none})
	if err == nil || !strings.Contains(err.Error(), `ExternalSecret "ephemeral" has spec.target.creationPolicy None`) {
		t.Errorf("creationPolicy None in secret mode: got %v", err)
	}

	bad := newPod()
	bad.Annotations["keyhook.dev/inject-mode"] = "env"
	if _, err := Parse("team-a", bad.Annotations); err == nil || !strings.Contains(err.Error(), `annotation keyhook.dev/inject-mode: "env" is not "files" or "secret"`) {
		t.Errorf("bad mode: got %v", err)
	}
}
