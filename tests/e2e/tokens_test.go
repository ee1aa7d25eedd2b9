package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// liveTokens counts the tokens Vault holds (their accessors, listed with the
// root token).
func liveTokens(ctx context.Context, t *testing.T, v *framework.Vault) int {
	t.Helper()
	s, err := v.Client.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return 0
	}
	keys, _ := s.Data["keys"].([]any)
	return len(keys)
}

// tokenTenant is tenant() against Vault v: a namespace with an "app"
// service account, a kubernetes auth role reading secret/<ns>/* and a
// SecretStore "vault" logging in with it.
func tokenTenant(ctx context.Context, t *testing.T, v *framework.Vault, prefix string) string {
	t.Helper()
	ns, err := v.Tenant(ctx, cluster, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

var vaultLogins = regexp.MustCompile(`keyhook_provider_calls_total\{call="login",provider="vault",status="success"\} (\d+)`)

// TestVaultTokensRevoked: every login keyhook makes to Vault is revoked when
// it is no longer needed. 100 agent runs (some failing) and many sync
// sessions later, and after both reconcilers stopped, Vault holds as many
// tokens as before. Counted on a Vault of the test's own, so that no other
// test's tokens (or their expiry) move the count.
func TestVaultTokensRevoked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v, err := framework.StartVault(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Stop() })
	if err := v.KubernetesAuth(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	// Counted before any SecretStore of this Vault exists: from then on the
	// package's controller probes the stores' health with logins of its own
	// (revoked at once, but one may be in flight at any moment).
	before := liveTokens(ctx, t, v)
	const scopes = 3
	var namespaces []string
	for range scopes {
		namespaces = append(namespaces, tokenTenant(ctx, t, v, "tokens"))
	}
	ns := namespaces[0]
	password := secretValue(t, "password")
	for _, n := range namespaces {
		if err := v.Put(ctx, n+"/db", map[string]any{"password": password}); err != nil {
			t.Fatal(err)
		}
	}

	// The package's webhook injects the pods and syncs the ExternalSecret,
	// in a session of its own (5 minutes), then stops: its shutdown must
	// revoke that session's token.
	for name, key := range map[string]string{"db": ns + "/db", "missing": ns + "/missing"} {
		if err := cluster.Client.Create(ctx, externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("password", key, "password", "")},
		})); err != nil {
			t.Fatal(err)
		}
	}
	good := plainPod(ns, "good", map[string]string{"keyhook.dev/inject": "db"}, nil)
	bad := plainPod(ns, "bad", map[string]string{"keyhook.dev/inject": "missing"}, nil)
	for _, p := range []*corev1.Pod{good, bad} {
		p.Spec.ServiceAccountName = "app"
		if err := cluster.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if !hasAgent(p) {
			t.Fatal("pod not injected")
		}
	}
	waitForES(ctx, t, ns, "db", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	if err := controller.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := controller.Start(context.Background()); err != nil {
			t.Errorf("restarting the package's controller: %v", err)
		}
	})
	// Before the package's controller comes back: nothing of this test is left
	// for it to sync against a Vault that is gone.
	t.Cleanup(func() {
		for _, n := range namespaces {
			_ = cluster.Client.DeleteAllOf(context.Background(), &v1alpha1.ExternalSecret{}, client.InNamespace(n))
		}
	})

	// 100 agent runs, 4 at a time as pods starting together would; one in
	// ten fails (its key does not exist), which must revoke all the same.
	const runs = 100
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		succeeded int
		failed    int
		sem       = make(chan struct{}, 4)
	)
	for i := range runs {
		pod := good
		if i%10 == 9 {
			pod = bad
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			run, err := framework.RunAgent(ctx, cluster, agentBin, pod, t.TempDir(), "--deadline=20s")
			if err != nil {
				t.Error(err)
				return
			}
			if strings.Contains(run.Output, password) {
				t.Error("the agent printed the value")
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case pod == good && run.Err == nil:
				succeeded++
			case pod == bad && run.Err != nil:
				failed++
			default:
				t.Errorf("agent of %s: err %v\n%s", pod.Name, run.Err, run.Output)
			}
		})
	}
	wg.Wait()
	if succeeded != 90 || failed != 10 {
		t.Fatalf("%d runs succeeded and %d failed, want 90 and 10", succeeded, failed)
	}
	if got := liveTokens(ctx, t, v); got != before {
		t.Errorf("after %d agent runs and the package webhook's shutdown Vault holds %d tokens, want %d as before: %d leaked", runs, got, before, got-before)
	}

	// Many sync sessions: a reconciler whose sessions last 1 s, syncing an
	// ExternalSecret of each namespace every 300 ms.
	controllerBin, err := framework.ControllerBinary(workDir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := framework.StartController(ctx, cluster, t.TempDir(), framework.ControllerOptions{
		Binary: controllerBin, Name: "tokens",
		Args: []string{"--enable-policy=false", "--provider-session-ttl=1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	for _, n := range namespaces {
		if err := cluster.Client.Create(ctx, externalSecret(n, "often", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: 300 * time.Millisecond},
			Data:            []v1alpha1.ExternalSecretData{data("password", n+"/db", "password", "")},
		})); err != nil {
			t.Fatal(err)
		}
	}
	const wantLogins = 15
	most := 0
	err = framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
		// Expired sessions are revoked as they expire, not only at the
		// end: per scope a live session, one being retired and, rarely,
		// a login racing another.
		most = max(most, liveTokens(ctx, t, v)-before)
		m := vaultLogins.FindStringSubmatch(scrape(t, w.MetricsURL))
		if m == nil {
			return false, nil
		}
		n, _ := strconv.Atoi(m[1])
		return n >= wantLogins, nil
	})
	if err != nil {
		t.Fatalf("the sync never logged in %d times: %v", wantLogins, err)
	}
	if most > 3*scopes {
		t.Errorf("up to %d tokens of the sync were live at once with %d sessions of 1 s: expired sessions are not revoked", most, scopes)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := liveTokens(ctx, t, v); got != before {
		t.Errorf("after the sync's sessions and its shutdown Vault holds %d tokens, want %d as before: %d leaked", got, before, got-before)
	}
}
