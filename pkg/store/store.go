// Package store lists the secret-store providers keyhook supports (All, one
// line each) and answers for a store's spec which provider it uses and what
// that provider can do. Callers ask it instead of switching over providers.
// It links no provider SDK: the admission webhook uses it. What a provider
// implements, and where, is in pkg/store/driver's package doc.
package store

import (
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/aws"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/store/gcpsm"
	"github.com/keyhook/keyhook/pkg/store/vault"
)

// All is every provider keyhook supports, one registration line each. The
// SDK clients are joined to them in pkg/providers.
func All() Registry {
	return Registry{
		vault.Provider{},
		aws.Provider{},
		gcpsm.Provider{},
	}
}

// Registry is a list of providers.
type Registry []driver.Provider

// For is the provider spec configures; nil when it configures none of r.
func (r Registry) For(spec *v1alpha1.SecretStoreSpec) driver.Provider {
	for _, p := range r {
		if p.Configured(spec) {
			return p
		}
	}
	return nil
}

// Planned is the provider of a store of the agent's plan; nil when none of
// r.
func (r Registry) Planned(s plan.Store) driver.Provider {
	for _, p := range r {
		if p.Planned(s) {
			return p
		}
	}
	return nil
}

// Names are the names of r's providers, in order.
func (r Registry) Names() []string {
	out := make([]string, len(r))
	for i, p := range r {
		out[i] = p.Name()
	}
	return out
}

// For is the provider of spec among All; nil when spec configures none
// keyhook supports.
func For(spec *v1alpha1.SecretStoreSpec) driver.Provider { return All().For(spec) }

// Capabilities is what the provider of spec can do; nothing beyond reading
// one secret for a spec of no provider keyhook supports.
func Capabilities(spec *v1alpha1.SecretStoreSpec) fetch.Capabilities {
	if p := For(spec); p != nil {
		return p.Capabilities(spec)
	}
	return fetch.Capabilities{}
}

// ProbeKey reports whether version probes can follow key through a store
// of spec, and if not why ("" when the key pins a version, which does not
// change); a provider's keys are all probed unless it says otherwise
// (driver.KeyVersions).
func ProbeKey(spec *v1alpha1.SecretStoreSpec, key string) (probe bool, why string) {
	if kv, ok := For(spec).(driver.KeyVersions); ok {
		return kv.ProbeKey(spec, key)
	}
	return true, ""
}

// ProviderName names the provider of spec in metrics and messages.
func ProviderName(spec *v1alpha1.SecretStoreSpec) string {
	if p := For(spec); p != nil {
		return p.MetricName(spec)
	}
	return "unknown"
}

// Roles lists the cloud roles a store would assume, keyed by the field that
// names each; the namespace's permitted-role rule applies to them.
func Roles(spec *v1alpha1.SecretStoreSpec) map[string]string {
	if p := For(spec); p != nil {
		if roles := p.Roles(spec); roles != nil {
			return roles
		}
	}
	return map[string]string{}
}
