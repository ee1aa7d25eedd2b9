// Package gcpsmagent is the part of pkg/store/gcpsm the init-agent links:
// the login from the agent's plan (plan → Config), the Config itself and
// the capabilities, with no CRD type and no Kubernetes library.
package gcpsmagent

import (
	"fmt"

	"golang.org/x/oauth2"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

// Config says which project to read, where, and as whom: what
// pkg/fetch/gcpsm.New logs in with.
type Config struct {
	// ProjectID is the project that secret IDs without a
	// "projects/<project>/" prefix are read from: a project ID
	// (my-project) or number (123456789012). Required.
	ProjectID string
	// Endpoint is the host:port of Secret Manager (a Private Service
	// Connect endpoint, tests). TLS is always used. Empty means
	// pkg/fetch/gcpsm.DefaultEndpoint.
	Endpoint string
	// CABundle is PEM, trusted for Endpoint instead of the system roots,
	// and for the token endpoint in addition to them. Empty means the
	// system roots.
	CABundle []byte
	// CredentialsJSON is a service-account key file (JSON, type
	// "service_account"). Access tokens are requested with it from its
	// token_uri (Google's token endpoint, normally). Empty means
	// application default credentials: on GKE, workload identity.
	CredentialsJSON []byte
	// TokenSource, when set, supplies the access tokens instead of
	// CredentialsJSON or application default credentials (which must then
	// be empty). It is meant for tests and for callers that mint tokens
	// themselves; it should cache its tokens, as oauth2.ReuseTokenSource
	// does.
	TokenSource oauth2.TokenSource
	// OwnProjectOnly refuses keys and versions that name another project
	// than ProjectID (as written there), with fetch.ErrAccessDenied. Set
	// it when the identity is shared by many tenants (keyhook's own, for a
	// ClusterSecretStore), so that a full name cannot reach every project
	// that identity can read.
	OwnProjectOnly bool
}

// Agent is the Google Secret Manager provider's login for the init-agent
// (agentdriver.Logins[Config]); pkg/store/gcpsm's Provider embeds it.
type Agent struct{}

var _ agentdriver.Logins[Config] = Agent{}

// Name implements agentdriver.Logins.
func (Agent) Name() string { return plan.ProviderGCPSM }

// Planned implements agentdriver.Logins.
func (Agent) Planned(s plan.Store) bool { return s.GCPSM != nil }

// Capabilities declares what a Google Secret Manager store can do: find by
// name prefix, name and labels (tags), and versions.
func Capabilities() fetch.Capabilities {
	return fetch.Capabilities{Find: fetch.FindCapabilities{Path: true, Name: true, Tags: true}, VersionProbe: true}
}

// AgentConfig implements agentdriver.Logins: the service-account key from the
// init container's env (a secretKeyRef of the pod's namespace), or else
// application default credentials: on GKE, the pod's workload identity.
func (Agent) AgentConfig(s plan.Store, env agentdriver.Env) (Config, error) {
	g := s.GCPSM
	gc := Config{ProjectID: g.ProjectID, Endpoint: g.Endpoint, CABundle: []byte(g.CABundle)}
	if g.CredentialsEnv != "" {
		key := env.Env(g.CredentialsEnv)
		if key == "" {
			return Config{}, fmt.Errorf("environment variable %s (the store's service-account key Secret) is empty: %w", g.CredentialsEnv, fetch.ErrInvalid)
		}
		gc.CredentialsJSON = []byte(key)
	}
	return gc, nil
}
