//go:build !(aws || all || !(vault || gcpsm))

package agentlogins

import "github.com/keyhook/keyhook/pkg/store/driver/agentdriver"

// This build leaves the aws provider out (build tags): its SDK is not linked.
func aws() []agentdriver.Login { return nil }
