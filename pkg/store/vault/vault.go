// Package vault is everything keyhook knows of a Vault (or OpenBao) store
// without Vault's SDK: its defaults, its capabilities, the agent's plan and
// the logins of the sync and the agent, and its checks of ExternalSecrets.
// The SDK client is pkg/fetch/vault. What the init-agent needs (the login
// from the plan, the Config) is in vaultagent, which links no CRD type.
package vault

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/vault/kvpath"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver"
	"github.com/keyhook/keyhook/pkg/store/vault/vaultagent"
)

// Defaults of a Vault store's optional fields. The CRD's kubebuilder
// markers write the same (TestDefaultsMatchTheCRD), so the API server
// fills them into stores it stores; the code applies them to what it is
// given all the same (a store object built in memory, an older CRD).
const (
	// DefaultMount is the mount path of the KV engine (spec.provider.vault.path).
	DefaultMount = vaultagent.DefaultMount
	// DefaultKVVersion is the version of the KV engine.
	DefaultKVVersion = v1alpha1.VaultKVv2
	// DefaultKubernetesMountPath is where the kubernetes auth method is mounted.
	DefaultKubernetesMountPath = vaultagent.DefaultKubernetesMountPath
	// DefaultJWTPath is where the jwt auth method is mounted.
	DefaultJWTPath = vaultagent.DefaultJWTPath
	// DefaultAppRolePath is where the approle auth method is mounted.
	DefaultAppRolePath = vaultagent.DefaultAppRolePath
	// DefaultAudience is the audience of the service-account tokens
	// presented to Vault (kubernetes and jwt auth).
	DefaultAudience = vaultagent.DefaultAudience
)

// Config says how to reach one KV mount and how to authenticate: what
// pkg/fetch/vault.New logs in with.
type Config = vaultagent.Config

// AppRoleAuth is Vault's approle auth method.
type AppRoleAuth = vaultagent.AppRoleAuth

// KubernetesAuth is Vault's kubernetes auth method.
type KubernetesAuth = vaultagent.KubernetesAuth

// Provider is the Vault provider (driver.Logins[Config]); its agent's
// login (Name, Planned, AgentConfig) is vaultagent's.
type Provider struct{ vaultagent.Agent }

var _ driver.Logins[Config] = Provider{}

// Title implements driver.Provider.
func (Provider) Title() string { return "Vault" }

// Configured implements driver.Provider.
func (Provider) Configured(spec *v1alpha1.SecretStoreSpec) bool { return spec.Provider.Vault != nil }

// Defaults implements driver.Provider.
func (Provider) Defaults() map[string]string {
	return map[string]string{
		"path":                      DefaultMount,
		"version":                   string(DefaultKVVersion),
		"auth.kubernetes.mountPath": DefaultKubernetesMountPath,
		"auth.kubernetes.audience":  DefaultAudience,
		"auth.jwt.path":             DefaultJWTPath,
		"auth.jwt.audience":         DefaultAudience,
		"auth.appRole.path":         DefaultAppRolePath,
	}
}

// defaulted is a store with the defaults of its empty fields: the store
// (its Auth pointers still the original's, never written through) and a
// defaulted copy of the auth method it sets. It holds no pointer of its own,
// so that it stays on the stack: admission builds it per pod.
type defaulted struct {
	v1alpha1.VaultProvider
	kubernetes v1alpha1.VaultKubernetesAuth
	jwt        v1alpha1.VaultJWTAuth
	appRole    v1alpha1.VaultAppRoleAuth
}

func withDefaults(v *v1alpha1.VaultProvider) defaulted {
	d := defaulted{VaultProvider: *v}
	d.Path = driver.Defaulted(d.Path, DefaultMount)
	d.Version = driver.Defaulted(d.Version, DefaultKVVersion)
	if k := v.Auth.Kubernetes; k != nil {
		d.kubernetes = *k
		d.kubernetes.MountPath = driver.Defaulted(k.MountPath, DefaultKubernetesMountPath)
		d.kubernetes.Audience = driver.Defaulted(k.Audience, DefaultAudience)
	}
	if j := v.Auth.JWT; j != nil {
		d.jwt = *j
		d.jwt.Path = driver.Defaulted(j.Path, DefaultJWTPath)
		d.jwt.Audience = driver.Defaulted(j.Audience, DefaultAudience)
	}
	if a := v.Auth.AppRole; a != nil {
		d.appRole = *a
		d.appRole.Path = driver.Defaulted(a.Path, DefaultAppRolePath)
	}
	return d
}

// KVVersion is the number of a store's KV version (v1, v2, or empty for
// the default).
func KVVersion(v v1alpha1.VaultKVVersion) (int, error) {
	switch driver.Defaulted(v, DefaultKVVersion) {
	case v1alpha1.VaultKVv2:
		return 2, nil
	case v1alpha1.VaultKVv1:
		return 1, nil
	default:
		return 0, fmt.Errorf("spec.provider.vault.version %q is not v1 or v2", v)
	}
}

// Capabilities declares what a store of a KV engine of this version (1 or
// 2) can do (vaultagent.Capabilities).
func Capabilities(kvVersion int) fetch.Capabilities { return vaultagent.Capabilities(kvVersion) }

// Capabilities implements driver.Provider. A version the CRD does not admit
// is refused at login; until then it counts as the default.
func (Provider) Capabilities(spec *v1alpha1.SecretStoreSpec) fetch.Capabilities {
	if n, err := KVVersion(spec.Provider.Vault.Version); err == nil {
		return Capabilities(n)
	}
	return Capabilities(2)
}

// MetricName implements driver.Provider.
func (Provider) MetricName(*v1alpha1.SecretStoreSpec) string { return "vault" }

// CABundle implements driver.Provider.
func (Provider) CABundle(spec *v1alpha1.SecretStoreSpec) []byte { return spec.Provider.Vault.CABundle }

// Roles implements driver.Provider: Vault roles are Vault's to check.
func (Provider) Roles(*v1alpha1.SecretStoreSpec) map[string]string { return nil }

// AgentOnly implements driver.Provider: the sync can log in with every
// Vault auth method.
func (Provider) AgentOnly(v1alpha1.SecretStoreKind, *v1alpha1.SecretStoreSpec) string { return "" }

// PerNamespaceLogin implements driver.Provider.
func (Provider) PerNamespaceLogin(spec *v1alpha1.SecretStoreSpec) bool {
	a := spec.Provider.Vault.Auth
	return a.Kubernetes != nil || a.JWT != nil || noNamespace(a.TokenSecretRef) || (a.AppRole != nil && noNamespace(&a.AppRole.SecretRef))
}

func noNamespace(s *v1alpha1.SecretKeySelector) bool { return s != nil && s.Namespace == "" }

// ServerConfig is the part of the Config of spec that reaches the server,
// with no login: what the health probe checks of a store whose login
// depends on who uses it.
func ServerConfig(spec *v1alpha1.SecretStoreSpec) Config {
	v := spec.Provider.Vault
	return Config{Server: v.Server, Namespace: v.Namespace, CABundle: v.CABundle}
}

// SyncConfig implements driver.Logins: the sync logs in as a service
// account of the ExternalSecret's namespace (kubernetes, jwt), or with the
// Secret the store names (approle, token).
func (Provider) SyncConfig(ctx context.Context, src *driver.Source, creds driver.SyncCredentials) (Config, error) {
	v := withDefaults(src.Store.Provider.Vault)
	version, err := KVVersion(v.Version)
	if err != nil {
		return Config{}, fmt.Errorf("%s %q: %w: %w", src.StoreKind, src.StoreName, err, fetch.ErrInvalid)
	}
	cfg := Config{Server: v.Server, Mount: v.Path, KVVersion: version, Namespace: v.Namespace, CABundle: v.CABundle}
	switch {
	case v.Auth.Kubernetes != nil:
		k := &v.kubernetes
		tok, err := creds.ServiceAccountToken(ctx, k.ServiceAccountRef, k.Audience)
		if err != nil {
			return Config{}, err
		}
		cfg.Kubernetes = &KubernetesAuth{MountPath: k.MountPath, Role: k.Role, JWT: tok}
	case v.Auth.JWT != nil:
		j := &v.jwt
		tok, err := creds.ServiceAccountToken(ctx, j.ServiceAccountRef, j.Audience)
		if err != nil {
			return Config{}, err
		}
		cfg.JWT = &KubernetesAuth{MountPath: j.Path, Role: j.Role, JWT: tok}
	case v.Auth.AppRole != nil:
		a := &v.appRole
		id, err := creds.SecretValue(ctx, a.SecretRef, "AppRole secret id")
		if err != nil {
			return Config{}, err
		}
		cfg.AppRole = &AppRoleAuth{MountPath: a.Path, RoleID: a.RoleID, SecretID: id}
	case v.Auth.TokenSecretRef != nil:
		tok, err := creds.SecretValue(ctx, *v.Auth.TokenSecretRef, "token")
		if err != nil {
			return Config{}, err
		}
		cfg.Token = tok
	default:
		return Config{}, fmt.Errorf("%s %q configures no Vault auth: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
	}
	return cfg, nil
}

// Plan implements driver.Provider: the pod logs in as itself (a projected
// token of its service account), or with a Secret of its own namespace.
func (Provider) Plan(src *driver.Source, creds driver.PodCredentials, out *plan.Store) error {
	v := withDefaults(src.Store.Provider.Vault)
	version, err := KVVersion(v.Version)
	if err != nil {
		return fmt.Errorf("%s %q: %w", src.StoreKind, src.StoreName, err)
	}
	pv := &plan.Vault{
		Server:    v.Server,
		Path:      v.Path,
		KVVersion: version,
		Namespace: v.Namespace,
		CABundle:  string(v.CABundle),
	}
	switch {
	case v.Auth.Kubernetes != nil:
		k := &v.kubernetes
		pv.Kubernetes = &plan.VaultKubernetes{MountPath: k.MountPath, Role: k.Role, TokenPath: creds.Token(k.Audience)}
	case v.Auth.JWT != nil:
		j := &v.jwt
		pv.JWT = &plan.VaultKubernetes{MountPath: j.Path, Role: j.Role, TokenPath: creds.Token(j.Audience)}
	case v.Auth.AppRole != nil:
		a := &v.appRole
		env, err := creds.SecretEnv(src, a.SecretRef, "a Vault AppRole secret id", "use spec.provider.vault.auth.kubernetes or .jwt")
		if err != nil {
			return err
		}
		pv.AppRole = &plan.VaultAppRole{MountPath: a.Path, RoleID: a.RoleID, SecretIDEnv: env}
	case v.Auth.TokenSecretRef != nil:
		if pv.TokenEnv, err = creds.SecretEnv(src, *v.Auth.TokenSecretRef, "a Vault token", "use spec.provider.vault.auth.kubernetes"); err != nil {
			return err
		}
	default:
		return driver.Denied("%s %q configures no Vault auth; set spec.provider.vault.auth.kubernetes", src.StoreKind, src.StoreName)
	}
	out.Vault = pv
	return nil
}

// ValidateExternalSecret implements driver.Provider: versions are KV v2
// numbers (a KV v1 engine has none), and keys are relative to the mount,
// never its KV v2 API path ("secret/data/app/db"), which the provider
// refuses too, for ExternalSecrets admitted before their store.
func (Provider) ValidateExternalSecret(spec *v1alpha1.SecretStoreSpec, es *v1alpha1.ExternalSecret) field.ErrorList {
	v := withDefaults(spec.Provider.Vault)
	version, err := KVVersion(v.Version)
	if err != nil {
		version = 2 // the CRD admits v1 and v2 only; the login refuses others
	}
	var errs field.ErrorList
	checkVersion := func(path *field.Path, ver string) {
		if ver == "" {
			return
		}
		if version == 1 {
			errs = append(errs, field.Invalid(path, ver, "the store's Vault KV v1 engine has no versions; remove it"))
			return
		}
		if n, err := strconv.Atoi(ver); err != nil || n < 1 {
			errs = append(errs, field.Invalid(path, ver, "a Vault KV v2 version is a positive number"))
		}
	}
	for i, d := range es.Spec.Data {
		checkVersion(field.NewPath("spec", "data").Index(i).Child("remoteRef", "version"), d.RemoteRef.Version)
	}
	for i, d := range es.Spec.DataFrom {
		if d.Extract != nil {
			checkVersion(field.NewPath("spec", "dataFrom").Index(i).Child("extract", "version"), d.Extract.Version)
		}
	}
	checkKey := func(path *field.Path, key string) {
		if err := kvpath.Check(v.Path, version, key); err != nil {
			errs = append(errs, field.Invalid(path, key, err.Error()))
		}
	}
	for i, d := range es.Spec.Data {
		checkKey(field.NewPath("spec", "data").Index(i).Child("remoteRef", "key"), d.RemoteRef.Key)
	}
	for i, d := range es.Spec.DataFrom {
		switch {
		case d.Extract != nil:
			checkKey(field.NewPath("spec", "dataFrom").Index(i).Child("extract", "key"), d.Extract.Key)
		case d.Find != nil:
			checkKey(field.NewPath("spec", "dataFrom").Index(i).Child("find", "path"), d.Find.Path)
		}
	}
	return errs
}
