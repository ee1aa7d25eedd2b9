package rollout

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestMetricsNotRegisteredOnImport: importing the package registers
// nothing; the role that runs the rollouts registers Metrics() itself
// (internal/app/controller), once.
func TestMetricsNotRegisteredOnImport(t *testing.T) {
	for _, c := range Metrics() {
		if err := metrics.Registry.Register(c); err != nil {
			t.Errorf("a rollout collector is registered already on import: %v", err)
			continue
		}
		metrics.Registry.Unregister(c)
	}
}
