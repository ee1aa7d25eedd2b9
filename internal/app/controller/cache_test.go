package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	toolscache "k8s.io/client-go/tools/cache"
)

// TestStripForCache: typed and unstructured objects (Argo Rollouts are
// cached unstructured) lose managedFields and kubectl's last-applied copy,
// and keep everything else.
func TestStripForCache(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	deploy := func(ann map[string]string, mf []metav1.ManagedFieldsEntry) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: ann, ManagedFields: mf, Labels: map[string]string{"app": "web"}},
			Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}},
		}
	}
	got, err := StripForCache(deploy(map[string]string{lastAppliedKey: `{"spec":{}}`, "keyhook.dev/rollout": "auto"}, managed))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(deploy(map[string]string{"keyhook.dev/rollout": "auto"}, nil), got); diff != "" {
		t.Errorf("typed (-want +got):\n%s", diff)
	}

	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("Rollout")
	u.SetName("web")
	u.SetAnnotations(map[string]string{lastAppliedKey: `{"spec":{}}`, "secret.reloader.stakater.com/reload": "db"})
	u.SetManagedFields(managed)
	if _, err := StripForCache(u); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"secret.reloader.stakater.com/reload": "db"}, u.GetAnnotations()); diff != "" {
		t.Errorf("unstructured annotations (-want +got):\n%s", diff)
	}
	if u.GetManagedFields() != nil {
		t.Errorf("unstructured managedFields kept: %v", u.GetManagedFields())
	}

	// A deletion the informer missed arrives as a tombstone: passed as is.
	tomb := toolscache.DeletedFinalStateUnknown{Key: "shop/web"}
	if out, err := StripForCache(tomb); err != nil || out != any(tomb) {
		t.Errorf("tombstone: %v, %v", out, err)
	}
}

// TestCacheOptions: the controller's cache holds only the Secrets keyhook
// manages, and of those no data; every other kind is stripped.
func TestCacheOptions(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := Options(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Cache.DefaultTransform == nil {
		t.Fatal("no default transform")
	}
	var secrets *corev1.Secret
	for obj, by := range opts.Cache.ByObject {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			continue
		}
		secrets = s
		if got := by.Label.String(); got != "keyhook.dev/managed=true" {
			t.Errorf("Secrets cached by label %q", got)
		}
		in := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "keyhook"}}}, Data: map[string][]byte{"password": []byte("hunter2")}}
		out, err := by.Transform(in)
		if err != nil {
			t.Fatal(err)
		}
		if o := out.(*corev1.Secret); o.Data != nil || o.ManagedFields != nil {
			t.Errorf("a cached Secret keeps data or managedFields: %+v", o)
		}
	}
	if secrets == nil {
		t.Error("Secrets are cached unscoped")
	}
}
