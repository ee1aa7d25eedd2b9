//go:build gcpsm || all || !(vault || aws)

package agentlogins

import (
	fetchgcpsm "github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
	"github.com/keyhook/keyhook/pkg/store/gcpsm/gcpsmagent"
)

func gcpsm() []agentdriver.Login {
	return []agentdriver.Login{agentdriver.Connect(gcpsmagent.Agent{}, fetchgcpsm.New)}
}
