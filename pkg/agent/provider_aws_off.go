//go:build !(aws || all || !(vault || gcpsm))

package agent

import (
	"context"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

// This build leaves the aws provider out (build tags): its SDK is not linked.
const hasAWS = false

func newAWS(context.Context, *plan.AWS, Config) (fetch.Provider, error) {
	return nil, notBuilt(plan.ProviderAWS)
}
