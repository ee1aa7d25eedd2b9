// Package store says, for a store's spec, which provider it uses and what
// that provider can do, without linking any provider's SDK: the webhook
// validates ExternalSecrets with it, and the providers (pkg/fetch/vault,
// pkg/fetch/aws, pkg/fetch/gcpsm) declare their capabilities here, once.
package store

import (
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
)

// VaultCapabilities is what a store of a Vault KV engine of this version (1
// or 2) can do: find by path and name on both, versions on KV v2 only.
func VaultCapabilities(kvVersion int) fetch.Capabilities {
	return fetch.Capabilities{
		Find:         fetch.FindCapabilities{Path: true, Name: true},
		VersionProbe: kvVersion == 2,
	}
}

// AWSCapabilities is what a store of an AWS service (Secrets Manager or
// Parameter Store) can do: find by name prefix (Parameter Store: by path,
// recursively) and versions, on both.
func AWSCapabilities(string) fetch.Capabilities {
	return fetch.Capabilities{Find: fetch.FindCapabilities{Path: true}, VersionProbe: true}
}

// GCPSMCapabilities is what a Google Secret Manager store can do: find by
// name prefix, name and labels (tags), and versions.
func GCPSMCapabilities() fetch.Capabilities {
	return fetch.Capabilities{Find: fetch.FindCapabilities{Path: true, Name: true, Tags: true}, VersionProbe: true}
}

// Capabilities is what the provider of spec can do.
func Capabilities(spec *v1alpha1.SecretStoreSpec) fetch.Capabilities {
	switch p := spec.Provider; {
	case p.Vault != nil:
		if p.Vault.Version == v1alpha1.VaultKVv1 {
			return VaultCapabilities(1)
		}
		return VaultCapabilities(2)
	case p.AWS != nil:
		return AWSCapabilities(string(p.AWS.Service))
	case p.GCPSM != nil:
		return GCPSMCapabilities()
	}
	return fetch.Capabilities{}
}

// ProviderName names the provider of spec in metrics and messages.
func ProviderName(spec *v1alpha1.SecretStoreSpec) string {
	switch p := spec.Provider; {
	case p.Vault != nil:
		return "vault"
	case p.AWS != nil && p.AWS.Service == v1alpha1.AWSParameterStore:
		return "aws-parameterstore"
	case p.AWS != nil:
		return "aws-secretsmanager"
	case p.GCPSM != nil:
		return "gcpsm"
	}
	return "unknown"
}
