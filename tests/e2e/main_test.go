// Package e2e tests keyhook end to end against the real parts: etcd,
// kube-apiserver and kube-controller-manager, a real Vault dev server, and the
// keyhook webhook, controller and init-agent binaries, the webhook and the
// controller each as its own ServiceAccount with the RBAC of manifests/. One
// control plane, Vault, webhook and controller serve the whole package; each
// test works in namespaces of its own.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/keyhook/keyhook/tests/framework"
)

// agentImage is what the webhook injects; no kubelet pulls it here, the
// tests run the agent binary with the stored container's args and env.
// Pods whose stores are all AWS or all Google ones get the one-provider
// images (--agent-image-aws, --agent-image-gcpsm), and the tests run the
// agent built for that provider alone.
const (
	agentImage      = "ghcr.io/keyhook/init-agent:e2e"
	agentImageAWS   = "ghcr.io/keyhook/init-agent-aws:e2e"
	agentImageGCPSM = "ghcr.io/keyhook/init-agent-gcpsm:e2e"
)

// rolloutDebounce is the storm guard of the controller under test, shorter than
// the default so that the tests wait less.
const rolloutDebounce = 3 * time.Second

var (
	cluster    *framework.Cluster
	vault      *framework.Vault
	webhook    *framework.Webhook
	controller *framework.Controller
	agentBin   string
	// agentBins are the agent binaries by the image the webhook injects.
	agentBins map[string]string
	workDir   string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if workDir, err = os.MkdirTemp("", "keyhook-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(workDir)
		}
	}()
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "e2e setup: %s: %v\n(logs kept in %s)\n", what, err, workDir)
		keep = true
		return 1
	}
	webhookBin, agent, err := framework.Binaries(workDir)
	if err != nil {
		return fail("binaries", err)
	}
	agentBin = agent
	agentBins = map[string]string{agentImage: agent}
	for image, provider := range map[string]string{agentImageAWS: "aws", agentImageGCPSM: "gcpsm"} {
		if agentBins[image], err = framework.AgentBinary(workDir, provider); err != nil {
			return fail("binaries", err)
		}
	}
	controllerBin, err := framework.ControllerBinary(workDir)
	if err != nil {
		return fail("binaries", err)
	}
	start := time.Now()
	if cluster, err = framework.StartCluster(ctx, workDir); err != nil {
		return fail("control plane", err)
	}
	defer func() { _ = cluster.Stop() }()
	fmt.Fprintf(os.Stderr, "e2e: control plane ready in %s\n", cluster.StartedIn.Round(time.Millisecond))
	if vault, err = framework.StartVault(ctx, workDir); err != nil {
		return fail("vault", err)
	}
	defer func() { _ = vault.Stop() }()
	if err = vault.JWTAuth(ctx, cluster); err != nil {
		return fail("vault jwt auth", err)
	}
	if err = vault.KubernetesAuth(ctx, cluster); err != nil {
		return fail("vault kubernetes auth", err)
	}
	if controller, err = framework.StartController(ctx, cluster, workDir, framework.ControllerOptions{Binary: controllerBin, Args: []string{"--rollout-debounce=" + rolloutDebounce.String(), "--store-probe-interval=" + storeProbeInterval.String(), "--version-probe-interval=" + versionProbeInterval.String()}}); err != nil {
		return fail("controller", err)
	}
	defer func() { _ = controller.Stop() }()
	if webhook, err = framework.StartWebhook(ctx, cluster, workDir, framework.WebhookOptions{
		Binary: webhookBin, AgentImage: agentImage,
		Args: []string{"--agent-image-aws=" + agentImageAWS, "--agent-image-gcpsm=" + agentImageGCPSM},
	}); err != nil {
		return fail("webhook", err)
	}
	defer func() { _ = webhook.Stop() }()
	fmt.Fprintf(os.Stderr, "e2e: control plane, vault, controller and webhook ready in %s\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		keep = true
		fmt.Fprintf(os.Stderr, "e2e: logs kept in %s\n", workDir)
	}
	return code
}
