//go:build !(gcpsm || all || !(vault || aws))

package agentlogins

import "github.com/keyhook/keyhook/pkg/store/driver/agentdriver"

// This build leaves the gcpsm provider out (build tags): its SDK is not linked.
func gcpsm() []agentdriver.Login { return nil }
