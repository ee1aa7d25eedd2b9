package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/tests/framework"
)

// appLine is one line of the test app's report (tests/node/testapp).
type appLine struct {
	Kind   string `json:"kind"`
	Path   string `json:"path"`
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Mode   string `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	FS     string `json:"fs"`
	Error  string `json:"error"`
}

// appPod is a pod of the test app reporting on dirs.
func appPod(ns, name string, dirs ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           testAppImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            dirs,
			}},
		},
	}
}

// waitRunning waits until the pod runs, failing early with its status when a
// container cannot start.
func waitRunning(ctx context.Context, t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := framework.WaitFor(wctx, 200*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(wctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
			return false, err
		}
		if pod.Status.Phase == corev1.PodRunning {
			return true, nil
		}
		return false, fmt.Errorf("pod %s/%s: %s", ns, name, podState(pod))
	})
	if err != nil {
		t.Fatalf("pod did not run: %v", err)
	}
	return pod
}

// podState summarises a pod's phase and containers' states for messages.
func podState(pod *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", pod.Status.Phase)
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			fmt.Fprintf(&b, "; %s: %s", c.Type, c.Message)
		}
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		switch {
		case s.State.Waiting != nil:
			fmt.Fprintf(&b, "; %s waiting: %s %s", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message)
		case s.State.Terminated != nil:
			fmt.Fprintf(&b, "; %s terminated: %s exit %d %s", s.Name, s.State.Terminated.Reason, s.State.Terminated.ExitCode, s.State.Terminated.Message)
		}
	}
	return b.String()
}

// appReport reads the app's report through the API server (kubectl logs:
// API server -> kubelet -> containerd), waiting for its last line.
func appReport(ctx context.Context, t *testing.T, ns, pod string) []appLine {
	t.Helper()
	var lines []appLine
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := framework.WaitFor(wctx, 250*time.Millisecond, func() (bool, error) {
		raw, err := cluster.Clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "app"}).DoRaw(wctx)
		if err != nil {
			return false, err
		}
		lines = nil
		s := bufio.NewScanner(strings.NewReader(string(raw)))
		for s.Scan() {
			var l appLine
			if err := json.Unmarshal(s.Bytes(), &l); err != nil {
				return false, fmt.Errorf("app log line %q: %w", s.Text(), err)
			}
			lines = append(lines, l)
		}
		return len(lines) > 0 && lines[len(lines)-1].Kind == "done", nil
	})
	if err != nil {
		t.Fatalf("reading the app's logs of %s/%s: %v", ns, pod, err)
	}
	return lines
}

// TestPlainPodRunsWithLogs: the node is Ready with its bridge address, a pod
// gets an address of the pod network, runs the locally imported image, and
// its logs are read through the API server from the kubelet.
func TestPlainPodRunsWithLogs(t *testing.T) {
	ctx := context.Background()
	n := &corev1.Node{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: framework.NodeName}, n); err != nil {
		t.Fatal(err)
	}
	var internal string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internal = a.Address
		}
	}
	if internal != framework.NodeIP {
		t.Errorf("node InternalIP = %q, want %s (addresses %v)", internal, framework.NodeIP, n.Status.Addresses)
	}
	ns, err := cluster.Namespace(ctx, "plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, appPod(ns, "app", "/etc")); err != nil {
		t.Fatal(err)
	}
	pod := waitRunning(ctx, t, ns, "app")
	_, subnet, _ := net.ParseCIDR(framework.PodSubnet)
	if ip := net.ParseIP(pod.Status.PodIP); ip == nil || !subnet.Contains(ip) {
		t.Errorf("pod IP %q, want one of %s", pod.Status.PodIP, framework.PodSubnet)
	}
	if pod.Spec.NodeName != framework.NodeName {
		t.Errorf("pod scheduled to %q, want %s", pod.Spec.NodeName, framework.NodeName)
	}
	lines := appReport(ctx, t, ns, "app")
	// kubectl itself, as a user reads logs.
	out, err := kubectl(ctx, nil, "-n", ns, "logs", "app")
	if err != nil || !strings.Contains(out, `{"kind":"done"`) {
		t.Errorf("kubectl logs: %v\n%s", err, out)
	}
	if lines[0].Kind != "self" || lines[0].UID != 65532 {
		t.Errorf("app's first line %+v, want it to run as the image's user nonroot (65532)", lines[0])
	}
	var write *appLine
	for i := range lines {
		if lines[i].Kind == "write" && lines[i].Path == "/etc" {
			write = &lines[i]
		}
	}
	// /etc of the image is root's: a non-root app cannot write there, and
	// the report says so.
	if write == nil || write.Error == "" {
		t.Errorf("the app reported %+v for writing /etc as nonroot, want a permission error", write)
	}
}
