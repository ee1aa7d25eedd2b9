// Package agentdriver is the part of pkg/store/driver the init-agent uses:
// a provider's login from the agent's plan (plan → its SDK client's
// Config), with no CRD type and no Kubernetes library, so that an agent
// built for one provider links that provider's SDK and little else. Each
// provider implements it in pkg/store/<name>/<name>agent, which
// pkg/store/<name> embeds.
package agentdriver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

// Env is the init-agent's view of its pod.
type Env struct {
	// Root prefixes every path of the plan ("" in a pod).
	Root string
	// Getenv reads the agent's environment.
	Getenv func(string) string
}

// Token reads the projected token at path.
func (e Env) Token(path string) (string, error) {
	jwt, err := os.ReadFile(filepath.Join(e.Root, path))
	if err != nil {
		return "", fmt.Errorf("reading the pod's service-account token: %w", err)
	}
	return strings.TrimSpace(string(jwt)), nil
}

// Env reads an env var, trimmed.
func (e Env) Env(name string) string { return strings.TrimSpace(e.Getenv(name)) }

// Logins is a provider's login for the init-agent: from a store of the
// plan and the pod's environment to its SDK client's Config.
type Logins[C any] interface {
	// Name is the provider's name (plan.Store.Provider).
	Name() string
	// Planned reports whether a store of the agent's plan is this provider's.
	Planned(s plan.Store) bool
	// AgentConfig is the Config the init-agent logs in with for s.
	AgentConfig(s plan.Store, env Env) (C, error)
}

// Login is a provider's agent login joined to its SDK client.
type Login struct {
	// Name is the provider's name.
	Name string
	// Planned reports whether a store of the plan is this provider's.
	Planned func(s plan.Store) bool
	// Login logs in for the init-agent.
	Login func(ctx context.Context, s plan.Store, env Env) (fetch.Provider, error)
}

// Connect joins p to the constructor of its SDK client.
func Connect[C any, P fetch.Provider](p Logins[C], newProvider func(context.Context, C) (P, error)) Login {
	return Login{
		Name:    p.Name(),
		Planned: p.Planned,
		Login: func(ctx context.Context, s plan.Store, env Env) (fetch.Provider, error) {
			cfg, err := p.AgentConfig(s, env)
			if err != nil {
				return nil, err
			}
			return NewClient(ctx, cfg, newProvider)
		},
	}
}

// NewClient calls newProvider, never returning a typed nil in the interface.
func NewClient[C any, P fetch.Provider](ctx context.Context, cfg C, newProvider func(context.Context, C) (P, error)) (fetch.Provider, error) {
	client, err := newProvider(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return client, nil
}
