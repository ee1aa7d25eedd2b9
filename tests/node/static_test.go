package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/policy"
	"github.com/keyhook/keyhook/tests/framework"
)

// TestStaticPodMirrorUninjected: a static pod — a manifest in the kubelet's
// staticPodPath, annotated for injection, in a namespace a
// ClusterInjectionPolicy enforces — runs on the node, and its mirror pod
// (which the kubelet creates in the API server, annotated
// kubernetes.io/config.mirror) is admitted unchanged: the API server refuses
// a mirror pod with a ServiceAccountToken projection, which the agent needs,
// and a static pod never runs what keyhook would inject anyway (the kubelet
// runs the manifest, not the API's object). The kubelet's log carries
// keyhook's warning, and the enforcing policy's PodsInjected condition names
// the static pod.
func TestStaticPodMirrorUninjected(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "static", nil)
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "pw")}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", data("password", ns+"/db", "password"))); err != nil {
		t.Fatal(err)
	}
	enforce(ctx, t, ns, "db")

	// A static pod may use no service account (the API server refuses a
	// mirror pod that does); the test app reports on /etc.
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: static-app
  namespace: %s
  annotations:
    keyhook.dev/inject: db
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: Never
    args: ["/etc"]
`, ns, testAppImage)
	file := filepath.Join(node.StaticPodDir(), ns+".yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	mirrorName := "static-app-" + framework.NodeName
	t.Cleanup(func() {
		_ = os.Remove(file)
		// The kubelet stops the static pod and deletes its mirror pod.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := framework.WaitFor(ctx, 250*time.Millisecond, func() (bool, error) {
			err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: mirrorName}, &corev1.Pod{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		if err != nil {
			t.Errorf("the mirror pod %s/%s stayed after its manifest was removed: %v", ns, mirrorName, err)
		}
	})

	mirror := &corev1.Pod{}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := framework.WaitFor(wctx, 250*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(wctx, client.ObjectKey{Namespace: ns, Name: mirrorName}, mirror); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return mirror.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		// Say what the kubelet and the API server made of it.
		running, _ := node.Ctr(ctx, "containers", "ls", `labels."io.kubernetes.pod.name"==`+mirrorName)
		t.Fatalf("no running mirror pod %s/%s: %v (state: %s)\ncontainers of the static pod in containerd:\n%s\nkubelet on the mirror pod:\n%s",
			ns, mirrorName, err, podState(mirror), running, kubeletLines(mirrorName, "mirror"))
	}
	if mirror.Annotations[corev1.MirrorPodAnnotationKey] == "" {
		t.Errorf("pod %s has no %s annotation: not a mirror pod", mirrorName, corev1.MirrorPodAnnotationKey)
	}
	if mirror.Spec.NodeName != framework.NodeName {
		t.Errorf("mirror pod on node %q, want %s", mirror.Spec.NodeName, framework.NodeName)
	}
	if hasAgent(mirror) || len(mirror.Spec.InitContainers) != 0 {
		t.Errorf("the mirror pod has init containers %v, want none (keyhook admits mirror pods unchanged)", mirror.Spec.InitContainers)
	}
	for _, v := range mirror.Spec.Volumes {
		if strings.Contains(v.Name, "keyhook") || v.Projected != nil {
			t.Errorf("the mirror pod has volume %+v, want none of keyhook's", v)
		}
	}
	// The static pod itself runs: the app's report, through the API server
	// from the kubelet.
	lines := appReport(ctx, t, ns, mirrorName)
	if lines[0].Kind != "self" {
		t.Errorf("the static pod's app reported %+v first", lines[0])
	}
	// The kubelet logs the warning keyhook gave the API server for it.
	if w := kubeletLines("keyhook: mirror pod"); w == "" {
		t.Errorf("the kubelet's log has no warning from keyhook about the mirror pod")
	} else {
		t.Logf("kubelet:\n%s", w)
	}
	// The enforcing policy names the static pod among those not injected.
	// It lists pods again every few minutes, and at once on a spec change.
	want := ns + "/" + mirrorName + " (static pod)"
	var msg string
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	defer pcancel()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &v1alpha1.ClusterInjectionPolicy{}
		if err := cluster.Client.Get(pctx, client.ObjectKey{Name: "pci-" + ns}, p); err != nil {
			return err
		}
		p.Spec.Mode = v1alpha1.InjectionModeFiles
		return cluster.Client.Update(pctx, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = framework.WaitFor(pctx, 500*time.Millisecond, func() (bool, error) {
		p := &v1alpha1.ClusterInjectionPolicy{}
		if err := cluster.Client.Get(pctx, client.ObjectKey{Name: "pci-" + ns}, p); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, policy.ConditionPodsInjected)
		if c == nil {
			return false, nil
		}
		msg = string(c.Status) + ": " + c.Message
		return c.ObservedGeneration == p.Generation && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, want), nil
	})
	if err != nil {
		t.Errorf("policy pci-%s's %s condition does not name %q: %v (last: %s)", ns, policy.ConditionPodsInjected, want, err, msg)
	}
}

// kubeletLines are the kubelet's log lines that contain every one of words.
func kubeletLines(words ...string) string {
	var out []string
	for _, l := range strings.Split(node.Kubelet.Output(), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			out = append(out, l)
		}
	}
	if len(out) > 10 {
		out = out[len(out)-10:]
	}
	return strings.Join(out, "\n")
}
