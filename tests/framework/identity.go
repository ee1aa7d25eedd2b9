package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Roles of keyhook, each with its own ServiceAccount and RBAC in
// manifests/rbac/<role>.
const (
	RoleWebhook    = "webhook"
	RoleController = "controller"
)

// Namespace is keyhook's own namespace, where manifests/ puts its
// ServiceAccounts, Roles and certificate Secret.
const Namespace = "keyhook-system"

// ServiceAccount is the ServiceAccount manifests/ gives a role.
func ServiceAccount(role string) string { return "keyhook-" + role }

// ServiceAccountUser is the user name the API server knows a role's
// ServiceAccount by, as RBAC subjects and admission policies name it.
func ServiceAccountUser(role string) string {
	return "system:serviceaccount:" + Namespace + ":" + ServiceAccount(role)
}

var identityMu sync.Mutex

// Identity installs a role's ServiceAccount and RBAC exactly as manifests/
// ships them (manifests/rbac/<role>: the generated role.yaml and
// identity.yaml), and writes a kubeconfig into dir that acts as that
// ServiceAccount (the admin impersonates it), so that a keyhook process
// started with it has the rights a real install gives it, no more.
// It is idempotent: every process of a role shares the one identity.
func (c *Cluster) Identity(ctx context.Context, dir, role string) (string, error) {
	identityMu.Lock()
	defer identityMu.Unlock()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating %s: %w", Namespace, err)
	}
	rbacDir := filepath.Join(RepoRoot(), "manifests", "rbac", role)
	for _, f := range []string{"role.yaml", "identity.yaml"} {
		if err := c.applyFile(ctx, filepath.Join(rbacDir, f)); err != nil {
			return "", err
		}
	}
	raw, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return "", err
	}
	for _, auth := range raw.AuthInfos {
		auth.Impersonate = ServiceAccountUser(role)
	}
	path := filepath.Join(dir, "kubeconfig-"+role)
	if err := clientcmd.WriteToFile(*raw, path); err != nil {
		return "", err
	}
	return path, nil
}

// applyFile creates every object of a multi-document YAML file, or updates
// it when it exists.
func (c *Cluster) applyFile(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		err := c.Client.Create(ctx, obj)
		if apierrors.IsAlreadyExists(err) {
			existing := &unstructured.Unstructured{}
			existing.SetGroupVersionKind(obj.GroupVersionKind())
			if err = c.Client.Get(ctx, client.ObjectKeyFromObject(obj), existing); err == nil {
				obj.SetResourceVersion(existing.GetResourceVersion())
				err = c.Client.Update(ctx, obj)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %s %s: %w", path, obj.GetKind(), obj.GetName(), err)
		}
	}
}
