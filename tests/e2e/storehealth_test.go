package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/certs"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// storeProbeInterval is the webhook's --store-probe-interval in these tests.
const storeProbeInterval = 10 * time.Second

// waitStoreReady waits until the store's Ready condition, for its current
// generation, has the status and reason given, and returns its message.
func waitStoreReady(ctx context.Context, t *testing.T, obj client.Object, status metav1.ConditionStatus, reason string) string {
	t.Helper()
	var last *metav1.Condition
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err
		}
		var conds []metav1.Condition
		switch s := obj.(type) {
		case *v1alpha1.SecretStore:
			conds = s.Status.Conditions
		case *v1alpha1.ClusterSecretStore:
			conds = s.Status.Conditions
		}
		last = meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
		return last != nil && last.Status == status && last.Reason == reason && last.ObservedGeneration == obj.GetGeneration(), nil
	})
	if err != nil {
		t.Fatalf("store %s never became Ready=%s %s: %v; last condition %+v", obj.GetName(), status, reason, err, last)
	}
	if strings.ContainsAny(last.Message, "\n\r") {
		t.Errorf("store %s: Ready message %q spans lines", obj.GetName(), last.Message)
	}
	return last.Message
}

func wantSays(t *testing.T, what, msg string, says ...string) {
	t.Helper()
	t.Logf("%s: %s", what, msg)
	for _, s := range says {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: Ready message %q does not say %q", what, msg, s)
		}
	}
}

func vaultStore(ns, name, server, role, sa string, ca []byte) *v1alpha1.SecretStore {
	return &v1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: server, CABundle: ca,
			Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: role, ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: sa}}},
		}}},
	}
}

// tlsFront serves the real Vault over TLS with a certificate of a CA of its
// own, whose PEM it returns.
func tlsFront(t *testing.T) (addr string, caPEM []byte) {
	t.Helper()
	caPEM, certPEM, keyPEM, err := certs.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(vault.Addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, caPEM
}

// TestStoreHealth: every SecretStore and ClusterSecretStore reports Ready
// from a probe against the real Vault, with the cause of a failure named in
// one line, a printer column and a metric; fixing a store makes it Ready.
func TestStoreHealth(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "stores") // SecretStore "vault": role ns, service account "app"
	if err := cluster.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"}}); err != nil {
		t.Fatal(err)
	}
	// A role that logs in but is granted nothing under the KV mount "secret".
	denied := ns + "-denied"
	if err := vault.Client.Sys().PutPolicyWithContext(ctx, denied, `path "cubbyhole/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+denied, map[string]any{
		"bound_service_account_names": "app", "bound_service_account_namespaces": ns, "audience": "vault",
		"token_policies": denied, "token_ttl": "10m",
	}); err != nil {
		t.Fatal(err)
	}
	closed, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	front, frontCA := tlsFront(t)
	otherCA, _, _, err := certs.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	stores := map[string]*v1alpha1.SecretStore{
		"wrong-role":  vaultStore(ns, "wrong-role", vault.Addr, ns+"-nope", "app", nil),
		"unbound-sa":  vaultStore(ns, "unbound-sa", vault.Addr, ns, "other", nil),
		"bad-ca":      vaultStore(ns, "bad-ca", front, ns, "app", otherCA),
		"unreachable": vaultStore(ns, "unreachable", fmt.Sprintf("http://127.0.0.1:%d", closed), ns, "app", nil),
		"denied":      vaultStore(ns, "denied", vault.Addr, denied, "app", nil),
	}
	for _, s := range stores {
		if err := cluster.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	good := &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault"}}
	wantSays(t, "good store", waitStoreReady(ctx, t, good, metav1.ConditionTrue, "Valid"), "no secret read")
	wantSays(t, "wrong role", waitStoreReady(ctx, t, stores["wrong-role"], metav1.ConditionFalse, "AuthenticationFailed"),
		"auth/kubernetes/login", `role "`+ns+`-nope"`, "invalid role name")
	// The probe logs in as the namespace's service account the store names,
	// never as keyhook: a service account the role does not bind is refused.
	wantSays(t, "service account the role does not bind", waitStoreReady(ctx, t, stores["unbound-sa"], metav1.ConditionFalse, "AuthenticationFailed"),
		`role "`+ns+`"`, "403")
	wantSays(t, "bad CA", waitStoreReady(ctx, t, stores["bad-ca"], metav1.ConditionFalse, "TLSError"),
		"caBundle", "certificate signed by unknown authority")
	wantSays(t, "unreachable", waitStoreReady(ctx, t, stores["unreachable"], metav1.ConditionFalse, "ServerUnreachable"),
		"cannot reach the server", fmt.Sprintf("127.0.0.1:%d", closed), "connection refused")
	wantSays(t, "permission denied", waitStoreReady(ctx, t, stores["denied"], metav1.ConditionFalse, "PermissionDenied"),
		"permission denied", `KV mount "secret"`, "403")

	// kubectl shows it.
	out, err := exec.CommandContext(ctx, testKubectl(), "--kubeconfig="+cluster.Kubeconfig, "get", "secretstores", "-n", ns).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get secretstores: %v\n%s", err, out)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 {
			rows[f[0]] = f[1] + " " + f[2]
		}
	}
	for name, want := range map[string]string{"NAME": "READY REASON", "vault": "True Valid", "wrong-role": "False AuthenticationFailed",
		"bad-ca": "False TLSError", "unreachable": "False ServerUnreachable", "denied": "False PermissionDenied"} {
		if rows[name] != want {
			t.Errorf("kubectl get secretstores: row %s shows %q, want %q\n%s", name, rows[name], want, out)
		}
	}

	// One gauge per store.
	metrics := scrape(t, controller.MetricsURL)
	for name, v := range map[string]int{"vault": 1, "wrong-role": 0, "bad-ca": 0, "unreachable": 0, "denied": 0} {
		want := fmt.Sprintf(`keyhook_store_ready{kind="SecretStore",name=%q,namespace=%q} %d`, name, ns, v)
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Fixing the store makes it Ready: in its spec (seen at once) ...
	for name, fix := range map[string]func(*v1alpha1.VaultProvider){
		"wrong-role":  func(v *v1alpha1.VaultProvider) { v.Auth.Kubernetes.Role = ns },
		"bad-ca":      func(v *v1alpha1.VaultProvider) { v.CABundle = frontCA },
		"unreachable": func(v *v1alpha1.VaultProvider) { v.Server = vault.Addr },
	} {
		s := stores[name]
		patch := client.MergeFrom(s.DeepCopy())
		fix(s.Spec.Provider.Vault)
		if err := cluster.Client.Patch(ctx, s, patch); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"wrong-role", "bad-ca", "unreachable"} {
		waitStoreReady(ctx, t, stores[name], metav1.ConditionTrue, "Valid")
	}
	// ... or in Vault, seen at the next periodic probe.
	if err := vault.Client.Sys().PutPolicyWithContext(ctx, denied, `path "secret/data/`+ns+`/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	waitStoreReady(ctx, t, stores["denied"], metav1.ConditionTrue, "Valid")
	if !strings.Contains(scrape(t, controller.MetricsURL), fmt.Sprintf(`keyhook_store_ready{kind="SecretStore",name="denied",namespace=%q} 1`, ns)) {
		t.Errorf("keyhook_store_ready of the fixed store is not 1")
	}

	// A deleted store's gauge goes.
	if err := cluster.Client.Delete(ctx, stores["unbound-sa"]); err != nil {
		t.Fatal(err)
	}
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		return !strings.Contains(scrape(t, controller.MetricsURL), fmt.Sprintf(`keyhook_store_ready{kind="SecretStore",name="unbound-sa",namespace=%q}`, ns)), nil
	})
	if err != nil {
		t.Errorf("the gauge of a deleted store stays")
	}
}

// TestClusterStoreHealth: a ClusterSecretStore whose login uses the
// namespace of each ExternalSecret is checked for what can be checked
// without one (its server answers); one with credentials of its own logs in.
func TestClusterStoreHealth(t *testing.T) {
	ctx := testContext(t)
	ns, err := cluster.Namespace(ctx, "cstore", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := vault.PolicyToken(ctx, ns, "secret/data/"+ns+"/*")
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault-token"}, Data: map[string][]byte{"token": []byte(tok)}}); err != nil {
		t.Fatal(err)
	}
	closed, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cstore := func(name, server string, auth v1alpha1.VaultAuth) *v1alpha1.ClusterSecretStore {
		return &v1alpha1.ClusterSecretStore{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: server, Auth: auth}}},
		}
	}
	perNS := v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "any"}}
	own := v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Namespace: ns, Name: "vault-token", Key: "token"}}
	stores := []*v1alpha1.ClusterSecretStore{
		cstore(ns+"-reachable", vault.Addr, perNS),
		cstore(ns+"-unreachable", fmt.Sprintf("http://127.0.0.1:%d", closed), perNS),
		cstore(ns+"-token", vault.Addr, own),
	}
	for _, s := range stores {
		if err := cluster.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), s) })
	}
	wantSays(t, "per-namespace login", waitStoreReady(ctx, t, stores[0], metav1.ConditionTrue, "Reachable"), "each ExternalSecret")
	wantSays(t, "unreachable", waitStoreReady(ctx, t, stores[1], metav1.ConditionFalse, "ServerUnreachable"), "connection refused")
	waitStoreReady(ctx, t, stores[2], metav1.ConditionTrue, "Valid")
	// The probe's token is the store's own: still valid after the probes.
	if _, err := vault.Client.Auth().Token().LookupWithContext(ctx, tok); err != nil {
		t.Errorf("the store's own token no longer works after the probe: %v", err)
	}
	assertNoValues(ctx, t, ns, tok)
	if strings.Contains(webhook.Proc.Output(), tok) {
		t.Errorf("the store's token appears in the webhook's log")
	}
}
