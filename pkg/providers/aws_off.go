//go:build !(aws || all || !(vault || gcpsm))

package providers

import "github.com/keyhook/keyhook/pkg/store/driver"

// This build leaves the aws provider out (build tags): its SDK is not linked.
func aws() []driver.Connector { return nil }
