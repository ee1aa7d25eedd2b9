// Package agentlogins joins each provider's agent login
// (pkg/store/<name>/<name>agent) to its SDK client (pkg/fetch/<name>): what
// the init-agent logs in with. It is pkg/providers without the sync's side,
// which needs the CRD types and so Kubernetes' libraries; the agent links
// neither (cmd/init-agent's TestProviderBuilds checks it).
//
// Like pkg/providers, each provider's join is a file of its own built only
// with its build tag (vault, aws, gcpsm; all, or none of them, builds every
// one), and a stub otherwise.
package agentlogins

import (
	"slices"

	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

// All are the providers this build joins to their SDK clients, in
// pkg/store.All's order.
func All() []agentdriver.Login {
	return slices.Concat(vault(), aws(), gcpsm())
}
