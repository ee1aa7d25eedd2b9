// Package providers joins each provider of pkg/store to its SDK client
// (pkg/fetch/<name>); the controller's sync and store health, and the
// init-agent, log in through it. The admission webhook never imports it.
//
// The init-agent is built per provider with build tags (vault, aws, gcpsm;
// all, or none of them, builds every one): each provider's join is a file
// of its own built only with its tags, and a stub otherwise, so that a
// one-provider agent links no other provider's SDK. Adding a provider adds
// such a pair and its call in Connectors.
package providers

import (
	"slices"

	"github.com/keyhook/keyhook/pkg/store/driver"
)

// Connectors are the providers this build joins to their SDK clients, in
// pkg/store.All's order.
func Connectors() []driver.Connector {
	return slices.Concat(vault(), aws(), gcpsm())
}
