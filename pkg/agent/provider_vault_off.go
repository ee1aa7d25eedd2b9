//go:build !(vault || all || !(aws || gcpsm))

package agent

import (
	"context"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

// This build leaves the vault provider out (build tags): its SDK is not linked.
const hasVault = false

func newVault(context.Context, *plan.Vault, Config) (fetch.Provider, error) {
	return nil, notBuilt(plan.ProviderVault)
}
