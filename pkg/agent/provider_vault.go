//go:build vault || all || !(aws || gcpsm)

package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/vault"
	"github.com/keyhook/keyhook/pkg/plan"
)

const hasVault = true

func newVault(ctx context.Context, v *plan.Vault, cfg Config) (fetch.Provider, error) {
	vc := vault.Config{Server: v.Server, Mount: v.Path, KVVersion: v.KVVersion, Namespace: v.Namespace, CABundle: []byte(v.CABundle)}
	switch {
	case v.Kubernetes != nil:
		jwt, err := os.ReadFile(filepath.Join(cfg.Root, v.Kubernetes.TokenPath))
		if err != nil {
			return nil, fmt.Errorf("reading the pod's service-account token: %w", err)
		}
		vc.Kubernetes = &vault.KubernetesAuth{MountPath: v.Kubernetes.MountPath, Role: v.Kubernetes.Role, JWT: strings.TrimSpace(string(jwt))}
	case v.JWT != nil:
		jwt, err := os.ReadFile(filepath.Join(cfg.Root, v.JWT.TokenPath))
		if err != nil {
			return nil, fmt.Errorf("reading the pod's service-account token: %w", err)
		}
		vc.JWT = &vault.KubernetesAuth{MountPath: v.JWT.MountPath, Role: v.JWT.Role, JWT: strings.TrimSpace(string(jwt))}
	case v.AppRole != nil:
		id := strings.TrimSpace(cfg.Getenv(v.AppRole.SecretIDEnv))
		if id == "" {
			return nil, fmt.Errorf("environment variable %s (the store's AppRole secret id Secret) is empty: %w", v.AppRole.SecretIDEnv, fetch.ErrInvalid)
		}
		vc.AppRole = &vault.AppRoleAuth{MountPath: v.AppRole.MountPath, RoleID: v.AppRole.RoleID, SecretID: id}
	case v.TokenEnv != "":
		vc.Token = strings.TrimSpace(cfg.Getenv(v.TokenEnv))
		if vc.Token == "" {
			return nil, fmt.Errorf("environment variable %s (the store's token Secret) is empty: %w", v.TokenEnv, fetch.ErrInvalid)
		}
	}
	return vault.New(ctx, vc)
}
