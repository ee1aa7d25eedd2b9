package chart

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/imagebuild"
	"github.com/keyhook/keyhook/tests/framework"
)

// keyhookCRDs are the CRDs of crds/, which helm installs with the chart and
// keeps on uninstall.
var keyhookCRDs = framework.KeyhookCRDs

// The README's Install section, against the real API server: its helm
// commands (read from the README, run with the Helm SDK as the helm CLI
// parses their flags) and kubectl commands (run as written):
//
//	helm install keyhook charts/keyhook -n keyhook-system --create-namespace -f bin/images/values-images.yaml
//	helm upgrade keyhook charts/keyhook -n keyhook-system --reuse-values --set tls.mode=selfManaged --set webhook.replicas=3 ...
//	helm upgrade keyhook charts/keyhook -n keyhook-system --reuse-values -f bin/images/values-images.yaml
//	helm uninstall keyhook -n keyhook-system
//	kubectl delete namespace keyhook-system
//	kubectl label namespace -l keyhook.dev/injection keyhook.dev/injection-
//
// and what each leaves in the cluster. bin/images/values-images.yaml is
// what make push writes (imagebuild.HelmValues) for images pushed to a
// registry; no kubelet runs here, so nothing pulls them or waits for pods
// (tests/node runs keyhook's pods from this chart).
func TestChartInstallUpgradeUninstall(t *testing.T) {
	ctx := testContext(t)
	var helmLog bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("helm log:\n%s", helmLog.String())
		}
	})
	ch, err := framework.LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	// The working directory of the README's commands.
	repo := t.TempDir()
	const registry = "registry.example.com/keyhook"
	build1 := writeValuesImages(t, repo, registry, "v0.1.0-3-gabcdef0")

	// helm install keyhook charts/keyhook -n keyhook-system --create-namespace -f bin/images/values-images.yaml
	start := time.Now()
	cmd := readmeHelm(t, "helm install", func(c string) bool { return !strings.Contains(c, "selfManaged") })
	if cmd.Chart != "charts/keyhook" || !cmd.CreateNamespace || len(cmd.Values.ValueFiles) != 1 || cmd.Values.ValueFiles[0] != "bin/images/"+imagebuild.HelmValuesFile {
		t.Fatalf("README's install %+v: not of charts/keyhook, with --create-namespace and -f bin/images/%s", cmd, imagebuild.HelmValuesFile)
	}
	ns := cmd.Namespace
	cfg, err := framework.HelmConfig(cluster, ns, &helmLog)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = cmd.Release
	install.Namespace = ns
	install.CreateNamespace = cmd.CreateNamespace
	install.ServerSideApply = true
	install.WaitStrategy = kube.HookOnlyStrategy
	install.Timeout = 2 * time.Minute
	rel, err := install.RunWithContext(ctx, ch, mergeValues(t, cmd, repo))
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	r := rel.(*releasev1.Release)
	if r.Info.Status != "deployed" {
		t.Fatalf("release status %s", r.Info.Status)
	}
	installed := releaseObjects(t, r)
	for _, o := range installed {
		if !exists(ctx, t, o) {
			t.Errorf("helm install: %s is not in the cluster", framework.ObjectKey(o))
		}
	}
	for _, name := range keyhookCRDs {
		if !crdEstablished(ctx, t, name) {
			t.Errorf("helm install did not install CRD %s", name)
		}
	}
	var cert unstructured.Unstructured
	cert.SetAPIVersion("cert-manager.io/v1")
	cert.SetKind("Certificate")
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-webhook"}, &cert); err != nil {
		t.Errorf("the cert-manager install has no Certificate keyhook-webhook: %v", err)
	}
	checkImages(ctx, t, ns, registry, build1)
	t.Logf("install: %d objects in %s", len(installed), time.Since(start).Round(time.Millisecond))

	// helm upgrade keyhook charts/keyhook -n keyhook-system --reuse-values --set tls.mode=selfManaged --set webhook.replicas=3 --set sync.workers=8 --set agent.deadline=90s
	start = time.Now()
	cmd = readmeHelm(t, "helm upgrade", func(c string) bool { return strings.Contains(c, "tls.mode=selfManaged") })
	r = upgrade(ctx, t, cfg, ch, cmd, repo)
	if r.Version != 2 || r.Info.Status != "deployed" {
		t.Fatalf("upgraded release: version %d, status %s", r.Version, r.Info.Status)
	}
	var d, ctl appsv1.Deployment
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-webhook"}, &d); err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if *d.Spec.Replicas != 3 || !slices.Contains(args, "--tls-mode=self-managed") || slices.Contains(args, "--cert-dir=/etc/keyhook/tls") || !slices.Contains(args, "--agent-deadline=90s") {
		t.Errorf("upgraded webhook Deployment: replicas %d, args %v", *d.Spec.Replicas, args)
	}
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-controller"}, &ctl); err != nil {
		t.Fatal(err)
	}
	if args := ctl.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--tls-mode=self-managed") || !slices.Contains(args, "--sync-workers=8") {
		t.Errorf("upgraded controller Deployment: args %v", args)
	}
	if len(d.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("upgraded Deployment still mounts %v", d.Spec.Template.Spec.Volumes)
	}
	// --reuse-values kept the images of the install's values file.
	checkImages(ctx, t, ns, registry, build1)
	// The cert-manager objects are gone with the mode that needed them.
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-webhook"}, &cert); !apierrors.IsNotFound(err) {
		t.Errorf("after the switch to selfManaged, Certificate keyhook-webhook: %v", err)
	}
	var mwc unstructured.Unstructured
	mwc.SetAPIVersion("admissionregistration.k8s.io/v1")
	mwc.SetKind("MutatingWebhookConfiguration")
	if err := kc.Get(ctx, client.ObjectKey{Name: "keyhook"}, &mwc); err != nil {
		t.Fatal(err)
	}
	if _, ok := mwc.GetAnnotations()["cert-manager.io/inject-ca-from"]; ok {
		t.Errorf("selfManaged registration still carries cert-manager's inject-ca-from")
	}
	upgraded := releaseObjects(t, r)
	t.Logf("upgrade: %s", time.Since(start).Round(time.Millisecond))

	// make push of a newer build, then
	// helm upgrade keyhook charts/keyhook -n keyhook-system --reuse-values -f bin/images/values-images.yaml
	build2 := writeValuesImages(t, repo, registry, "v0.2.0")
	cmd = readmeHelm(t, "helm upgrade", func(c string) bool { return !strings.Contains(c, "--set") })
	r = upgrade(ctx, t, cfg, ch, cmd, repo)
	if r.Version != 3 {
		t.Fatalf("upgraded release: version %d", r.Version)
	}
	checkImages(ctx, t, ns, registry, build2)
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-webhook"}, &d); err != nil {
		t.Fatal(err)
	}
	if args := d.Spec.Template.Spec.Containers[0].Args; *d.Spec.Replicas != 3 || !slices.Contains(args, "--tls-mode=self-managed") {
		t.Errorf("the upgrade to new images lost the earlier values: replicas %d, args %v", *d.Spec.Replicas, args)
	}
	upgraded = append(upgraded, releaseObjects(t, r)...)

	// helm uninstall keyhook -n keyhook-system, then the README's kubectl steps.
	start = time.Now()
	cmd = readmeHelm(t, "helm uninstall", nil)
	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	uninstall.Timeout = 2 * time.Minute
	if _, err := uninstall.Run(cmd.Release); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	for _, o := range append(installed, upgraded...) {
		if err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) { return !exists(ctx, t, o), nil }); err != nil {
			t.Errorf("helm uninstall left %s", framework.ObjectKey(o))
		}
	}
	// Nothing of keyhook's is left in its namespace, Helm's release records
	// included (no controller ran here to write a TLS Secret or a Lease).
	var secrets corev1.SecretList
	if err := kc.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("Secret %s is left in %s", s.Name, ns)
	}
	for _, line := range readmeKubectlSteps(t) {
		out, err := kubectl(ctx, strings.Fields(line)[1:]...)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		t.Logf("%s: %s", line, strings.TrimSpace(out))
	}
	left, err := framework.Leftovers(ctx, cluster.Config, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		t.Errorf("left after the README's uninstall: %s", l)
	}
	for _, name := range keyhookCRDs {
		if !crdEstablished(ctx, t, name) {
			t.Errorf("helm uninstall removed CRD %s: it must stay", name)
		}
	}
	t.Logf("uninstall: %s", time.Since(start).Round(time.Millisecond))
}

// readmeHelm is the one helm command of the README's Install section that
// starts with prefix and that pick (nil: any) takes.
func readmeHelm(t *testing.T, prefix string, pick func(string) bool) framework.HelmCommand {
	t.Helper()
	cmds, err := framework.ReadmeInstallCommands()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix+" ") && (pick == nil || pick(c)) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README's Install section: %d commands %q..., want one: %q", len(found), prefix, found)
	}
	cmd, err := framework.ParseHelmCommand(found[0])
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Release != "keyhook" || cmd.Namespace != "keyhook-system" || (cmd.Chart != "" && cmd.Chart != "charts/keyhook") {
		t.Fatalf("README's %q: release %q, namespace %q, chart %q", found[0], cmd.Release, cmd.Namespace, cmd.Chart)
	}
	return cmd
}

// readmeKubectlSteps are the README's kubectl steps after helm uninstall.
func readmeKubectlSteps(t *testing.T) []string {
	t.Helper()
	steps, err := framework.ReadmeUninstallSteps()
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

func mergeValues(t *testing.T, cmd framework.HelmCommand, dir string) map[string]any {
	t.Helper()
	vals, err := cmd.MergeValues(dir)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

func upgrade(ctx context.Context, t *testing.T, cfg *action.Configuration, ch *chartv2.Chart, cmd framework.HelmCommand, dir string) *releasev1.Release {
	t.Helper()
	up := action.NewUpgrade(cfg)
	up.Namespace = cmd.Namespace
	up.ReuseValues = cmd.ReuseValues
	up.ServerSideApply = "true"
	up.WaitStrategy = kube.HookOnlyStrategy
	up.Timeout = 2 * time.Minute
	rel, err := up.RunWithContext(ctx, cmd.Release, ch, mergeValues(t, cmd, dir))
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	return rel.(*releasev1.Release)
}

// writeValuesImages writes <dir>/bin/images/values-images.yaml as make push
// does after pushing keyhook's images, tagged tag, to registry (digests made
// up: nothing pulls them here), and returns the digests by image name.
func writeValuesImages(t *testing.T, dir, registry, tag string) map[string]string {
	t.Helper()
	var pushed []imagebuild.Pushed
	digests := map[string]string{}
	for _, im := range imagebuild.Present(framework.RepoRoot(), imagebuild.Images) {
		if im.TestOnly {
			continue
		}
		sum := sha256.Sum256([]byte(im.Name + tag))
		digests[im.Name] = "sha256:" + hex.EncodeToString(sum[:])
		pushed = append(pushed, imagebuild.Pushed{Name: im.Name, Ref: registry + "/" + im.Name + ":" + tag, Tag: tag, Digest: digests[im.Name]})
	}
	b, err := imagebuild.HelmValues(registry, pushed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin", "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "images", imagebuild.HelmValuesFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return digests
}

// checkImages: the Deployments run, and the webhook injects, exactly the
// images pushed, each pinned by its digest.
func checkImages(ctx context.Context, t *testing.T, ns, registry string, digests map[string]string) {
	t.Helper()
	ref := func(name string) string { return registry + "/" + name + "@" + digests[name] }
	var d appsv1.Deployment
	for _, name := range []string{"webhook", "controller"} {
		if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-" + name}, &d); err != nil {
			t.Fatal(err)
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != ref(name) {
			t.Errorf("keyhook-%s runs %s, want the pushed %s", name, got, ref(name))
		}
		if name == "webhook" {
			args := d.Spec.Template.Spec.Containers[0].Args
			for image := range digests {
				flag := "--agent-image=" + ref(image)
				if p, ok := strings.CutPrefix(image, "init-agent-"); ok {
					flag = "--agent-image-" + p + "=" + ref(image)
				} else if image != "init-agent" {
					continue
				}
				if !slices.Contains(args, flag) {
					t.Errorf("webhook args %v lack %s", args, flag)
				}
			}
		}
	}
}

// kubectl runs the control plane's kubectl as the cluster's admin.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(framework.TestenvDir(), "kubectl"), append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// clusterScoped are the kinds of the chart that have no namespace.
var clusterScoped = []string{"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

func releaseObjects(t *testing.T, r *releasev1.Release) []*unstructured.Unstructured {
	t.Helper()
	objs, err := framework.DecodeObjects(r.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetNamespace() == "" && !slices.Contains(clusterScoped, o.GetKind()) {
			t.Errorf("%s has no namespace in the release", framework.ObjectKey(o))
		}
	}
	return objs
}

func exists(ctx context.Context, t *testing.T, o *unstructured.Unstructured) bool {
	t.Helper()
	var u unstructured.Unstructured
	u.SetGroupVersionKind(o.GroupVersionKind())
	err := kc.Get(ctx, client.ObjectKeyFromObject(o), &u)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("%s: %v", framework.ObjectKey(o), err)
	}
	return err == nil
}

func crdEstablished(ctx context.Context, t *testing.T, name string) bool {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	if err := kc.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
		if !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return false
	}
	return crd.DeletionTimestamp == nil
}
