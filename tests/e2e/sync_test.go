package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// waitForES waits until cond holds for the ExternalSecret and returns it.
func waitForES(ctx context.Context, t *testing.T, ns, name string, what string, cond func(*v1alpha1.ExternalSecret) bool) *v1alpha1.ExternalSecret {
	t.Helper()
	es := &v1alpha1.ExternalSecret{}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, es); err != nil {
			return false, err
		}
		return cond(es), nil
	})
	if err != nil {
		t.Fatalf("ExternalSecret %s/%s never became %s: %v; status: %+v", ns, name, what, err, es.Status)
	}
	return es
}

func readyIs(status metav1.ConditionStatus, reason string) func(*v1alpha1.ExternalSecret) bool {
	return func(es *v1alpha1.ExternalSecret) bool {
		c := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Status == status && c.Reason == reason && c.ObservedGeneration == es.Generation
	}
}

func waitForSecret(ctx context.Context, t *testing.T, ns, name string, cond func(*corev1.Secret) bool) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
		return err == nil && cond(s), client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("Secret %s/%s never reached the expected state: %v", ns, name, err)
	}
	return s
}

func TestSyncCreatesSecretAndKeepsItCurrent(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "sync")
	pass1, pass2 := secretValue(t, "pass1"), secretValue(t, "pass2")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"username": "app", "password": pass1}); err != nil {
		t.Fatal(err)
	}
	es := externalSecret(ns, "db-creds", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Second},
		Target:          v1alpha1.ExternalSecretTarget{Name: "db"},
		Data: []v1alpha1.ExternalSecretData{
			data("username", ns+"/db", "username", ""),
			data("password", ns+"/db", "password", ""),
		},
	})
	if err := cluster.Client.Create(ctx, es); err != nil {
		t.Fatal(err)
	}
	es = waitForES(ctx, t, ns, "db-creds", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	got := waitForSecret(ctx, t, ns, "db", func(*corev1.Secret) bool { return true })

	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "db",
			Labels:      map[string]string{"keyhook.dev/managed": "true"},
			Annotations: map[string]string{"keyhook.dev/data-hash": got.Annotations["keyhook.dev/data-hash"], "keyhook.dev/external-secret": "db-creds"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "keyhook.dev/v1alpha1", Kind: "ExternalSecret", Name: "db-creds", UID: es.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"username": []byte("app"), "password": []byte(pass1)},
	}
	ignoreServerFields := cmpopts.IgnoreFields(metav1.ObjectMeta{}, "UID", "ResourceVersion", "CreationTimestamp", "ManagedFields", "Generation")
	if diff := cmp.Diff(want, got, ignoreServerFields); diff != "" {
		t.Errorf("synced Secret (-want +got):\n%s", diff)
	}
	if len(got.Annotations["keyhook.dev/data-hash"]) != 64 {
		t.Errorf("data-hash annotation %q is not a sha256", got.Annotations["keyhook.dev/data-hash"])
	}

	// Refreshes with nothing changed write nothing.
	waitRefreshedAfter(ctx, t, ns, "db-creds", lastRefresh(t, ns, "db-creds").Add(1500*time.Millisecond))
	again := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(got), again); err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != got.ResourceVersion {
		t.Errorf("unchanged refreshes rewrote the Secret: resourceVersion %s → %s", got.ResourceVersion, again.ResourceVersion)
	}

	// Rotation in Vault reaches the Secret within the refresh interval.
	if err := vault.Put(ctx, ns+"/db", map[string]any{"username": "app", "password": pass2}); err != nil {
		t.Fatal(err)
	}
	rotated := waitForSecret(ctx, t, ns, "db", func(s *corev1.Secret) bool { return string(s.Data["password"]) == pass2 })

	// A value edited by hand is put back at the next refresh (the
	// controller's cache holds a digest of the data, not the data), and
	// what keyhook writes back carries nothing of its cache.
	edited := rotated.DeepCopy()
	edited.Data["password"] = []byte("edited by hand")
	if err := cluster.Client.Update(ctx, edited); err != nil {
		t.Fatal(err)
	}
	restored := waitForSecret(ctx, t, ns, "db", func(s *corev1.Secret) bool {
		return s.ResourceVersion != edited.ResourceVersion && string(s.Data["password"]) == pass2
	})
	if diff := cmp.Diff(rotated.Annotations, restored.Annotations); diff != "" {
		t.Errorf("annotations of the restored Secret (-rotated +restored):\n%s", diff)
	}

	// A deleted Secret comes back.
	if err := cluster.Client.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitForSecret(ctx, t, ns, "db", func(s *corev1.Secret) bool { return s.UID != got.UID && string(s.Data["password"]) == pass2 })

	assertNoValues(ctx, t, ns, pass1, pass2)
}

func TestSyncKeepsLastGoodSecretWhileVaultIsDown(t *testing.T) {
	ctx := testContext(t)
	v, err := framework.StartVault(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Stop() })
	ns, err := cluster.Namespace(ctx, "outage", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	value := secretValue(t, "kept")
	setup := func() {
		t.Helper()
		if err := v.KubernetesAuth(ctx, cluster); err != nil {
			t.Fatal(err)
		}
		if err := v.Role(ctx, "app", ns, "app", "vault", "db"); err != nil {
			t.Fatal(err)
		}
		if err := v.Put(ctx, "db", map[string]any{"password": value}); err != nil {
			t.Fatal(err)
		}
	}
	setup()
	if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault"},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: v.Addr,
			Auth:   v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "app", ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "app"}}},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Second},
		Data:            []v1alpha1.ExternalSecretData{data("password", "db", "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	waitForES(ctx, t, ns, "db", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	good := waitForSecret(ctx, t, ns, "db", func(*corev1.Secret) bool { return true })

	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}
	es := waitForES(ctx, t, ns, "db", "not Ready", readyIs(metav1.ConditionFalse, "SecretSyncedError"))
	msg := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady).Message
	for _, want := range []string{"could not sync", "SecretStore vault", "connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ready message %q does not say %q", msg, want)
		}
	}
	still := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(good), still); err != nil {
		t.Fatalf("the last good Secret is gone: %v", err)
	}
	if still.ResourceVersion != good.ResourceVersion || string(still.Data["password"]) != value {
		t.Errorf("the Secret changed while Vault was down")
	}
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		evs := &eventsv1.EventList{}
		if err := cluster.Client.List(ctx, evs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == "db" && e.Reason == "SecretSyncedError" && e.Type == corev1.EventTypeWarning {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no SecretSyncedError warning event on the ExternalSecret: %v", err)
	}

	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	setup()
	waitForES(ctx, t, ns, "db", "Ready again", readyIs(metav1.ConditionTrue, "SecretSynced"))
	assertNoValues(ctx, t, ns, value)
}

// assertNoValues checks that no value appears in the namespace's events, its
// ExternalSecrets' status, or the webhook's log.
func assertNoValues(ctx context.Context, t *testing.T, ns string, values ...string) {
	t.Helper()
	evs := &eventsv1.EventList{}
	if err := cluster.Client.List(ctx, evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	coreEvs := &corev1.EventList{}
	if err := cluster.Client.List(ctx, coreEvs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	ess := &v1alpha1.ExternalSecretList{}
	if err := cluster.Client.List(ctx, ess, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(evs)
	b, _ := json.Marshal(coreEvs)
	c, _ := json.Marshal(ess)
	for where, text := range map[string]string{"events": string(a) + string(b), "ExternalSecrets": string(c), "webhook log": webhook.Proc.Output(), "keyhook-controller log": controller.Proc.Output()} {
		for _, v := range values {
			if strings.Contains(text, v) {
				t.Errorf("a secret value appears in the %s", where)
			}
		}
	}
}
