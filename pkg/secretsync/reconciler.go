package secretsync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/template"
)

// Condition reasons of the Ready condition.
const (
	ReasonSynced      = "SecretSynced"
	ReasonSyncedError = "SecretSyncedError"
)

// DefaultRefreshInterval applies when an ExternalSecret sets none.
const DefaultRefreshInterval = time.Hour

var (
	syncCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_sync_calls_total",
		Help: "Syncs of ExternalSecrets, by result (success, error).",
	}, []string{"namespace", "name", "provider", "status"})
	lastSyncState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyhook_last_sync_state",
		Help: "State of the last sync of an ExternalSecret: 1 success, -1 error.",
	}, []string{"namespace", "name", "provider"})
	syncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyhook_sync_duration_seconds",
		Help:    "Duration of ExternalSecret syncs, provider calls included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"provider"})
	secretWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_secret_writes_total",
		Help: "Writes of Secrets by the sync, by operation (create, update).",
	}, []string{"operation"})
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyhook_externalsecret_status_writes_total",
		Help: "Writes of ExternalSecrets' status by the sync: only when a condition, the synced generation, the remote versions or the Secret's content changed.",
	})
	// The refresh times are metrics, not status fields: a refresh that
	// finds nothing changed writes nothing to the API server.
	lastRefresh = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyhook_externalsecret_last_refresh_timestamp_seconds",
		Help: "When the sync last read an ExternalSecret's remote data (Unix time), whatever the result.",
	}, []string{"namespace", "name"})
	lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyhook_externalsecret_last_sync_success_timestamp_seconds",
		Help: "When a sync of an ExternalSecret last succeeded (Unix time): its Secret held the remote data of that moment.",
	}, []string{"namespace", "name"})
)

// Metrics are the sync's collectors (the reconciler's and the read
// cache's), registered by the role that runs the sync
// (internal/app/controller), not on import.
func Metrics() []prometheus.Collector {
	return []prometheus.Collector{syncCalls, lastSyncState, syncDuration, secretWrites, statusWrites, lastRefresh, lastSuccess, ProviderCalls}
}

// forgetMetrics drops the series of a deleted ExternalSecret: a gauge of one
// that is gone (a failed last sync, say) would otherwise stay, and alert,
// until keyhook restarts.
func forgetMetrics(key types.NamespacedName) {
	l := prometheus.Labels{"namespace": key.Namespace, "name": key.Name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{syncCalls, lastSyncState, lastRefresh, lastSuccess} {
		v.DeletePartialMatch(l)
	}
}

// The sync resolves stores as admission does (pkg/resolve), so it reads what
// admission reads.
// +kubebuilder:rbac:groups=keyhook.dev,resources=externalsecrets;secretstores;clustersecretstores,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=keyhook.dev,resources=externalsecrets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler syncs one ExternalSecret into its Secret.
type Reconciler struct {
	// Client reads ExternalSecrets and managed Secrets from the cache and writes.
	Client client.Client
	// APIReader reads Secrets that are not (yet) keyhook's, for Merge.
	APIReader client.Reader
	Resolver  *resolve.Resolver
	Providers ProviderFactory
	// Reads lets ExternalSecrets that read the same remote secret share one
	// provider read; nil reads every time.
	Reads *ReadCache
	// Workers is how many ExternalSecrets are synced at once; 0 means 1.
	Workers  int
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Versions, when set, probes the remote versions of what synced
	// ExternalSecrets read and wakes their sync on a change, between
	// refreshes; the sync tells it what it read.
	Versions *VersionProber

	// reads remembers when this process last read each ExternalSecret
	// successfully: status.refreshTime is not bumped by refreshes that
	// change nothing, so it says when the next refresh is due only for
	// ExternalSecrets this process has not read yet.
	reads refreshTimes
}

// refreshTimes are the times of the last successful reads, by
// ExternalSecret; the UID tells a recreated ExternalSecret from the one
// before.
type refreshTimes struct {
	mu sync.Mutex
	m  map[types.NamespacedName]refreshTime
}

type refreshTime struct {
	uid types.UID
	at  time.Time
}

func (t *refreshTimes) get(es *v1alpha1.ExternalSecret) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rt, ok := t.m[client.ObjectKeyFromObject(es)]; ok && rt.uid == es.UID {
		return rt.at
	}
	return time.Time{}
}

func (t *refreshTimes) set(es *v1alpha1.ExternalSecret, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[types.NamespacedName]refreshTime{}
	}
	t.m[client.ObjectKeyFromObject(es)] = refreshTime{es.UID, at}
}

func (t *refreshTimes) forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

var _ reconcile.Reconciler = (*Reconciler)(nil)

// targetIndex indexes ExternalSecrets by the name of their target Secret.
const targetIndex = "keyhook.dev/target"

// SetupWithManager registers the reconciler: it watches ExternalSecrets
// (spec and annotation changes, not its own status writes) and the Secrets it
// owns. A change to a Secret, and the deletion or change of an
// ExternalSecret, also wake every other ExternalSecret that targets the same
// Secret: one refused because the Secret was another's may take it now.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.ExternalSecret{}, targetIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.ExternalSecret).TargetName()}
	}); err != nil {
		return fmt.Errorf("indexing ExternalSecrets by target: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("externalsecret").
		For(&v1alpha1.ExternalSecret{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.targeting(ctx, o.GetNamespace(), o.GetName(), "")
		})).
		Watches(&v1alpha1.ExternalSecret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.targeting(ctx, o.GetNamespace(), o.(*v1alpha1.ExternalSecret).TargetName(), o.GetName())
		}), builder.WithPredicates(predicate.Funcs{
			CreateFunc:  func(event.CreateEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
			UpdateFunc:  predicate.GenerationChangedPredicate{}.Update,
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)})
	if r.Versions != nil {
		b = b.WatchesRawSource(r.Versions.Source())
	}
	return b.Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	es := &v1alpha1.ExternalSecret{}
	if err := r.Client.Get(ctx, req.NamespacedName, es); err != nil {
		if apierrors.IsNotFound(err) {
			r.reads.forget(req.NamespacedName)
			forgetMetrics(req.NamespacedName)
			r.Versions.Forget(req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !es.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	logger := log.FromContext(ctx)
	policy := creationPolicy(es)

	var existing *corev1.Secret
	if policy != v1alpha1.CreationPolicyNone {
		var err error
		if existing, err = r.target(ctx, es, policy); err != nil {
			return reconcile.Result{}, err
		}
		// Before any provider read: a refused ExternalSecret reads nothing.
		if existing != nil {
			msg, err := r.claim(ctx, es, existing)
			if err != nil {
				return reconcile.Result{}, err
			}
			if msg != "" {
				return r.refuse(ctx, es, msg)
			}
		}
	}
	now := r.Clock.Now()
	// A remote version changed since the last sync: due now.
	vp := &versionPass{pending: r.Versions.Pending(req.NamespacedName)}
	if wait, due := r.due(es, existing, r.reads.get(es), now); !due && vp.pending.Seq == 0 {
		r.followSynced(ctx, es)
		return reconcile.Result{RequeueAfter: wait}, nil
	}

	start := now
	provider := "unknown"
	data, versions, err := r.read(ctx, es, policy, &provider, vp)
	if provider != "unknown" { // the store resolved: the provider was asked
		lastRefresh.WithLabelValues(es.Namespace, es.Name).Set(float64(now.UnixNano()) / 1e9)
	}
	if err != nil {
		var denied *resolve.DeniedError
		if !errors.As(err, &denied) && !isProviderError(err) {
			return reconcile.Result{}, err
		}
		syncCalls.WithLabelValues(es.Namespace, es.Name, provider, "error").Inc()
		lastSyncState.WithLabelValues(es.Namespace, es.Name, provider).Set(-1)
		// One line, whatever a provider's SDK wrote: kubectl shows it in a
		// column and in describe.
		msg := "could not sync: " + fetch.OneLine(err.Error())
		if errors.Is(err, fetch.ErrNotFound) && es.Spec.Target.DeletionPolicy == v1alpha1.DeletionPolicyDelete &&
			existing != nil && policy != v1alpha1.CreationPolicyMerge {
			// The remote data is gone and the user asked for the Secret to go too.
			if derr := r.Client.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(derr) != nil {
				return reconcile.Result{}, derr
			}
			msg += "; Secret deleted (deletionPolicy Delete)"
		}
		r.Recorder.Eventf(es, nil, corev1.EventTypeWarning, ReasonSyncedError, "Sync", msg)
		if serr := r.setReady(ctx, es, metav1.ConditionFalse, ReasonSyncedError, msg, nil); serr != nil {
			return reconcile.Result{}, serr
		}
		// The last good Secret stays as it is. Retry with the controller's
		// exponential backoff.
		return reconcile.Result{}, fmt.Errorf("ExternalSecret %s/%s: %s", es.Namespace, es.Name, msg)
	}
	wrote := false
	if policy != v1alpha1.CreationPolicyNone && !UpToDate(existing, es, data) {
		wrote = true
		if err := r.write(ctx, es, policy, existing, data); err != nil {
			var owned *ownedError
			if errors.As(err, &owned) {
				return r.refuse(ctx, es, owned.msg)
			}
			return reconcile.Result{}, err
		}
		logger.Info("secret written", "secret", TargetName(es), "keys", len(data))
	}
	syncDuration.WithLabelValues(provider).Observe(r.Clock.Since(start).Seconds())
	syncCalls.WithLabelValues(es.Namespace, es.Name, provider, "success").Inc()
	lastSyncState.WithLabelValues(es.Namespace, es.Name, provider).Set(1)
	msg := "Secret is synced"
	if policy == v1alpha1.CreationPolicyNone {
		msg = "remote versions are current (creationPolicy None: no Secret)"
	}
	if err := r.setReady(ctx, es, metav1.ConditionTrue, ReasonSynced, msg, &synced{at: metav1.NewTime(now), versions: versions, wrote: wrote}); err != nil {
		return reconcile.Result{}, err
	}
	r.reads.set(es, now)
	lastSuccess.WithLabelValues(es.Namespace, es.Name).Set(float64(now.UnixNano()) / 1e9)
	r.trackVersions(ctx, es, vp)
	if interval := refreshInterval(es); interval > 0 {
		return reconcile.Result{RequeueAfter: interval}, nil
	}
	return reconcile.Result{}, nil
}

// due decides whether es must be read now and, if not, how long until it is.
// It is due when its spec changed since the last sync, when the last sync
// failed, when its Secret is gone, or when its refresh interval has passed
// since it was last read: by this process at lastRead (zero if not yet), or
// at status.refreshTime, when a sync last changed something.
func (r *Reconciler) due(es *v1alpha1.ExternalSecret, existing *corev1.Secret, lastRead, now time.Time) (time.Duration, bool) {
	ready := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case es.Status.RefreshTime == nil, ready == nil, ready.Status != metav1.ConditionTrue,
		es.Status.SyncedResourceVersion != strconv.FormatInt(es.Generation, 10):
		return 0, true
	case existing == nil && creationPolicy(es) != v1alpha1.CreationPolicyNone:
		return 0, true
	case es.Annotations[annotations.ForceSync] != es.Status.ForceSync:
		return 0, true
	}
	interval := refreshInterval(es)
	if interval == 0 {
		return 0, false // sync once
	}
	last := es.Status.RefreshTime.Time
	if lastRead.After(last) {
		last = lastRead
	}
	next := last.Add(interval)
	if !now.Before(next) {
		return 0, true
	}
	return next.Sub(now), false
}

func refreshInterval(es *v1alpha1.ExternalSecret) time.Duration {
	if es.Spec.RefreshInterval == nil {
		return DefaultRefreshInterval
	}
	return es.Spec.RefreshInterval.Duration
}

// target returns the current Secret, nil when there is none.
func (r *Reconciler) target(ctx context.Context, es *v1alpha1.ExternalSecret, policy v1alpha1.CreationPolicy) (*corev1.Secret, error) {
	key := client.ObjectKey{Namespace: es.Namespace, Name: TargetName(es)}
	s := &corev1.Secret{}
	// The cache holds only keyhook's Secrets; a Secret to merge into is
	// someone else's until keyhook first writes to it.
	reader := client.Reader(r.Client)
	if policy == v1alpha1.CreationPolicyMerge {
		reader = r.APIReader
	}
	if err := reader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return s, nil
}

// read returns the data of es, or for creationPolicy None only the remote
// versions: an ExternalSecret used by injected pods alone is tracked without
// reading its values wherever the provider allows. Where it does not (Vault
// KV v1), the version is a digest of the data.
// It sets *provider to the name of the store's provider, for metrics.
// vp carries what the version probes need to and from the sync.
func (r *Reconciler) read(ctx context.Context, es *v1alpha1.ExternalSecret, policy v1alpha1.CreationPolicy, provider *string, vp *versionPass) (map[string][]byte, map[string]string, error) {
	src, err := r.Resolver.ForExternalSecret(ctx, es)
	if err != nil {
		return nil, nil, err
	}
	*provider = ProviderName(src.Store)
	var (
		p  fetch.Provider
		cp *cachedProvider
	)
	if r.Reads != nil {
		maxAge := refreshInterval(es)
		switch {
		case es.Annotations[annotations.ForceSync] != es.Status.ForceSync:
			maxAge = 0 // a forced sync reads afresh
		case maxAge == 0:
			maxAge = r.Reads.TTL // synced once: any recent read will do
		}
		if cp, err = r.Reads.provider(src, r.Providers, maxAge); err == nil {
			// Woken by a changed version: nothing shared from before it.
			cp.since = vp.pending.Since
			p = cp
		}
	} else {
		p, err = r.Providers(ctx, src)
	}
	if err != nil {
		return nil, nil, &providerError{fmt.Errorf("%s %s: %w", src.StoreKind, src.StoreName, err)}
	}
	// Closing releases connections and revokes a login of the sync's own;
	// a failure to is logged, not the sync's.
	defer closeLogged(log.FromContext(ctx), p)
	r.observeVersions(ctx, es, src, p, cp, vp)
	if policy == v1alpha1.CreationPolicyNone {
		versions, err := fetch.Versions(ctx, p, resolve.PlanData(es.Spec.Data), resolve.PlanDataFrom(es.Spec.DataFrom))
		if err == nil {
			return nil, versions, nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return nil, nil, &providerError{err}
		}
	}
	data, err := resolveData(ctx, p, es)
	if err != nil {
		return nil, nil, &providerError{err}
	}
	if policy != v1alpha1.CreationPolicyNone {
		if data, err = template.Render(es.Spec.Target.Template, data); err != nil {
			return nil, nil, &providerError{err}
		}
	}
	if policy == v1alpha1.CreationPolicyNone {
		// On the ExternalSecret's status, readable by whoever may read it:
		// keyed with its UID, as DataHash would let a short value be guessed.
		return nil, map[string]string{ContentVersionKey: "hmac-sha256:" + KeyedDataHash(string(es.UID), data)}, nil
	}
	return data, nil, nil
}

// ContentVersionKey is the key of status.versions that holds a digest of the
// data where the provider has no versions.
const ContentVersionKey = "content"

// providerError marks errors that come from the provider or its auth, as
// opposed to the API server.
type providerError struct{ err error }

func (e *providerError) Error() string { return e.err.Error() }
func (e *providerError) Unwrap() error { return e.err }

func isProviderError(err error) bool {
	var p *providerError
	return errors.As(err, &p)
}

func (r *Reconciler) write(ctx context.Context, es *v1alpha1.ExternalSecret, policy v1alpha1.CreationPolicy, existing *corev1.Secret, data map[string][]byte) error {
	switch {
	case policy == v1alpha1.CreationPolicyMerge && existing == nil:
		return r.failTarget(ctx, es, fmt.Sprintf("creationPolicy Merge needs an existing Secret %q to merge into; create it or use creationPolicy Owner", TargetName(es)))
	case policy == v1alpha1.CreationPolicyMerge:
		out := Merge(existing, data)
		secretWrites.WithLabelValues("update").Inc()
		return r.Client.Update(ctx, out)
	case existing == nil:
		desired := Desired(es, data)
		err := r.Client.Create(ctx, desired)
		if apierrors.IsAlreadyExists(err) {
			return r.conflict(ctx, es)
		}
		if err == nil {
			secretWrites.WithLabelValues("create").Inc()
		}
		return err
	default:
		secretWrites.WithLabelValues("update").Inc()
		return r.Client.Update(ctx, updated(existing, Desired(es, data)))
	}
}

// updated is the Secret existing (from the cache) made desired: keyhook's
// data, type, labels, annotations and owner; the labels and annotations of
// others stay, what only the cache adds does not go to the API server.
func updated(existing, desired *corev1.Secret) *corev1.Secret {
	out := existing.DeepCopy()
	out.Labels, out.Annotations, out.Data, out.Type = mergeMaps(out.Labels, desired.Labels), mergeMaps(out.Annotations, desired.Annotations), desired.Data, desired.Type
	if len(desired.OwnerReferences) > 0 {
		out.OwnerReferences = desired.OwnerReferences
	}
	return withoutCacheKeys(out)
}

func (r *Reconciler) failTarget(ctx context.Context, es *v1alpha1.ExternalSecret, msg string) error {
	r.Recorder.Eventf(es, nil, corev1.EventTypeWarning, ReasonSyncedError, "Sync", msg)
	if err := r.setReady(ctx, es, metav1.ConditionFalse, ReasonSyncedError, msg, nil); err != nil {
		return err
	}
	return errors.New(msg)
}

func mergeMaps(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// synced is what a successful sync records in the status.
type synced struct {
	at       metav1.Time
	versions map[string]string
	// wrote: the sync wrote the Secret.
	wrote bool
}

// setReady writes the Ready condition; ok, when set, records a successful
// sync of the current generation. It writes nothing when the status would
// not change (see nextStatus).
func (r *Reconciler) setReady(ctx context.Context, es *v1alpha1.ExternalSecret, status metav1.ConditionStatus, reason, msg string, ok *synced) error {
	before := es.DeepCopy()
	if !nextStatus(es, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: fetch.OneLine(msg), ObservedGeneration: es.Generation,
	}, ok) {
		return nil
	}
	statusWrites.Inc()
	return r.Client.Status().Patch(ctx, es, client.MergeFrom(before))
}

// nextStatus sets es's status to what a sync that ends with ready (and, when
// ok is set, succeeded) records, and reports whether that differs from what
// es had: only a change of the condition, the synced generation, the remote
// versions or the forced-sync mark, or a write of the Secret, makes a status
// write. refreshTime is when such a sync happened; a refresh that changes
// nothing leaves it as it is (its time is a metric), so that it writes
// nothing to the API server.
func nextStatus(es *v1alpha1.ExternalSecret, ready metav1.Condition, ok *synced) bool {
	before := es.Status.DeepCopy()
	meta.SetStatusCondition(&es.Status.Conditions, ready)
	if ok != nil {
		es.Status.SyncedResourceVersion = strconv.FormatInt(es.Generation, 10)
		es.Status.Versions = ok.versions
		es.Status.ForceSync = es.Annotations[annotations.ForceSync]
	}
	changed := !equality.Semantic.DeepEqual(before, &es.Status)
	if ok != nil && (changed || ok.wrote || es.Status.RefreshTime == nil) {
		es.Status.RefreshTime = &ok.at
		changed = true
	}
	return changed
}

// targeting lists the ExternalSecrets of ns whose target is the Secret
// name, but except.
func (r *Reconciler) targeting(ctx context.Context, ns, name, except string) []reconcile.Request {
	list := &v1alpha1.ExternalSecretList{}
	if err := r.Client.List(ctx, list, client.InNamespace(ns), client.MatchingFields{targetIndex: name}); err != nil {
		log.FromContext(ctx).Error(err, "listing the ExternalSecrets that target a Secret", "secret", name)
		return nil
	}
	var out []reconcile.Request
	for _, es := range list.Items {
		if es.Name != except {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&es)})
		}
	}
	return out
}

// claim says why es may not write its target Secret existing, "" when it
// may (see ClaimTarget). The owner is read from the cache.
func (r *Reconciler) claim(ctx context.Context, es *v1alpha1.ExternalSecret, existing metav1.Object) (string, error) {
	var owner *v1alpha1.ExternalSecret
	if name, _ := SecretOwner(existing); name != "" && name != es.Name {
		owner = &v1alpha1.ExternalSecret{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: es.Namespace, Name: name}, owner); err != nil {
			if !apierrors.IsNotFound(err) {
				return "", err
			}
			owner = nil
		}
	}
	return ClaimTarget(es, existing, owner), nil
}

// ownedError is a write refused because the Secret is someone else's.
type ownedError struct{ msg string }

func (e *ownedError) Error() string { return e.msg }

// conflict explains a create that found the target Secret already there: a
// Secret keyhook did not make (not in the cache, which holds keyhook's
// own), or one another ExternalSecret created a moment ago. Only its
// metadata is read, never its data.
func (r *Reconciler) conflict(ctx context.Context, es *v1alpha1.ExternalSecret) error {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: es.Namespace, Name: TargetName(es)}, m); err != nil {
		return fmt.Errorf("Secret %q exists but could not be read: %w", TargetName(es), err)
	}
	msg, err := r.claim(ctx, es, m)
	if err != nil {
		return err
	}
	if msg == "" {
		// keyhook's own and free to take: the cache has not seen it yet.
		return fmt.Errorf("Secret %q was created meanwhile; retrying", TargetName(es))
	}
	return &ownedError{msg}
}

// refuse records that es may not write its target: Ready=False
// SecretOwnedByOther with msg, and a warning event when that is news. Nothing
// is written, so nothing rolls out. The Secret's changes, the deletion of
// the ExternalSecrets that target it and es's refresh interval bring es back.
func (r *Reconciler) refuse(ctx context.Context, es *v1alpha1.ExternalSecret, msg string) (reconcile.Result, error) {
	provider := "unknown"
	if src, err := r.Resolver.ForExternalSecret(ctx, es); err == nil {
		provider = ProviderName(src.Store)
	}
	syncCalls.WithLabelValues(es.Namespace, es.Name, provider, "error").Inc()
	lastSyncState.WithLabelValues(es.Namespace, es.Name, provider).Set(-1)
	if c := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse ||
		c.Reason != ReasonOwnedByOther || c.Message != msg || c.ObservedGeneration != es.Generation {
		log.FromContext(ctx).Info("target Secret belongs to another owner; not written", "secret", TargetName(es))
		r.Recorder.Eventf(es, nil, corev1.EventTypeWarning, ReasonOwnedByOther, "Sync", msg)
		if err := r.setReady(ctx, es, metav1.ConditionFalse, ReasonOwnedByOther, msg, nil); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: refreshInterval(es)}, nil
}
