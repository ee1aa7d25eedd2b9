//go:build aws || all || !(vault || gcpsm)

package agentlogins

import (
	fetchaws "github.com/keyhook/keyhook/pkg/fetch/aws"
	"github.com/keyhook/keyhook/pkg/store/aws/awsagent"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

func aws() []agentdriver.Login {
	return []agentdriver.Login{agentdriver.Connect(awsagent.Agent{}, fetchaws.New)}
}
