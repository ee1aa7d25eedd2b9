//go:build !(vault || all || !(aws || gcpsm))

package providers

import "github.com/keyhook/keyhook/pkg/store/driver"

// This build leaves the vault provider out (build tags): its SDK is not linked.
func vault() []driver.Connector { return nil }
