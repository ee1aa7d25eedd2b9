package e2e

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// apiserverPodAdmissions is how many times the API server has called
// keyhook's pod entries (apiserver_admission_webhook_admission_duration_seconds_count,
// every entry whose name ends in pods.keyhook.dev, every operation and
// outcome).
func apiserverPodAdmissions(ctx context.Context, t *testing.T) int {
	t.Helper()
	raw, err := cluster.Clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^apiserver_admission_webhook_admission_duration_seconds_count\{([^}]*)\} (\d+)`)
	name := regexp.MustCompile(`name="[^"]*pods\.keyhook\.dev"`)
	total := 0
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		if name.MatchString(m[1]) {
			n, _ := strconv.Atoi(m[2])
			total += n
		}
	}
	return total
}

// TestOneWebhookCallPerPodCreate creates injected pods through the API
// server and counts, with the API server's own metric, how often it called
// keyhook: once per pod. The ServiceAccount admission plugin, run again
// after keyhook's patch, would mount the pod's API token into the agent and
// so have keyhook called a second time; the agent's own token volume at
// that path keeps both from happening: the agent gets its stores' tokens
// and nothing else.
func TestOneWebhookCallPerPodCreate(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "onecall")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "pw")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	const pods = 5
	before := apiserverPodAdmissions(ctx, t)
	for i := 0; i < pods; i++ {
		pod := plainPod(ns, "web", map[string]string{"keyhook.dev/inject": "db"}, nil)
		pod.Spec.ServiceAccountName = "app"
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if !hasAgent(pod) {
			t.Fatal("pod not injected")
		}
		// The agent mounts keyhook's volumes and nothing else: no API token.
		for _, m := range pod.Spec.InitContainers[0].VolumeMounts {
			if m.Name != mutate.SecretsVolumeName && m.Name != mutate.TokenVolumeName {
				t.Errorf("the agent mounts volume %s at %s", m.Name, m.MountPath)
			}
		}
		// The app still gets its API token, as the ServiceAccount plugin
		// gives it.
		if len(pod.Spec.Containers[0].VolumeMounts) < 2 {
			t.Errorf("the app container mounts %v; want its API token and keyhook's secrets", pod.Spec.Containers[0].VolumeMounts)
		}
	}
	if calls := apiserverPodAdmissions(ctx, t) - before; calls != pods {
		t.Errorf("the API server called keyhook %d times for %d pod creates, want once per pod", calls, pods)
	}
}
