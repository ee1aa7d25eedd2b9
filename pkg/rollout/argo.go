package rollout

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
)

// ArgoWatcher starts the rollouts of Argo Rollouts once the API server
// serves their CRD, which may be installed after keyhook starts: it asks
// discovery every Interval until it does.
type ArgoWatcher struct {
	Manager   ctrl.Manager
	Discovery discovery.DiscoveryInterface
	// Reconciler is the Rollout reconciler to set up; its Kind is ArgoRollout.
	Reconciler *Reconciler
	Interval   time.Duration
	Log        logr.Logger
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica sets the controller up; the manager runs it on the leader only.
func (w *ArgoWatcher) NeedLeaderElection() bool { return false }

// Start implements manager.Runnable.
func (w *ArgoWatcher) Start(ctx context.Context) error {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		if w.served() {
			if err := w.Reconciler.SetupWithManager(w.Manager); err != nil {
				return err
			}
			w.Log.Info("Argo Rollouts' CRD is served: rolling Rollouts")
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *ArgoWatcher) served() bool {
	list, err := w.Discovery.ServerResourcesForGroupVersion(ArgoRolloutGVK.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Kind == ArgoRolloutGVK.Kind {
			return true
		}
	}
	return false
}
