package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestLeaderElection runs two controllers with leader election, as the
// Deployment of manifests/ does: only the leader reconciles; killed, the
// other takes over and does not roll again what the first one rolled.
func TestLeaderElection(t *testing.T) {
	ctx := testContext(t)
	// The package's controller runs without leader election; it steps
	// aside for this test and comes back after it.
	if err := controller.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := controller.Start(context.Background()); err != nil {
			t.Errorf("restarting the package's controller: %v", err)
		}
	})
	controllerBin, err := framework.ControllerBinary(workDir)
	if err != nil {
		t.Fatal(err)
	}
	start := func(name string) *framework.Controller {
		w, err := framework.StartController(ctx, cluster, t.TempDir(), framework.ControllerOptions{
			Binary: controllerBin, Name: name,
			Args: []string{
				"--leader-elect", "--leader-election-namespace=" + framework.Namespace,
				"--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=250ms",
				"--rollout-debounce=" + rolloutDebounce.String(),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop() })
		return w
	}
	a, b := start("a"), start("b")

	lease := &coordinationv1.Lease{}
	var leader, follower *framework.Controller
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: framework.Namespace, Name: "keyhook.dev"}, lease); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, w := range []*framework.Controller{a, b} {
			if strings.Contains(w.Proc.Output(), "elected leader") {
				leader = w
			}
		}
		return leader != nil, nil
	})
	if err != nil {
		t.Fatalf("no leader: %v", err)
	}
	follower = b
	if leader == b {
		follower = a
	}

	ns := tenant(ctx, t, "leader")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v1")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Second},
		Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, deployment(ns, "web", annotated("keyhook.dev/rollout", "auto"), envFromSecret("db"))); err != nil {
		t.Fatal(err)
	}
	waitRecorded(ctx, t, ns, "web", "secret/db")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v2")}); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 2)
	if strings.Contains(follower.Proc.Output(), `"msg":"rolled out"`) || strings.Contains(follower.Proc.Output(), `"msg":"secret written"`) {
		t.Errorf("the follower reconciled while the leader held the lease")
	}
	if !strings.Contains(leader.Proc.Output(), `"msg":"rolled out"`) {
		t.Errorf("the leader did not log the rollout")
	}

	// Kill the leader: no graceful hand-over. The follower takes over after
	// the lease expires, and does not roll what was rolled already.
	leader.Kill()
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		return strings.Contains(follower.Proc.Output(), "elected leader"), nil
	})
	if err != nil {
		t.Fatalf("the follower never took over: %v", err)
	}
	time.Sleep(rolloutDebounce + 2*time.Second)
	if got := replicaSets(ctx, t, ns, "web"); got != 2 {
		t.Fatalf("after the take-over the Deployment has %d ReplicaSets, want 2 (no duplicate rollout)", got)
	}
	// And the new leader rolls the next change, once.
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v3")}); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 3)
}
