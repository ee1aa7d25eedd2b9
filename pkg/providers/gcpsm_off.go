//go:build !(gcpsm || all || !(vault || aws))

package providers

import "github.com/keyhook/keyhook/pkg/store/driver"

// This build leaves the gcpsm provider out (build tags): its SDK is not linked.
func gcpsm() []driver.Connector { return nil }
