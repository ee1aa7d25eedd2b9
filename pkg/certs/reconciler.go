package certs

import (
	"bytes"
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// resync bounds how long the Reconciler sleeps when nothing is due, so that
// a missed event or a clock jump costs at most this long.
const resync = 10 * time.Minute

// Reconciler keeps the Secret of Config current (Ensure) and the caBundle of
// every entry of keyhook's two webhook configurations equal to its ca.crt.
// It runs on the leader only (a controller). It runs at start, whenever the
// Secret or a webhook configuration changes (someone re-applies the
// manifests without caBundle), and when Ensure says something is due.
type Reconciler struct {
	// Client writes the Secret and patches the webhook configurations.
	Client client.Client
	// Cache reads them.
	Cache *Cache
	// APIReader confirms that the Secret is missing before it is created:
	// the cache may not have seen it yet.
	APIReader client.Reader
	Config    Config
	Clock     clock.PassiveClock
}

var _ reconcile.Reconciler = &Reconciler{}

// Reconcile ensures the Secret, then the caBundles. The request is ignored:
// there is one Secret.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx).WithValues("secret", r.Config.Secret)
	now := r.Clock.Now()
	secret, exists, err := r.getSecret(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	if exists && secret.Type != secretType {
		// The type of a Secret is immutable; keyhook does not delete what
		// it did not create.
		return reconcile.Result{}, fmt.Errorf("secret %s is of type %s, not %s: delete it for keyhook to create it", r.Config.Secret, secret.Type, secretType)
	}
	plan, err := Ensure(now, r.Config, secret.Data)
	if err != nil {
		return reconcile.Result{}, err
	}
	if plan.Changed() {
		secret.Data = plan.Data
		if exists {
			err = r.Client.Update(ctx, secret)
		} else {
			err = r.Client.Create(ctx, secret)
		}
		if err != nil {
			return reconcile.Result{}, fmt.Errorf("writing Secret %s: %w", r.Config.Secret, err)
		}
		logger.Info("certificates updated", "reasons", plan.Reasons, "next", plan.Next)
	}
	if err := r.publish(ctx, plan.Data[CABundleKey]); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: min(max(plan.Next.Sub(r.Clock.Now()), 0)+10*time.Millisecond, resync)}, nil
}

// getSecret reads the Secret from the cache, and a miss from the API
// server; a Secret that does not exist comes back new and empty.
func (r *Reconciler) getSecret(ctx context.Context) (*corev1.Secret, bool, error) {
	secret := &corev1.Secret{}
	err := r.Cache.Get(ctx, r.Config.Secret, secret)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, r.Config.Secret, secret)
	}
	switch {
	case apierrors.IsNotFound(err):
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: r.Config.Secret.Namespace,
				Name:      r.Config.Secret.Name,
				Labels:    map[string]string{"app.kubernetes.io/managed-by": "keyhook"},
			},
			Type: secretType,
		}, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading Secret %s: %w", r.Config.Secret, err)
	}
	return secret, true, nil
}

// publish sets bundle as the caBundle of every entry of both webhook
// configurations. A configuration that does not exist is skipped: its
// creation is an event that brings the Reconciler back.
func (r *Reconciler) publish(ctx context.Context, bundle []byte) error {
	key := types.NamespacedName{Name: r.Config.WebhookConfiguration}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := r.Cache.Get(ctx, key, mutating); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", key.Name, err)
	} else if err == nil {
		configs := make([]*admissionregistrationv1.WebhookClientConfig, len(mutating.Webhooks))
		for i := range mutating.Webhooks {
			configs[i] = &mutating.Webhooks[i].ClientConfig
		}
		if err := r.patchBundles(ctx, "MutatingWebhookConfiguration", mutating, configs, bundle); err != nil {
			return err
		}
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := r.Cache.Get(ctx, key, validating); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", key.Name, err)
	} else if err == nil {
		configs := make([]*admissionregistrationv1.WebhookClientConfig, len(validating.Webhooks))
		for i := range validating.Webhooks {
			configs[i] = &validating.Webhooks[i].ClientConfig
		}
		if err := r.patchBundles(ctx, "ValidatingWebhookConfiguration", validating, configs, bundle); err != nil {
			return err
		}
	}
	return nil
}

// patchBundles sets the caBundle of configs, which point into obj, and
// patches obj if any differed. The patch carries obj's resourceVersion: the
// webhooks list is replaced as a whole, so a concurrent edit must fail it.
func (r *Reconciler) patchBundles(ctx context.Context, kind string, obj client.Object, configs []*admissionregistrationv1.WebhookClientConfig, bundle []byte) error {
	base := obj.DeepCopyObject().(client.Object)
	changed := 0
	for _, c := range configs {
		if !bytes.Equal(c.CABundle, bundle) {
			c.CABundle = bundle
			changed++
		}
	}
	if changed == 0 {
		return nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patching the caBundle of %s %s: %w", kind, obj.GetName(), err)
	}
	log.FromContext(ctx).Info("caBundle updated", "kind", kind, "name", obj.GetName(), "webhooks", changed, "cas", len(ParseBundle(bundle)))
	return nil
}

// SetupWithManager runs the Reconciler on the leader: once at start, and on
// every change of the Secret or of a webhook configuration.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	one := []reconcile.Request{{NamespacedName: r.Config.Secret}}
	b := ctrl.NewControllerManagedBy(mgr).Named("keyhook-certs").
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(one[0])
			return nil
		})).
		WatchesRawSource(source.Kind(r.Cache, &corev1.Secret{}, handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *corev1.Secret) []reconcile.Request { return one }))).
		WatchesRawSource(source.Kind(r.Cache, &admissionregistrationv1.MutatingWebhookConfiguration{}, handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *admissionregistrationv1.MutatingWebhookConfiguration) []reconcile.Request {
			return one
		}))).
		WatchesRawSource(source.Kind(r.Cache, &admissionregistrationv1.ValidatingWebhookConfiguration{}, handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *admissionregistrationv1.ValidatingWebhookConfiguration) []reconcile.Request {
			return one
		})))
	return b.Complete(r)
}
