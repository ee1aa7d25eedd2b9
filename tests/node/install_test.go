package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/tests/framework"
)

// keyhookNamespace, keyhookDeployment (the webhook) and keyhookController
// are where the chart installs keyhook.
const (
	keyhookNamespace  = "keyhook-system"
	keyhookDeployment = "keyhook-webhook"
	keyhookController = "keyhook-controller"
	keyhookConfig     = "keyhook"
)

// kubectl runs the control plane's kubectl as the cluster's admin.
func kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(os.Getenv("KEYHOOK_TESTENV"), "kubectl"), append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// installKeyhook installs keyhook as the README's Install section does
// without cert-manager — helm install keyhook charts/keyhook -n
// keyhook-system --create-namespace --set tls.mode=selfManaged — with the
// images this run imported into the node by tag (--set image.registry=...
// --set image.tag=..., pull policy Never: never pulled). It returns when
// every replica is ready and the webhook configurations trust the CA keyhook
// issued itself.
func installKeyhook(ctx context.Context, registry, tag string) error {
	var helmLog bytes.Buffer
	cfg, err := framework.HelmConfig(cluster, keyhookNamespace, &helmLog)
	if err != nil {
		return err
	}
	ch, err := framework.LoadChart()
	if err != nil {
		return err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = "keyhook"
	install.Namespace = keyhookNamespace
	install.CreateNamespace = true
	install.ServerSideApply = true
	install.WaitStrategy = kube.HookOnlyStrategy
	install.Timeout = 2 * time.Minute
	vals := map[string]any{
		"image": map[string]any{"registry": registry, "tag": tag, "pullPolicy": "Never"},
		"tls":   map[string]any{"mode": "selfManaged"},
	}
	if _, err := install.RunWithContext(ctx, ch, vals); err != nil {
		return fmt.Errorf("helm install keyhook charts/keyhook: %w\n%s", err, helmLog.String())
	}
	return waitKeyhookReady(ctx)
}

// waitKeyhookReady waits until keyhook's Deployment has all replicas ready
// (each serves a certificate the API server trusts: readiness says so) and
// its webhook configuration carries a caBundle.
func waitKeyhookReady(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var state string
	err := framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		for _, name := range []string{keyhookController, keyhookDeployment} {
			var ready bool
			var err error
			if ready, state, err = deploymentReady(wctx, name); !ready || err != nil {
				return false, err
			}
		}
		missing, err := caBundleMissing(wctx)
		if missing != "" {
			state = missing
		}
		return missing == "" && err == nil, err
	})
	if err != nil {
		pods, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "get", "pods", "-o", "wide")
		logs, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "logs", "deploy/"+keyhookDeployment, "--tail=30")
		ctlLogs, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "logs", "deploy/"+keyhookController, "--tail=30")
		return fmt.Errorf("waiting for keyhook: %w (%s)\n%s\n%s\n%s", err, state, pods, logs, ctlLogs)
	}
	return nil
}

// deploymentReady reports whether keyhook's Deployment name has all its
// replicas updated and ready, and says how many are.
func deploymentReady(ctx context.Context, name string) (bool, string, error) {
	d := &appsv1.Deployment{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: keyhookNamespace, Name: name}, d); err != nil {
		return false, "", err
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	state := fmt.Sprintf("%s: %d of %d replicas ready", name, d.Status.ReadyReplicas, want)
	return d.Status.ObservedGeneration == d.Generation && d.Status.ReadyReplicas == want && d.Status.UpdatedReplicas == want &&
		d.Status.Replicas == want, state, nil
}

// waitDeploymentReady waits until keyhook's Deployment name is ready.
func waitDeploymentReady(ctx context.Context, name string) error {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var state string
	err := framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		var ready bool
		var err error
		ready, state, err = deploymentReady(wctx, name)
		return ready, err
	})
	if err != nil {
		pods, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "get", "pods", "-o", "wide")
		return fmt.Errorf("waiting for %s: %w (%s)\n%s", name, err, state, pods)
	}
	return nil
}

// caBundleMissing names the first entry of keyhook's mutating webhook
// configuration that has no caBundle yet ("no caBundle in <entry>"), ""
// when every entry has one: until then the API server cannot call keyhook.
func caBundleMissing(ctx context.Context) (string, error) {
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: keyhookConfig}, m); err != nil {
		return "", err
	}
	for _, w := range m.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 {
			return "no caBundle in " + w.Name, nil
		}
	}
	return "", nil
}
