//go:build !(vault || all || !(aws || gcpsm))

package agentlogins

import "github.com/keyhook/keyhook/pkg/store/driver/agentdriver"

// This build leaves the vault provider out (build tags): its SDK is not linked.
func vault() []agentdriver.Login { return nil }
