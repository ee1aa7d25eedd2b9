//go:build vault || all || !(aws || gcpsm)

package providers

import (
	"context"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	fetchvault "github.com/keyhook/keyhook/pkg/fetch/vault"
	"github.com/keyhook/keyhook/pkg/store/driver"
	storevault "github.com/keyhook/keyhook/pkg/store/vault"
)

func vault() []driver.Connector {
	c := driver.Connect(storevault.Provider{}, fetchvault.New)
	c.Reach = func(ctx context.Context, spec *v1alpha1.SecretStoreSpec) error {
		return fetchvault.Reach(ctx, storevault.ServerConfig(spec))
	}
	return []driver.Connector{c}
}
