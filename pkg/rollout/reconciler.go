package rollout

import (
	"context"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// Event reasons on workloads.
const (
	ReasonRollout       = "Rollout"
	ReasonRolloutPaused = "RolloutPaused"
)

var rolloutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "keyhook_rollouts_total",
	Help: "Rollouts of workloads triggered by secret changes.",
}, []string{"kind", "namespace", "reason"})

func init() {
	metrics.Registry.MustRegister(rolloutsTotal)
}

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch;patch

// Reconciler rolls the workloads of one Kind.
type Reconciler struct {
	Client   client.Client
	Kind     Kind
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Debounce is the storm guard: a change is rolled out once it is this
	// old, with everything that changed meanwhile; and a workload is rolled
	// at most once per Debounce.
	Debounce time.Duration

	mu      sync.Mutex
	pending map[types.NamespacedName]time.Time // first unrolled change seen
}

var _ reconcile.Reconciler = (*Reconciler)(nil)

// SetupWithManager watches the workloads, and the managed Secrets and
// ExternalSecrets of their namespaces.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.pending = map[types.NamespacedName]time.Time{}
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollout-"+strings.ToLower(r.Kind.Name)).
		For(r.Kind.New(), builder.WithPredicates(predicate.AnnotationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.optedIn)).
		Watches(&v1alpha1.ExternalSecret{}, handler.EnqueueRequestsFromMapFunc(r.optedIn)).
		Complete(r)
}

// optedIn maps an object to the opted-in workloads of its namespace.
func (r *Reconciler) optedIn(ctx context.Context, obj client.Object) []reconcile.Request {
	list := r.Kind.NewList()
	if err := r.Client.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "listing workloads", "kind", r.Kind.Name)
		return nil
	}
	var out []reconcile.Request
	for _, w := range r.Kind.Items(list) {
		if _, ok := SelectionFor(w.GetAnnotations()); ok {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(w)})
		}
	}
	return out
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := r.Kind.New()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		r.clearPending(req.NamespacedName)
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	ann := obj.GetAnnotations()
	sel, ok := SelectionFor(ann)
	if !ok {
		r.clearPending(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	secrets, externalSecrets, err := r.namespaceState(ctx, req.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	recorded := ParseRecord(ann[annotations.SecretVersions])
	d := Decide(recorded, Current(sel, req.Namespace, r.Kind.Template(obj), secrets, externalSecrets))

	if len(d.Changed) == 0 {
		r.clearPending(req.NamespacedName)
		if maps.Equal(recorded, d.Record) {
			return reconcile.Result{}, nil
		}
		// New sources: record them, without a rollout.
		patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
		setAnnotation(obj, annotations.SecretVersions, EncodeRecord(d.Record))
		return reconcile.Result{}, r.Client.Patch(ctx, obj, patch)
	}

	changed := strings.Join(d.Changed, ", ")
	if ann[annotations.RolloutPaused] == "true" {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonRolloutPaused, "Rollout", "rollout held by %s: changed %s", annotations.RolloutPaused, changed)
		return reconcile.Result{}, nil
	}
	now := r.Clock.Now()
	if wait := r.wait(req.NamespacedName, ann, now); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}

	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	setAnnotation(obj, annotations.SecretVersions, EncodeRecord(d.Record))
	setAnnotation(obj, annotations.LastRollout, now.UTC().Format(time.RFC3339Nano))
	tmpl := r.Kind.Template(obj)
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[annotations.SecretHash] = Hash(d.Record)
	if err := r.Client.Patch(ctx, obj, patch); err != nil {
		return reconcile.Result{}, err
	}
	r.clearPending(req.NamespacedName)
	rolloutsTotal.WithLabelValues(r.Kind.Name, req.Namespace, "secret-changed").Inc()
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonRollout, "Rollout", "rolling out: changed %s", changed)
	log.FromContext(ctx).Info("rolled out", "kind", r.Kind.Name, "changed", d.Changed)
	return reconcile.Result{}, nil
}

// wait returns how long a due rollout must still wait: until the first
// change it includes is Debounce old, and until the last rollout is.
func (r *Reconciler) wait(key types.NamespacedName, ann map[string]string, now time.Time) time.Duration {
	r.mu.Lock()
	first, ok := r.pending[key]
	if !ok {
		first = now
		r.pending[key] = now
	}
	r.mu.Unlock()
	until := first.Add(r.Debounce)
	if last, err := time.Parse(time.RFC3339Nano, ann[annotations.LastRollout]); err == nil && last.Add(r.Debounce).After(until) {
		until = last.Add(r.Debounce)
	}
	if now.Before(until) {
		return until.Sub(now)
	}
	return 0
}

func (r *Reconciler) clearPending(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.pending, key)
	r.mu.Unlock()
}

// namespaceState returns the namespace's keyhook-managed Secrets and its
// ExternalSecrets, by name. The objects are the informer cache's own, not copies (make bench's profile
// had these copies, secret data included, at a third of the reconciler's
// CPU): they are only read, never changed.
func (r *Reconciler) namespaceState(ctx context.Context, ns string) (map[string]*corev1.Secret, map[string]*v1alpha1.ExternalSecret, error) {
	secretList := &corev1.SecretList{}
	if err := r.Client.List(ctx, secretList, client.InNamespace(ns), client.MatchingLabels{annotations.Managed: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, err
	}
	esList := &v1alpha1.ExternalSecretList{}
	if err := r.Client.List(ctx, esList, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, err
	}
	secrets := make(map[string]*corev1.Secret, len(secretList.Items))
	for i := range secretList.Items {
		secrets[secretList.Items[i].Name] = &secretList.Items[i]
	}
	externalSecrets := make(map[string]*v1alpha1.ExternalSecret, len(esList.Items))
	for i := range esList.Items {
		externalSecrets[esList.Items[i].Name] = &esList.Items[i]
	}
	return secrets, externalSecrets, nil
}

func setAnnotation(obj client.Object, k, v string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	obj.SetAnnotations(a)
}
