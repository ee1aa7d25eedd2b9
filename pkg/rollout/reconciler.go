package rollout

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/injection"
)

// Event reasons on workloads.
const (
	ReasonRollout        = "Rollout"
	ReasonRolloutPaused  = "RolloutPaused"
	ReasonRolloutWaiting = "RolloutWaiting"
	ReasonResumed        = "RolloutResumed"
)

// RolloutsTotal counts rollouts by workload kind, namespace and reason: the
// kinds of input that changed, e.g. "secret" or "configmap+externalsecret".
var RolloutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "keyhook_rollouts_total",
	Help: "Rollouts of workloads triggered by changes of what they use, by reason: the kinds of input that changed (secret, configmap, externalsecret, joined by +).",
}, []string{"kind", "namespace", "reason"})

// Metrics are the rollouts' collectors, registered by the role that runs
// the rollouts (internal/app/controller), not on import: a process that
// links this package without rolling anything exports none of them.
func Metrics() []prometheus.Collector {
	return []prometheus.Collector{RolloutsTotal}
}

// Config is what the rollouts are told, the same for every kind.
type Config struct {
	Timing
	// ProgressTimeout: a rollout that is due while keyhook's previous
	// rollout of the workload is still progressing waits for it, at most
	// this long after the previous one started. 0 never waits.
	ProgressTimeout time.Duration
	// Strategy is the default of annotations.RolloutStrategy.
	Strategy string
}

// progressPoll is how often a rollout waiting for the previous one looks
// again: workload status changes are not watched.
const progressPoll = time.Second

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=argoproj.io,resources=rollouts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=keyhook.dev,resources=clusterinjectionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=keyhook.dev,resources=externalsecrets,verbs=get;list;watch

// Reconciler rolls the workloads of one Kind.
type Reconciler struct {
	// Client writes workloads and reads ExternalSecrets, policies and
	// namespaces from the manager's cache.
	Client client.Client
	// Workloads reads the workloads: the manager's cache, which serves
	// unstructured kinds as well.
	Workloads cache.Cache
	// Sources is the cache of Secrets and ConfigMaps without their data (NewCache).
	Sources  cache.Cache
	Kind     Kind
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	Config
}

var _ reconcile.Reconciler = (*Reconciler)(nil)

// SetupWithManager watches the workloads, and the Secrets, ConfigMaps,
// ExternalSecrets, ClusterInjectionPolicies and namespaces that decide what
// they follow.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollout-"+strings.ToLower(r.Kind.Name)).
		For(r.Kind.New(), builder.WithPredicates(predicate.Or(predicate.AnnotationChangedPredicate{}, predicate.GenerationChangedPredicate{}))).
		WatchesRawSource(source.Kind(r.Sources, &corev1.Secret{}, handler.TypedEnqueueRequestsFromMapFunc(typed[*corev1.Secret](r.optedIn)), contentChanged[*corev1.Secret]())).
		WatchesRawSource(source.Kind(r.Sources, &corev1.ConfigMap{}, handler.TypedEnqueueRequestsFromMapFunc(typed[*corev1.ConfigMap](r.optedIn)), contentChanged[*corev1.ConfigMap]())).
		Watches(&v1alpha1.ExternalSecret{}, handler.EnqueueRequestsFromMapFunc(r.optedIn)).
		// What a pod gets injected depends on the policies and on its
		// namespace's labels as well (pkg/injection).
		Watches(&v1alpha1.ClusterInjectionPolicy{}, handler.EnqueueRequestsFromMapFunc(r.allOptedIn), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.optedInOf), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Complete(r)
}

func typed[T client.Object](f func(context.Context, client.Object) []reconcile.Request) func(context.Context, T) []reconcile.Request {
	return func(ctx context.Context, o T) []reconcile.Request { return f(ctx, o) }
}

// contentChanged passes creations, deletions, and updates that change what
// the decisions read: the hash of the data and the annotations kept.
func contentChanged[T client.Object]() predicate.TypedPredicate[T] {
	return predicate.TypedFuncs[T]{
		UpdateFunc: func(e event.TypedUpdateEvent[T]) bool {
			return !maps.Equal(e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()) || e.ObjectOld.GetUID() != e.ObjectNew.GetUID()
		},
	}
}

// optedIn maps an object to the opted-in workloads of its namespace.
func (r *Reconciler) optedIn(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.list(ctx, client.InNamespace(obj.GetNamespace()))
}

// optedInOf maps a Namespace to its opted-in workloads.
func (r *Reconciler) optedInOf(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.list(ctx, client.InNamespace(obj.GetName()))
}

// allOptedIn maps an object to every opted-in workload.
func (r *Reconciler) allOptedIn(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.list(ctx)
}

func (r *Reconciler) list(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	list := r.Kind.NewList()
	if err := r.Workloads.List(ctx, list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		log.FromContext(ctx).Error(err, "listing workloads", "kind", r.Kind.Name)
		return nil
	}
	var out []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		w := o.(client.Object)
		tmpl, err := r.Kind.Template(w)
		if err != nil {
			return nil
		}
		if _, ok, _ := SelectionFor(w.GetAnnotations(), tmpl.Annotations); ok || w.GetAnnotations()[annotations.RolloutPending] != "" {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(w)})
		}
		return nil
	})
	return out
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := r.Kind.New()
	if err := r.Workloads.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	resumeAfter, resumed, err := r.resume(ctx, obj, now)
	if resumed || err != nil {
		return reconcile.Result{}, err
	}
	res, err := r.reconcile(ctx, obj, now)
	if resumeAfter > 0 && (res.RequeueAfter == 0 || resumeAfter < res.RequeueAfter) {
		res.RequeueAfter = resumeAfter
	}
	return res, err
}

func (r *Reconciler) reconcile(ctx context.Context, obj client.Object, now time.Time) (reconcile.Result, error) {
	req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)}
	ann := obj.GetAnnotations()
	tmpl, err := r.Kind.Template(obj)
	if err != nil {
		return reconcile.Result{}, reconcile.TerminalError(err)
	}
	sel, ok, errs := SelectionFor(ann, tmpl.Annotations)
	for _, err := range errs {
		log.FromContext(ctx).Info("ignoring a reload pattern", "kind", r.Kind.Name, "reason", err.Error())
	}
	pending := ParsePending(ann[annotations.RolloutPending])
	if !ok {
		if pending != nil { // opted out while a rollout was pending
			return reconcile.Result{}, r.patchAnnotations(ctx, obj, map[string]*string{annotations.RolloutPending: nil})
		}
		return reconcile.Result{}, nil
	}
	st, err := r.state(ctx, req.Namespace, sel, tmpl)
	if err != nil {
		return reconcile.Result{}, err
	}
	recorded := ParseRecord(ann[annotations.SecretVersions])
	d := Decide(recorded, Current(sel, req.Namespace, tmpl, st))

	if len(d.Changed) == 0 {
		// Nothing to roll: record new sources, forget a pending rollout
		// whose inputs went back to what was rolled.
		if maps.Equal(recorded, d.Record) && pending == nil {
			return reconcile.Result{}, nil
		}
		record := EncodeRecord(d.Record)
		return reconcile.Result{}, r.patchAnnotations(ctx, obj, map[string]*string{annotations.SecretVersions: &record, annotations.RolloutPending: nil})
	}

	changed := strings.Join(d.Changed, ", ")
	if ann[annotations.RolloutPaused] == "true" {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonRolloutPaused, "Rollout", "rollout held by %s: changed %s", annotations.RolloutPaused, changed)
		return reconcile.Result{}, nil
	}
	next, due := Track(pending, Hash(d.Record), now, r.Timing)
	if now.Before(due) {
		return reconcile.Result{RequeueAfter: due.Sub(now)}, r.savePending(ctx, obj, pending, next)
	}
	if wait, err := r.waitForPrevious(ctx, obj, ann, now, pending, next, changed); wait || err != nil {
		return reconcile.Result{RequeueAfter: progressPoll}, err
	}
	return r.roll(ctx, obj, tmpl, d, next, now)
}

// roll changes the workload's pod template, records what it rolled and
// forgets the pending state, in one patch that fails if the workload
// changed meanwhile: two leaders cannot both roll one change.
func (r *Reconciler) roll(ctx context.Context, obj client.Object, tmpl *corev1.PodTemplateSpec, d Decision, p Pending, now time.Time) (reconcile.Result, error) {
	base := obj.DeepCopyObject().(client.Object)
	ann := obj.GetAnnotations()
	hash := Hash(d.Record)
	setAnnotation(obj, annotations.SecretVersions, EncodeRecord(d.Record))
	setAnnotation(obj, annotations.LastRollout, now.UTC().Format(time.RFC3339Nano))
	removeAnnotation(obj, annotations.RolloutPending)

	var result reconcile.Result
	u, isUnstructured := obj.(*unstructured.Unstructured)
	switch {
	case isUnstructured && ann[annotations.ReloaderRolloutStrategy] == "restart":
		// Argo Rollouts restarts the pods without a new revision.
		if err := unstructured.SetNestedField(u.Object, now.UTC().Format(time.RFC3339), "spec", "restartAt"); err != nil {
			return result, err
		}
	default:
		strategy := ann[annotations.RolloutStrategy]
		if strategy == "" {
			strategy = r.Strategy
		}
		applyStrategy(tmpl, strategy, hash)
		if r.Kind.SetTemplate != nil {
			if err := r.Kind.SetTemplate(obj, tmpl); err != nil {
				return result, err
			}
		}
	}
	if dep, ok := obj.(*appsv1.Deployment); ok {
		// Reloader's pause period: the Deployment stays paused after the
		// change, so that what changes meanwhile rolls with it on resume.
		if period, err := time.ParseDuration(ann[annotations.ReloaderPausePeriod]); err == nil && period > 0 && !dep.Spec.Paused {
			dep.Spec.Paused = true
			setAnnotation(obj, annotations.ReloaderPausedAt, now.UTC().Format(time.RFC3339))
			result.RequeueAfter = period
		}
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return reconcile.Result{}, fmt.Errorf("rolling out %s %s: %w", r.Kind.Name, client.ObjectKeyFromObject(obj), err)
	}
	RolloutsTotal.WithLabelValues(r.Kind.Name, obj.GetNamespace(), Reason(d.Changed)).Inc()
	changed := strings.Join(d.Changed, ", ")
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonRollout, "Rollout", "rolling out: changed %s", changed)
	log.FromContext(ctx).Info("rolled out", "kind", r.Kind.Name, "changed", d.Changed, "pendingSince", p.Since.UTC().Format(time.RFC3339Nano))
	return result, nil
}

// applyStrategy changes a pod template so that its workload rolls.
func applyStrategy(tmpl *corev1.PodTemplateSpec, strategy, hash string) {
	if strategy == annotations.StrategyEnvVars && len(tmpl.Spec.Containers) > 0 {
		c := &tmpl.Spec.Containers[0]
		for i := range c.Env {
			if c.Env[i].Name == annotations.EnvSecretHash {
				c.Env[i].Value, c.Env[i].ValueFrom = hash, nil
				return
			}
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: annotations.EnvSecretHash, Value: hash})
		return
	}
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[annotations.SecretHash] = hash
}

// waitForPrevious reports whether a due rollout must wait because keyhook's
// previous rollout of the workload is still progressing.
func (r *Reconciler) waitForPrevious(ctx context.Context, obj client.Object, ann map[string]string, now time.Time, old *Pending, p Pending, changed string) (bool, error) {
	if r.ProgressTimeout <= 0 || r.Kind.Progressing == nil || pausedByKeyhook(obj) {
		return false, nil
	}
	last, err := time.Parse(time.RFC3339Nano, ann[annotations.LastRollout])
	if err != nil || !now.Before(last.Add(r.ProgressTimeout)) || !r.Kind.Progressing(obj) {
		return false, nil
	}
	if !p.Waiting {
		p.Waiting = true
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonRolloutWaiting, "Rollout", "waiting for the previous rollout to finish (at most until %s): changed %s",
			last.Add(r.ProgressTimeout).UTC().Format(time.RFC3339), changed)
	}
	return true, r.savePending(ctx, obj, old, p)
}

func (r *Reconciler) savePending(ctx context.Context, obj client.Object, old *Pending, p Pending) error {
	if old != nil && *old == p {
		return nil
	}
	v := p.Encode()
	return r.patchAnnotations(ctx, obj, map[string]*string{annotations.RolloutPending: &v})
}

// resume ends Reloader's pause period of a Deployment keyhook paused. Until
// then it returns how long is left; changes meanwhile change the paused
// Deployment's template and roll with it on resume.
func (r *Reconciler) resume(ctx context.Context, obj client.Object, now time.Time) (time.Duration, bool, error) {
	dep, ok := obj.(*appsv1.Deployment)
	if !ok || !pausedByKeyhook(obj) {
		return 0, false, nil
	}
	at, err := time.Parse(time.RFC3339, dep.Annotations[annotations.ReloaderPausedAt])
	period, perr := time.ParseDuration(dep.Annotations[annotations.ReloaderPausePeriod])
	if err == nil && perr == nil && now.Before(at.Add(period)) {
		return at.Add(period).Sub(now), false, nil
	}
	base := dep.DeepCopy()
	dep.Spec.Paused = false
	delete(dep.Annotations, annotations.ReloaderPausedAt)
	if err := r.Client.Patch(ctx, dep, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return 0, true, fmt.Errorf("resuming Deployment %s: %w", client.ObjectKeyFromObject(dep), err)
	}
	r.Recorder.Eventf(dep, nil, corev1.EventTypeNormal, ReasonResumed, "Rollout", "resumed after the pause period of %s", annotations.ReloaderPausePeriod)
	return 0, true, nil
}

func pausedByKeyhook(obj client.Object) bool {
	dep, ok := obj.(*appsv1.Deployment)
	return ok && dep.Spec.Paused && dep.Annotations[annotations.ReloaderPausedAt] != ""
}

// patchAnnotations sets (or, nil, removes) annotations of the workload.
func (r *Reconciler) patchAnnotations(ctx context.Context, obj client.Object, set map[string]*string) error {
	base := obj.DeepCopyObject().(client.Object)
	for k, v := range set {
		if v == nil {
			removeAnnotation(obj, k)
		} else {
			setAnnotation(obj, k, *v)
		}
	}
	err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s changed meanwhile, retrying: %w", client.ObjectKeyFromObject(obj), err)
	}
	return err
}

// state reads what the decisions need of a namespace: the Secrets and
// ConfigMaps the template references (all of them when a reload pattern
// may name others), the ExternalSecrets its pods get injected and the
// injection inputs. The Secrets and ConfigMaps are the caches' own, not
// copies: they are only read.
func (r *Reconciler) state(ctx context.Context, ns string, sel Selection, tmpl *corev1.PodTemplateSpec) (State, error) {
	st := State{Secrets: map[string]*corev1.Secret{}, ConfigMaps: map[string]*corev1.ConfigMap{}, ExternalSecrets: map[string]*v1alpha1.ExternalSecret{}}
	var err error
	if st.Injection, err = injection.Read(ctx, r.Client, ns); err != nil {
		return st, err
	}
	refs := ReferencesOf(&tmpl.Spec)
	secretNames := maps.Clone(refs.Secrets)
	// Only the injected ExternalSecrets are read (Current), each by name:
	// listing the namespace's, at every change of any Secret it holds,
	// made the initial sync of n ExternalSecrets allocate n² copies.
	for name := range InjectedExternalSecrets(ns, st.Injection, tmpl) {
		es := &v1alpha1.ExternalSecret{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, es); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return st, err
		}
		st.ExternalSecrets[name] = es
		secretNames[es.TargetName()] = true
	}
	if len(sel.Secrets.Reload) > 0 {
		list := &corev1.SecretList{}
		if err := r.Sources.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return st, err
		}
		for i := range list.Items {
			st.Secrets[list.Items[i].Name] = &list.Items[i]
		}
	} else {
		for name := range secretNames {
			s := &corev1.Secret{}
			if err := r.Sources.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err == nil {
				st.Secrets[name] = s
			} else if !apierrors.IsNotFound(err) {
				return st, err
			}
		}
	}
	if len(sel.ConfigMaps.Reload) > 0 {
		list := &corev1.ConfigMapList{}
		if err := r.Sources.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return st, err
		}
		for i := range list.Items {
			st.ConfigMaps[list.Items[i].Name] = &list.Items[i]
		}
	} else {
		for name := range refs.ConfigMaps {
			c := &corev1.ConfigMap{}
			if err := r.Sources.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, c); err == nil {
				st.ConfigMaps[name] = c
			} else if !apierrors.IsNotFound(err) {
				return st, err
			}
		}
	}
	return st, nil
}

func setAnnotation(obj client.Object, k, v string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	obj.SetAnnotations(a)
}

// removeAnnotation removes an annotation; GetAnnotations of an unstructured
// object returns a copy, so deleting from it would not do.
func removeAnnotation(obj client.Object, k string) {
	a := obj.GetAnnotations()
	if _, ok := a[k]; ok {
		delete(a, k)
		obj.SetAnnotations(a)
	}
}
