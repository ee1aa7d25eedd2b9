// Package storehealth reports whether each SecretStore and
// ClusterSecretStore works: a Ready condition, a printer column and the
// keyhook_store_ready metric, from a probe that logs in as the sync would
// and checks a capability, reading no secret value. Stores are probed when
// they are created or changed, and again every probe interval.
package storehealth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/providers"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/secretsync"
	"github.com/keyhook/keyhook/pkg/store"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/tenancy"
)

// DefaultInterval is how often a store is probed again (--store-probe-interval).
const DefaultInterval = 5 * time.Minute

// probeTimeout bounds one probe: a server that does not answer is
// unreachable, and the worker moves on.
const probeTimeout = 15 * time.Second

// Prober is a provider that can check, reading no secret value, that its
// login works and that it may use what its store names. The providers of
// pkg/fetch/vault, pkg/fetch/aws and pkg/fetch/gcpsm implement it.
type Prober interface {
	Probe(ctx context.Context) error
}

// Config wires the store health controllers.
type Config struct {
	// Rules are the tenancy rules a namespace's sync is held to.
	Rules tenancy.Rules
	// Providers logs in exactly as the sync does.
	Providers secretsync.ProviderFactory
	// Interval between probes of one store; 0 means DefaultInterval.
	Interval time.Duration
	// Registerer takes the keyhook_store_ready metric.
	Registerer prometheus.Registerer
}

// Setup registers the metric and a controller for each store kind with mgr.
func Setup(mgr ctrl.Manager, cfg Config) error {
	m := NewMetrics()
	if err := cfg.Registerer.Register(m.ready); err != nil {
		return fmt.Errorf("registering keyhook_store_ready: %w", err)
	}
	for _, kind := range []v1alpha1.SecretStoreKind{v1alpha1.SecretStoreKindNamespaced, v1alpha1.SecretStoreKindCluster} {
		r := &Reconciler{Client: mgr.GetClient(), Rules: cfg.Rules, Providers: cfg.Providers, Kind: kind, Interval: cfg.Interval, Metrics: m}
		if err := r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up %s health: %w", kind, err)
		}
	}
	return nil
}

// Metrics holds keyhook_store_ready.
type Metrics struct {
	ready *prometheus.GaugeVec
}

// NewMetrics returns unregistered metrics; the role that owns them
// registers them (Setup does).
func NewMetrics() *Metrics {
	return &Metrics{ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyhook_store_ready",
		Help: "Whether the last probe of a SecretStore (namespace set) or ClusterSecretStore passed: 1 ready, 0 not.",
	}, []string{"kind", "namespace", "name"})}
}

// +kubebuilder:rbac:groups=keyhook.dev,resources=secretstores;clustersecretstores,verbs=get;list;watch
// +kubebuilder:rbac:groups=keyhook.dev,resources=secretstores/status;clustersecretstores/status,verbs=get;update;patch

// Reconciler probes the stores of one kind.
type Reconciler struct {
	Client    client.Client
	Rules     tenancy.Rules
	Providers secretsync.ProviderFactory
	Kind      v1alpha1.SecretStoreKind
	Interval  time.Duration
	Metrics   *Metrics
}

var _ reconcile.Reconciler = (*Reconciler)(nil)

func (r *Reconciler) newObject() client.Object {
	if r.Kind == v1alpha1.SecretStoreKindCluster {
		return &v1alpha1.ClusterSecretStore{}
	}
	return &v1alpha1.SecretStore{}
}

// SetupWithManager probes a store when it is created or its spec changes
// (not on its own status writes), and every Interval after.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	name := "secretstore-health"
	if r.Kind == v1alpha1.SecretStoreKindCluster {
		name = "clustersecretstore-health"
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(r.newObject(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := r.newObject()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.Metrics.ready.DeleteLabelValues(string(r.Kind), req.Namespace, req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return reconcile.Result{}, nil
	}
	spec, status := specStatus(obj)
	cond := r.probe(ctx, obj.GetNamespace(), obj.GetName(), spec)
	cond.ObservedGeneration = obj.GetGeneration()
	value := 0.0
	if cond.Status == metav1.ConditionTrue {
		value = 1
	}
	r.Metrics.ready.WithLabelValues(string(r.Kind), obj.GetNamespace(), obj.GetName()).Set(value)

	if old := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionReady); old == nil || old.Status != cond.Status ||
		old.Reason != cond.Reason || old.Message != cond.Message || old.ObservedGeneration != cond.ObservedGeneration {
		log.FromContext(ctx).Info("store probed", "ready", cond.Status, "reason", cond.Reason)
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		meta.SetStatusCondition(&status.Conditions, cond)
		if err := r.Client.Status().Patch(ctx, obj, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("writing the status of %s %s: %w", r.Kind, req.NamespacedName, err)
		}
	}
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	return reconcile.Result{RequeueAfter: interval}, nil
}

func specStatus(obj client.Object) (*v1alpha1.SecretStoreSpec, *v1alpha1.SecretStoreStatus) {
	switch s := obj.(type) {
	case *v1alpha1.ClusterSecretStore:
		return &s.Spec, &s.Status
	case *v1alpha1.SecretStore:
		return &s.Spec, &s.Status
	}
	panic(fmt.Sprintf("storehealth: unexpected object %T", obj))
}

// probe checks one store and returns its Ready condition (without
// ObservedGeneration). It logs in with the identity the sync would use for
// it: a namespaced SecretStore as its own namespace (its service account,
// its Secrets), under the tenancy rules of that namespace, never as
// keyhook's own broader identity; a ClusterSecretStore with the
// credentials it names. A ClusterSecretStore whose login depends on the
// namespace using it is checked as far as that allows: whether its server
// answers.
func (r *Reconciler) probe(ctx context.Context, ns, name string, spec *v1alpha1.SecretStoreSpec) metav1.Condition {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	fail := func(stage Stage, err error) metav1.Condition {
		reason, msg := Explain(stage, err)
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
	}
	if err := checkCABundle(spec); err != nil {
		return fail(StageConfig, err)
	}
	if r.Kind == v1alpha1.SecretStoreKindCluster && PerNamespaceLogin(spec) {
		if c := connector(spec); c != nil && c.Reach != nil {
			if err := c.Reach(ctx, spec); err != nil {
				return fail(StageLogin, err)
			}
			return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonReachable,
				Message: "the server answers; logins use a service account or Secret of each namespace that uses the store, so each ExternalSecret's Ready condition reports its own"}
		}
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionUnknown, Reason: ReasonNotProbed,
			Message: "not probed: logins use a service account or Secret of each namespace that uses the store, so each ExternalSecret's Ready condition reports its own"}
	}
	if p := store.For(spec); p != nil {
		if why := p.AgentOnly(r.Kind, spec); why != "" {
			return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionUnknown, Reason: ReasonNotProbed, Message: "not probed: " + why}
		}
	}

	src, err := r.source(ctx, ns, name, spec)
	if err != nil {
		return fail(StageConfig, err)
	}
	p, err := r.Providers(ctx, src)
	if err != nil {
		return fail(StageLogin, err)
	}
	// Close ends the probe's session: a Vault token from a login is revoked
	// then, not left to live out its TTL.
	defer func() {
		if c, ok := p.(io.Closer); ok {
			if err := c.Close(); err != nil {
				log.FromContext(ctx).Info("closing the probe's provider", "error", err.Error())
			}
		}
	}()
	if pr, ok := p.(Prober); ok {
		if err := pr.Probe(ctx); err != nil {
			return fail(StageProbe, err)
		}
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonValid,
		Message: "logged in and passed the capability check (no secret read)"}
}

// source is what the sync resolves for an ExternalSecret of the store's
// namespace using it. For a namespaced SecretStore, the namespace's tenancy
// rules (its permitted roles) apply first, as they do to the sync, so a
// role the namespace may not use is never assumed.
func (r *Reconciler) source(ctx context.Context, ns, name string, spec *v1alpha1.SecretStoreSpec) (*resolve.Source, error) {
	src := &resolve.Source{
		ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		StoreKind:      r.Kind, StoreName: name, Store: spec,
	}
	if r.Kind == v1alpha1.SecretStoreKindCluster {
		return src, nil
	}
	namespace := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return nil, fmt.Errorf("getting Namespace %s: %w", ns, err)
	}
	roles := tenancy.StoreRoles(spec)
	for _, field := range slices.Sorted(maps.Keys(roles)) {
		if err := r.Rules.CheckRole(roles[field], fmt.Sprintf("SecretStore %q %s", name, field), namespace); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// PerNamespaceLogin reports whether a ClusterSecretStore's login depends
// on the namespace that uses it: a service-account token of that namespace,
// or a credentials Secret that names no namespace of its own.
func PerNamespaceLogin(spec *v1alpha1.SecretStoreSpec) bool {
	p := store.For(spec)
	return p != nil && p.PerNamespaceLogin(spec)
}

// connector is the SDK client join of spec's provider; nil when this build
// has none.
func connector(spec *v1alpha1.SecretStoreSpec) *driver.Connector {
	for _, c := range providers.Connectors() {
		if c.Configured(spec) {
			return &c
		}
	}
	return nil
}

// checkCABundle rejects a caBundle that holds no certificate before any
// connection is tried, so that it is not mistaken for a server problem.
func checkCABundle(spec *v1alpha1.SecretStoreSpec) error {
	var bundle []byte
	if p := store.For(spec); p != nil {
		bundle = p.CABundle(spec)
	}
	if len(bundle) > 0 && !x509.NewCertPool().AppendCertsFromPEM(bundle) {
		return errors.New("spec.provider caBundle holds no PEM certificate")
	}
	return nil
}
