package framework

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// Vault is a real Vault dev server on loopback: in memory, unsealed, KV v2
// mounted at secret/.
type Vault struct {
	Addr      string
	RootToken string
	// Client is logged in with the root token.
	Client *vaultapi.Client
	Proc   *Process
	bin    string
	host   string
	port   int
	log    string
}

// StartVault starts the Vault binary named by $KEYHOOK_VAULT (hack/vault.sh
// prints it).
func StartVault(ctx context.Context, dir string) (*Vault, error) {
	return StartVaultAt(ctx, dir, "127.0.0.1")
}

// StartVaultAt starts Vault listening on host (an address of this machine),
// e.g. the node's bridge address, which its pods can reach.
func StartVaultAt(ctx context.Context, dir, host string) (*Vault, error) {
	bin, err := mustEnv("KEYHOOK_VAULT", "run the tests through make test, or export KEYHOOK_VAULT=$(hack/vault.sh)")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	v := &Vault{bin: bin, host: host, port: port, RootToken: "keyhook-test-root", Addr: fmt.Sprintf("http://%s:%d", host, port),
		log: filepath.Join(dir, "vault.log")}
	if err := v.Start(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Start starts (or restarts) the dev server. A dev server keeps nothing across
// a restart.
func (v *Vault) Start(ctx context.Context) error {
	env := append(os.Environ(), "HOME="+filepath.Dir(v.log), "VAULT_ADDR=", "VAULT_TOKEN=")
	p, err := Start("vault", v.log, env, v.bin, "server", "-dev",
		"-dev-root-token-id="+v.RootToken,
		"-dev-listen-address="+v.host+":"+itoa(v.port),
		"-dev-no-store-token",
		"-log-level=warn",
	)
	if err != nil {
		return err
	}
	v.Proc = p
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	if v.Client, err = vaultapi.NewClient(cfg); err != nil {
		return err
	}
	v.Client.SetToken(v.RootToken)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = WaitFor(wctx, 50*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("vault exited:\n%s", tail(p.Output(), 20))
		}
		// Ready when KV v2 at secret/ answers.
		_, err := v.Client.Logical().ReadWithContext(wctx, "secret/config")
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for vault at %s: %w", v.Addr, err)
	}
	return nil
}

// Stop stops the server.
func (v *Vault) Stop() error { return v.Proc.Stop(10 * time.Second) }

// KubernetesAuth enables Vault's kubernetes auth method against c, as it is
// set up in a real cluster: Vault reviews tokens with TokenReview through a
// reviewer service account bound to system:auth-delegator.
func (v *Vault) KubernetesAuth(ctx context.Context, c *Cluster) error {
	cs := c.Clientset
	const ns, name = "kube-system", "vault-token-reviewer"
	// Several Vaults may review tokens of one cluster: the reviewer is shared.
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := v.Client.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes", &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		return err
	}
	_, err = v.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
		"kubernetes_host":        c.Host,
		"kubernetes_ca_cert":     string(c.CAPEM),
		"token_reviewer_jwt":     tr.Status.Token,
		"disable_local_ca_jwt":   true,
		"disable_iss_validation": true,
	})
	return err
}

// policy creates a policy that may read the given KV v2 paths (globs allowed).
func (v *Vault) policy(ctx context.Context, name string, readPaths []string) error {
	policy := ""
	for _, p := range readPaths {
		policy += fmt.Sprintf("path %q { capabilities = [\"read\"] }\n", "secret/data/"+p)
		policy += fmt.Sprintf("path %q { capabilities = [\"read\"] }\n", "secret/metadata/"+p)
	}
	return v.Client.Sys().PutPolicyWithContext(ctx, name, policy)
}

// JWTAuth enables Vault's jwt auth method for tokens of c, validated with
// the cluster's service-account signing certificate: Vault never calls the
// apiserver, as with an EKS/GKE OIDC issuer.
func (v *Vault) JWTAuth(ctx context.Context, c *Cluster) error {
	pub, err := saSigningKey(filepath.Join(c.Env.ControlPlane.APIServer.CertDir, "sa-signer.crt"))
	if err != nil {
		return err
	}
	if err := v.Client.Sys().EnableAuthWithOptionsWithContext(ctx, "jwt", &vaultapi.EnableAuthOptions{Type: "jwt"}); err != nil {
		return err
	}
	_, err = v.Client.Logical().WriteWithContext(ctx, "auth/jwt/config", map[string]any{"jwt_validation_pubkeys": []string{pub}})
	return err
}

// saSigningKey reads the apiserver's service-account signing certificate and
// returns its public key as PEM, the form jwt_validation_pubkeys takes.
func saSigningKey(file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return "", fmt.Errorf("%s: no PEM block", file)
	}
	if block.Type == "PUBLIC KEY" {
		return string(raw), nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// KV1 mounts an unversioned KV secrets engine at mount, once.
func (v *Vault) KV1(ctx context.Context, mount string) error {
	mounts, err := v.Client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return err
	}
	if _, ok := mounts[mount+"/"]; ok {
		return nil
	}
	err = v.Client.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}})
	if err != nil && strings.Contains(err.Error(), "path is already in use") {
		return nil
	}
	return err
}

// PutKV1 writes a secret at <mount>/<path> of a KV v1 engine.
func (v *Vault) PutKV1(ctx context.Context, mount, path string, data map[string]any) error {
	return v.Client.KVv1(mount).Put(ctx, path, data)
}

// PolicyToken creates a policy that may read the given paths (full API
// paths, globs allowed) and returns a new token that carries it.
func (v *Vault) PolicyToken(ctx context.Context, name string, paths ...string) (string, error) {
	policy := ""
	for _, p := range paths {
		policy += fmt.Sprintf("path %q { capabilities = [\"read\"] }\n", p)
	}
	if err := v.Client.Sys().PutPolicyWithContext(ctx, name, policy); err != nil {
		return "", err
	}
	tok, err := v.Client.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{name}, TTL: "1h"})
	if err != nil {
		return "", err
	}
	return tok.Auth.ClientToken, nil
}

// JWTRole creates a jwt auth role for one service account's tokens of the
// given audience, with a policy that reads readPaths.
func (v *Vault) JWTRole(ctx context.Context, role, namespace, serviceAccount, audience string, readPaths ...string) error {
	if err := v.policy(ctx, role, readPaths); err != nil {
		return err
	}
	_, err := v.Client.Logical().WriteWithContext(ctx, "auth/jwt/role/"+role, map[string]any{
		"role_type":       "jwt",
		"bound_audiences": audience,
		"user_claim":      "sub",
		"bound_subject":   "system:serviceaccount:" + namespace + ":" + serviceAccount,
		"token_policies":  role,
		"token_ttl":       "10m",
	})
	return err
}

// AppRole creates an AppRole with a policy that reads readPaths, enabling
// the approle auth method the first time, and returns its role id and a new
// secret id.
func (v *Vault) AppRole(ctx context.Context, role string, readPaths ...string) (roleID, secretID string, err error) {
	auths, err := v.Client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return "", "", err
	}
	if _, ok := auths["approle/"]; !ok {
		if err := v.Client.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
			return "", "", err
		}
	}
	if err := v.policy(ctx, role, readPaths); err != nil {
		return "", "", err
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "auth/approle/role/"+role, map[string]any{"token_policies": role, "token_ttl": "10m"}); err != nil {
		return "", "", err
	}
	r, err := v.Client.Logical().ReadWithContext(ctx, "auth/approle/role/"+role+"/role-id")
	if err != nil {
		return "", "", err
	}
	sid, err := v.Client.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		return "", "", err
	}
	return r.Data["role_id"].(string), sid.Data["secret_id"].(string), nil
}

// Role creates a policy that may read the given KV v2 paths (globs allowed)
// and a kubernetes auth role bound to one service account with it.
func (v *Vault) Role(ctx context.Context, role, namespace, serviceAccount, audience string, readPaths ...string) error {
	if err := v.policy(ctx, role, readPaths); err != nil {
		return err
	}
	_, err := v.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+role, map[string]any{
		"bound_service_account_names":      serviceAccount,
		"bound_service_account_namespaces": namespace,
		"audience":                         audience,
		"token_policies":                   role,
		"token_ttl":                        "10m",
	})
	return err
}

// Put writes a KV v2 secret at secret/<path>.
func (v *Vault) Put(ctx context.Context, path string, data map[string]any) error {
	_, err := v.Client.KVv2("secret").Put(ctx, path, data)
	return err
}

// Tenant makes the namespace most tests work in: a new namespace (prefix,
// labels) with a service account "app", a role of v (named after the
// namespace) that lets "app" read secret/<namespace>/*, and a SecretStore
// "vault" logging in to v with that role as "app" (the sync logs in as
// "app"; injected pods as themselves).
func (v *Vault) Tenant(ctx context.Context, c *Cluster, prefix string, labels map[string]string) (string, error) {
	ns, err := c.Namespace(ctx, prefix, labels)
	if err != nil {
		return "", err
	}
	if err := c.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		return "", err
	}
	if err := v.Role(ctx, ns, ns, "app", "vault", ns+"/*"); err != nil {
		return "", err
	}
	store := &v1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault"},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: v.Addr,
			Path:   "secret",
			Auth:   v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: ns, ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "app"}}},
		}}},
	}
	if err := c.Client.Create(ctx, store); err != nil {
		return "", err
	}
	return ns, nil
}
