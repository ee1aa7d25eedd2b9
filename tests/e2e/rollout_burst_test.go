package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

func envFromConfigMap(name string) deployOption {
	return func(d *appsv1.Deployment) {
		c := &d.Spec.Template.Spec.Containers[0]
		c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}})
	}
}

// rolloutsMetric sums keyhook_rollouts_total of a namespace by reason.
func rolloutsMetric(t *testing.T, url, ns string) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^keyhook_rollouts_total\{kind="[^"]*",namespace="` + regexp.QuoteMeta(ns) + `",reason="([^"]*)"\} (\d+)$`)
	out := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(scrape(t, url), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] += n
	}
	return out
}

// TestRolloutOneBurstAcrossInputs changes a ConfigMap, a Secret and an
// injected ExternalSecret of one Deployment together: one rollout, whose
// event names all three and no value, counted once in keyhook_rollouts_total.
func TestRolloutOneBurstAcrossInputs(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "burst")
	v1, v2 := secretValue(t, "v1"), secretValue(t, "v2")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db-files", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Hour},
		Target:          v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyNone},
		Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"mode": "a"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Data: map[string][]byte{"token": []byte(v1)}}
	for _, o := range []client.Object{cm, sec, deployment(ns, "web", annotated("keyhook.dev/rollout", "auto"), injecting("db-files"), envFromConfigMap("settings"), envFromSecret("api"))} {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitRecorded(ctx, t, ns, "web", "configmap/settings", "secret/api", "externalsecret/db-files")
	waitReplicaSets(ctx, t, ns, "web", 1)

	// The remote change first, made visible at once with a forced sync; the
	// ConfigMap and the Secret as soon as the ExternalSecret shows it.
	es := &v1alpha1.ExternalSecret{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "db-files"}, es); err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(es.Status.Versions)
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	if err := updateLatest(ctx, es, func(es *v1alpha1.ExternalSecret) {
		es.Annotations = map[string]string{"keyhook.dev/force-sync": time.Now().String()}
	}); err != nil {
		t.Fatal(err)
	}
	err := framework.WaitFor(ctx, 50*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "db-files"}, es); err != nil {
			return false, err
		}
		after, _ := json.Marshal(es.Status.Versions)
		return string(after) != string(before), nil
	})
	if err != nil {
		t.Fatalf("the ExternalSecret never saw the new version: %v", err)
	}
	cm.Data = map[string]string{"mode": "b"}
	sec.Data = map[string][]byte{"token": []byte(v2)}
	if err := cluster.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 2)
	time.Sleep(rolloutDebounce + 3*time.Second)
	if got := replicaSets(ctx, t, ns, "web"); got != 2 {
		t.Errorf("three inputs changed together made %d rollouts, want 1", got-1)
	}
	var notes []string
	for _, e := range events(ctx, t, ns, "web") {
		if e.Reason == "Rollout" {
			notes = append(notes, e.Message)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "configmap/settings") || !strings.Contains(notes[0], "secret/api") || !strings.Contains(notes[0], "externalsecret/db-files") {
		t.Errorf("Rollout events %q, want one naming configmap/settings, secret/api and externalsecret/db-files", notes)
	}
	if got := rolloutsMetric(t, controller.MetricsURL, ns); got["configmap+externalsecret+secret"] != 1 || len(got) != 1 {
		t.Errorf("keyhook_rollouts_total of %s by reason = %v, want configmap+externalsecret+secret: 1", ns, got)
	}
	assertNoValues(ctx, t, ns, v1, v2)
}

func events(ctx context.Context, t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	evs := &corev1.EventList{}
	if err := cluster.Client.List(ctx, evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// TestRolloutWaitsForPrevious: a change due while keyhook's previous
// rollout is still progressing (its pods never become available here: there
// is no kubelet) waits, says so in an event, and rolls once the previous
// rollout is done (scaled to zero, it is).
func TestRolloutWaitsForPrevious(t *testing.T) {
	ctx := testContext(t)
	ns, err := cluster.Namespace(ctx, "progress", nil)
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Data: map[string][]byte{"token": []byte("1")}}
	d := deployment(ns, "web", annotated("reloader.stakater.com/auto", "true"), envFromSecret("api"))
	d.Spec.Replicas = ptr.To[int32](1)
	for _, o := range []client.Object{sec, d} {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitRecorded(ctx, t, ns, "web", "secret/api")
	change := func(v string) {
		t.Helper()
		sec.Data = map[string][]byte{"token": []byte(v)}
		if err := cluster.Client.Update(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	change("2")
	waitReplicaSets(ctx, t, ns, "web", 2)
	change("3")
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		return hasEvent(ctx, t, ns, "web", "RolloutWaiting"), nil
	})
	if err != nil {
		t.Fatalf("no RolloutWaiting event while the first rollout progresses")
	}
	if got := replicaSets(ctx, t, ns, "web"); got != 2 {
		t.Fatalf("%d ReplicaSets while the first rollout progresses, want 2", got)
	}
	if err := updateLatest(ctx, d, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](0) }); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 3)
}

// TestRolloutLeaderChangeMidDebounce kills the leader while a rollout is
// pending: the new leader rolls it, once, with the first change as the
// leader recorded it on the workload.
func TestRolloutLeaderChangeMidDebounce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := controller.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := controller.Start(context.Background()); err != nil {
			t.Errorf("restarting the package's controller: %v", err)
		}
	})
	controllerBin, err := framework.ControllerBinary(workDir)
	if err != nil {
		t.Fatal(err)
	}
	start := func(name string) *framework.Controller {
		w, err := framework.StartController(ctx, cluster, t.TempDir(), framework.ControllerOptions{
			Binary: controllerBin, Name: name,
			Args: []string{
				"--leader-elect", "--leader-election-namespace=kube-system",
				"--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=250ms",
				// Long enough that the leader is killed before it rolls.
				"--rollout-quiet-period=20s", "--rollout-debounce=60s",
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				out := w.Proc.Output()
				t.Logf("webhook %s:\n%s", name, out[max(0, len(out)-6000):])
			}
			_ = w.Stop()
		})
		return w
	}
	a, b := start("a"), start("b")
	var leader, follower *framework.Controller
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		for _, w := range []*framework.Controller{a, b} {
			if strings.Contains(w.Proc.Output(), "elected leader") {
				leader = w
			}
		}
		return leader != nil, nil
	})
	if err != nil {
		t.Fatalf("no leader: %v", err)
	}
	follower = b
	if leader == b {
		follower = a
	}

	ns, err := cluster.Namespace(ctx, "leader-burst", nil)
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Data: map[string][]byte{"token": []byte("1")}}
	for _, o := range []client.Object{sec, deployment(ns, "web", annotated("reloader.stakater.com/auto", "true"), envFromSecret("api"))} {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitRecorded(ctx, t, ns, "web", "secret/api")
	sec.Data = map[string][]byte{"token": []byte("2")}
	if err := cluster.Client.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	// The leader records the pending rollout on the Deployment...
	d := &appsv1.Deployment{}
	err = framework.WaitFor(ctx, 50*time.Millisecond, func() (bool, error) {
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, d)
		return err == nil && d.Annotations["keyhook.dev/rollout-pending"] != "", err
	})
	if err != nil {
		t.Fatalf("the leader recorded no pending rollout: %v", d.Annotations)
	}
	var pending struct{ Since time.Time }
	if err := json.Unmarshal([]byte(d.Annotations["keyhook.dev/rollout-pending"]), &pending); err != nil {
		t.Fatal(err)
	}
	// ...and dies before rolling it.
	leader.Kill()
	if got := replicaSets(ctx, t, ns, "web"); got != 1 {
		t.Fatalf("the leader rolled before the quiet period ended: %d ReplicaSets", got)
	}
	waitReplicaSets(ctx, t, ns, "web", 2)
	if !strings.Contains(follower.Proc.Output(), `"pendingSince":"`+pending.Since.UTC().Format(time.RFC3339Nano)+`"`) {
		t.Errorf("the new leader's rollout did not continue the pending one (since %s):\n%s", pending.Since, follower.Proc.Output())
	}
	time.Sleep(5 * time.Second)
	if got := replicaSets(ctx, t, ns, "web"); got != 2 {
		t.Errorf("%d ReplicaSets after the take-over, want 2", got)
	}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, d); err != nil {
		t.Fatal(err)
	}
	if v, ok := d.Annotations["keyhook.dev/rollout-pending"]; ok {
		t.Errorf("the pending rollout is still recorded after it rolled: %s", v)
	}
}
