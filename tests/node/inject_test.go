package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

const mountPath = "/var/run/secrets/keyhook"

// appUID is the user the apps run as (pod securityContext), so the agent
// writes their files as that user.
const appUID = 1000

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// secretValue returns a value that cannot appear anywhere by chance, so that
// finding it in a log or an object proves a leak.
// Every value is remembered: after the tests, TestMain fails the run if any
// of them is in a log of the node (pods, kubelet, containerd, keyhook).
func secretValue(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	v := what + "-" + hex.EncodeToString(b)
	valuesMu.Lock()
	values = append(values, v)
	valuesMu.Unlock()
	return v
}

var (
	valuesMu sync.Mutex
	values   []string
)

func sha(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// tenant is a namespace with an "app" service account that a Vault role lets
// read secret/<namespace>/*, and a SecretStore "vault" pointing at the real
// Vault on the node's address, with the kubernetes auth method.
func tenant(ctx context.Context, t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	ns, err := vault.Tenant(ctx, cluster, prefix, labels)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func externalSecret(ns, name string, data ...v1alpha1.ExternalSecretData) *v1alpha1.ExternalSecret {
	return &v1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "vault", Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           data,
		},
	}
}

func data(key, remote, property string) v1alpha1.ExternalSecretData {
	return v1alpha1.ExternalSecretData{SecretKey: key, RemoteRef: v1alpha1.RemoteRef{Key: remote, Property: property}}
}

// appDeployment is a Deployment of the test app as uid appUID, reporting on
// the injected directory, with the given pod template annotations.
func appDeployment(ns, name string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					ServiceAccountName:            "app",
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](appUID), RunAsNonRoot: ptr.To(true)},
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           testAppImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{mountPath},
					}},
				},
			},
		},
	}
}

// podsOf lists the pods of a Deployment's label, not being deleted.
func podsOf(ctx context.Context, t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := cluster.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// runningPodOf waits for a running pod of the Deployment and returns it.
func runningPodOf(ctx context.Context, t *testing.T, ns, app string) *corev1.Pod {
	t.Helper()
	var name string
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var state string
	err := framework.WaitFor(wctx, 250*time.Millisecond, func() (bool, error) {
		for _, p := range podsOf(wctx, t, ns, app) {
			state = p.Name + ": " + podState(&p)
			if p.Status.Phase == corev1.PodRunning {
				name = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no running pod of %s/%s: %v (last: %s)", ns, app, err, state)
	}
	return waitRunning(ctx, t, ns, name)
}

// wantFiles checks the app's report of the injected files against Vault's
// values (by SHA-256), and that they are on tmpfs, mode 0400, owned by the
// app's user, and that the app cannot write there.
func wantFiles(t *testing.T, lines []appLine, want map[string]string) {
	t.Helper()
	files := map[string]appLine{}
	for _, l := range lines {
		if l.Kind == "file" {
			files[strings.TrimPrefix(l.Path, mountPath+"/")] = l
		}
		if l.Kind == "write" && l.Path == mountPath && l.Error == "" {
			t.Errorf("the app could write into %s", mountPath)
		}
	}
	for file, v := range want {
		l, ok := files[file]
		switch {
		case !ok:
			t.Errorf("the app found no file %s/%s (found %v)", mountPath, file, keys(files))
		case l.Error != "":
			t.Errorf("the app could not read %s: %s", file, l.Error)
		case l.SHA256 != sha(v):
			t.Errorf("%s: the app read other data than Vault holds", file)
		default:
			if l.FS != "tmpfs" || l.Mode != "0400" || l.UID != appUID {
				t.Errorf("%s: fs %s mode %s owner %d, want tmpfs, 0400, %d", file, l.FS, l.Mode, l.UID, appUID)
			}
		}
	}
	if len(files) != len(want) {
		t.Errorf("the app found files %v, want %d", keys(files), len(want))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ociSpec is the part of a container's OCI runtime spec the tests read: what
// runc was told to run the container with.
type ociSpec struct {
	Process struct {
		User struct {
			UID int `json:"uid"`
			GID int `json:"gid"`
		} `json:"user"`
		NoNewPrivileges bool `json:"noNewPrivileges"`
		Capabilities    struct {
			Bounding    []string `json:"bounding"`
			Effective   []string `json:"effective"`
			Permitted   []string `json:"permitted"`
			Inheritable []string `json:"inheritable"`
			Ambient     []string `json:"ambient"`
		} `json:"capabilities"`
	} `json:"process"`
	Root struct {
		Readonly bool `json:"readonly"`
	} `json:"root"`
}

// containerSpec reads the OCI spec containerd ran a container with.
func containerSpec(ctx context.Context, t *testing.T, containerID string) ociSpec {
	t.Helper()
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := node.Ctr(ctx, "containers", "info", "--spec", id)
	if err != nil {
		t.Fatal(err)
	}
	var s ociSpec
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("ctr containers info --spec %s: %v\n%s", id, err, out)
	}
	return s
}

// TestInjectedPodReadsVaultFiles: an annotated Deployment's pod runs on the
// node; keyhook's agent, in its own image, logged in to the real Vault as
// the pod and wrote the files the app then reads; the agent ran as non-root,
// with a read-only root file system and no capabilities.
func TestInjectedPodReadsVaultFiles(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "inject", nil)
	user, pass, token := secretValue(t, "user"), secretValue(t, "password"), secretValue(t, "token")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"username": user, "password": pass}); err != nil {
		t.Fatal(err)
	}
	if err := vault.Put(ctx, ns+"/api", map[string]any{"token": token}); err != nil {
		t.Fatal(err)
	}
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "db-creds", data("username", ns+"/db", "username"), data("password", ns+"/db", "password")),
		externalSecret(ns, "api-key", data("token", ns+"/api", "token")),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.Client.Create(ctx, appDeployment(ns, "web", map[string]string{"keyhook.dev/inject": "db-creds,api-key"})); err != nil {
		t.Fatal(err)
	}
	pod := runningPodOf(ctx, t, ns, "web")
	lines := appReport(ctx, t, ns, pod.Name)
	wantFiles(t, lines, map[string]string{"db-creds/username": user, "db-creds/password": pass, "api-key/token": token})

	// The agent, as runc ran it.
	var agent *corev1.ContainerStatus
	for i, s := range pod.Status.InitContainerStatuses {
		if s.Name == "keyhook-agent" {
			agent = &pod.Status.InitContainerStatuses[i]
		}
	}
	if agent == nil || agent.State.Terminated == nil || agent.State.Terminated.ExitCode != 0 {
		t.Fatalf("keyhook-agent init container status %+v, want terminated with exit 0", agent)
	}
	spec := containerSpec(ctx, t, agent.ContainerID)
	if spec.Process.User.UID == 0 || spec.Process.User.UID != appUID {
		t.Errorf("the agent ran as uid %d, want the app's %d (non-root)", spec.Process.User.UID, appUID)
	}
	if !spec.Root.Readonly {
		t.Error("the agent's root file system was writable")
	}
	if !spec.Process.NoNewPrivileges {
		t.Error("the agent could gain privileges (noNewPrivileges false)")
	}
	c := spec.Process.Capabilities
	if n := len(c.Bounding) + len(c.Effective) + len(c.Permitted) + len(c.Inheritable) + len(c.Ambient); n != 0 {
		t.Errorf("the agent had capabilities %+v, want none", c)
	}
	// The agent's logs name no value.
	raw, err := cluster.Clientset.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "keyhook-agent"}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{user, pass, token} {
		if strings.Contains(string(raw), v) {
			t.Error("the agent's log holds a secret value")
		}
	}
}

// TestMissingVaultKeyShowsInitError: a pod whose ExternalSecret names a key
// Vault does not have does not start; its agent fails with one line naming
// the ExternalSecret, the key and the reason, and the pod shows Init:Error.
func TestMissingVaultKeyShowsInitError(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "missing", nil)
	other := secretValue(t, "other")
	if err := vault.Put(ctx, ns+"/present", map[string]any{"value": other}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "gone", data("value", ns+"/absent", "value"), data("present", ns+"/present", "value"))); err != nil {
		t.Fatal(err)
	}
	// A bare pod that is not restarted: kubectl shows Init:Error for good
	// (a Deployment's pod goes on to Init:CrashLoopBackOff).
	tmpl := appDeployment(ns, "web", map[string]string{"keyhook.dev/inject": "gone"}).Spec.Template
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Annotations: tmpl.Annotations}, Spec: tmpl.Spec}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var term *corev1.ContainerStateTerminated
	var state string
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := framework.WaitFor(wctx, 250*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(wctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		state = podState(pod)
		if pod.Status.Phase == corev1.PodRunning {
			t.Fatalf("pod %s runs without its secret", pod.Name)
		}
		for _, s := range pod.Status.InitContainerStatuses {
			if s.Name == "keyhook-agent" && s.State.Terminated != nil && s.State.Terminated.Reason == "Error" {
				term = s.State.Terminated
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the agent did not fail: %v (last: %s)", err, state)
	}
	out, err := kubectl(ctx, nil, "-n", ns, "get", "pod", pod.Name, "--no-headers")
	if err != nil || !strings.Contains(out, "Init:Error") {
		t.Errorf("kubectl get pod shows %q (%v), want Init:Error", out, err)
	}
	msg := strings.TrimSpace(term.Message)
	if strings.Count(msg, "\n") != 0 {
		t.Errorf("termination message has %d lines, want one: %q", strings.Count(msg, "\n")+1, msg)
	}
	for _, want := range []string{"gone", ns + "/absent"} {
		if !strings.Contains(msg, want) {
			t.Errorf("termination message %q does not name %q", msg, want)
		}
	}
	if !strings.Contains(strings.ToLower(msg), "not found") {
		t.Errorf("termination message %q does not give the reason (not found)", msg)
	}
	if strings.Contains(msg, other) {
		t.Error("termination message holds a secret value")
	}
}
