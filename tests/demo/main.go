// Command demo runs keyhook locally on real parts and shows it working: a
// control plane (etcd, kube-apiserver, kube-controller-manager), a Vault dev
// server with example data, and the keyhook controller and webhook. It applies examples/,
// prints how the Deployment's pod was injected, runs the pod's init-agent as
// the kubelet would, and lists the files it wrote; then shows the synced
// Secret, rotates a value in Vault and shows the Secret follow and the
// Deployment roll once. It stays up until Ctrl-C,
// then stops everything it started. `make demo` runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/tests/framework"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	once := flag.Bool("once", false, "exit after showing the result instead of waiting for Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo(ctx, os.Stdout, func(e *env) error {
		fmt.Printf("\nkeyhook is up. Point kubectl at it:\n\n   export KUBECONFIG=%s\n   %s get pods,externalsecrets,secretstores -n demo\n   %s get pod -n demo -l app=web -o yaml\n\n",
			e.Cluster.Kubeconfig, e.Kubectl, e.Kubectl)
		if *once {
			return nil
		}
		fmt.Println("Press Ctrl-C to stop everything.")
		<-ctx.Done()
		fmt.Println("\nstopping webhook, controller, Vault and control plane")
		return nil
	})
}

// env is what the demo started and did, for hold to look at before
// everything stops.
type env struct {
	Cluster *framework.Cluster
	Vault   *framework.Vault
	Kubectl string
	// Pod is the Deployment's first pod as the API server stored it.
	Pod *corev1.Pod
	// AgentRoot is the root the pod's init-agent wrote under.
	AgentRoot string
}

// demo starts everything, shows keyhook at work on w, then calls hold with
// what it started and stops it all when hold returns.
func demo(ctx context.Context, w io.Writer, hold func(*env) error) error {
	d := &shower{w: w}
	dir, err := os.MkdirTemp("", "keyhook-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	d.step("building keyhook")
	webhookBin, agentBin, err := framework.Binaries(dir)
	if err != nil {
		return err
	}
	d.step("starting etcd, kube-apiserver and kube-controller-manager")
	cluster, err := framework.StartCluster(ctx, dir)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.Stop() }()
	fmt.Fprintf(w, "   control plane ready in %s at %s\n", cluster.StartedIn.Round(time.Millisecond), cluster.Host)

	d.step("starting Vault (dev server) with kubernetes auth and example data")
	vault, err := framework.StartVault(ctx, dir)
	if err != nil {
		return err
	}
	defer func() { _ = vault.Stop() }()
	if err := vault.KubernetesAuth(ctx, cluster); err != nil {
		return err
	}
	if err := vault.Role(ctx, "demo-app", "demo", "app", "vault", "demo/*"); err != nil {
		return err
	}
	examples := map[string]map[string]any{
		"demo/db":  {"username": "demo-user", "password": "correct-horse-battery-staple"},
		"demo/api": {"token": "demo-api-token-123", "endpoint": "https://api.example.com"},
	}
	for path, data := range examples {
		if err := vault.Put(ctx, path, data); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "   Vault at %s: secret/demo/db, secret/demo/api; role demo-app for serviceaccount demo/app\n", vault.Addr)

	d.step("starting keyhook: the controller and the webhook (TLS), each as its own ServiceAccount, and registering the webhook")
	controllerBin, err := framework.ControllerBinary(dir)
	if err != nil {
		return err
	}
	ctl, err := framework.StartController(ctx, cluster, dir, framework.ControllerOptions{Binary: controllerBin, Args: []string{"--rollout-debounce=2s"}})
	if err != nil {
		return err
	}
	defer func() { _ = ctl.Stop() }()
	wh, err := framework.StartWebhook(ctx, cluster, dir, framework.WebhookOptions{Binary: webhookBin, AgentImage: "ghcr.io/keyhook/init-agent:demo"})
	if err != nil {
		return err
	}
	defer func() { _ = wh.Stop() }()
	fmt.Fprintf(w, "   webhook at %s, metrics at %s; controller metrics at %s\n", wh.URL, wh.MetricsURL, ctl.MetricsURL)

	d.step("kubectl apply -f examples/")
	kubectl := filepath.Join(os.Getenv("KEYHOOK_TESTENV"), "kubectl")
	if out, err := kubectlRun(kubectl, cluster.Kubeconfig, "", "create", "namespace", "demo"); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	if err := cluster.WaitForServiceAccount(ctx, "demo", "default"); err != nil {
		return err
	}
	for _, f := range []string{"secretstore.yaml", "externalsecret.yaml", "deployment.yaml"} {
		raw, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "examples", f))
		if err != nil {
			return err
		}
		manifest := strings.ReplaceAll(string(raw), "${VAULT_ADDR}", vault.Addr)
		out, err := kubectlRun(kubectl, cluster.Kubeconfig, manifest, "apply", "-f", "-")
		fmt.Fprint(w, indent(out))
		if err != nil {
			return fmt.Errorf("applying examples/%s: %v", f, err)
		}
	}

	d.step("waiting for the Deployment's pod (no kubelet here: it stays Pending)")
	var pod *corev1.Pod
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = framework.WaitFor(wctx, 100*time.Millisecond, func() (bool, error) {
		pods := &corev1.PodList{}
		if err := cluster.Client.List(wctx, pods, client.InNamespace("demo"), client.MatchingLabels{"app": "web"}); err != nil {
			return false, err
		}
		if len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("no pod: %w", err)
	}
	d.showInjection(pod)

	d.step("running the pod's init-agent as the kubelet would (its args, its env, a token of its service account)")
	root := filepath.Join(dir, "pod-root")
	res, err := framework.RunAgent(ctx, cluster, agentBin, pod, root)
	if err != nil {
		return err
	}
	fmt.Fprint(w, indent(res.Output))
	if res.Err != nil {
		return fmt.Errorf("agent failed: %v", res.Err)
	}
	if err := d.showFiles(root, examples); err != nil {
		return err
	}

	d.step("the reconciler keeps a Secret of each ExternalSecret current")
	before, err := waitSecret(ctx, cluster, "db-creds", func(*corev1.Secret) bool { return true })
	if err != nil {
		return err
	}
	if err := d.showSecret(before, examples["demo/db"]); err != nil {
		return err
	}
	if out, err := kubectlRun(kubectl, cluster.Kubeconfig, "", "get", "externalsecrets", "-n", "demo"); err == nil {
		fmt.Fprint(w, indent(out))
	}

	d.step("rotating secret/demo/db in Vault; keyhook.dev/force-sync asks for a sync now, not within refreshInterval (1h)")
	examples["demo/db"]["password"] = "tr0ub4dor-and-3-rotated"
	if err := vault.Put(ctx, "demo/db", examples["demo/db"]); err != nil {
		return err
	}
	out, err := kubectlRun(kubectl, cluster.Kubeconfig, "", "annotate", "externalsecret", "-n", "demo", "db-creds",
		"keyhook.dev/force-sync="+time.Now().Format("150405.000"), "--overwrite")
	fmt.Fprint(w, indent(out))
	if err != nil {
		return err
	}
	after, err := waitSecret(ctx, cluster, "db-creds", func(s *corev1.Secret) bool {
		return s.Annotations[annotations.DataHash] != before.Annotations[annotations.DataHash]
	})
	if err != nil {
		return err
	}
	if err := d.showSecret(after, examples["demo/db"]); err != nil {
		return err
	}
	rolled, err := waitRollout(ctx, cluster)
	if err != nil {
		return err
	}
	fmt.Fprint(w, indent(rolled))

	return hold(&env{Cluster: cluster, Vault: vault, Kubectl: kubectl, Pod: pod, AgentRoot: root})
}

// shower prints what the demo shows.
type shower struct{ w io.Writer }

func (d *shower) step(s string) { fmt.Fprintf(d.w, "\n==> %s\n", s) }

// waitSecret waits for the Secret keyhook syncs from ExternalSecret name.
func waitSecret(ctx context.Context, cluster *framework.Cluster, name string, ok func(*corev1.Secret) bool) (*corev1.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	s := &corev1.Secret{}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, s); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return ok(s), nil
	})
	if err != nil {
		es := &v1alpha1.ExternalSecret{}
		if gerr := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: name}, es); gerr == nil {
			for _, c := range es.Status.Conditions {
				err = fmt.Errorf("%w; ExternalSecret %s is %s=%s: %s", err, name, c.Type, c.Status, c.Message)
			}
		}
		return nil, fmt.Errorf("waiting for Secret demo/%s: %w", name, err)
	}
	return s, nil
}

// showSecret prints a synced Secret's keys, owner and data hash, and checks
// its data against Vault — the same keys, no more and no fewer, and the same
// values — without printing a value.
func (d *shower) showSecret(s *corev1.Secret, want map[string]any) error {
	keys := slices.Sorted(maps.Keys(s.Data))
	owner := "none"
	if len(s.OwnerReferences) > 0 {
		owner = s.OwnerReferences[0].Kind + "/" + s.OwnerReferences[0].Name
	}
	hash := s.Annotations[annotations.DataHash]
	fmt.Fprintf(d.w, "   Secret demo/%s: keys %v, owner %s, %s=%.12s…\n", s.Name, keys, owner, annotations.DataHash, hash)
	if wantKeys := slices.Sorted(maps.Keys(want)); !slices.Equal(keys, wantKeys) {
		return fmt.Errorf("Secret demo/%s has keys %v, Vault has %v", s.Name, keys, wantKeys)
	}
	for k, v := range want {
		if string(s.Data[k]) != v.(string) {
			return fmt.Errorf("Secret demo/%s key %s differs from Vault", s.Name, k)
		}
	}
	fmt.Fprintf(d.w, "   every key matches Vault\n")
	return nil
}

// waitRollout waits until the opted-in Deployment web has rolled once, and
// describes it: ReplicaSets and the Rollout event.
func waitRollout(ctx context.Context, cluster *framework.Cluster) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var rss appsv1.ReplicaSetList
	err := framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.List(ctx, &rss, client.InNamespace("demo"), client.MatchingLabels{"app": "web"}); err != nil {
			return false, err
		}
		return len(rss.Items) >= 2, nil
	})
	if err != nil {
		return "", fmt.Errorf("Deployment demo/web did not roll: %w", err)
	}
	out := fmt.Sprintf("Deployment demo/web (keyhook.dev/rollout: auto) rolled once: %d ReplicaSets\n", len(rss.Items))
	var evs eventsv1.EventList
	if err := cluster.Client.List(ctx, &evs, client.InNamespace("demo")); err != nil {
		return "", err
	}
	for _, e := range evs.Items {
		if e.Regarding.Kind == "Deployment" && e.Reason == "Rollout" {
			out += "event Rollout: " + e.Note + "\n"
		}
	}
	return out, nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ") + "\n"
}

func kubectlRun(kubectl, kubeconfig, stdin string, args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *shower) showInjection(pod *corev1.Pod) {
	fmt.Fprintf(d.w, "   pod %s/%s, annotation keyhook.dev/status=%s\n", pod.Namespace, pod.Name, pod.Annotations["keyhook.dev/status"])
	for _, c := range pod.Spec.InitContainers {
		fmt.Fprintf(d.w, "   init container %s (image %s, args %v)\n", c.Name, c.Image, c.Args)
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.EmptyDir != nil:
			fmt.Fprintf(d.w, "   volume %s: emptyDir medium=%s\n", v.Name, v.EmptyDir.Medium)
		case v.Projected != nil && v.Name == mutate.TokenVolumeName:
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					fmt.Fprintf(d.w, "   volume %s: projected service-account token, audience %q\n", v.Name, s.ServiceAccountToken.Audience)
				}
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == mutate.SecretsVolumeName {
				fmt.Fprintf(d.w, "   container %s mounts %s at %s read-only=%v\n", c.Name, m.Name, m.MountPath, m.ReadOnly)
			}
		}
	}
	for _, e := range pod.Spec.InitContainers[0].Env {
		if e.Name == plan.EnvVar {
			var pretty bytes.Buffer
			_ = json.Indent(&pretty, []byte(e.Value), "   ", "  ")
			fmt.Fprintf(d.w, "   the agent's plan ($%s; names and places, never a value):\n   %s\n", plan.EnvVar, pretty.String())
		}
	}
}

// showFiles lists what the agent wrote and checks it against the example
// data; it prints lengths and a verdict rather than the values themselves.
func (d *shower) showFiles(root string, examples map[string]map[string]any) error {
	want := map[string]string{
		"db-creds/username": examples["demo/db"]["username"].(string),
		"db-creds/password": examples["demo/db"]["password"].(string),
		"api-key/token":     examples["demo/api"]["token"].(string),
		"api-key/endpoint":  examples["demo/api"]["endpoint"].(string),
	}
	base := filepath.Join(root, "var/run/secrets/keyhook")
	var files []string
	err := filepath.Walk(base, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(base, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	fmt.Fprintf(d.w, "   files in the pod's in-memory volume (/var/run/secrets/keyhook):\n")
	for _, f := range files {
		info, err := os.Stat(filepath.Join(base, f))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(base, f))
		if err != nil {
			return err
		}
		verdict := "matches Vault"
		if string(b) != want[f] {
			verdict = "DIFFERS from Vault"
		}
		fmt.Fprintf(d.w, "   %s  %-20s %3d bytes  %s\n", info.Mode().Perm(), f, len(b), verdict)
		if verdict != "matches Vault" {
			return fmt.Errorf("%s differs from Vault", f)
		}
	}
	if len(files) != len(want) {
		return fmt.Errorf("agent wrote %d files, want %d", len(files), len(want))
	}
	return nil
}
