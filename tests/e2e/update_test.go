package e2e

import (
	"context"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// updateLatest reads obj afresh, applies edit and updates it, once more on
// a conflict: keyhook's controller (store health, policy labels, sync
// status) and the API server's own controllers write the same objects a
// test edits, and an update of a stale resourceVersion fails before it
// reaches admission.
func updateLatest[T client.Object](ctx context.Context, obj T, edit func(T)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		edit(obj)
		return cluster.Client.Update(ctx, obj)
	})
}
