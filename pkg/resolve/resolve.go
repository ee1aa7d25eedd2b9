// Package resolve turns a reference to an ExternalSecret, made from a
// namespace, into the ExternalSecret and the store it reads from, enforcing
// who may use what. The admission webhook and the reconciler share it.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/store"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/tenancy"
)

// Source is an ExternalSecret with the store it reads from. It is defined
// in pkg/store/driver, whose providers take it.
type Source = driver.Source

// DeniedError is a reference that is not allowed or cannot be resolved
// because of what a user wrote. Its message says what is wrong and how to fix
// it; other errors from this package are internal. The providers of
// pkg/store return it too.
type DeniedError = driver.DeniedError

// IsDenied reports whether err is a DeniedError.
func IsDenied(err error) bool {
	var d *DeniedError
	return errors.As(err, &d)
}

func denied(format string, args ...any) error {
	return &DeniedError{Msg: fmt.Sprintf(format, args...)}
}

// Resolver reads ExternalSecrets, stores and namespaces, normally from an
// informer cache.
type Resolver struct {
	Reader client.Reader
	// Rules are the cluster-wide tenancy rules (permitted keys and roles).
	Rules tenancy.Rules
}

// ExternalSecret resolves the ExternalSecret name in namespace ns.
func (r *Resolver) ExternalSecret(ctx context.Context, ns, name string) (*Source, error) {
	es := &v1alpha1.ExternalSecret{}
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, es); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, denied("ExternalSecret %q not found in namespace %q; create it or fix the name (kubectl get externalsecrets -n %s)", name, ns, ns)
		}
		return nil, fmt.Errorf("getting ExternalSecret %s/%s: %w", ns, name, err)
	}
	return r.ForExternalSecret(ctx, es)
}

// ForExternalSecret resolves the store of es and checks that es's namespace
// may use it.
func (r *Resolver) ForExternalSecret(ctx context.Context, es *v1alpha1.ExternalSecret) (*Source, error) {
	ns, ref := es.Namespace, es.Spec.SecretStoreRef
	src := &Source{ExternalSecret: es, StoreKind: ref.Kind, StoreName: ref.Name}
	switch ref.Kind {
	case v1alpha1.SecretStoreKindNamespaced, "":
		src.StoreKind = v1alpha1.SecretStoreKindNamespaced
		store := &v1alpha1.SecretStore{}
		if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, store); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, denied("ExternalSecret %q uses SecretStore %q, which does not exist in namespace %q; create it, or set spec.secretStoreRef.kind: ClusterSecretStore for a cluster-wide store", es.Name, ref.Name, ns)
			}
			return nil, fmt.Errorf("getting SecretStore %s/%s: %w", ns, ref.Name, err)
		}
		src.Store = &store.Spec
	case v1alpha1.SecretStoreKindCluster:
		store := &v1alpha1.ClusterSecretStore{}
		if err := r.Reader.Get(ctx, client.ObjectKey{Name: ref.Name}, store); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, denied("ExternalSecret %q uses ClusterSecretStore %q, which does not exist; fix spec.secretStoreRef.name (kubectl get clustersecretstores)", es.Name, ref.Name)
			}
			return nil, fmt.Errorf("getting ClusterSecretStore %s: %w", ref.Name, err)
		}
		namespace, err := r.namespace(ctx, ns)
		if err != nil {
			return nil, err
		}
		ok, err := tenancy.StoreAdmits(store.Spec.Conditions, namespace)
		if err != nil {
			return nil, denied("ClusterSecretStore %q has invalid conditions (%v); its owner must fix them", ref.Name, err)
		}
		if !ok {
			return nil, denied("ExternalSecret %q uses ClusterSecretStore %q, whose spec.conditions do not admit namespace %q; ask the store's owner to admit the namespace, or use a SecretStore of this namespace", es.Name, ref.Name, ns)
		}
		src.Store = &store.Spec
	default:
		return nil, denied("ExternalSecret %q: spec.secretStoreRef.kind %q is not SecretStore or ClusterSecretStore", es.Name, ref.Kind)
	}
	if store.For(src.Store) == nil {
		return nil, denied("%s %q configures no provider keyhook supports; set %s", src.StoreKind, src.StoreName, providerFields())
	}
	namespace, err := r.namespace(ctx, ns)
	if err != nil {
		return nil, err
	}
	storeDesc := fmt.Sprintf("%s %q", src.StoreKind, src.StoreName)
	if err := r.Rules.CheckKeys(src.Store, storeDesc, namespace, tenancy.RemoteKeys(&es.Spec)); err != nil {
		return nil, denied("ExternalSecret %q: %v", es.Name, err)
	}
	roles := tenancy.StoreRoles(src.Store)
	for _, field := range slices.Sorted(maps.Keys(roles)) {
		if err := r.Rules.CheckRole(roles[field], storeDesc+" "+field, namespace); err != nil {
			return nil, denied("ExternalSecret %q: %v", es.Name, err)
		}
	}
	return src, nil
}

// providerFields names the store fields of keyhook's providers:
// "spec.provider.vault, .aws or .gcpsm".
func providerFields() string {
	names := store.All().Names()
	for i := range names {
		names[i] = "." + names[i]
	}
	last := len(names) - 1
	if last == 0 {
		return "spec.provider" + names[0]
	}
	return "spec.provider" + strings.Join(names[:last], ", ") + " or " + names[last]
}

func (r *Resolver) namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return nil, fmt.Errorf("getting Namespace %s: %w", name, err)
	}
	return ns, nil
}
