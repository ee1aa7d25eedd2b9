package resolve

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheFirst reads from an informer cache and asks the API server only when
// the cache says an object does not exist. An informer lags the API server by
// the watch delay, so `kubectl apply -f` of an ExternalSecret and the
// Deployment that injects it, in one file, would otherwise race: the pod
// would be denied for a reference that exists. Objects that exist are served
// from the cache, so the common path makes no API call; only a miss costs
// one.
type CacheFirst struct {
	Cache client.Reader
	Live  client.Reader
}

var _ client.Reader = CacheFirst{}

// Get implements client.Reader.
func (r CacheFirst) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Cache.Get(ctx, key, obj, opts...)
	if err == nil || !apierrors.IsNotFound(err) || r.Live == nil {
		return err
	}
	return r.Live.Get(ctx, key, obj, opts...)
}

// List implements client.Reader from the cache alone.
func (r CacheFirst) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.Cache.List(ctx, list, opts...)
}
