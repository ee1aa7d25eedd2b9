package secretsync

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/providers"
	"github.com/keyhook/keyhook/pkg/resolve"
	kstore "github.com/keyhook/keyhook/pkg/store"
)

// ProviderFactory builds an authenticated provider for an ExternalSecret.
type ProviderFactory func(ctx context.Context, src *resolve.Source) (fetch.Provider, error)

// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Providers returns the real ProviderFactory: each store logs in through
// its provider's connector (pkg/providers). Vault's kubernetes auth logs in
// with a short-lived token of a service account of the ExternalSecret's own
// namespace (TokenRequest), never with keyhook's own identity; token auth
// reads the store's token Secret, of the ExternalSecret's namespace for a
// SecretStore and of the namespace the ClusterSecretStore names otherwise.
func Providers(tokens kubernetes.Interface, secrets client.Reader) ProviderFactory {
	f := &factory{tokens: tokens, secrets: secrets}
	connectors := providers.Connectors()
	return func(ctx context.Context, src *resolve.Source) (fetch.Provider, error) {
		for _, c := range connectors {
			if c.Configured(src.Store) {
				return c.Sync(ctx, src, syncCredentials{f: f, src: src})
			}
		}
		return nil, fmt.Errorf("%s %q configures no provider keyhook supports: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
	}
}

// syncCredentials are the credentials of src's namespace (driver.SyncCredentials).
type syncCredentials struct {
	f   *factory
	src *resolve.Source
}

func (c syncCredentials) ServiceAccountToken(ctx context.Context, ref *v1alpha1.ServiceAccountSelector, audience string) (string, error) {
	return c.f.serviceAccountToken(ctx, c.src.ExternalSecret.Namespace, ref, audience)
}

func (c syncCredentials) SecretValue(ctx context.Context, ref v1alpha1.SecretKeySelector, what string) (string, error) {
	return c.f.secretValue(ctx, c.src, ref, what)
}

type factory struct {
	tokens  kubernetes.Interface
	secrets client.Reader
}

// serviceAccountToken requests a short-lived token of a service account of
// the ExternalSecret's own namespace: the sync reads as that namespace's
// identity, never keyhook's.
func (f *factory) serviceAccountToken(ctx context.Context, ns string, ref *v1alpha1.ServiceAccountSelector, audience string) (string, error) {
	sa := "default"
	if ref != nil {
		sa = ref.Name
	}
	tr, err := f.tokens.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s/%s: %w", ns, sa, err)
	}
	return tr.Status.Token, nil
}

// secretValue reads one key of a Secret named by a store: of the
// ExternalSecret's namespace for a SecretStore, and of the namespace the
// ClusterSecretStore names otherwise.
func (f *factory) secretValue(ctx context.Context, src *resolve.Source, ref v1alpha1.SecretKeySelector, what string) (string, error) {
	ns := src.ExternalSecret.Namespace
	switch {
	case src.StoreKind == v1alpha1.SecretStoreKindCluster && ref.Namespace != "":
		ns = ref.Namespace
	case ref.Namespace != "" && ref.Namespace != ns:
		// Admission refuses this; a store admitted before it did is not
		// read from the store's own namespace behind the user's back.
		return "", fmt.Errorf("SecretStore %q names its %s Secret in namespace %q, but a namespaced SecretStore can only reference Secrets in its own namespace %q; remove the namespace, or use a ClusterSecretStore: %w",
			src.StoreName, what, ref.Namespace, ns, fetch.ErrInvalid)
	}
	s := &corev1.Secret{}
	if err := f.secrets.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, s); err != nil {
		return "", fmt.Errorf("reading the store's %s Secret %s/%s: %w", what, ns, ref.Name, err)
	}
	v := strings.TrimSpace(string(s.Data[ref.Key]))
	if v == "" {
		return "", fmt.Errorf("the store's %s Secret %s/%s has no key %q: %w", what, ns, ref.Name, ref.Key, fetch.ErrInvalid)
	}
	return v, nil
}

// StoreCapabilities is what a store's provider can do beyond reading one
// secret, as its package declares it: admission checks dataFrom.find
// against it, before any login.
func StoreCapabilities(store *v1alpha1.SecretStoreSpec) fetch.Capabilities {
	return kstore.Capabilities(store)
}

// ProviderName names the provider of a store in metrics.
func ProviderName(store *v1alpha1.SecretStoreSpec) string { return kstore.ProviderName(store) }

// closeProvider releases what a provider holds (a Vault token, a gRPC
// connection).
func closeProvider(p fetch.Provider) error {
	if p == nil {
		return nil // a reader that never logged in
	}
	return p.Close()
}

// closeLogged closes p and logs a failure: it is not the sync's (the data
// was read or not regardless), but a Vault token that could not be revoked
// lives on until its TTL, and an operator counting leases must see why.
func closeLogged(log logr.Logger, p fetch.Provider) {
	if err := closeProvider(p); err != nil {
		log.Info("closing a provider session failed; a Vault token left unrevoked expires with its TTL", "error", err.Error())
	}
}

// resolveData reads the data of src with p: the one resolver the agent uses.
func resolveData(ctx context.Context, p fetch.Provider, es *v1alpha1.ExternalSecret) (map[string][]byte, error) {
	return fetch.Resolve(ctx, p, resolve.PlanData(es.Spec.Data), resolve.PlanDataFrom(es.Spec.DataFrom))
}
