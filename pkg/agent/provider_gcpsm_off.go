//go:build !(gcpsm || all || !(vault || aws))

package agent

import (
	"context"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

// This build leaves the gcpsm provider out (build tags): its SDK is not linked.
const hasGCPSM = false

func newGCPSM(context.Context, *plan.GCPSM, Config) (fetch.Provider, error) {
	return nil, notBuilt(plan.ProviderGCPSM)
}
