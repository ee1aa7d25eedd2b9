package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// upgradeAndUninstall runs after the package's tests (TestMain), on the
// keyhook installKeyhook installed and the tests used, with its pods on the
// node: the README's helm upgrade (changed values: both Deployments' pods
// roll and become ready again, and the upgraded webhook injects), then the
// README's uninstall steps, after which nothing of keyhook's may be left,
// cluster-wide or namespaced, but its CRDs: not its runtime state either
// (the self-managed TLS Secret, the leader-election Lease, the
// keyhook.dev/injection labels its controller put on namespaces, its
// events). The commands are read from the README's Install section. It
// returns the exit code: 0, or 1 after saying what failed, which fails the
// package.
func upgradeAndUninstall() int {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	if err := lifecycle(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "node: helm upgrade and the README's uninstall: FAIL\n%v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "node: helm upgrade (pods rolled and ready) and the README's uninstall (nothing of keyhook's left but its CRDs): ok in %s\n",
		time.Since(start).Round(time.Millisecond))
	return 0
}

func lifecycle(ctx context.Context) error {
	// keyhook's runtime state, so that its removal is checked: an enforced
	// and a default namespace, labelled by keyhook's controller.
	enforced, loose, err := policyNamespaces(ctx)
	if err != nil {
		return err
	}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: keyhookNamespace, Name: "keyhook-webhook-tls"}, &corev1.Secret{}); err != nil {
		return fmt.Errorf("keyhook's self-managed TLS Secret: %w", err)
	}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: keyhookNamespace, Name: "keyhook.dev"}, &coordinationv1.Lease{}); err != nil {
		return fmt.Errorf("keyhook's leader-election Lease: %w", err)
	}

	var helmLog bytes.Buffer
	cfg, err := framework.HelmConfig(cluster, keyhookNamespace, &helmLog)
	if err != nil {
		return err
	}
	if err := upgrade(ctx, cfg); err != nil {
		return fmt.Errorf("%w\nhelm log:\n%s", err, helmLog.String())
	}
	// The upgraded webhook injects with its new values: the Vault-only
	// agent image, the new deadline.
	pod, err := dryRunPod(ctx, enforced)
	if err != nil {
		return fmt.Errorf("after the upgrade, a pod in enforced namespace %s: %w", enforced, err)
	}
	if i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "keyhook-agent" }); i < 0 {
		return fmt.Errorf("after the upgrade, a pod in enforced namespace %s is not injected: init containers %v", enforced, pod.Spec.InitContainers)
	} else if c := pod.Spec.InitContainers[i]; c.Image != imageRepo+"/init-agent-vault:"+imageTag || !slices.Contains(c.Args, "--deadline=1m30s") {
		return fmt.Errorf("after the upgrade, the injected agent is %s with %v, want the Vault agent %s with --deadline=1m30s", c.Image, c.Args, imageRepo+"/init-agent-vault:"+imageTag)
	}

	// While keyhook is installed its ValidatingAdmissionPolicy refuses the
	// README's label removal (the README says so: the order matters).
	labelStep, err := readmeCommand("kubectl label namespace")
	if err != nil {
		return err
	}
	if out, err := kubectl(ctx, nil, strings.Fields(labelStep)[1:]...); err == nil || !strings.Contains(out, "is set only by keyhook") {
		return fmt.Errorf("with keyhook installed, %q: %v, want the refusal of keyhook's admission policy:\n%s", labelStep, err, out)
	}

	// helm uninstall keyhook -n keyhook-system
	cmd, err := readmeCommand("helm uninstall")
	if err != nil {
		return err
	}
	un, err := framework.ParseHelmCommand(cmd)
	if err != nil {
		return err
	}
	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	uninstall.Timeout = 2 * time.Minute
	if _, err := uninstall.Run(un.Release); err != nil {
		return fmt.Errorf("%s: %w\nhelm log:\n%s", cmd, err, helmLog.String())
	}
	// What helm leaves is what the README's next steps remove.
	for _, ns := range []string{enforced, loose} {
		n := &corev1.Namespace{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return err
		}
		if _, ok := n.Labels["keyhook.dev/injection"]; !ok {
			return fmt.Errorf("namespace %s lost its keyhook.dev/injection label before the README's step that removes it: the step is not tested", ns)
		}
	}
	var errs []error
	steps, err := framework.ReadmeUninstallSteps()
	if err != nil {
		return err
	}
	for _, line := range steps {
		out, err := kubectl(ctx, nil, strings.Fields(line)[1:]...)
		if err != nil {
			return fmt.Errorf("the README's %q: %w", line, err)
		}
		fmt.Fprintf(os.Stderr, "node: %s: %s\n", line, strings.Join(strings.Fields(out), " "))
	}

	// The test bed's node is called keyhook-node: it is no object of keyhook's.
	left, err := framework.Leftovers(ctx, cluster.Config, keyhookNamespace, "Node /"+framework.NodeName, "CSINode /"+framework.NodeName)
	if err != nil {
		return err
	}
	for _, l := range left {
		errs = append(errs, fmt.Errorf("left after the README's uninstall: %s", l))
	}
	for _, name := range framework.KeyhookCRDs {
		crd := &metav1.PartialObjectMetadata{}
		crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil || crd.DeletionTimestamp != nil {
			errs = append(errs, fmt.Errorf("CRD %s must stay (and with it the users' objects): %v", name, err))
		}
	}
	// The users' policies stay with the CRDs; no webhook or admission
	// policy of keyhook's stands in the way of a pod any more.
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: "uninstall-" + enforced}, &v1alpha1.ClusterInjectionPolicy{}); err != nil {
		errs = append(errs, fmt.Errorf("the users' ClusterInjectionPolicy: %w", err))
	}
	if pod, err := dryRunPod(ctx, enforced); err != nil {
		errs = append(errs, fmt.Errorf("after the uninstall, a pod in formerly enforced namespace %s: %w", enforced, err))
	} else if len(pod.Spec.InitContainers) != 0 || pod.Annotations["keyhook.dev/status"] != "" {
		errs = append(errs, fmt.Errorf("after the uninstall, a pod is still injected: %v", pod.Spec.InitContainers))
	}
	return errors.Join(errs...)
}

// policyNamespaces makes a namespace a ClusterInjectionPolicy enforces
// (with the ExternalSecret it injects) and one a policy selects without
// enforcing, and waits for keyhook's controller to label them.
func policyNamespaces(ctx context.Context) (enforced, loose string, err error) {
	if enforced, err = vault.Tenant(ctx, cluster, "uninstall-enforced", map[string]string{"keyhook-test/uninstall": "enforced"}); err != nil {
		return "", "", err
	}
	if loose, err = vault.Tenant(ctx, cluster, "uninstall-default", map[string]string{"keyhook-test/uninstall": "default"}); err != nil {
		return "", "", err
	}
	if err := cluster.Client.Create(ctx, externalSecret(enforced, "db", data("password", enforced+"/db", "password"))); err != nil {
		return "", "", err
	}
	for ns, enforce := range map[string]bool{enforced: true, loose: false} {
		value := map[bool]string{true: "enforced", false: "default"}[enforce]
		p := &v1alpha1.ClusterInjectionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "uninstall-" + ns},
			Spec: v1alpha1.ClusterInjectionPolicySpec{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"keyhook-test/uninstall": value}},
				Inject:            []string{"db"},
				Enforce:           enforce,
			},
		}
		if err := cluster.Client.Create(ctx, p); err != nil {
			return "", "", err
		}
		err := framework.WaitFor(ctx, 250*time.Millisecond, func() (bool, error) {
			n := &corev1.Namespace{}
			if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
				return false, err
			}
			return n.Labels["keyhook.dev/injection"] == value, nil
		})
		if err != nil {
			return "", "", fmt.Errorf("keyhook did not label namespace %s keyhook.dev/injection=%s: %w", ns, value, err)
		}
	}
	return enforced, loose, nil
}

// upgrade runs the README's helm upgrade with changed values and waits until
// both Deployments have rolled: every pod of each is new, runs the new
// values and is ready, as many as the new replicas.
func upgrade(ctx context.Context, cfg *action.Configuration) error {
	line, err := readmeCommand("helm upgrade", "--set")
	if err != nil {
		return err
	}
	cmd, err := framework.ParseHelmCommand(line)
	if err != nil {
		return err
	}
	vals, err := cmd.MergeValues(framework.RepoRoot())
	if err != nil {
		return err
	}
	if err := handBackFields(ctx); err != nil {
		return err
	}
	old := map[string]bool{}
	pods := &corev1.PodList{}
	if err := cluster.Client.List(ctx, pods, client.InNamespace(keyhookNamespace)); err != nil {
		return err
	}
	for _, p := range pods.Items {
		old[p.Name] = true
	}
	ch, err := framework.LoadChart()
	if err != nil {
		return err
	}
	up := action.NewUpgrade(cfg)
	up.Namespace = cmd.Namespace
	up.ReuseValues = cmd.ReuseValues
	up.ServerSideApply = "true"
	up.WaitStrategy = kube.HookOnlyStrategy
	up.Timeout = 2 * time.Minute
	start := time.Now()
	if _, err := up.RunWithContext(ctx, cmd.Release, ch, vals); err != nil {
		return fmt.Errorf("%s: %w", line, err)
	}
	// What the README's upgrade changes, per Deployment: replicas and an
	// argument of the new pods.
	want := map[string]struct {
		replicas int32
		arg      string
	}{
		keyhookDeployment: {3, "--agent-deadline=90s"},
		keyhookController: {2, "--sync-workers=8"},
	}
	wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	var state string
	err = framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		for name, w := range want {
			d := &appsv1.Deployment{}
			if err := cluster.Client.Get(wctx, client.ObjectKey{Namespace: keyhookNamespace, Name: name}, d); err != nil {
				return false, err
			}
			if ptr.Deref(d.Spec.Replicas, 1) != w.replicas {
				return false, fmt.Errorf("%s: %d replicas after the upgrade, want %d", name, ptr.Deref(d.Spec.Replicas, 1), w.replicas)
			}
			if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, w.arg) {
				return false, fmt.Errorf("%s: args %v after the upgrade lack %s", name, d.Spec.Template.Spec.Containers[0].Args, w.arg)
			}
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil {
				return false, err
			}
			pods := &corev1.PodList{}
			if err := cluster.Client.List(wctx, pods, client.InNamespace(keyhookNamespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
				return false, err
			}
			var ready, stale int32
			for _, p := range pods.Items {
				switch {
				case old[p.Name]:
					stale++
				case p.DeletionTimestamp == nil && podReady(&p) && slices.Contains(p.Spec.Containers[0].Args, w.arg):
					ready++
				}
			}
			state = fmt.Sprintf("%s: %d new pods ready, %d old pods left, of %d", name, ready, stale, w.replicas)
			if stale > 0 || ready != w.replicas || d.Status.ObservedGeneration != d.Generation || d.Status.ReadyReplicas != w.replicas {
				return false, nil
			}
		}
		missing, err := caBundleMissing(wctx)
		if missing != "" {
			state = missing
		}
		return missing == "" && err == nil, err
	})
	if err != nil {
		listing, _ := kubectl(ctx, nil, "-n", keyhookNamespace, "get", "pods", "-o", "wide")
		return fmt.Errorf("%s: the pods did not roll: %w (%s)\n%s", line, err, state, listing)
	}
	fmt.Fprintf(os.Stderr, "node: %s: both Deployments rolled, every new pod ready, in %s\n", line, time.Since(start).Round(time.Millisecond))
	return nil
}

// handBackFields drops what the tests wrote into keyhook's Deployments
// from their managed fields (TestKeyhookDown scales the webhook with an
// update: the test binary owns .spec.replicas then), so that Helm's
// server-side apply owns them again, as after an install no one touched.
// Without it the upgrade's new replicas conflict, as they would for a user
// who ran kubectl scale (the README says: --force-conflicts).
func handBackFields(ctx context.Context) error {
	me := filepath.Base(os.Args[0])
	for _, name := range []string{keyhookDeployment, keyhookController} {
		d := &appsv1.Deployment{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: keyhookNamespace, Name: name}, d); err != nil {
			return err
		}
		kept := slices.DeleteFunc(slices.Clone(d.ManagedFields), func(e metav1.ManagedFieldsEntry) bool { return e.Manager == me })
		if len(kept) == len(d.ManagedFields) {
			continue
		}
		d.ManagedFields = kept
		if err := cluster.Client.Update(ctx, d); err != nil {
			return fmt.Errorf("handing %s's fields back to helm: %w", name, err)
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// dryRunPod creates a pod in ns as a server-side dry run, through the
// admission chain, and returns it as it would be stored.
func dryRunPod(ctx context.Context, ns string) (*corev1.Pod, error) {
	p := appPod(ns, "uninstall-probe", mountPath)
	p.Spec.ServiceAccountName = "app"
	if err := cluster.Client.Create(ctx, p, client.DryRunAll); err != nil {
		return nil, fmt.Errorf("refused: %w", err)
	}
	return p, nil
}

// readmeCommand is the one command of the README's Install section that
// starts with prefix and contains every string of with.
func readmeCommand(prefix string, with ...string) (string, error) {
	return framework.ReadmeCommand(prefix+" ", with...)
}
