//go:build vault || all || !(aws || gcpsm)

package agentlogins

import (
	fetchvault "github.com/keyhook/keyhook/pkg/fetch/vault"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
	"github.com/keyhook/keyhook/pkg/store/vault/vaultagent"
)

func vault() []agentdriver.Login {
	return []agentdriver.Login{agentdriver.Connect(vaultagent.Agent{}, fetchvault.New)}
}
