package secretsync

import (
	"context"
	"fmt"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	awsfetch "github.com/keyhook/keyhook/pkg/fetch/aws"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/fetch/vault"
	"github.com/keyhook/keyhook/pkg/resolve"
	kstore "github.com/keyhook/keyhook/pkg/store"
)

// ProviderFactory builds an authenticated provider for an ExternalSecret.
type ProviderFactory func(ctx context.Context, src *resolve.Source) (fetch.Provider, error)

// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Providers returns the real ProviderFactory. Vault's kubernetes auth logs in
// with a short-lived token of a service account of the ExternalSecret's own
// namespace (TokenRequest), never with keyhook's own identity; token auth
// reads the store's token Secret, of the ExternalSecret's namespace for a
// SecretStore and of the namespace the ClusterSecretStore names otherwise.
func Providers(tokens kubernetes.Interface, secrets client.Reader) ProviderFactory {
	f := &factory{tokens: tokens, secrets: secrets}
	return func(ctx context.Context, src *resolve.Source) (fetch.Provider, error) {
		switch p := src.Store.Provider; {
		case p.Vault != nil:
			return f.vault(ctx, src)
		case p.AWS != nil:
			return f.aws(ctx, src)
		case p.GCPSM != nil:
			return f.gcpsm(ctx, src)
		}
		return nil, fmt.Errorf("%s %q configures no provider keyhook supports: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
	}
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

func (f *factory) aws(ctx context.Context, src *resolve.Source) (fetch.Provider, error) {
	a := src.Store.Provider.AWS
	es := src.ExternalSecret
	cfg := awsfetch.Config{
		Service: string(a.Service), Region: a.Region, Endpoint: a.Endpoint, STSEndpoint: a.STSEndpoint,
		CABundle: a.CABundle, RoleARN: a.Role, SessionName: "keyhook-sync-" + es.Namespace,
	}
	switch {
	case a.Auth.JWT != nil:
		aud := a.Auth.JWT.Audience
		if aud == "" {
			aud = "sts.amazonaws.com"
		}
		tok, err := f.serviceAccountToken(ctx, es.Namespace, a.Auth.JWT.ServiceAccountRef, aud)
		if err != nil {
			return nil, err
		}
		cfg.WebIdentity = &awsfetch.WebIdentity{RoleARN: a.Auth.JWT.RoleARN, Token: tok}
	case a.Auth.SecretRef != nil:
		ref := a.Auth.SecretRef
		keys := &awsfetch.StaticKeys{}
		var err error
		if keys.AccessKeyID, err = f.secretValue(ctx, src, ref.AccessKeyID, "access key id"); err != nil {
			return nil, err
		}
		if keys.SecretAccessKey, err = f.secretValue(ctx, src, ref.SecretAccessKey, "secret access key"); err != nil {
			return nil, err
		}
		if ref.SessionToken != nil {
			if keys.SessionToken, err = f.secretValue(ctx, src, *ref.SessionToken, "session token"); err != nil {
				return nil, err
			}
		}
		cfg.Static = keys
	default:
		return nil, fmt.Errorf("%s %q configures no AWS auth: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
	}
	return awsfetch.New(ctx, cfg)
}

// gcpsm reads Google Secret Manager with the service-account key the store
// names. Application default credentials are keyhook's own identity, so the
// sync uses them only for a ClusterSecretStore, whose conditions the platform
// team wrote; a namespaced SecretStore without a key serves injected pods
// alone, which authenticate as themselves (workload identity).
func (f *factory) gcpsm(ctx context.Context, src *resolve.Source) (fetch.Provider, error) {
	g := src.Store.Provider.GCPSM
	cfg := gcpsm.Config{ProjectID: g.ProjectID, Endpoint: g.Endpoint, CABundle: g.CABundle}
	switch {
	case g.Auth.SecretRef != nil:
		key, err := f.secretValue(ctx, src, g.Auth.SecretRef.SecretAccessKey, "service-account key")
		if err != nil {
			return nil, err
		}
		cfg.CredentialsJSON = []byte(key)
	case src.StoreKind != v1alpha1.SecretStoreKindCluster:
		return nil, fmt.Errorf("%s %q has no auth.secretRef: the sync never reads a namespace's secrets as keyhook's own Google identity, so it can neither "+
			"sync nor track versions for rollouts with this store; injected pods still read as themselves (workload identity). "+
			"Set spec.provider.gcpsm.auth.secretRef to sync: %w", src.StoreKind, src.StoreName, fetch.ErrAccessDenied)
	}
	// A ClusterSecretStore's identity (keyhook's own, or its key) serves
	// every namespace the store admits: only within the store's project.
	cfg.OwnProjectOnly = src.StoreKind == v1alpha1.SecretStoreKindCluster
	return gcpsm.New(ctx, cfg)
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

func (f *factory) vault(ctx context.Context, src *resolve.Source) (fetch.Provider, error) {
	v := src.Store.Provider.Vault
	es := src.ExternalSecret
	version := 2
	if v.Version == v1alpha1.VaultKVv1 {
		version = 1
	}
	cfg := vault.Config{Server: v.Server, Mount: v.Path, KVVersion: version, Namespace: v.Namespace, CABundle: v.CABundle}
	if cfg.Mount == "" {
		cfg.Mount = "secret"
	}
	switch {
	case v.Auth.Kubernetes != nil:
		k := v.Auth.Kubernetes
		aud := k.Audience
		if aud == "" {
			aud = "vault"
		}
		tok, err := f.serviceAccountToken(ctx, es.Namespace, k.ServiceAccountRef, aud)
		if err != nil {
			return nil, err
		}
		mount := k.MountPath
		if mount == "" {
			mount = "kubernetes"
		}
		cfg.Kubernetes = &vault.KubernetesAuth{MountPath: mount, Role: k.Role, JWT: tok}
	case v.Auth.JWT != nil:
		j := v.Auth.JWT
		aud := j.Audience
		if aud == "" {
			aud = "vault"
		}
		tok, err := f.serviceAccountToken(ctx, es.Namespace, j.ServiceAccountRef, aud)
		if err != nil {
			return nil, err
		}
		mount := j.Path
		if mount == "" {
			mount = "jwt"
		}
		cfg.JWT = &vault.KubernetesAuth{MountPath: mount, Role: j.Role, JWT: tok}
	case v.Auth.AppRole != nil:
		a := v.Auth.AppRole
		id, err := f.secretValue(ctx, src, a.SecretRef, "AppRole secret id")
		if err != nil {
			return nil, err
		}
		mount := a.Path
		if mount == "" {
			mount = "approle"
		}
		cfg.AppRole = &vault.AppRoleAuth{MountPath: mount, RoleID: a.RoleID, SecretID: id}
	case v.Auth.TokenSecretRef != nil:
		tok, err := f.secretValue(ctx, src, *v.Auth.TokenSecretRef, "token")
		if err != nil {
			return nil, err
		}
		cfg.Token = tok
	default:
		return nil, fmt.Errorf("%s %q configures no Vault auth: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
	}
	return vault.New(ctx, cfg)
}

// resolveData reads the data of src with p: the one resolver the agent uses.
func resolveData(ctx context.Context, p fetch.Provider, es *v1alpha1.ExternalSecret) (map[string][]byte, error) {
	return fetch.Resolve(ctx, p, resolve.PlanData(es.Spec.Data), resolve.PlanDataFrom(es.Spec.DataFrom))
}
