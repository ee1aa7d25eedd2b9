//go:build aws || all || !(vault || gcpsm)

package providers

import (
	fetchaws "github.com/keyhook/keyhook/pkg/fetch/aws"
	storeaws "github.com/keyhook/keyhook/pkg/store/aws"
	"github.com/keyhook/keyhook/pkg/store/driver"
)

func aws() []driver.Connector {
	return []driver.Connector{driver.Connect(storeaws.Provider{}, fetchaws.New)}
}
