// Package vaultagent is the part of pkg/store/vault the init-agent links:
// the login from the agent's plan (plan → Config), the Config itself, the
// defaults and the capabilities, with no CRD type and no Kubernetes library.
package vaultagent

import (
	"fmt"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

// Defaults of a Vault store's optional fields (pkg/store/vault applies
// them; the CRD's markers write the same, TestDefaultsMatchTheCRD).
const (
	// DefaultMount is the mount path of the KV engine (spec.provider.vault.path).
	DefaultMount = "secret"
	// DefaultKubernetesMountPath is where the kubernetes auth method is mounted.
	DefaultKubernetesMountPath = "kubernetes"
	// DefaultJWTPath is where the jwt auth method is mounted.
	DefaultJWTPath = "jwt"
	// DefaultAppRolePath is where the approle auth method is mounted.
	DefaultAppRolePath = "approle"
	// DefaultAudience is the audience of the service-account tokens
	// presented to Vault (kubernetes and jwt auth).
	DefaultAudience = "vault"
)

// Config says how to reach one KV mount and how to authenticate: what
// pkg/fetch/vault.New logs in with.
type Config struct {
	// Server is the Vault address, e.g. https://vault:8200.
	Server string
	// Mount is the mount path of the KV engine, e.g. "secret".
	Mount string
	// KVVersion is 1 or 2.
	KVVersion int
	// Namespace is the Vault Enterprise / OpenBao namespace; empty for none.
	Namespace string
	// CABundle is PEM; empty means the system roots.
	CABundle []byte

	// Exactly one of the auth methods below is used.

	// Token is a Vault token.
	Token string
	// Kubernetes logs in with a service-account JWT.
	Kubernetes *KubernetesAuth
	// JWT logs in through the jwt auth method.
	JWT *KubernetesAuth
	// AppRole logs in with a role id and secret id.
	AppRole *AppRoleAuth
}

// AppRoleAuth is Vault's approle auth method.
type AppRoleAuth struct {
	// MountPath of the auth method, e.g. "approle".
	MountPath string
	RoleID    string
	SecretID  string
}

// KubernetesAuth is Vault's kubernetes auth method.
type KubernetesAuth struct {
	// MountPath of the auth method, e.g. "kubernetes".
	MountPath string
	// Role to log in as.
	Role string
	// JWT is the service-account token presented to Vault.
	JWT string
}

// Agent is the Vault provider's login for the init-agent
// (agentdriver.Logins[Config]); pkg/store/vault's Provider embeds it.
type Agent struct{}

var _ agentdriver.Logins[Config] = Agent{}

// Name implements agentdriver.Logins.
func (Agent) Name() string { return plan.ProviderVault }

// Planned implements agentdriver.Logins.
func (Agent) Planned(s plan.Store) bool { return s.Vault != nil }

// Capabilities declares what a store of a KV engine of this version (1 or
// 2) can do: find by path and name on both, versions on KV v2 only.
func Capabilities(kvVersion int) fetch.Capabilities {
	return fetch.Capabilities{
		Find:         fetch.FindCapabilities{Path: true, Name: true},
		VersionProbe: kvVersion == 2,
	}
}

// AgentConfig implements agentdriver.Logins.
func (Agent) AgentConfig(s plan.Store, env agentdriver.Env) (Config, error) {
	v := s.Vault
	vc := Config{Server: v.Server, Mount: v.Path, KVVersion: v.KVVersion, Namespace: v.Namespace, CABundle: []byte(v.CABundle)}
	switch {
	case v.Kubernetes != nil:
		jwt, err := env.Token(v.Kubernetes.TokenPath)
		if err != nil {
			return Config{}, err
		}
		vc.Kubernetes = &KubernetesAuth{MountPath: v.Kubernetes.MountPath, Role: v.Kubernetes.Role, JWT: jwt}
	case v.JWT != nil:
		jwt, err := env.Token(v.JWT.TokenPath)
		if err != nil {
			return Config{}, err
		}
		vc.JWT = &KubernetesAuth{MountPath: v.JWT.MountPath, Role: v.JWT.Role, JWT: jwt}
	case v.AppRole != nil:
		id := env.Env(v.AppRole.SecretIDEnv)
		if id == "" {
			return Config{}, fmt.Errorf("environment variable %s (the store's AppRole secret id Secret) is empty: %w", v.AppRole.SecretIDEnv, fetch.ErrInvalid)
		}
		vc.AppRole = &AppRoleAuth{MountPath: v.AppRole.MountPath, RoleID: v.AppRole.RoleID, SecretID: id}
	case v.TokenEnv != "":
		vc.Token = env.Env(v.TokenEnv)
		if vc.Token == "" {
			return Config{}, fmt.Errorf("environment variable %s (the store's token Secret) is empty: %w", v.TokenEnv, fetch.ErrInvalid)
		}
	}
	return vc, nil
}
