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
	"github.com/keyhook/keyhook/pkg/fetch/vault"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
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
	return func(ctx context.Context, src *resolve.Source) (fetch.Provider, error) {
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
			sa := "default"
			if k.ServiceAccountRef != nil {
				sa = k.ServiceAccountRef.Name
			}
			aud := k.Audience
			if aud == "" {
				aud = "vault"
			}
			tr, err := tokens.CoreV1().ServiceAccounts(es.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{Audiences: []string{aud}, ExpirationSeconds: ptr.To[int64](600)},
			}, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("requesting a token for service account %s/%s: %w", es.Namespace, sa, err)
			}
			mount := k.MountPath
			if mount == "" {
				mount = "kubernetes"
			}
			cfg.Kubernetes = &vault.KubernetesAuth{MountPath: mount, Role: k.Role, JWT: tr.Status.Token}
		case v.Auth.TokenSecretRef != nil:
			ref := v.Auth.TokenSecretRef
			ns := es.Namespace
			if src.StoreKind == v1alpha1.SecretStoreKindCluster && ref.Namespace != "" {
				ns = ref.Namespace
			}
			s := &corev1.Secret{}
			if err := secrets.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, s); err != nil {
				return nil, fmt.Errorf("reading the store's token Secret %s/%s: %w", ns, ref.Name, err)
			}
			cfg.Token = strings.TrimSpace(string(s.Data[ref.Key]))
			if cfg.Token == "" {
				return nil, fmt.Errorf("the store's token Secret %s/%s has no key %q: %w", ns, ref.Name, ref.Key, fetch.ErrInvalid)
			}
		default:
			return nil, fmt.Errorf("%s %q configures no Vault auth: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
		}
		return vault.New(ctx, cfg)
	}
}

// resolveData reads the data of src with p: the one resolver the agent uses.
func resolveData(ctx context.Context, p fetch.Provider, es *v1alpha1.ExternalSecret) (map[string][]byte, error) {
	return fetch.Resolve(ctx, p, mutate.PlanData(es.Spec.Data), mutate.PlanDataFrom(es.Spec.DataFrom))
}
