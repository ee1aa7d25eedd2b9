package node

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// replicaSets counts a Deployment's ReplicaSets: one per rollout.
func replicaSets(ctx context.Context, t *testing.T, ns, name string) int {
	t.Helper()
	n, err := cluster.ReplicaSets(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fileHash is the SHA-256 the app reported for one injected file.
func fileHash(lines []appLine, file string) string {
	for _, l := range lines {
		if l.Kind == "file" && l.Path == mountPath+"/"+file {
			return l.SHA256
		}
	}
	return ""
}

// TestRotationRollsOutOnce: a Deployment with keyhook.dev/rollout: auto whose
// pods get a Vault secret injected is rolled once when the value changes in
// Vault (sync forced): a new pod reads the new value, the old pod is gone.
func TestRotationRollsOutOnce(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "rotate", nil)
	v1, v2 := secretValue(t, "v1"), secretValue(t, "v2")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	es := externalSecret(ns, "db-files", data("password", ns+"/db", "password"))
	es.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
	es.Spec.Target.CreationPolicy = v1alpha1.CreationPolicyNone // files only: tracked by its Vault version
	if err := cluster.Client.Create(ctx, es); err != nil {
		t.Fatal(err)
	}
	d := appDeployment(ns, "web", map[string]string{"keyhook.dev/inject": "db-files"})
	d.Annotations = map[string]string{"keyhook.dev/rollout": "auto"}
	if err := cluster.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	old := runningPodOf(ctx, t, ns, "web")
	if got := fileHash(appReport(ctx, t, ns, old.Name), "db-files/password"); got != sha(v1) {
		t.Fatalf("the first pod read other data than Vault's first version")
	}
	// keyhook has recorded the version the pods run with.
	err := framework.WaitFor(ctx, 250*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		return strings.Contains(d.Annotations["keyhook.dev/secret-versions"], `"externalsecret/db-files"`), nil
	})
	if err != nil {
		t.Fatalf("keyhook never recorded what Deployment web follows: %v (annotations %v)", err, d.Annotations)
	}
	if n := replicaSets(ctx, t, ns, "web"); n != 1 {
		t.Fatalf("%d ReplicaSets before the rotation, want 1", n)
	}

	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(es), es); err != nil {
		t.Fatal(err)
	}
	es.Annotations = map[string]string{"keyhook.dev/force-sync": time.Now().Format(time.RFC3339Nano)}
	if err := cluster.Client.Update(ctx, es); err != nil {
		t.Fatal(err)
	}
	// A new pod reads the new value, and the old pod is gone.
	var fresh *corev1.Pod
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var pods []corev1.Pod
	err = framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		pods = podsOf(wctx, t, ns, "web")
		if len(pods) != 1 || pods[0].Name == old.Name || pods[0].Status.Phase != corev1.PodRunning {
			return false, nil
		}
		err := cluster.Client.Get(wctx, client.ObjectKeyFromObject(old), &corev1.Pod{})
		if !apierrors.IsNotFound(err) {
			return false, err
		}
		fresh = &pods[0]
		return true, nil
	})
	if err != nil {
		var names []string
		for _, p := range pods {
			names = append(names, p.Name+" "+podState(&p))
		}
		t.Fatalf("no rollout to a new pod with the old one gone: %v (pods %v, %d ReplicaSets)", err, names, replicaSets(ctx, t, ns, "web"))
	}
	if got := fileHash(appReport(ctx, t, ns, fresh.Name), "db-files/password"); got != sha(v2) {
		t.Errorf("the new pod read other data than Vault's new version")
	}
	// Exactly one rollout: one more ReplicaSet, and no further one after the
	// storm guard's window (--rollout-debounce, 10 s by default).
	time.Sleep(12 * time.Second)
	if n := replicaSets(ctx, t, ns, "web"); n != 2 {
		t.Errorf("%d ReplicaSets after one rotation, want 2 (exactly one rollout)", n)
	}
	if pods := podsOf(ctx, t, ns, "web"); len(pods) != 1 || pods[0].Name != fresh.Name {
		t.Errorf("pods after the rollout settled: %d, want only %s", len(pods), fresh.Name)
	}
}

// TestSecretModePodSeesSyncedSecret: in secret mode keyhook syncs the
// ExternalSecret into a Secret and mounts it; the pod also takes a key as
// env; it starts and sees Vault's current data both ways.
func TestSecretModePodSeesSyncedSecret(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "secretmode", nil)
	token := secretValue(t, "token")
	if err := vault.Put(ctx, ns+"/api", map[string]any{"token": token}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "api", data("token", ns+"/api", "token"))); err != nil {
		t.Fatal(err)
	}
	d := appDeployment(ns, "web", map[string]string{"keyhook.dev/inject": "api", "keyhook.dev/inject-mode": "secret"})
	c := &d.Spec.Template.Spec.Containers[0]
	c.Env = []corev1.EnvVar{
		{Name: "HASH_ENV", Value: "API_TOKEN"},
		{Name: "API_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "api"}, Key: "token"}}},
	}
	if err := cluster.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	pod := runningPodOf(ctx, t, ns, "web")
	lines := appReport(ctx, t, ns, pod.Name)
	if got := fileHash(lines, "api/token"); got != sha(token) {
		t.Errorf("the Secret volume at %s/api/token does not hold Vault's data (report %+v)", mountPath, lines)
	}
	var env *appLine
	for i := range lines {
		if lines[i].Kind == "env" && lines[i].Name == "API_TOKEN" {
			env = &lines[i]
		}
	}
	if env == nil || env.SHA256 != sha(token) {
		t.Errorf("env API_TOKEN from the synced Secret: %+v, want Vault's data", env)
	}
	for _, ic := range pod.Spec.InitContainers {
		if ic.Name == "keyhook-agent" {
			t.Error("secret mode injected the agent")
		}
	}
}

// TestKeyhookDown: with keyhook's pods — the webhook's and the controller's —
// scaled to 0, a pod in a namespace a ClusterInjectionPolicy enforces is
// refused, a pod elsewhere starts without injection, and keyhook's own pods
// can be recreated while no webhook serves (its namespace is never sent to
// its webhook): the controller's first, with the webhook still at 0, then
// the webhook's. Then the enforced namespace admits injected pods again.
func TestKeyhookDown(t *testing.T) {
	ctx := testContext(t)
	enforced := tenant(ctx, t, "enforced", nil)
	loose := tenant(ctx, t, "loose", nil)
	if err := vault.Put(ctx, enforced+"/db", map[string]any{"password": secretValue(t, "pw")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(enforced, "db", data("password", enforced+"/db", "password"))); err != nil {
		t.Fatal(err)
	}
	enforce(ctx, t, enforced, "db")

	// Both Deployments to 0, put back as they were whatever happens.
	replicas := map[string]int32{}
	for _, name := range []string{keyhookDeployment, keyhookController} {
		replicas[name] = scale(ctx, t, name, 0)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		for name, r := range replicas {
			scale(ctx, t, name, r)
		}
		if err := waitKeyhookReady(ctx); err != nil {
			t.Error(err)
		}
	})
	for _, c := range []string{"webhook", "controller"} {
		err := framework.WaitFor(ctx, 250*time.Millisecond, func() (bool, error) {
			return len(keyhookPods(ctx, t, c)) == 0, nil
		})
		if err != nil {
			t.Fatalf("keyhook's %s pods did not go: %v", c, err)
		}
	}

	err := cluster.Client.Create(ctx, appPod(enforced, "refused", mountPath))
	if err == nil {
		t.Error("a pod in an enforced namespace was admitted while keyhook was down")
	} else if !strings.Contains(err.Error(), "keyhook") {
		t.Errorf("refusal does not name keyhook's webhook: %v", err)
	}

	p := appPod(loose, "plain", mountPath)
	p.Annotations = map[string]string{"keyhook.dev/inject": "whatever"}
	if err := cluster.Client.Create(ctx, p); err != nil {
		t.Fatalf("a pod in a namespace no policy enforces was refused while keyhook was down: %v", err)
	}
	running := waitRunning(ctx, t, loose, "plain")
	if len(running.Spec.InitContainers) != 0 {
		t.Errorf("the pod admitted while keyhook was down has init containers %v", running.Spec.InitContainers)
	}

	// keyhook comes back by itself: the controller's pods are created and
	// become ready while the webhook still has no pod at all...
	scale(ctx, t, keyhookController, replicas[keyhookController])
	if err := waitDeploymentReady(ctx, keyhookController); err != nil {
		t.Fatalf("keyhook's controller did not come back while its webhook was down: %v", err)
	}
	if pods := keyhookPods(ctx, t, "webhook"); len(pods) != 0 {
		t.Fatalf("webhook pods %v exist: the controller's were not shown to start without the webhook", pods)
	}
	// ...and so are the webhook's, the first of them with no webhook serving.
	scale(ctx, t, keyhookDeployment, replicas[keyhookDeployment])
	if err := waitKeyhookReady(ctx); err != nil {
		t.Fatal(err)
	}
	injected := appPod(enforced, "admitted", mountPath)
	injected.Spec.ServiceAccountName = "app"
	injected.Annotations = map[string]string{"keyhook.dev/inject": "db"}
	if err := cluster.Client.Create(ctx, injected); err != nil {
		t.Fatalf("keyhook back: a pod of the enforced namespace was refused: %v", err)
	}
	if !hasAgent(injected) {
		t.Errorf("keyhook back: the enforced namespace's pod was admitted without the agent (init containers %v)", injected.Spec.InitContainers)
	}
}

// hasAgent reports whether keyhook injected its init-agent into the pod.
func hasAgent(p *corev1.Pod) bool {
	for _, ic := range p.Spec.InitContainers {
		if ic.Name == "keyhook-agent" {
			return true
		}
	}
	return false
}

// keyhookPods names keyhook's pods of one component (webhook, controller).
func keyhookPods(ctx context.Context, t *testing.T, component string) []string {
	t.Helper()
	pods := &corev1.PodList{}
	if err := cluster.Client.List(ctx, pods, client.InNamespace(keyhookNamespace), client.MatchingLabels{"app.kubernetes.io/component": component}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names
}

// scale sets a keyhook Deployment's replicas and returns what they were.
func scale(ctx context.Context, t *testing.T, name string, replicas int32) int32 {
	t.Helper()
	var was int32 = 1
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := &appsv1.Deployment{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: keyhookNamespace, Name: name}, d); err != nil {
			return err
		}
		if d.Spec.Replicas != nil {
			was = *d.Spec.Replicas
		}
		d.Spec.Replicas = ptr.To(replicas)
		return cluster.Client.Update(ctx, d)
	})
	if err != nil {
		t.Fatalf("scaling %s to %d: %v", name, replicas, err)
	}
	return was
}

// enforce labels the namespace and makes a ClusterInjectionPolicy that
// enforces injecting the ExternalSecrets there (removed after the test), and
// waits until keyhook has labelled the namespace enforced.
func enforce(ctx context.Context, t *testing.T, ns string, inject ...string) {
	t.Helper()
	n := &corev1.Namespace{}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels["compliance"] = ns
		return cluster.Client.Update(ctx, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	policy := &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pci-" + ns},
		Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"compliance": ns}},
			Inject:            inject,
			Enforce:           true,
		},
	}
	if err := cluster.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), policy) })
	err = framework.WaitFor(ctx, 250*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return false, err
		}
		return n.Labels["keyhook.dev/injection"] == "enforced", nil
	})
	if err != nil {
		t.Fatalf("keyhook did not label namespace %s enforced: %v", ns, err)
	}
}
