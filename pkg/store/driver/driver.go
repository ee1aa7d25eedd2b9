// Package driver is what one secret-store provider of keyhook implements, as
// database/sql/driver is for database/sql: pkg/store lists the providers
// and callers ask it, never switch over providers themselves.
//
// A provider is two packages:
//
//   - pkg/store/<name>, which links no SDK (the admission webhook imports
//     it), with its subpackage pkg/store/<name>/<name>agent, which links no
//     CRD type or Kubernetes library either (the init-agent imports it, and
//     a test checks the one-provider agents link no k8s.io package): the
//     agent's login (plan → Config), the Config, the defaults that are plain
//     strings and the capabilities live there, and pkg/store/<name>'s
//     Provider embeds its agentdriver.Logins. Together they are a type that implements Provider and Logins — its defaults (once;
//     pkg/store's TestDefaultsMatchTheCRD compares them with the CRD's
//     kubebuilder markers), its capabilities, the agent's plan for a store
//     (CRD → plan), the login of the sync (CRD → its Config, with the
//     credentials the store names read through SyncCredentials) and of the
//     agent (plan → its Config), its checks of an ExternalSecret against a
//     store, and what the health probe and the tenancy rules ask of it.
//     Its Config is the SDK client's, as plain data.
//   - pkg/fetch/<name>, the SDK client: New(ctx, Config) returns a
//     fetch.Provider (and, optionally, a login-free Reach).
//
// Adding a provider is those two folders, its field in
// v1alpha1.SecretStoreProvider and plan.Store (the API and the agent's
// versioned wire contract, with what plan.Validate checks of it), one line
// in pkg/store.All, and its build-tagged joins in pkg/providers and
// pkg/providers/agentlogins (a file and its stub each, one call in
// Connectors and in All) with its tag in the others' build
// constraints, the Makefile's AGENT_PROVIDERS and pkg/imagebuild's images:
// the init-agent is built per provider. Everything else — the sync, the
// webhook's plan, validation and --agent-image-<name> flag, the health
// probe, the agent — asks pkg/store or pkg/providers.
package driver

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

// Source is an ExternalSecret with the store it reads from (pkg/resolve
// resolves it; it lives here so that providers need not import resolve).
type Source struct {
	ExternalSecret *v1alpha1.ExternalSecret
	StoreKind      v1alpha1.SecretStoreKind
	StoreName      string
	Store          *v1alpha1.SecretStoreSpec
}

// DeniedError is a reference that is not allowed or cannot be resolved
// because of what a user wrote. Its message says what is wrong and how to
// fix it (pkg/resolve names it resolve.DeniedError).
type DeniedError struct{ Msg string }

func (e *DeniedError) Error() string { return e.Msg }

// Denied returns a *DeniedError with a formatted message.
func Denied(format string, args ...any) error {
	return &DeniedError{Msg: fmt.Sprintf(format, args...)}
}

// KeyVersions is implemented by a provider whose remote keys can name a
// version or a label in the key itself (SSM's "name:3", "name:label"),
// which its current-version call cannot follow.
type KeyVersions interface {
	// ProbeKey reports whether version probes can follow key, read through
	// a store of spec, and if not why ("" for a key pinned to a version,
	// which never changes, as a remoteRef.version does not).
	ProbeKey(spec *v1alpha1.SecretStoreSpec, key string) (probe bool, why string)
}

// Provider is what keyhook knows of one provider without its SDK.
type Provider interface {
	// Name is the provider's name: its plan.Store field, the init-agent's
	// build tag and the webhook's --agent-image-<name> flag.
	Name() string
	// Title names the provider for people (flag help).
	Title() string
	// Configured reports whether spec configures this provider.
	Configured(spec *v1alpha1.SecretStoreSpec) bool
	// Planned reports whether a store of the agent's plan is this provider's.
	Planned(s plan.Store) bool
	// Capabilities is what a store of spec can do beyond reading a secret,
	// declared before any login.
	Capabilities(spec *v1alpha1.SecretStoreSpec) fetch.Capabilities
	// MetricName names the provider of spec in metrics and messages.
	MetricName(spec *v1alpha1.SecretStoreSpec) string
	// Plan sets the provider's part of out, what the init-agent of a pod
	// needs to read src as the pod; credentials come from creds. An error
	// the user can fix is a *DeniedError.
	Plan(src *Source, creds PodCredentials, out *plan.Store) error
	// ValidateExternalSecret checks what es asks of a store of spec
	// beyond what its capabilities say (versions, key spelling).
	ValidateExternalSecret(spec *v1alpha1.SecretStoreSpec, es *v1alpha1.ExternalSecret) field.ErrorList
	// PerNamespaceLogin reports whether a ClusterSecretStore's login
	// depends on the namespace that uses it: a service-account token of
	// that namespace, or a credentials Secret that names no namespace.
	PerNamespaceLogin(spec *v1alpha1.SecretStoreSpec) bool
	// AgentOnly returns, for a store only injected pods can use (the sync
	// has no identity to log in with), why; "" when the sync can.
	AgentOnly(kind v1alpha1.SecretStoreKind, spec *v1alpha1.SecretStoreSpec) string
	// CABundle is the PEM bundle the store names, if any.
	CABundle(spec *v1alpha1.SecretStoreSpec) []byte
	// Roles lists the cloud roles the store would assume, keyed by the
	// field that names each (spec.provider.aws.role): the namespace's
	// permitted-role rule applies to them.
	Roles(spec *v1alpha1.SecretStoreSpec) map[string]string
	// Defaults lists the defaults of the store's optional fields by their
	// JSON path under spec.provider.<name>, as its code applies them; a
	// test checks the CRD's markers say the same.
	Defaults() map[string]string
}

// Logins is a Provider that turns a store into its SDK client's Config:
// for the sync, with the credentials the store names read, and for the
// agent, from the plan and the pod's environment (agentdriver.Logins, the
// part the init-agent links).
type Logins[C any] interface {
	Provider
	agentdriver.Logins[C]
	// SyncConfig is the Config the sync logs in with for src.
	SyncConfig(ctx context.Context, src *Source, creds SyncCredentials) (C, error)
}

// PodCredentials are the credentials an injected pod's agent can use,
// without a value ever in the pod spec.
type PodCredentials interface {
	// Token returns the path, in the agent, of a projected
	// service-account token of the pod for audience.
	Token(audience string) string
	// SecretEnv returns the name of an env var of the agent set from a key
	// of a Secret of the pod's namespace; a reference the pod cannot make
	// is a *DeniedError saying what (the credential) and what to do
	// instead.
	SecretEnv(src *Source, ref v1alpha1.SecretKeySelector, what, instead string) (string, error)
}

// SyncCredentials are what the sync may log in with for an ExternalSecret:
// the identity of its own namespace, never keyhook's.
type SyncCredentials interface {
	// ServiceAccountToken is a short-lived token, for audience, of the
	// service account ref (nil: "default") of the ExternalSecret's namespace.
	ServiceAccountToken(ctx context.Context, ref *v1alpha1.ServiceAccountSelector, audience string) (string, error)
	// SecretValue is one key of a Secret the store names; what names it
	// in errors.
	SecretValue(ctx context.Context, ref v1alpha1.SecretKeySelector, what string) (string, error)
}

// AgentEnv is the init-agent's view of its pod.
type AgentEnv = agentdriver.Env

// Connector is a Provider joined to its SDK client.
type Connector struct {
	Provider
	// Sync logs in for the sync.
	Sync func(ctx context.Context, src *Source, creds SyncCredentials) (fetch.Provider, error)
	// Agent logs in for the init-agent.
	Agent func(ctx context.Context, s plan.Store, env AgentEnv) (fetch.Provider, error)
	// Reach, when the provider has it, checks without a login that the
	// store's server answers: what the health probe can check of a store
	// whose login depends on who uses it. Nil otherwise.
	Reach func(ctx context.Context, spec *v1alpha1.SecretStoreSpec) error
}

// Connect joins p to the constructor of its SDK client.
func Connect[C any, P fetch.Provider](p Logins[C], newProvider func(context.Context, C) (P, error)) Connector {
	return Connector{
		Provider: p,
		Sync: func(ctx context.Context, src *Source, creds SyncCredentials) (fetch.Provider, error) {
			cfg, err := p.SyncConfig(ctx, src, creds)
			if err != nil {
				return nil, err
			}
			return agentdriver.NewClient(ctx, cfg, newProvider)
		},
		Agent: agentdriver.Connect(p, newProvider).Login,
	}
}

// Defaulted returns v, or def when v is empty.
func Defaulted[T ~string](v, def T) T {
	if v == "" {
		return def
	}
	return v
}
