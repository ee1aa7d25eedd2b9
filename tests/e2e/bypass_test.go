package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
	"github.com/keyhook/keyhook/tests/framework"
)

// enforce makes ns enforced by a new ClusterInjectionPolicy that selects it
// by the label team=ns (a label its tenant could edit), injecting
// ExternalSecret "db", and waits until keyhook has labelled it.
func enforce(ctx context.Context, t *testing.T, ns string) *v1alpha1.ClusterInjectionPolicy {
	t.Helper()
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	if err := patchNamespace(ctx, t, cluster.Client, ns, func(n *corev1.Namespace) { n.Labels["team"] = ns }); err != nil {
		t.Fatal(err)
	}
	policy := &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "enforce-" + ns},
		Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": ns}},
			Inject:            []string{"db"},
			Enforce:           true,
		},
	}
	if err := cluster.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), policy) })
	waitNamespaceLabel(ctx, t, ns, "enforced")
	return policy
}

// patchNamespace changes namespace ns as c, with a merge patch of what edit
// changes; it returns the API server's answer.
func patchNamespace(ctx context.Context, t *testing.T, c client.Client, ns string, edit func(*corev1.Namespace)) error {
	t.Helper()
	n := &corev1.Namespace{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	patch := client.MergeFrom(n.DeepCopy())
	edit(n)
	return c.Patch(ctx, n, patch)
}

// tenantUser is a user who may get, update and patch namespaces ns (and
// nothing cluster-wide), as a platform team hands a tenant its namespaces.
func tenantUser(ctx context.Context, t *testing.T, user string, namespaces ...string) client.Client {
	t.Helper()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"namespaces"}, ResourceNames: namespaces,
			Verbs: []string{"get", "update", "patch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), o) })
	}
	c, err := cluster.As(user)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnforcementIgnoresPodLabels: in an enforced namespace a pod carrying
// app.kubernetes.io/name=keyhook, the label keyhook's own pods carry, is
// injected, and denied when it opts out, like any other pod.
func TestEnforcementIgnoresPodLabels(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "podlabel")
	policy := enforce(ctx, t, ns)
	keyhookLabel := map[string]string{"app.kubernetes.io/name": "keyhook"}
	// Once the namespace is labelled, at once: the webhook never admits a
	// pod of an enforced namespace uninjected, even while its cache lags.
	pod := plainPod(ns, "lookalike", nil, keyhookLabel)
	if err := cluster.Client.Create(ctx, pod); err != nil || !hasAgent(pod) {
		t.Fatalf("a pod labelled app.kubernetes.io/name=keyhook in an enforced namespace was not injected: injected %v, err %v", hasAgent(pod), err)
	}
	wantDenied(t, cluster.Client.Create(ctx, plainPod(ns, "lookalike-optout", map[string]string{"keyhook.dev/inject": "false"}, keyhookLabel)),
		`ClusterInjectionPolicy "`+policy.Name+`" enforces injection`)
}

// TestNamespaceInjectionLabelGuarded: a tenant who may edit its namespace
// cannot touch keyhook.dev/injection, nor the labels a ClusterInjectionPolicy
// enforcing it selects on; keyhook (whose labeler runs as the identity the
// ValidatingAdmissionPolicy names) still sets and removes it, and whoever
// may update ClusterInjectionPolicies may still change the other labels.
func TestNamespaceInjectionLabelGuarded(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "guarded")
	free := tenant(ctx, t, "unguarded")
	enforce(ctx, t, ns)
	user := "tenant-" + ns
	tc := tenantUser(ctx, t, user, ns, free)

	// What the tenant may do: annotate its namespace, so the denials below
	// are the policy's, not RBAC's.
	if err := patchNamespace(ctx, t, tc, ns, func(n *corev1.Namespace) {
		n.Annotations = map[string]string{"owner": "team-" + ns}
	}); err != nil {
		t.Fatalf("the tenant may not even annotate its namespace, the test proves nothing: %v", err)
	}
	labelSays := []string{"namespace label keyhook.dev/injection is set only by keyhook (" + webhookconfig.Defaults().NamespaceLabeler + ")", user + " may not add, change or remove it"}
	wantForbidden := func(what string, err error, says ...string) {
		t.Helper()
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("%s: want a denial, got %v", what, err)
			return
		}
		wantDenied(t, err, says...)
	}
	wantForbidden("removing keyhook.dev/injection",
		patchNamespace(ctx, t, tc, ns, func(n *corev1.Namespace) { delete(n.Labels, "keyhook.dev/injection") }), labelSays...)
	wantForbidden("changing keyhook.dev/injection to default",
		patchNamespace(ctx, t, tc, ns, func(n *corev1.Namespace) { n.Labels["keyhook.dev/injection"] = "default" }), labelSays...)
	wantForbidden("removing the label the policy selects on",
		patchNamespace(ctx, t, tc, ns, func(n *corev1.Namespace) { delete(n.Labels, "team") }),
		"namespace "+ns+" is enforced by a ClusterInjectionPolicy", "only who may update ClusterInjectionPolicies may change them", user+" may not")
	wantForbidden("adding a label to an enforced namespace",
		patchNamespace(ctx, t, tc, ns, func(n *corev1.Namespace) { n.Labels["exempt"] = "yes" }),
		"namespace "+ns+" is enforced by a ClusterInjectionPolicy")
	// In a namespace no policy enforces the tenant may change its labels,
	// but not set keyhook's.
	if err := patchNamespace(ctx, t, tc, free, func(n *corev1.Namespace) { n.Labels["tier"] = "web" }); err != nil {
		t.Errorf("a tenant may change the labels of a namespace no policy enforces: %v", err)
	}
	wantForbidden("setting keyhook.dev/injection",
		patchNamespace(ctx, t, tc, free, func(n *corev1.Namespace) { n.Labels["keyhook.dev/injection"] = "default" }),
		"namespace label keyhook.dev/injection is set only by keyhook", user+" may not add, change or remove it")
	// Not even a cluster admin sets it by hand.
	wantForbidden("the admin setting keyhook.dev/injection",
		patchNamespace(ctx, t, cluster.Client, free, func(n *corev1.Namespace) { n.Labels["keyhook.dev/injection"] = "enforced" }),
		"namespace label keyhook.dev/injection is set only by keyhook")
	// Nor does a tenant create a namespace with it.
	wantForbidden("creating a namespace with keyhook.dev/injection",
		cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "preset-", Labels: map[string]string{"keyhook.dev/injection": "default"}}}),
		"namespace label keyhook.dev/injection is set only by keyhook")

	// Enforcement stands: the label is there and a plain pod is injected.
	waitNamespaceLabel(ctx, t, ns, "enforced")
	pod := plainPod(ns, "after", nil, nil)
	if err := cluster.Client.Create(ctx, pod); err != nil || !hasAgent(pod) {
		t.Errorf("after the tenant's attempts a plain pod is not injected: err %v", err)
	}

	// keyhook's identity may set the label: as it directly, and through
	// its labeler once the admin (who may update policies) takes the
	// namespace out of the policy.
	keyhook, err := cluster.As(webhookconfig.Defaults().NamespaceLabeler, "system:masters") // as the harness runs keyhook
	if err != nil {
		t.Fatal(err)
	}
	if err := patchNamespace(ctx, t, keyhook, free, func(n *corev1.Namespace) { n.Labels["keyhook.dev/injection"] = "default" }); err != nil {
		t.Errorf("keyhook's identity may set keyhook.dev/injection: %v", err)
	}
	waitNamespaceLabel(ctx, t, free, "") // keyhook's labeler takes it off again: no policy selects the namespace
	if err := patchNamespace(ctx, t, cluster.Client, ns, func(n *corev1.Namespace) { delete(n.Labels, "team") }); err != nil {
		t.Fatalf("who may update ClusterInjectionPolicies may change an enforced namespace's labels: %v", err)
	}
	waitNamespaceLabel(ctx, t, ns, "")
}

// TestPodChangesAfterInjection: after admission a pod can change in two
// ways, an UPDATE (container images) and new ephemeral containers. Neither
// may change keyhook's agent or reach its tokens; debugging stays possible.
func TestPodChangesAfterInjection(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "podchanges")
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		pod = plainPod(ns, "app", map[string]string{"keyhook.dev/inject": "db"}, nil)
		if err := cluster.Client.Create(ctx, pod); err != nil {
			return false, err
		}
		return hasAgent(pod), nil
	})
	if err != nil {
		t.Fatalf("pod not injected: %v", err)
	}
	update := func(edit func(*corev1.Pod)) error {
		return updateLatest(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}, edit)
	}
	wantDenied(t, update(func(p *corev1.Pod) { p.Spec.InitContainers[0].Image = "example.com/not-the-agent:1" }),
		"the image of init container keyhook-agent cannot be changed")
	if err := update(func(p *corev1.Pod) { p.Spec.Containers[0].Image = "example.com/app:2" }); err != nil {
		t.Errorf("the app's own image may change: %v", err)
	}

	debug := func(name string, mounts ...corev1.VolumeMount) error {
		p, err := cluster.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: name, Image: "example.com/debug:1", VolumeMounts: mounts, TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent,
		}})
		_, err = cluster.Clientset.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, pod.Name, p, metav1.UpdateOptions{})
		return err
	}
	if err := debug("shell"); err != nil {
		t.Errorf("kubectl debug without mounts must work on an injected pod: %v", err)
	}
	if err := debug("reader", corev1.VolumeMount{Name: "keyhook-secrets", MountPath: "/secrets", ReadOnly: true}); err != nil {
		t.Errorf("an ephemeral container may read the pod's secrets, as kubectl exec can: %v", err)
	}
	wantDenied(t, debug("thief", corev1.VolumeMount{Name: "keyhook-token", MountPath: "/tokens", ReadOnly: true}),
		"an ephemeral container may not mount volume keyhook-token")
	wantDenied(t, debug("writer", corev1.VolumeMount{Name: "keyhook-secrets", MountPath: "/secrets"}),
		"may mount keyhook-secrets only readOnly")
	// A later ephemeral container is judged on its own, not on earlier ones.
	if err := debug("shell2"); err != nil {
		t.Errorf("a second kubectl debug: %v", err)
	}
	final := &corev1.Pod{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), final); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(final) || final.Spec.InitContainers[0].Image != pod.Spec.InitContainers[0].Image {
		t.Errorf("keyhook's agent changed: %+v", final.Spec.InitContainers)
	}
	if n := len(final.Spec.EphemeralContainers); n != 3 {
		t.Errorf("%d ephemeral containers, want shell, reader and shell2", n)
	}
}

// TestEnforcingPolicyReportsPodsAdmittedBefore: pods created before a
// policy enforces their namespace were admitted without keyhook; the
// policy's PodsInjected condition names them until they are gone.
func TestEnforcingPolicyReportsPodsAdmittedBefore(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "before")
	early := plainPod(ns, "early", nil, nil)
	if err := cluster.Client.Create(ctx, early); err != nil {
		t.Fatal(err)
	}
	if hasAgent(early) {
		t.Fatal("a pod of a namespace no policy selects was injected without asking")
	}
	// Another, which its tenant then marks as keyhook marks the pods it
	// injects, to hide it from the policy's report.
	forged := plainPod(ns, "forged", nil, nil)
	if err := cluster.Client.Create(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if err := updateLatest(ctx, forged, func(p *corev1.Pod) {
		p.Annotations = map[string]string{"keyhook.dev/status": "injected"}
	}); err != nil {
		t.Fatal(err)
	}
	// Another that imitates secret mode: the volume keyhook would name for
	// ExternalSecret db, mounted, but of a Secret its tenant wrote.
	imitation := plainPod(ns, "imitation", nil, nil)
	imitation.Spec.Volumes = []corev1.Volume{{Name: mutate.SecretModeVolumeName("db"), VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "mine"}}}}
	imitation.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: mutate.SecretModeVolumeName("db"), MountPath: "/keyhook/secrets/db", ReadOnly: true}}
	if err := cluster.Client.Create(ctx, imitation); err != nil {
		t.Fatal(err)
	}
	policy := enforce(ctx, t, ns)
	condition := func(want metav1.ConditionStatus) metav1.Condition {
		t.Helper()
		var got metav1.Condition
		err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
			p := &v1alpha1.ClusterInjectionPolicy{}
			if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(policy), p); err != nil {
				return false, err
			}
			for _, c := range p.Status.Conditions {
				if c.Type == "PodsInjected" {
					got = c
					return c.Status == want && c.ObservedGeneration == p.Generation, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("condition PodsInjected never became %s: last %+v", want, got)
		}
		return got
	}
	c := condition(metav1.ConditionFalse)
	if c.Reason != "PodsNotInjected" || !strings.Contains(c.Message, "3 pods") || !strings.Contains(c.Message, ns+"/"+early.Name) ||
		!strings.Contains(c.Message, ns+"/"+forged.Name) || !strings.Contains(c.Message, ns+"/"+imitation.Name) {
		t.Errorf("condition does not name the three pods admitted before the policy, the one with a forged keyhook.dev/status and the one imitating secret mode too: %+v", c)
	}
	// A pod created now is injected, and not reported.
	now := plainPod(ns, "now", nil, nil)
	if err := cluster.Client.Create(ctx, now); err != nil || !hasAgent(now) {
		t.Fatalf("a pod created once the namespace is enforced was not injected: injected %v, err %v", hasAgent(now), err)
	}
	for _, p := range []*corev1.Pod{early, forged, imitation} {
		if err := cluster.Client.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	// Recheck now rather than in five minutes: a change of the policy's spec.
	p := &v1alpha1.ClusterInjectionPolicy{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(policy), p); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Mode = v1alpha1.InjectionModeFiles
	if err := cluster.Client.Patch(ctx, p, patch); err != nil {
		t.Fatal(err)
	}
	if c := condition(metav1.ConditionTrue); c.Reason != "AllInjected" {
		t.Errorf("once the early pods are gone: %+v", c)
	}
}

// TestEnforcedNamespaceWithoutKnownPolicy: a namespace labelled
// keyhook.dev/injection=enforced while no ClusterInjectionPolicy enforces it
// — what a webhook replica sees in the moments after keyhook's controller
// labels a namespace for a new policy its cache has not yet received, and
// after a policy is deleted until the controller removes the label. The
// API server sends its pods to the enforced entry; keyhook denies them with
// a message that says to retry, never admits them uninjected, and a
// ReplicaSet's retries succeed once the policy is there.
func TestEnforcedNamespaceWithoutKnownPolicy(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "lag")
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	// keyhook's controller would take the label off a namespace no policy
	// selects: it steps aside, and the label stays as it is set here.
	if err := controller.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := controller.Start(context.Background()); err != nil {
			t.Errorf("restarting the package's controller: %v", err)
		}
	})
	labeler, err := cluster.As(webhookconfig.Defaults().NamespaceLabeler, "system:masters") // as the harness runs keyhook
	if err != nil {
		t.Fatal(err)
	}
	if err := patchNamespace(ctx, t, labeler, ns, func(n *corev1.Namespace) { n.Labels["keyhook.dev/injection"] = "enforced" }); err != nil {
		t.Fatal(err)
	}
	says := []string{`namespace "` + ns + `" is enforced by keyhook`, "no ClusterInjectionPolicy known to this webhook replica enforces it", "retry"}
	wantDenied(t, cluster.Client.Create(ctx, plainPod(ns, "early", nil, nil)), says...)
	// Whatever the pod says of itself.
	wantDenied(t, cluster.Client.Create(ctx, plainPod(ns, "early-optout", map[string]string{"keyhook.dev/inject": "false"}, map[string]string{"app.kubernetes.io/name": "keyhook"})), says...)

	// A Deployment's ReplicaSet is denied alike, and retries.
	d := deployment(ns, "web")
	d.Spec.Replicas = ptr.To[int32](1)
	if err := cluster.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		events := &corev1.EventList{}
		if err := cluster.Client.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "ReplicaSet" && e.Reason == "FailedCreate" && strings.Contains(e.Message, says[0]) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no FailedCreate event of the ReplicaSet with keyhook's denial: %v", err)
	}

	// The policy arrives: the ReplicaSet's next try is injected, and so is
	// a pod created now.
	policy := &v1alpha1.ClusterInjectionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "lag-" + ns},
		Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			Inject:            []string{"db"},
			Enforce:           true,
		},
	}
	if err := cluster.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), policy) })
	if pod := waitForPod(ctx, t, ns, map[string]string{"app": "web"}); !hasAgent(pod) {
		t.Errorf("the ReplicaSet's pod was admitted without keyhook's agent")
	}
	now := plainPod(ns, "now", nil, nil)
	if err := cluster.Client.Create(ctx, now); err != nil || !hasAgent(now) {
		t.Errorf("a pod created once the policy exists: injected %v, err %v", hasAgent(now), err)
	}
	pods := &corev1.PodList{}
	if err := cluster.Client.List(ctx, pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !hasAgent(&p) {
			t.Errorf("pod %s of the enforced namespace runs without keyhook's agent", p.Name)
		}
	}
}
