package e2e

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

func TestSyncTargetPolicies(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "policies")
	pass, pass2 := secretValue(t, "pass"), secretValue(t, "pass2")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"user": "app", "password": pass}); err != nil {
		t.Fatal(err)
	}
	if err := vault.Put(ctx, ns+"/doomed", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-config"},
		Data:       map[string][]byte{"theirs": []byte("kept")},
	}); err != nil {
		t.Fatal(err)
	}
	dbData := []v1alpha1.ExternalSecretData{data("user", ns+"/db", "user", ""), data("password", ns+"/db", "password", "")}
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "templated", v1alpha1.ExternalSecretSpec{
			Data: dbData,
			Target: v1alpha1.ExternalSecretTarget{Template: &v1alpha1.ExternalSecretTemplate{
				Type:     corev1.SecretTypeBasicAuth,
				Metadata: v1alpha1.ExternalSecretTemplateMetadata{Labels: map[string]string{"team": "a"}},
				Data:     map[string]string{"username": "{{ .user }}", "password": "{{ .password }}", "dsn": "postgres://{{ .user }}:{{ .password }}@db:5432/app"},
			}},
		}),
		externalSecret(ns, "merged", v1alpha1.ExternalSecretSpec{
			Data:   dbData,
			Target: v1alpha1.ExternalSecretTarget{Name: "app-config", CreationPolicy: v1alpha1.CreationPolicyMerge},
		}),
		externalSecret(ns, "orphan", v1alpha1.ExternalSecretSpec{
			Data:   dbData,
			Target: v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyOrphan},
		}),
		externalSecret(ns, "forced", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Hour},
			Data:            dbData,
		}),
		externalSecret(ns, "doomed", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Data:            []v1alpha1.ExternalSecretData{data("k", ns+"/doomed", "k", "")},
			Target:          v1alpha1.ExternalSecretTarget{DeletionPolicy: v1alpha1.DeletionPolicyDelete},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"templated", "merged", "orphan", "forced", "doomed"} {
		waitForES(ctx, t, ns, name, "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	}

	templated := waitForSecret(ctx, t, ns, "templated", func(*corev1.Secret) bool { return true })
	if templated.Type != corev1.SecretTypeBasicAuth || templated.Labels["team"] != "a" {
		t.Errorf("templated Secret has type %q and labels %v", templated.Type, templated.Labels)
	}
	if diff := cmp.Diff(map[string][]byte{"username": []byte("app"), "password": []byte(pass), "dsn": []byte("postgres://app:" + pass + "@db:5432/app")}, templated.Data); diff != "" {
		t.Errorf("templated data (-want +got):\n%s", diff)
	}

	merged := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-config"}, merged); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"theirs": []byte("kept"), "user": []byte("app"), "password": []byte(pass)}, merged.Data); diff != "" {
		t.Errorf("merged data (-want +got):\n%s", diff)
	}
	if len(merged.OwnerReferences) != 0 {
		t.Errorf("Merge took ownership of someone else's Secret: %v", merged.OwnerReferences)
	}
	orphan := waitForSecret(ctx, t, ns, "orphan", func(*corev1.Secret) bool { return true })
	if len(orphan.OwnerReferences) != 0 {
		t.Errorf("Orphan Secret has owners: %v", orphan.OwnerReferences)
	}

	// force-sync: a new value syncs now, not in an hour.
	if err := vault.Put(ctx, ns+"/db", map[string]any{"user": "app", "password": pass2}); err != nil {
		t.Fatal(err)
	}
	forced := &v1alpha1.ExternalSecret{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "forced"}, forced); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(forced.DeepCopy())
	forced.Annotations = map[string]string{"keyhook.dev/force-sync": time.Now().Format(time.RFC3339Nano)}
	if err := cluster.Client.Patch(ctx, forced, patch); err != nil {
		t.Fatal(err)
	}
	waitForSecret(ctx, t, ns, "forced", func(s *corev1.Secret) bool { return string(s.Data["password"]) == pass2 })

	// deletionPolicy Delete: the remote secret is gone, so is the Secret.
	if err := vault.Client.KVv2("secret").DeleteMetadata(ctx, ns+"/doomed"); err != nil {
		t.Fatal(err)
	}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "doomed"}, &corev1.Secret{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Errorf("the Secret of a deleted remote secret with deletionPolicy Delete was not deleted: %v", err)
	}
	waitForES(ctx, t, ns, "doomed", "not Ready", readyIs(metav1.ConditionFalse, "SecretSyncedError"))
	assertNoValues(ctx, t, ns, pass, pass2)
}
