package rollout

import (
	"fmt"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
)

// argoDiscoveryInterval is how often keyhook looks for Argo Rollouts' CRD
// until it is served.
const argoDiscoveryInterval = 5 * time.Second

// Setup wires the rollouts of every kind into mgr, and of Argo Rollouts once
// their CRD is served: the one place cmd/webhook and the benchmarks share.
func Setup(mgr ctrl.Manager, restCfg *rest.Config, cfg Config) error {
	sources, err := NewCache(restCfg, mgr.GetScheme())
	if err != nil {
		return fmt.Errorf("creating the cache of Secrets and ConfigMaps: %w", err)
	}
	if err := mgr.Add(sources); err != nil {
		return err
	}
	newReconciler := func(kind Kind) *Reconciler {
		return &Reconciler{
			Client:    mgr.GetClient(),
			Workloads: mgr.GetCache(),
			Sources:   sources,
			Kind:      kind,
			Recorder:  mgr.GetEventRecorder("keyhook"),
			Clock:     clock.RealClock{},
			Config:    cfg,
		}
	}
	for _, kind := range Kinds {
		if err := newReconciler(kind).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("%s: %w", kind.Name, err)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return err
	}
	return mgr.Add(&ArgoWatcher{
		Manager: mgr, Discovery: dc, Reconciler: newReconciler(ArgoRollout),
		Interval: argoDiscoveryInterval, Log: ctrl.Log.WithName("rollout"),
	})
}
