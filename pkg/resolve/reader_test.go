package resolve

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func TestCacheFirstConfirmsMissesLive(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	es := &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}}
	stale := fake.NewClientBuilder().WithScheme(scheme).Build()
	live := fake.NewClientBuilder().WithScheme(scheme).WithObjects(es).Build()
	key := client.ObjectKey{Namespace: "team-a", Name: "db"}

	r := CacheFirst{Cache: stale, Live: live}
	got := &v1alpha1.ExternalSecret{}
	if err := r.Get(context.Background(), key, got); err != nil {
		t.Fatalf("object the cache has not seen yet: %v", err)
	}
	if got.Name != "db" {
		t.Fatalf("got %q", got.Name)
	}

	err := r.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "nope"}, &v1alpha1.ExternalSecret{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("object missing in both: want NotFound, got %v", err)
	}

	cacheOnly := CacheFirst{Cache: stale}
	if err := cacheOnly.Get(context.Background(), key, &v1alpha1.ExternalSecret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("without a live reader: want NotFound, got %v", err)
	}
}
