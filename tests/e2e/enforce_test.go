package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

func plainPod(ns, prefix string, ann, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: prefix + "-", Annotations: ann, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
}

func hasAgent(p *corev1.Pod) bool {
	return len(p.Spec.InitContainers) > 0 && p.Spec.InitContainers[0].Name == "keyhook-agent"
}

func wantDenied(t *testing.T, err error, says ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted; want a denial saying %q", says)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("denial %q does not say %q", err.Error(), s)
		}
	}
}

func waitNamespaceLabel(ctx context.Context, t *testing.T, ns, want string) {
	t.Helper()
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		n := &corev1.Namespace{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return false, err
		}
		got, ok := n.Labels["keyhook.dev/injection"]
		return got == want && ok == (want != ""), nil
	})
	if err != nil {
		t.Fatalf("namespace %s: label keyhook.dev/injection never became %q: %v", ns, want, err)
	}
}

// apiserverFailOpen sums apiserver_admission_webhook_fail_open_count for a
// webhook entry: the apiserver's own record that it admitted a pod without
// asking a webhook that fails open.
func apiserverFailOpen(ctx context.Context, t *testing.T, webhookName string) int {
	t.Helper()
	raw, err := cluster.Clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^apiserver_admission_webhook_fail_open_count\{[^}]*name="` + regexp.QuoteMeta(webhookName) + `"[^}]*\} (\d+)`)
	total := 0
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

func TestClusterInjectionPolicyEnforced(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "enforced")
	loose := tenant(ctx, t, "loose")
	for _, n := range []string{ns, loose} {
		if err := vault.Put(ctx, n+"/db", map[string]any{"password": secretValue(t, "pw")}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Client.Create(ctx, externalSecret(n, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", n+"/db", "password", "")}})); err != nil {
			t.Fatal(err)
		}
	}
	// Select the namespace by a label, as a platform team would.
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := updateLatest(ctx, n, func(n *corev1.Namespace) { n.Labels["compliance"] = ns }); err != nil {
		t.Fatal(err)
	}
	policy := &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pci-" + ns},
		Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"compliance": ns}},
			PodSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpDoesNotExist}}},
			Inject:            []string{"db"},
			Enforce:           true,
		},
	}
	if err := cluster.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), policy) })
	waitNamespaceLabel(ctx, t, ns, "enforced")

	// A selected pod without any annotation gets the policy's injection,
	// as soon as the namespace is labelled (no retry: keyhook never admits
	// a pod of an enforced namespace uninjected, even while its cache lags).
	pod := plainPod(ns, "web", nil, nil)
	err := cluster.Client.Create(ctx, pod)
	if err != nil || !hasAgent(pod) {
		t.Fatalf("unannotated pod in an enforced namespace was not injected: injected %v, err %v", hasAgent(pod), err)
	}
	if !strings.Contains(pod.Spec.InitContainers[0].Env[0].Value, `"name":"db"`) {
		t.Errorf("the agent's plan does not name ExternalSecret db: %s", pod.Spec.InitContainers[0].Env[0].Value)
	}

	// Opting out is denied, naming the policy and the fix.
	wantDenied(t, cluster.Client.Create(ctx, plainPod(ns, "optout", map[string]string{"keyhook.dev/inject": "false"}, nil)),
		`ClusterInjectionPolicy "pci-`+ns+`" enforces injection`, `remove the annotation`, `spec.podSelector`)
	// A pod the podSelector leaves out may opt out.
	if err := cluster.Client.Create(ctx, plainPod(ns, "batch", map[string]string{"keyhook.dev/inject": "false"}, map[string]string{"batch": "yes"})); err != nil {
		t.Errorf("a pod outside the policy's podSelector was not admitted: %v", err)
	}
	// An injection that cannot be resolved is denied, naming the policy.
	wantDenied(t, cluster.Client.Create(ctx, plainPod(ns, "typo", map[string]string{"keyhook.dev/inject": "dbb"}, nil)),
		`ClusterInjectionPolicy "pci-`+ns+`" enforces injection`, `ExternalSecret "dbb" not found`)

	// keyhook down: the enforced namespace admits nothing; elsewhere pods
	// are admitted without injection and the apiserver counts it; keyhook's
	// own namespace is never sent, so keyhook can always restart.
	own := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keyhook-system"}}
	if err := cluster.Client.Create(ctx, own); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := cluster.WaitForServiceAccount(ctx, "keyhook-system", "default"); err != nil {
		t.Fatal(err)
	}
	failOpenBefore := apiserverFailOpen(ctx, t, "pods.keyhook.dev")
	if err := webhook.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart := func() {
		if !restarted {
			restarted = true
			if err := webhook.Start(context.Background()); err != nil {
				t.Errorf("restarting the package's webhook: %v", err)
			}
		}
	}
	t.Cleanup(restart)

	err = cluster.Client.Create(ctx, plainPod(ns, "while-down", nil, nil))
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "enforced.pods.keyhook.dev"`) {
		t.Errorf("enforced namespace, keyhook down: want the pod rejected by enforced.pods.keyhook.dev, got %v", err)
	}
	skipped := plainPod(loose, "while-down", map[string]string{"keyhook.dev/inject": "db"}, nil)
	if err := cluster.Client.Create(ctx, skipped); err != nil {
		t.Errorf("opt-in namespace, keyhook down: want the pod admitted (fail open), got %v", err)
	} else if hasAgent(skipped) {
		t.Errorf("a pod admitted while keyhook is down cannot have been injected")
	}
	if after := apiserverFailOpen(ctx, t, "pods.keyhook.dev"); after <= failOpenBefore {
		t.Errorf("apiserver_admission_webhook_fail_open_count for pods.keyhook.dev did not grow (%d → %d)", failOpenBefore, after)
	}
	ownPod := plainPod("keyhook-system", "keyhook", map[string]string{"keyhook.dev/inject": "anything"}, map[string]string{"app.kubernetes.io/name": "keyhook"})
	// keyhook's namespace enforces the restricted Pod Security Standard
	// once manifests/ is applied (TestManifestsApply, TestCertManagerManifests).
	ownPod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	ownPod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if err := cluster.Client.Create(ctx, ownPod); err != nil {
		t.Errorf("keyhook's own namespace must never wait for keyhook: %v", err)
	}
	restart()

	// Without the policy the namespace is no longer enforced, and opting out works again.
	if err := cluster.Client.Delete(ctx, policy); err != nil {
		t.Fatal(err)
	}
	waitNamespaceLabel(ctx, t, ns, "")
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		p := plainPod(ns, "free", map[string]string{"keyhook.dev/inject": "false"}, nil)
		err := cluster.Client.Create(ctx, p)
		return err == nil, nil
	})
	if err != nil {
		t.Errorf("after the policy is deleted, opting out is still denied: %v", err)
	}
}

func TestClusterInjectionPolicyDefaults(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "defaults")
	if err := vault.Put(ctx, ns+"/tls", map[string]any{"crt": secretValue(t, "crt")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "tls", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("crt", ns+"/tls", "crt", "")}})); err != nil {
		t.Fatal(err)
	}
	policy := &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "mesh-" + ns},
		Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			Inject:            []string{"tls", "not-here-yet"},
		},
	}
	if err := cluster.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), policy) })
	waitNamespaceLabel(ctx, t, ns, "default")
	// A default that cannot be resolved is skipped, not fatal, when the
	// policy does not enforce; a pod may opt out.
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		pod := plainPod(ns, "web", nil, nil)
		if err := cluster.Client.Create(ctx, pod); err != nil {
			return false, err
		}
		return hasAgent(pod) && strings.Contains(pod.Spec.InitContainers[0].Env[0].Value, `"name":"tls"`) &&
			!strings.Contains(pod.Spec.InitContainers[0].Env[0].Value, "not-here-yet"), nil
	})
	if err != nil {
		t.Fatalf("policy default not injected: %v", err)
	}
	optOut := plainPod(ns, "opt-out", map[string]string{"keyhook.dev/inject": "false"}, nil)
	if err := cluster.Client.Create(ctx, optOut); err != nil || hasAgent(optOut) {
		t.Errorf("a pod may opt out of a policy that does not enforce: err %v, injected %v", err, hasAgent(optOut))
	}
	// secret mode, chosen by the pod: the Secret keyhook syncs is mounted, no agent.
	secretMode := plainPod(ns, "secret-mode", map[string]string{"keyhook.dev/inject-mode": "secret"}, nil)
	if err := cluster.Client.Create(ctx, secretMode); err != nil {
		t.Fatal(err)
	}
	if hasAgent(secretMode) {
		t.Errorf("secret mode must not add the agent")
	}
	found := false
	for _, v := range secretMode.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "tls" {
			found = true
		}
	}
	if !found {
		t.Errorf("secret mode: no volume of Secret tls in %+v", secretMode.Spec.Volumes)
	}
}

func TestTenancyRulesAtAdmission(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "keys")
	vaultAuth := v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: ns, ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "app"}}}
	shared := &v1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "shared-" + ns},
		Spec: v1alpha1.SecretStoreSpec{
			Provider:      v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: vault.Addr, Auth: vaultAuth}},
			Conditions:    []v1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{ns}}},
			PermittedKeys: []string{"${namespace}/.*"},
		},
	}
	if err := cluster.Client.Create(ctx, shared); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), shared) })
	viaShared := func(name, key string) *v1alpha1.ExternalSecret {
		return externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: shared.Name, Kind: v1alpha1.SecretStoreKindCluster},
			Data:           []v1alpha1.ExternalSecretData{data("k", key, "", "")},
		})
	}

	// The validating webhook: a key outside permittedKeys, a bad regex, an
	// enforcing policy that injects nothing.
	var err error
	_ = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err = cluster.Client.Create(ctx, viaShared("theirs", "team-b/db"))
		return err != nil, nil
	})
	wantDenied(t, err, `remote key "team-b/db" is not permitted by spec.permittedKeys of ClusterSecretStore "shared-`+ns+`"`)
	if err := cluster.Client.Create(ctx, viaShared("mine", ns+"/db")); err != nil {
		t.Fatalf("a permitted key was refused: %v", err)
	}
	badRegex := &v1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-" + ns},
		Spec: v1alpha1.SecretStoreSpec{
			Provider:      v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: vault.Addr, Auth: vaultAuth}},
			PermittedKeys: []string{"(unclosed"},
		},
	}
	wantDenied(t, cluster.Client.Create(ctx, badRegex), "spec.permittedKeys[0]", "not a valid regular expression")
	wantDenied(t, cluster.Client.Create(ctx, &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "empty-" + ns}, Spec: v1alpha1.ClusterInjectionPolicySpec{Enforce: true},
	}), "spec.inject: Required value", "an enforcing policy must inject at least one ExternalSecret")

	// The namespace's permitted-key annotation, set after the ExternalSecret
	// was admitted, is enforced at injection.
	annotate := func(key, value string) {
		t.Helper()
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if err := updateLatest(ctx, n, func(n *corev1.Namespace) {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[key] = value
		}); err != nil {
			t.Fatal(err)
		}
	}
	annotate("externalsecrets.kubernetes-client.io/permitted-key-name", ns+"/app/.*")
	_ = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err = cluster.Client.Create(ctx, plainPod(ns, "keyed", map[string]string{"keyhook.dev/inject": "mine"}, nil))
		return err != nil, nil
	})
	wantDenied(t, err, `remote key "`+ns+`/db" is not permitted in namespace "`+ns+`" by its externalsecrets.kubernetes-client.io/permitted-key-name annotation`)
	annotate("externalsecrets.kubernetes-client.io/permitted-key-name", ns+"/.*")
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		p := plainPod(ns, "keyed", map[string]string{"keyhook.dev/inject": "mine"}, nil)
		return cluster.Client.Create(ctx, p) == nil && hasAgent(p), nil
	})
	if err != nil {
		t.Errorf("pod not injected once the annotation permits the key: %v", err)
	}

	// AWS roles: a store may not name a role the namespace's
	// iam.amazonaws.com/permitted annotation does not permit.
	annotate("iam.amazonaws.com/permitted", `arn:aws:iam::123456789012:role/`+ns+`-.*`)
	awsStore := func(role string) *v1alpha1.SecretStore {
		return &v1alpha1.SecretStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "aws-"},
			Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{
				Service: v1alpha1.AWSSecretsManager, Region: "eu-west-1", Role: role,
			}}},
		}
	}
	_ = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err = cluster.Client.Create(ctx, awsStore("arn:aws:iam::123456789012:role/admin"))
		return err != nil, nil
	})
	wantDenied(t, err, `spec.provider.aws.role "arn:aws:iam::123456789012:role/admin" is not permitted in namespace "`+ns+`" by its iam.amazonaws.com/permitted annotation`)
	if err := cluster.Client.Create(ctx, awsStore("arn:aws:iam::123456789012:role/"+ns+"-reader")); err != nil {
		t.Errorf("a permitted role was refused: %v", err)
	}
}
