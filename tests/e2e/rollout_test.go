package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

type deployOption func(*appsv1.Deployment)

func deployment(ns, name string, opts ...deployOption) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			// No pods: a rollout is done once its ReplicaSet exists, so a
			// later rollout never waits for it (--rollout-progress-timeout).
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "app",
					Containers:         []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
				},
			},
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

func annotated(k, v string) deployOption {
	return func(d *appsv1.Deployment) {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[k] = v
	}
}

func envFromSecret(name string) deployOption {
	return func(d *appsv1.Deployment) {
		c := &d.Spec.Template.Spec.Containers[0]
		c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}})
	}
}

func secretVolume(name string) deployOption {
	return func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}})
	}
}

func injecting(names string) deployOption {
	return func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{"keyhook.dev/inject": names}
	}
}

// replicaSets counts the ReplicaSets of a Deployment: one per rollout.
func replicaSets(ctx context.Context, t *testing.T, ns, name string) int {
	t.Helper()
	n, err := cluster.ReplicaSets(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitReplicaSets(ctx context.Context, t *testing.T, ns, name string, want int) {
	t.Helper()
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		return replicaSets(ctx, t, ns, name) == want, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s has %d ReplicaSets, want %d", name, replicaSets(ctx, t, ns, name), want)
	}
}

// waitRecorded waits until keyhook has recorded the first versions of what a
// Deployment follows, so that a later write is a change.
func waitRecorded(ctx context.Context, t *testing.T, ns, name string, sources ...string) {
	t.Helper()
	d := &appsv1.Deployment{}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return false, err
		}
		for _, s := range sources {
			if !strings.Contains(d.Annotations["keyhook.dev/secret-versions"], `"`+s+`"`) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s never recorded %v: annotations %v", name, sources, d.Annotations)
	}
}

func TestRolloutOnRotation(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "rollout")
	v1, v2 := secretValue(t, "v1"), secretValue(t, "v2")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "db-creds", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		}),
		// Injected into files only: no Secret, tracked by KV v2 version.
		externalSecret(ns, "db-files", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Target:          v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyNone},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []*appsv1.Deployment{
		deployment(ns, "auto", annotated("keyhook.dev/rollout", "auto"), envFromSecret("db-creds")),
		deployment(ns, "listed", annotated("keyhook.dev/rollout", "db-creds"), secretVolume("db-creds")),
		deployment(ns, "reloader", annotated("reloader.stakater.com/auto", "true"), secretVolume("db-creds")),
		deployment(ns, "files", annotated("keyhook.dev/rollout", "auto"), injecting("db-files")),
		// Injected, from an ExternalSecret also synced into a Secret.
		deployment(ns, "files-synced", annotated("keyhook.dev/rollout", "auto"), injecting("db-creds")),
		deployment(ns, "plain", envFromSecret("db-creds")),
		deployment(ns, "paused", annotated("keyhook.dev/rollout", "auto"), annotated("keyhook.dev/rollout-paused", "true"), envFromSecret("db-creds")),
	} {
		if err := cluster.Client.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// A StatefulSet follows the synced Secret, another the injected
	// ExternalSecret by its version: each rolls once, as one new
	// ControllerRevision.
	for name, opt := range map[string]deployOption{"sts-synced": envFromSecret("db-creds"), "sts-files": injecting("db-files")} {
		d := deployment(ns, name, annotated("keyhook.dev/rollout", "auto"), opt)
		if err := cluster.Client.Create(ctx, &appsv1.StatefulSet{
			ObjectMeta: d.ObjectMeta,
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To[int32](0), Selector: d.Spec.Selector, Template: d.Spec.Template},
		}); err != nil {
			t.Fatal(err)
		}
	}
	for name, source := range map[string]string{"sts-synced": "secret/db-creds", "sts-files": "externalsecret/db-files"} {
		sts := &appsv1.StatefulSet{}
		if err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
			err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sts)
			return err == nil && strings.Contains(sts.Annotations["keyhook.dev/secret-versions"], `"`+source+`"`) && revisions(ctx, t, "StatefulSet", ns, name) == 1, err
		}); err != nil {
			t.Fatalf("StatefulSet %s never recorded %s with one ControllerRevision: annotations %v, %d revisions", name, source, sts.Annotations, revisions(ctx, t, "StatefulSet", ns, name))
		}
	}
	for _, name := range []string{"auto", "listed", "reloader", "paused"} {
		waitRecorded(ctx, t, ns, name, "secret/db-creds")
	}
	waitRecorded(ctx, t, ns, "files", "externalsecret/db-files")
	waitRecorded(ctx, t, ns, "files-synced", "externalsecret/db-creds")
	// Opting in and the first sync roll nothing.
	for _, name := range []string{"auto", "listed", "reloader", "files", "files-synced", "plain", "paused"} {
		waitReplicaSets(ctx, t, ns, name, 1)
	}

	written := time.Now()
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"auto", "listed", "reloader", "files", "files-synced"} {
		waitReplicaSets(ctx, t, ns, name, 2)
	}
	for _, name := range []string{"sts-synced", "sts-files"} {
		if err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
			return revisions(ctx, t, "StatefulSet", ns, name) == 2, nil
		}); err != nil {
			t.Fatalf("StatefulSet %s has %d ControllerRevisions after the Vault write, want 2", name, revisions(ctx, t, "StatefulSet", ns, name))
		}
	}
	// A figure, not an assertion: refreshInterval 1s plus the storm guard's
	// debounce bound it.
	t.Logf("Vault write → new ReplicaSet of all five Deployments: %s (refreshInterval 1s, debounce %s)",
		time.Since(written).Round(10*time.Millisecond), rolloutDebounce)
	// Once per change: nothing more after the storm guard's window, and the
	// unannotated and paused Deployments never roll.
	time.Sleep(rolloutDebounce + 2*time.Second)
	for name, want := range map[string]int{"auto": 2, "listed": 2, "reloader": 2, "files": 2, "files-synced": 2, "plain": 1, "paused": 1} {
		if got := replicaSets(ctx, t, ns, name); got != want {
			t.Errorf("Deployment %s has %d ReplicaSets, want %d", name, got, want)
		}
	}
	for _, name := range []string{"sts-synced", "sts-files"} {
		if got := revisions(ctx, t, "StatefulSet", ns, name); got != 2 {
			t.Errorf("StatefulSet %s has %d ControllerRevisions, want 2 (one rollout)", name, got)
		}
	}

	evs := &eventsv1.EventList{}
	if err := cluster.Client.List(ctx, evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, e := range evs.Items {
		if e.Regarding.Kind == "Deployment" {
			reasons[e.Regarding.Name+"/"+e.Reason] = e.Note
		}
	}
	if note := reasons["auto/Rollout"]; !strings.Contains(note, "secret/db-creds") {
		t.Errorf("Rollout event of auto = %q, want it to name secret/db-creds", note)
	}
	if note := reasons["files/Rollout"]; !strings.Contains(note, "externalsecret/db-files") {
		t.Errorf("Rollout event of files = %q, want it to name externalsecret/db-files", note)
	}
	if _, ok := reasons["paused/RolloutPaused"]; !ok {
		t.Errorf("no RolloutPaused event on the paused Deployment; events: %v", reasons)
	}
	assertNoValues(ctx, t, ns, v1, v2)
}

func TestRolloutStormGuard(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "storm")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v0")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: 300 * time.Millisecond},
		Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, deployment(ns, "web", annotated("keyhook.dev/rollout", "auto"), envFromSecret("db"))); err != nil {
		t.Fatal(err)
	}
	waitRecorded(ctx, t, ns, "web", "secret/db")
	waitReplicaSets(ctx, t, ns, "web", 1)

	// Five writes, each seen by the sync, all within the storm guard's window.
	for range 5 {
		if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "burst")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	waitReplicaSets(ctx, t, ns, "web", 2)
	time.Sleep(rolloutDebounce + 2*time.Second)
	if got := replicaSets(ctx, t, ns, "web"); got != 2 {
		t.Errorf("five writes within the window made %d rollouts, want 1", got-1)
	}
}

// TestRolloutFollowsPolicyInjection: a ClusterInjectionPolicy injects an
// ExternalSecret into a workload that does not name it; "auto" follows it as
// it follows what the template's own annotation names (issue #10, defect 6).
func TestRolloutFollowsPolicyInjection(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "policy-rollout")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v1")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db-files", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Second},
		Target:          v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyNone},
		Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	cip := &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
			Inject:            []string{"db-files"},
		},
	}
	if err := cluster.Client.Create(ctx, cip); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), cip) })
	if err := cluster.Client.Create(ctx, deployment(ns, "web", annotated("keyhook.dev/rollout", "auto"))); err != nil {
		t.Fatal(err)
	}
	waitRecorded(ctx, t, ns, "web", "externalsecret/db-files")
	waitReplicaSets(ctx, t, ns, "web", 1)
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v2")}); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 2)
}
