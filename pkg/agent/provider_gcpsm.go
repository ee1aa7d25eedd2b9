//go:build gcpsm || all || !(vault || aws)

package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/plan"
)

const hasGCPSM = true

// newGCPSM reads Google Secret Manager with the service-account key from the
// init container's env (a secretKeyRef of the pod's namespace), or else with
// application default credentials: on GKE, the pod's workload identity.
func newGCPSM(ctx context.Context, g *plan.GCPSM, cfg Config) (fetch.Provider, error) {
	gc := gcpsm.Config{ProjectID: g.ProjectID, Endpoint: g.Endpoint, CABundle: []byte(g.CABundle)}
	if g.CredentialsEnv != "" {
		key := strings.TrimSpace(cfg.Getenv(g.CredentialsEnv))
		if key == "" {
			return nil, fmt.Errorf("environment variable %s (the store's service-account key Secret) is empty: %w", g.CredentialsEnv, fetch.ErrInvalid)
		}
		gc.CredentialsJSON = []byte(key)
	}
	return gcpsm.New(ctx, gc)
}
