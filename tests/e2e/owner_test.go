package e2e

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// TestSyncTargetOwnedByOther: two ExternalSecrets naming one target Secret
// do not take turns writing it. The first keeps it; the second is refused
// (Ready=False SecretOwnedByOther, naming the first), writes nothing, and
// rolls nothing; once the first is deleted, the second takes the Secret over.
func TestSyncTargetOwnedByOther(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "owner")
	va, vb := secretValue(t, "a"), secretValue(t, "b")
	for key, v := range map[string]string{"a": va, "b": vb} {
		if err := vault.Put(ctx, ns+"/"+key, map[string]any{"password": v}); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(key string) v1alpha1.ExternalSecretSpec {
		return v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Target:          v1alpha1.ExternalSecretTarget{Name: "db"},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/"+key, "password", "")},
		}
	}
	a := externalSecret(ns, "a", spec("a"))
	if err := cluster.Client.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	a = waitForES(ctx, t, ns, "a", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	first := waitForSecret(ctx, t, ns, "db", func(s *corev1.Secret) bool { return string(s.Data["password"]) == va })
	if err := cluster.Client.Create(ctx, deployment(ns, "app", annotated("keyhook.dev/rollout", "auto"), envFromSecret("db"))); err != nil {
		t.Fatal(err)
	}
	waitRecorded(ctx, t, ns, "app", "secret/db")
	waitReplicaSets(ctx, t, ns, "app", 1)
	before := &appsv1.Deployment{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, before); err != nil {
		t.Fatal(err)
	}

	if err := cluster.Client.Create(ctx, externalSecret(ns, "b", spec("b"))); err != nil {
		t.Fatal(err)
	}
	b := waitForES(ctx, t, ns, "b", "refused", readyIs(metav1.ConditionFalse, "SecretOwnedByOther"))
	msg := meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionReady).Message
	for _, want := range []string{`Secret "db"`, `ExternalSecret "a"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ready message %q does not say %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("Ready message %q spans lines", msg)
	}

	// Several refreshes of both (refreshInterval 1s), and the storm guard's
	// window: the Secret stays A's, untouched, and nothing rolls.
	waitRefreshedAfter(ctx, t, ns, "a", lastRefresh(t, ns, "a").Add(2500*time.Millisecond))
	time.Sleep(rolloutDebounce)
	now := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(first), now); err != nil {
		t.Fatal(err)
	}
	if now.ResourceVersion != first.ResourceVersion {
		t.Errorf("the Secret was written while it was A's: resourceVersion %s → %s", first.ResourceVersion, now.ResourceVersion)
	}
	if string(now.Data["password"]) != va {
		t.Errorf("the Secret's data is not A's any more")
	}
	if !equality.Semantic.DeepEqual(now.OwnerReferences, first.OwnerReferences) || now.Annotations["keyhook.dev/external-secret"] != "a" {
		t.Errorf("the Secret's owner changed: %v, annotation %q", now.OwnerReferences, now.Annotations["keyhook.dev/external-secret"])
	}
	after := &appsv1.Deployment{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, after); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(before.Spec.Template, after.Spec.Template) {
		t.Errorf("the Deployment's pod template changed while B was refused:\nbefore %v\nafter  %v", before.Spec.Template.Annotations, after.Spec.Template.Annotations)
	}
	if n := replicaSets(ctx, t, ns, "app"); n != 1 {
		t.Errorf("the Deployment rolled while B was refused: %d ReplicaSets", n)
	}
	if c := meta.FindStatusCondition(waitForES(ctx, t, ns, "a", "still", func(*v1alpha1.ExternalSecret) bool { return true }).Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("A is not Ready any more: %+v", c)
	}
	evs := &eventsv1.EventList{}
	if err := cluster.Client.List(ctx, evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, e := range evs.Items {
		warned = warned || e.Regarding.Name == "b" && e.Reason == "SecretOwnedByOther" && e.Type == corev1.EventTypeWarning
	}
	if !warned {
		t.Errorf("no SecretOwnedByOther warning event on B")
	}

	// A is deleted (its Secret is garbage-collected with it): B takes over,
	// and the workload rolls once, for B's data is a real change.
	if err := cluster.Client.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	b = waitForES(ctx, t, ns, "b", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	taken := waitForSecret(ctx, t, ns, "db", func(s *corev1.Secret) bool {
		owner := metav1.GetControllerOf(s)
		return string(s.Data["password"]) == vb && owner != nil && owner.UID == b.UID
	})
	if got := taken.Annotations["keyhook.dev/external-secret"]; got != "b" {
		t.Errorf("taken-over Secret names ExternalSecret %q, want b", got)
	}
	waitReplicaSets(ctx, t, ns, "app", 2)
	time.Sleep(rolloutDebounce + 2*time.Second)
	if n := replicaSets(ctx, t, ns, "app"); n != 2 {
		t.Errorf("the takeover rolled the Deployment %d times, want once", n-1)
	}
	assertNoValues(ctx, t, ns, va, vb)
}

// TestSyncMergeTargetsShared: several Merge ExternalSecrets may write their
// own keys into one Secret keyhook did not make; they do not take turns
// rewriting it once their keys are in.
func TestSyncMergeTargetsShared(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "merge")
	v1, v2 := secretValue(t, "one"), secretValue(t, "two")
	if err := vault.Put(ctx, ns+"/m", map[string]any{"one": v1, "two": v2}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}, Data: map[string][]byte{"theirs": []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"one", "two"} {
		if err := cluster.Client.Create(ctx, externalSecret(ns, "m-"+key, v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Target:          v1alpha1.ExternalSecretTarget{Name: "shared", CreationPolicy: v1alpha1.CreationPolicyMerge},
			Data:            []v1alpha1.ExternalSecretData{data(key, ns+"/m", key, "")},
		})); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"m-one", "m-two"} {
		waitForES(ctx, t, ns, name, "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	}
	s := waitForSecret(ctx, t, ns, "shared", func(s *corev1.Secret) bool {
		return string(s.Data["one"]) == v1 && string(s.Data["two"]) == v2 && string(s.Data["theirs"]) == "x"
	})
	waitRefreshedAfter(ctx, t, ns, "m-two", lastRefresh(t, ns, "m-two").Add(2500*time.Millisecond))
	now := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(s), now); err != nil {
		t.Fatal(err)
	}
	if now.ResourceVersion != s.ResourceVersion {
		t.Errorf("two Merge ExternalSecrets kept rewriting their shared Secret: resourceVersion %s → %s", s.ResourceVersion, now.ResourceVersion)
	}
	assertNoValues(ctx, t, ns, v1, v2)
}
