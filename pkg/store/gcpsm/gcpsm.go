// Package gcpsm is everything keyhook knows of a Google Secret Manager store
// without Google's SDK: its capabilities, the agent's plan and the logins of
// the sync and the agent. The SDK client is pkg/fetch/gcpsm. What the
// init-agent needs (the login from the plan, the Config) is in gcpsmagent,
// which links no CRD type.
package gcpsm

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/store/gcpsm/gcpsmagent"
)

// Config says which project to read, where, and as whom: what
// pkg/fetch/gcpsm.New logs in with.
type Config = gcpsmagent.Config

// Provider is the Google Secret Manager provider (driver.Logins[Config]);
// its agent's login (Name, Planned, AgentConfig) is gcpsmagent's.
type Provider struct{ gcpsmagent.Agent }

var _ driver.Logins[Config] = Provider{}

// Title implements driver.Provider.
func (Provider) Title() string { return "Google Secret Manager" }

// Configured implements driver.Provider.
func (Provider) Configured(spec *v1alpha1.SecretStoreSpec) bool { return spec.Provider.GCPSM != nil }

// Defaults implements driver.Provider: a Google store has none.
func (Provider) Defaults() map[string]string { return map[string]string{} }

// Capabilities declares what a Google Secret Manager store can do
// (gcpsmagent.Capabilities).
func Capabilities() fetch.Capabilities { return gcpsmagent.Capabilities() }

// Capabilities implements driver.Provider.
func (Provider) Capabilities(*v1alpha1.SecretStoreSpec) fetch.Capabilities { return Capabilities() }

// MetricName implements driver.Provider.
func (Provider) MetricName(*v1alpha1.SecretStoreSpec) string { return "gcpsm" }

// CABundle implements driver.Provider.
func (Provider) CABundle(spec *v1alpha1.SecretStoreSpec) []byte { return spec.Provider.GCPSM.CABundle }

// Roles implements driver.Provider: Google has no roles keyhook assumes.
func (Provider) Roles(*v1alpha1.SecretStoreSpec) map[string]string { return nil }

// PerNamespaceLogin implements driver.Provider.
func (Provider) PerNamespaceLogin(spec *v1alpha1.SecretStoreSpec) bool {
	ref := spec.Provider.GCPSM.Auth.SecretRef
	return ref != nil && ref.SecretAccessKey.Namespace == ""
}

// AgentOnly implements driver.Provider: without a key, a namespaced store
// serves injected pods alone, which authenticate as themselves; the sync
// never reads a namespace's secrets as keyhook's own identity.
func (Provider) AgentOnly(kind v1alpha1.SecretStoreKind, spec *v1alpha1.SecretStoreSpec) string {
	if kind == v1alpha1.SecretStoreKindNamespaced && spec.Provider.GCPSM.Auth.SecretRef == nil {
		return "without auth.secretRef only injected pods use this store, each as its own workload identity; keyhook never logs in for a namespace as its own"
	}
	return ""
}

// ValidateExternalSecret implements driver.Provider: Google takes any
// version (a number, "latest", an alias).
func (Provider) ValidateExternalSecret(*v1alpha1.SecretStoreSpec, *v1alpha1.ExternalSecret) field.ErrorList {
	return nil
}

// SyncConfig implements driver.Logins: the sync reads with the
// service-account key the store names. Application default credentials are
// keyhook's own identity, so the sync uses them only for a
// ClusterSecretStore, whose conditions the platform team wrote; a
// namespaced SecretStore without a key serves injected pods alone, which
// authenticate as themselves (workload identity).
func (Provider) SyncConfig(ctx context.Context, src *driver.Source, creds driver.SyncCredentials) (Config, error) {
	g := src.Store.Provider.GCPSM
	cfg := Config{ProjectID: g.ProjectID, Endpoint: g.Endpoint, CABundle: g.CABundle}
	switch {
	case g.Auth.SecretRef != nil:
		key, err := creds.SecretValue(ctx, g.Auth.SecretRef.SecretAccessKey, "service-account key")
		if err != nil {
			return Config{}, err
		}
		cfg.CredentialsJSON = []byte(key)
	case src.StoreKind != v1alpha1.SecretStoreKindCluster:
		return Config{}, fmt.Errorf("%s %q has no auth.secretRef: the sync never reads a namespace's secrets as keyhook's own Google identity, so it can neither "+
			"sync nor track versions for rollouts with this store; injected pods still read as themselves (workload identity). "+
			"Set spec.provider.gcpsm.auth.secretRef to sync: %w", src.StoreKind, src.StoreName, fetch.ErrAccessDenied)
	}
	// A ClusterSecretStore's identity (keyhook's own, or its key) serves
	// every namespace the store admits: only within the store's project.
	cfg.OwnProjectOnly = src.StoreKind == v1alpha1.SecretStoreKindCluster
	return cfg, nil
}

// Plan implements driver.Provider: the pod reads as its workload identity,
// or with a service-account key from a Secret of its namespace.
func (Provider) Plan(src *driver.Source, creds driver.PodCredentials, out *plan.Store) error {
	g := src.Store.Provider.GCPSM
	pg := &plan.GCPSM{ProjectID: g.ProjectID, Endpoint: g.Endpoint, CABundle: string(g.CABundle)}
	if ref := g.Auth.SecretRef; ref != nil {
		var err error
		if pg.CredentialsEnv, err = creds.SecretEnv(src, ref.SecretAccessKey, "a Google service-account key", "leave spec.provider.gcpsm.auth empty to use workload identity"); err != nil {
			return err
		}
	}
	out.GCPSM = pg
	return nil
}
