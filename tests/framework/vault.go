package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
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
	port   int
	log    string
}

// StartVault starts the Vault binary named by $KEYHOOK_VAULT (hack/vault.sh
// prints it).
func StartVault(ctx context.Context, dir string) (*Vault, error) {
	bin, err := mustEnv("KEYHOOK_VAULT", "run the tests through make test, or export KEYHOOK_VAULT=$(hack/vault.sh)")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	v := &Vault{bin: bin, port: port, RootToken: "keyhook-test-root", Addr: fmt.Sprintf("http://127.0.0.1:%d", port),
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
		"-dev-listen-address=127.0.0.1:"+itoa(v.port),
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

// Role creates a policy that may read the given KV v2 paths (globs allowed)
// and a kubernetes auth role bound to one service account with it.
func (v *Vault) Role(ctx context.Context, role, namespace, serviceAccount, audience string, readPaths ...string) error {
	policy := ""
	for _, p := range readPaths {
		policy += fmt.Sprintf("path %q { capabilities = [\"read\"] }\n", "secret/data/"+p)
		policy += fmt.Sprintf("path %q { capabilities = [\"read\"] }\n", "secret/metadata/"+p)
	}
	if err := v.Client.Sys().PutPolicyWithContext(ctx, role, policy); err != nil {
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
