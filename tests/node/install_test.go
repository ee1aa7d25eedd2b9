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

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyhook/keyhook/tests/framework"
)

// keyhookNamespace and keyhookDeployment are where manifests/ installs
// keyhook.
const (
	keyhookNamespace  = "keyhook-system"
	keyhookDeployment = "keyhook"
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

// installKeyhook installs keyhook as a user does without cert-manager —
// manifests/self-managed, rendered by kubectl's kustomize — with the images
// this run imported into the node: the same objects, only the images named
// differently and never pulled. It returns when both replicas are ready and
// the webhook configurations trust the CA keyhook issued itself.
func installKeyhook(ctx context.Context, webhookImage, agentImage string) error {
	rendered, err := kubectl(ctx, nil, "kustomize", filepath.Join(framework.RepoRoot(), "manifests", "self-managed"))
	if err != nil {
		return err
	}
	var out [][]byte
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return fmt.Errorf("manifests/self-managed: %w", err)
		}
		if obj["kind"] == "Deployment" {
			if err := useImages(obj, webhookImage, agentImage); err != nil {
				return err
			}
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		out = append(out, b)
	}
	// The CRDs are installed already (envtest, from the same files): apply
	// updates them in place.
	if _, err := kubectl(ctx, bytes.Join(out, []byte("\n---\n")), "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
		return err
	}
	return waitKeyhookReady(ctx)
}

// useImages points keyhook's Deployment at the locally imported images.
func useImages(deploy map[string]any, webhookImage, agentImage string) error {
	spec, _ := deploy["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	podSpec, _ := tmpl["spec"].(map[string]any)
	containers, _ := podSpec["containers"].([]any)
	if len(containers) != 1 {
		return fmt.Errorf("keyhook's Deployment has %d containers, want 1", len(containers))
	}
	c := containers[0].(map[string]any)
	c["image"] = webhookImage
	c["imagePullPolicy"] = "Never"
	args, _ := c["args"].([]any)
	found, policy := false, false
	for i, a := range args {
		s, _ := a.(string)
		switch {
		case strings.HasPrefix(s, "--agent-image="):
			args[i], found = "--agent-image="+agentImage, true
		case strings.HasPrefix(s, "--agent-image-pull-policy="):
			args[i], policy = "--agent-image-pull-policy=Never", true
		}
	}
	if !found {
		return fmt.Errorf("keyhook's Deployment has no --agent-image argument: %v", args)
	}
	if !policy {
		args = append(args, "--agent-image-pull-policy=Never")
	}
	c["args"] = args
	return nil
}

// waitKeyhookReady waits until keyhook's Deployment has all replicas ready
// (each serves a certificate the API server trusts: readiness says so) and
// its webhook configuration carries a caBundle.
func waitKeyhookReady(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var state string
	err := framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		d := &appsv1.Deployment{}
		if err := cluster.Client.Get(wctx, client.ObjectKey{Namespace: keyhookNamespace, Name: keyhookDeployment}, d); err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		state = fmt.Sprintf("%d of %d replicas ready", d.Status.ReadyReplicas, want)
		if d.Status.ObservedGeneration != d.Generation || d.Status.ReadyReplicas != want || d.Status.UpdatedReplicas != want {
			return false, nil
		}
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := cluster.Client.Get(wctx, client.ObjectKey{Name: keyhookConfig}, m); err != nil {
			return false, err
		}
		for _, w := range m.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				state = "no caBundle in " + w.Name
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		pods, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "get", "pods", "-o", "wide")
		logs, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "logs", "deploy/"+keyhookDeployment, "--tail=30")
		return fmt.Errorf("waiting for keyhook: %w (%s)\n%s\n%s", err, state, pods, logs)
	}
	return nil
}
