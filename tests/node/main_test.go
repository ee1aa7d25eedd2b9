// Package node tests keyhook on a real one-node cluster: the control plane of
// tests/framework plus a node — containerd 2 with runc, CNI bridge, kubelet,
// kube-proxy and kube-scheduler — that runs the pods, with locally imported
// images (nothing is pulled). Only one run of this package uses the machine's
// node at a time (framework.PrepareNode takes a lock); everything it starts
// and mounts is removed on exit, on failure and on Ctrl-C, and the package
// fails if the machine is not left as the run found it (Node.Leftovers).
package node

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/keyhook/keyhook/pkg/imagebuild"
	"github.com/keyhook/keyhook/tests/framework"
)

// Images imported into the node, built as make images builds them and named
// <imageRepo>/<name>:<imageTag>; pods use them with imagePullPolicy Never.
const (
	imageRepo    = "keyhook.test"
	imageTag     = "node"
	testAppImage = imageRepo + "/testapp:" + imageTag
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
			stopping := time.Now()
			defer func() {
				fmt.Fprintf(os.Stderr, "node: stopped and cleaned up in %s\n", time.Since(stopping).Round(time.Millisecond))
			}()
			if node != nil && failed() {
				keepLogs(node.Dir)
			}
			// The node first: Cleanup stops the kubelet, removes the pods and
			// kills every process that uses the run's directory, the API
			// server and etcd included (stopped gracefully they wait ~30 s
			// for the node's and keyhook's connections).
			if node != nil {
				node.Cleanup()
			}
			if vault != nil {
				_ = vault.Stop()
			}
			if cluster != nil {
				_ = cluster.Stop()
			}
			// The run leaves the machine as it found it, or the package fails.
			if left := node.Leftovers(); len(left) > 0 {
				fmt.Fprintf(os.Stderr, "node: after its cleanup the run left on this machine:\n  %s\n", strings.Join(left, "\n  "))
				code = 1
			}
		})
	}
	defer cleanup()
	// Ctrl-C and kill: clean up too. A panic or go test's -timeout ends the
	// process without this; the node's reaper process cleans up then.
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
	images, err := buildImages(ctx, node.Dir)
	if err != nil {
		return fail("images", err)
	}
	if err = node.Start(ctx, cluster, images...); err != nil {
		return fail("node start", err)
	}
	nodeReady := time.Since(start)
	if err = installKeyhook(ctx, imageRepo, imageTag); err != nil {
		return fail("installing keyhook", err)
	}
	fmt.Fprintf(os.Stderr, "node: control plane, vault and node %s Ready in %s (of which %s waiting for another node run); keyhook installed and ready in %s\n",
		framework.NodeName, nodeReady.Round(time.Millisecond), node.Waited.Round(time.Millisecond), (time.Since(start) - nodeReady).Round(time.Millisecond))
	code = m.Run()
	code = max(code, upgradeAndUninstall())
	if leaks := leakedValues(node.Dir); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "node: secret values written by the tests appear in these logs: %v\n", leaks)
		code = 1
	}
	return code
}

// leakedValues lists the logs of the run — every container's, the
// kubelet's, containerd's, kube-proxy's, the control plane's — that hold a
// value the tests put into Vault.
func leakedValues(dir string) []string {
	valuesMu.Lock()
	defer valuesMu.Unlock()
	var leaks []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".log") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				leaks = append(leaks, p)
				break
			}
		}
		return nil
	})
	return leaks
}

// buildImages builds the images the tests run, as docker-archive tarballs:
// keyhook's webhook, controller and init-agents (every provider, and Vault's
// alone, which the webhook injects into pods whose stores are all Vault
// ones) and the test app as make images builds them (pkg/imagebuild), and
// the sandbox (pause) image.
func buildImages(ctx context.Context, dir string) ([]string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	pause, err := framework.BuildStatic(bin, "./tests/node/pause")
	if err != nil {
		return nil, err
	}
	pauseTar := filepath.Join(dir, "pause.tar")
	img := framework.Image{Ref: framework.SandboxImage, Files: map[string]string{"/pause": pause}, Entrypoint: []string{"/pause"}, User: "65535"}
	if err := img.WriteTarball(pauseTar); err != nil {
		return nil, err
	}
	var want []imagebuild.Image
	for _, im := range imagebuild.Images {
		switch im.Name {
		case "webhook", "controller", "init-agent", "init-agent-vault", "testapp":
			want = append(want, im)
		}
	}
	out := filepath.Join(dir, "images")
	res, err := imagebuild.Build(ctx, imagebuild.Options{
		Root: framework.RepoRoot(), Out: out, Images: want,
		Platforms: []v1.Platform{{OS: "linux", Architecture: runtime.GOARCH}},
		Repo:      imageRepo, Tag: imageTag,
	})
	if err != nil {
		return nil, err
	}
	tars := []string{pauseTar}
	for _, im := range res.Images {
		for _, p := range im.Platforms {
			tars = append(tars, filepath.Join(out, p.Archive))
		}
	}
	if len(tars) != 1+len(want) {
		return nil, fmt.Errorf("make images' build gave %d archives for %d images", len(tars)-1, len(want))
	}
	return tars, nil
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
