// Package node tests keyhook on a real one-node cluster: the control plane of
// tests/framework plus a node — containerd 2 with runc, CNI bridge, kubelet,
// kube-proxy and kube-scheduler — that runs the pods, with locally imported
// images (nothing is pulled). Only one run of this package uses the machine's
// node at a time (framework.PrepareNode takes a lock); everything it starts
// and mounts is removed on exit, on failure and on Ctrl-C.
package node

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyhook/keyhook/tests/framework"
)

// Images imported into the node; pods use them with imagePullPolicy Never.
const (
	testAppImage = "keyhook.test/testapp:1"
	agentImage   = "keyhook.test/init-agent:1"
	webhookImage = "keyhook.test/webhook:1"
)

var (
	cluster *framework.Cluster
	node    *framework.Node
	vault   *framework.Vault
)

func TestMain(m *testing.M) {
	if framework.RunReaper() {
		return
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	var once sync.Once
	var err error
	failed := func() bool { return code != 0 }
	cleanup := func() {
		once.Do(func() {
			if node != nil && failed() {
				keepLogs(node.Dir)
			}
			// The kubelet goes first (in Cleanup), the control plane after it,
			// so that nothing is restarted while it all stops.
			if node != nil {
				node.Cleanup()
			}
			if vault != nil {
				_ = vault.Stop()
			}
			if cluster != nil {
				_ = cluster.Stop()
			}
		})
	}
	defer cleanup()
	// Ctrl-C and kill: clean up too (go test's -timeout panics instead; the
	// next run removes what that left, see framework.PrepareNode).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "node: %s: cleaning up\n", s)
		code = 1
		cleanup()
		os.Exit(1)
	}()
	fail := func(what string, err error) int {
		code = 1
		fmt.Fprintf(os.Stderr, "node setup: %s: %v\n", what, err)
		return 1
	}
	if node, err = framework.PrepareNode(ctx); err != nil {
		return fail("node", err)
	}
	if cluster, err = framework.StartClusterWith(ctx, node.Dir, node.ClusterOptions()); err != nil {
		return fail("control plane", err)
	}
	// Vault listens on the node's address: the pods reach it there, directly.
	if vault, err = framework.StartVaultAt(ctx, node.Dir, framework.NodeIP); err != nil {
		return fail("vault", err)
	}
	if err = vault.KubernetesAuth(ctx, cluster); err != nil {
		return fail("vault kubernetes auth", err)
	}
	images, err := buildImages(node.Dir)
	if err != nil {
		return fail("images", err)
	}
	if err = node.Start(ctx, cluster, images...); err != nil {
		return fail("node start", err)
	}
	nodeReady := time.Since(start)
	if err = installKeyhook(ctx, webhookImage, agentImage); err != nil {
		return fail("installing keyhook", err)
	}
	fmt.Fprintf(os.Stderr, "node: control plane, vault and node %s Ready in %s; keyhook installed from manifests/self-managed and ready in %s\n",
		framework.NodeName, nodeReady.Round(time.Millisecond), (time.Since(start) - nodeReady).Round(time.Millisecond))
	code = m.Run()
	return code
}

// buildImages builds the images the tests run as docker-archive tarballs:
// the sandbox (pause) image, the test app, and keyhook's init-agent.
func buildImages(dir string) ([]string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	pause, err := framework.BuildStatic(bin, "./tests/node/pause")
	if err != nil {
		return nil, err
	}
	app, err := framework.BuildStatic(bin, "./tests/node/testapp")
	if err != nil {
		return nil, err
	}
	webhook, agent, err := framework.Binaries(bin)
	if err != nil {
		return nil, err
	}
	imgs := []framework.Image{
		{Ref: framework.SandboxImage, Files: map[string]string{"/pause": pause}, Entrypoint: []string{"/pause"}, User: "65535"},
		{Ref: testAppImage, Files: map[string]string{"/testapp": app}, Entrypoint: []string{"/testapp"}, User: "1000"},
		{Ref: agentImage, Files: map[string]string{"/keyhook-init-agent": agent}, Entrypoint: []string{"/keyhook-init-agent"}, User: "65532"},
		{Ref: webhookImage, Files: map[string]string{"/keyhook-webhook": webhook}, Entrypoint: []string{"/keyhook-webhook"}, User: "65532"},
	}
	var out []string
	for i, img := range imgs {
		f := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		if err := img.WriteTarball(f); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// keepLogs copies the run's logs out of the state directory, which Cleanup
// removes, and says where they are.
func keepLogs(dir string) {
	keep, err := os.MkdirTemp("", "keyhook-node-logs-")
	if err != nil {
		return
	}
	copyTo := func(src, name string) {
		if b, err := os.ReadFile(src); err == nil {
			_ = os.WriteFile(filepath.Join(keep, name), b, 0o600)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range logs {
		copyTo(f, filepath.Base(f))
	}
	// <podLogsDir>/<namespace>_<pod>_<uid>/<container>/<n>.log
	pods, _ := filepath.Glob(filepath.Join(dir, "pod-logs", "*", "*", "*.log"))
	for _, f := range pods {
		container := filepath.Dir(f)
		copyTo(f, "pod_"+filepath.Base(filepath.Dir(container))+"_"+filepath.Base(container)+"_"+filepath.Base(f))
	}
	fmt.Fprintf(os.Stderr, "node: logs kept in %s\n", keep)
}
