package chart

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/tests/framework"
)

// keyhookCRDs are the CRDs of crds/, which helm installs with the chart and
// keeps on uninstall (deleting them would delete every user's
// ExternalSecret and store).
var keyhookCRDs = []string{"clusterinjectionpolicies.keyhook.dev", "clustersecretstores.keyhook.dev", "externalsecrets.keyhook.dev", "secretstores.keyhook.dev"}

// The README's Install section, against the real API server:
//
//	helm install keyhook charts/keyhook -n keyhook-system --create-namespace
//	helm upgrade keyhook charts/keyhook -n keyhook-system --reuse-values --set tls.mode=selfManaged --set webhook.replicas=3 --set sync.workers=8
//	helm uninstall keyhook -n keyhook-system
//
// and what each leaves in the cluster. No kubelet runs here, so nothing
// waits for pods (tests/node runs keyhook's pods from this chart).
func TestChartInstallUpgradeUninstall(t *testing.T) {
	ctx := testContext(t)
	const ns = "keyhook-system"
	var helmLog bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("helm log:\n%s", helmLog.String())
		}
	})
	cfg, err := framework.HelmConfig(cluster, ns, &helmLog)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := framework.LoadChart()
	if err != nil {
		t.Fatal(err)
	}

	// helm install keyhook charts/keyhook -n keyhook-system --create-namespace
	start := time.Now()
	install := action.NewInstall(cfg)
	install.ReleaseName = "keyhook"
	install.Namespace = ns
	install.CreateNamespace = true
	install.ServerSideApply = true
	install.WaitStrategy = kube.HookOnlyStrategy
	install.Timeout = 2 * time.Minute
	rel, err := install.RunWithContext(ctx, ch, nil)
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
	t.Logf("install: %d objects in %s", len(installed), time.Since(start).Round(time.Millisecond))

	// helm upgrade keyhook charts/keyhook --reuse-values --set tls.mode=selfManaged --set webhook.replicas=3 --set sync.workers=8
	start = time.Now()
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	upgrade.ReuseValues = true
	upgrade.ServerSideApply = "true"
	upgrade.WaitStrategy = kube.HookOnlyStrategy
	upgrade.Timeout = 2 * time.Minute
	rel, err = upgrade.RunWithContext(ctx, "keyhook", ch, map[string]any{
		"tls":     map[string]any{"mode": "selfManaged"},
		"webhook": map[string]any{"replicas": 3},
		"sync":    map[string]any{"workers": 8},
	})
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	r = rel.(*releasev1.Release)
	if r.Version != 2 || r.Info.Status != "deployed" {
		t.Fatalf("upgraded release: version %d, status %s", r.Version, r.Info.Status)
	}
	var d, ctl appsv1.Deployment
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: "keyhook-webhook"}, &d); err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if *d.Spec.Replicas != 3 || !slices.Contains(args, "--tls-mode=self-managed") || slices.Contains(args, "--cert-dir=/etc/keyhook/tls") {
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

	// helm uninstall keyhook -n keyhook-system
	start = time.Now()
	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	uninstall.Timeout = 2 * time.Minute
	if _, err := uninstall.Run("keyhook"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	for _, o := range append(installed, upgraded...) {
		if err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) { return !exists(ctx, t, o), nil }); err != nil {
			t.Errorf("helm uninstall left %s", framework.ObjectKey(o))
		}
	}
	// Nothing of keyhook's is left in its namespace, Helm's release records
	// included; the CRDs stay on purpose, and the namespace (helm never
	// deletes one; the README says kubectl delete namespace keyhook-system).
	var secrets corev1.SecretList
	if err := kc.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("Secret %s is left in %s", s.Name, ns)
	}
	for _, l := range []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}} {
		if err := kc.List(ctx, l, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "keyhook"}); err != nil {
			t.Fatal(err)
		}
		if n := len(listItems(l)); n > 0 {
			t.Errorf("%d %T objects of keyhook left in %s", n, l, ns)
		}
	}
	for _, name := range keyhookCRDs {
		if !crdEstablished(ctx, t, name) {
			t.Errorf("helm uninstall removed CRD %s: it must stay", name)
		}
	}
	t.Logf("uninstall: %s", time.Since(start).Round(time.Millisecond))
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

func listItems(l client.ObjectList) []any {
	switch l := l.(type) {
	case *appsv1.DeploymentList:
		return anySlice(l.Items)
	case *corev1.ServiceList:
		return anySlice(l.Items)
	case *corev1.ConfigMapList:
		return anySlice(l.Items)
	}
	return nil
}

func anySlice[T any](s []T) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = s[i]
	}
	return out
}
