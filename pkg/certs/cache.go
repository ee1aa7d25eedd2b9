package certs

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Cache holds keyhook's certificate Secret and its two webhook
// configurations, selected by name, and nothing else. It is separate from
// the manager's cache, whose Secrets are those keyhook syncs: so its RBAC
// can name the objects (resourceNames), and every replica can read the
// Secret without caching anyone else's.
//
// Added to the manager (mgr.Add) it starts with the manager's caches, on
// every replica, before the webhook server.
type Cache struct {
	cache.Cache
}

// GetCache makes the manager start Cache with its caches, on every replica,
// and wait for it before it starts the webhook server.
func (c *Cache) GetCache() cache.Cache { return c.Cache }

// NewCache builds the cache for c and registers the Secret's informer, so
// that it is synced before the webhook server serves. The webhook
// configurations' informers start with the Reconciler, on the leader only.
func NewCache(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, c Config) (*Cache, error) {
	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	cc, err := cache.New(cfg, cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{c.Secret.Namespace: {}},
				Field:      byName(c.Secret.Name),
			},
			&admissionregistrationv1.MutatingWebhookConfiguration{}:   {Field: byName(c.WebhookConfiguration)},
			&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: byName(c.WebhookConfiguration)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the certificate cache: %w", err)
	}
	if _, err := cc.GetInformer(ctx, &corev1.Secret{}); err != nil {
		return nil, fmt.Errorf("registering the certificate Secret's informer: %w", err)
	}
	return &Cache{Cache: cc}, nil
}
