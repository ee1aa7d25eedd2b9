//go:build gcpsm || all || !(vault || aws)

package providers

import (
	fetchgcpsm "github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/store/driver"
	storegcpsm "github.com/keyhook/keyhook/pkg/store/gcpsm"
)

func gcpsm() []driver.Connector {
	return []driver.Connector{driver.Connect(storegcpsm.Provider{}, fetchgcpsm.New)}
}
