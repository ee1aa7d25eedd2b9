package framework

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The one node of the test bed. Its addresses exist only on a bridge this
// harness creates on this machine; pods get no default route, so nothing
// they send leaves the machine.
const (
	// NodeName is the node's name.
	NodeName = "keyhook-node"
	// NodeIP is the bridge's address: the node's InternalIP (the API server
	// dials the kubelet there for logs), where the API server and Vault
	// listen, and the gateway of the pods.
	NodeIP = "10.244.0.1"
	// PodSubnet is the pods' network, on the bridge only.
	PodSubnet = "10.244.0.0/24"
	// ServiceCIDR is envtest's service range; kube-proxy (nftables mode)
	// translates its ClusterIPs, which pods reach through NodeIP.
	ServiceCIDR = "10.0.0.0/24"
	// SandboxImage is the pause image, imported locally, never pulled.
	SandboxImage = "keyhook.test/pause:1"

	nodeBridge = "khnode0"
	runcBin    = "/usr/sbin/runc"
	cniBinDir  = "/usr/lib/cni"
)

// NodeBase is the parent of every node test run's state directory; its
// ".lock" serialises node test runs on this machine (one kubelet at a time).
func NodeBase() string { return filepath.Join(os.TempDir(), "keyhook-node") }

// Node is a real one-node cluster's node: containerd 2 with Debian's runc,
// CNI bridge + host-local, kubelet, kube-proxy (nftables) and kube-scheduler,
// all under one state directory and one cgroup of the run, which Cleanup
// removes with every mount, process, cgroup, network device and host file
// the run made.
type Node struct {
	// Dir is this run's state directory.
	Dir string
	// Waited is how long PrepareNode waited for another run to release the
	// machine's node.
	Waited      time.Duration
	lock        *os.File
	pki         *pki
	certDir     string
	kubeletPort int
	sock        string
	containerd  string // directory of containerd, containerd-shim-runc-v2, ctr
	testenv     string
	Containerd  *Process
	Kubelet     *Process
	KubeProxy   *Process
	Scheduler   *Process
	cleanedUp   bool
	before      *hostState // the machine before the run (see Leftovers)
	leftovers   []string
	reaper      *os.File // write end of the reaper's pipe
}

// PrepareNode takes the machine-wide node lock (waiting while another run
// holds it), removes what a killed earlier run left behind, and creates this
// run's state directory, the bridge with NodeIP and the certificates the
// control plane needs before it starts. Call ClusterOptions for
// StartClusterWith, then Start.
func PrepareNode(ctx context.Context) (*Node, error) {
	testenv, err := mustEnv("KEYHOOK_TESTENV", "run the tests through make test, or export KEYHOOK_TESTENV=$(hack/testenv.sh)")
	if err != nil {
		return nil, err
	}
	ctrDir, err := mustEnv("KEYHOOK_CONTAINERD", "run the tests through make test, or export KEYHOOK_CONTAINERD=$(hack/node.sh)")
	if err != nil {
		return nil, err
	}
	for _, f := range []string{filepath.Join(testenv, "kubelet"), filepath.Join(testenv, "kube-proxy"), filepath.Join(testenv, "kube-scheduler"),
		filepath.Join(ctrDir, "containerd"), filepath.Join(ctrDir, "containerd-shim-runc-v2"), filepath.Join(ctrDir, "ctr"),
		runcBin, filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"), filepath.Join(cniBinDir, "loopback"), "/usr/sbin/nft"} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("node: %w (hack/node.sh builds kubelet, kube-proxy, kube-scheduler and containerd and installs runc, containernetworking-plugins and nftables)", err)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("node: the kubelet and containerd need root; run make test as root")
	}
	base := NodeBase()
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(base+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	waitStart := time.Now()
	if err := flockContext(ctx, lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("node: waiting for %s (another node test run holds it): %w", lock.Name(), err)
	}
	n := &Node{lock: lock, testenv: testenv, containerd: ctrDir, Waited: time.Since(waitStart)}
	// Leftovers of a run that was killed before its cleanup.
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		cleanupState(filepath.Join(base, e.Name()))
	}
	if n.before, err = snapshotHost(); err != nil {
		n.Cleanup()
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := checkHostFree(n.before); err != nil {
		n.before = nil // nothing of the run to look for
		n.Cleanup()
		return nil, err
	}
	if n.Dir, err = os.MkdirTemp(base, "run-"); err != nil {
		n.Cleanup()
		return nil, err
	}
	if err := n.before.save(n.Dir); err != nil {
		n.Cleanup()
		return nil, err
	}
	if err := n.startReaper(); err != nil {
		n.Cleanup()
		return nil, err
	}
	if err := n.prepare(); err != nil {
		n.Cleanup()
		return nil, err
	}
	return n, nil
}

func flockContext(ctx context.Context, f *os.File) error {
	for said := false; ; said = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if !said {
			fmt.Fprintf(os.Stderr, "node: another node test run holds %s; waiting for it\n", f.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) prepare() error {
	// The bridge exists before the API server, the kubelet and Vault bind
	// NodeIP; the CNI bridge plugin adopts it.
	for _, args := range [][]string{
		{"link", "add", nodeBridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/24", "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("node: ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	var err error
	n.certDir = filepath.Join(n.Dir, "pki")
	if err := os.MkdirAll(n.certDir, 0o700); err != nil {
		return err
	}
	if n.pki, err = newPKI("keyhook-node-ca"); err != nil {
		return err
	}
	// The API server's serving certificate names the addresses pods and the
	// harness use: NodeIP directly, the kubernetes Service's ClusterIP through
	// kube-proxy.
	if _, _, err := n.pki.issue(n.certDir, "apiserver", "kube-apiserver", nil,
		[]string{"localhost", "127.0.0.1", NodeIP, "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}); err != nil {
		return err
	}
	sa, err := newPKI("service-accounts")
	if err != nil {
		return err
	}
	if err := sa.writeKeyPair(n.certDir, "sa-signer"); err != nil {
		return err
	}
	// The API server's client certificate for the kubelet (logs, exec) and
	// the kubelet's serving certificate, which the API server verifies.
	if _, _, err := n.pki.issue(n.certDir, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil); err != nil {
		return err
	}
	if _, _, err := n.pki.issue(n.certDir, "kubelet", NodeName, nil, []string{NodeName, NodeIP}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.certDir, "ca.crt"), n.pki.CertPEM, 0o600); err != nil {
		return err
	}
	if n.kubeletPort, err = FreePort(); err != nil {
		return err
	}
	return nil
}

// ClusterOptions are the control plane's settings for this node: the API
// server on NodeIP, with the Node authorizer, a client certificate for the
// kubelet and the kubelet's CA, and webhook calls dialled straight to the
// Service's endpoints (--enable-aggregator-routing), so that the API server
// on the host reaches a webhook pod without kube-proxy on its own path.
func (n *Node) ClusterOptions() ClusterOptions {
	return ClusterOptions{
		Address:          NodeIP,
		EtcdDataDir:      filepath.Join(n.Dir, "etcd"),
		APIServerCertDir: n.certDir,
		CAPEM:            n.pki.CertPEM,
		APIServerArgs: map[string]string{
			"authorization-mode":              "Node,RBAC",
			"endpoint-reconciler-type":        "lease",
			"enable-aggregator-routing":       "true",
			"kubelet-client-certificate":      filepath.Join(n.certDir, "apiserver-kubelet-client.crt"),
			"kubelet-client-key":              filepath.Join(n.certDir, "apiserver-kubelet-client.key"),
			"kubelet-certificate-authority":   filepath.Join(n.certDir, "ca.crt"),
			"kubelet-preferred-address-types": "InternalIP",
		},
	}
}

// Start starts containerd, imports the image tarballs (docker-archive) into
// its k8s.io namespace, and starts the kubelet, kube-proxy and the scheduler;
// it returns when the node is Ready.
func (n *Node) Start(ctx context.Context, c *Cluster, images ...string) error {
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	for _, img := range images {
		if err := n.Import(ctx, img); err != nil {
			return err
		}
	}
	kubeconfig := func(name string, user envtest.User) (string, error) {
		u, err := c.Env.AddUser(user, nil)
		if err != nil {
			return "", err
		}
		kc, err := u.KubeConfig()
		if err != nil {
			return "", err
		}
		f := filepath.Join(n.Dir, name+".kubeconfig")
		return f, os.WriteFile(f, kc, 0o600)
	}
	kubeletKC, err := kubeconfig("kubelet", envtest.User{Name: "system:node:" + NodeName, Groups: []string{"system:nodes"}})
	if err != nil {
		return err
	}
	proxyKC, err := kubeconfig("kube-proxy", envtest.User{Name: "system:kube-proxy"})
	if err != nil {
		return err
	}
	schedKC, err := kubeconfig("kube-scheduler", envtest.User{Name: "system:kube-scheduler"})
	if err != nil {
		return err
	}
	if err := n.startKubelet(kubeletKC); err != nil {
		return err
	}
	if err := n.startKubeProxy(proxyKC); err != nil {
		return err
	}
	schedPort, err := FreePort()
	if err != nil {
		return err
	}
	if n.Scheduler, err = Start("kube-scheduler", filepath.Join(n.Dir, "kube-scheduler.log"), os.Environ(),
		filepath.Join(n.testenv, "kube-scheduler"),
		"--kubeconfig="+schedKC,
		"--authentication-kubeconfig="+schedKC,
		"--authorization-kubeconfig="+schedKC,
		"--bind-address=127.0.0.1",
		"--secure-port="+itoa(schedPort),
		"--leader-elect=false",
		"--v=1",
	); err != nil {
		return err
	}
	return n.waitReady(ctx, c)
}

func (n *Node) startContainerd(ctx context.Context) error {
	n.sock = filepath.Join(n.Dir, "containerd.sock")
	cniConf := filepath.Join(n.Dir, "cni", "net.d")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return err
	}
	// bridge + host-local on the pod subnet only: the one route pods get is
	// to the Service range, through the node; no default route, no
	// masquerade. isGateway stays false: the bridge already has the node's
	// address, and the plugin would turn on the host's IP forwarding.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "keyhook-node",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q, "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.250", "gateway": %q}]],
      "routes": [{"dst": %q}]
    }
  }]
}
`, nodeBridge, filepath.Join(n.Dir, "cni", "ipam"), PodSubnet, NodeIP, ServiceCIDR)
	if err := os.WriteFile(filepath.Join(cniConf, "10-keyhook-node.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %q

  [plugins.'io.containerd.cri.v1.runtime']
    # This VM refuses lowering oom_score_adj (runc: permission denied).
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %q
          Root = %q
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%q]
      conf_dir = %q

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  # Default /opt/containerd.
  [plugins.'io.containerd.internal.v1.opt']
    path = %q
`, filepath.Join(n.Dir, "containerd", "root"), filepath.Join(n.Dir, "containerd", "state"),
		n.sock, n.sock+".ttrpc", SandboxImage, runcBin, filepath.Join(n.Dir, "runc"), cniBinDir, cniConf,
		filepath.Join(n.Dir, "containerd", "opt"))
	cfgFile := filepath.Join(n.Dir, "containerd.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	env := append(os.Environ(), "PATH="+n.containerd+":/usr/sbin:/usr/bin:/sbin:/bin")
	var err error
	if n.Containerd, err = Start("containerd", filepath.Join(n.Dir, "containerd.log"), env,
		filepath.Join(n.containerd, "containerd"), "--config", cfgFile, "--log-level", "warn"); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = WaitFor(wctx, 100*time.Millisecond, func() (bool, error) {
		if n.Containerd.Exited() {
			return false, fmt.Errorf("containerd exited:\n%s", tail(n.Containerd.Output(), 30))
		}
		_, err := n.Ctr(wctx, "version")
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for containerd: %w", err)
	}
	return nil
}

// StaticPodDir is the kubelet's staticPodPath: a pod manifest written there
// runs on the node without the API server, which gets its mirror pod.
func (n *Node) StaticPodDir() string { return filepath.Join(n.Dir, "static-pods") }

// Ctr runs ctr against this node's containerd, in the k8s.io namespace, and
// returns its standard output (warnings go to its standard error).
func (n *Node) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(n.containerd, "ctr"), append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// Import imports a docker-archive image tarball into the node's containerd,
// where the kubelet finds it without pulling.
func (n *Node) Import(ctx context.Context, tarball string) error {
	_, err := n.Ctr(ctx, "images", "import", tarball)
	return err
}

func (n *Node) startKubelet(kubeconfig string) error {
	healthz, err := FreePort()
	if err != nil {
		return err
	}
	// The pods' cgroups go under a cgroup of the run's own, which cleanup
	// removes (and nothing else).
	if err := makeRunCgroup(n.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(n.StaticPodDir(), 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid); kubelet 1.35+ refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /%s
staticPodPath: %s
volumePluginDir: %s
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
podLogsDir: %s
resolvConf: ""
failSwapOn: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "imagefs.available": "1%%"}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
`, runCgroup(n.Dir), n.StaticPodDir(), filepath.Join(n.Dir, "volume-plugins"),
		n.sock, NodeIP, n.kubeletPort, healthz,
		filepath.Join(n.certDir, "kubelet.crt"), filepath.Join(n.certDir, "kubelet.key"), filepath.Join(n.certDir, "ca.crt"),
		filepath.Join(n.Dir, "pod-logs"))
	cfgFile := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	n.Kubelet, err = Start("kubelet", filepath.Join(n.Dir, "kubelet.log"), os.Environ(),
		filepath.Join(n.testenv, "kubelet"),
		"--config="+cfgFile,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(n.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.Dir, "kubelet-pki"),
		"--hostname-override="+NodeName,
		"--node-ip="+NodeIP,
		"--v=1",
	)
	return err
}

func (n *Node) startKubeProxy(kubeconfig string) error {
	healthz, err := FreePort()
	if err != nil {
		return err
	}
	metrics, err := FreePort()
	if err != nil {
		return err
	}
	// nftables mode keeps every rule in kube-proxy's own tables, which
	// Cleanup deletes; conntrack sysctls are left as they are.
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
nodePortAddresses: [%q]
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, NodeName, PodSubnet, NodeIP+"/32", healthz, metrics)
	cfgFile := filepath.Join(n.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	n.KubeProxy, err = Start("kube-proxy", filepath.Join(n.Dir, "kube-proxy.log"), os.Environ(),
		filepath.Join(n.testenv, "kube-proxy"), "--config="+cfgFile, "--v=1")
	return err
}

func (n *Node) waitReady(ctx context.Context, c *Cluster) error {
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := WaitFor(wctx, 250*time.Millisecond, func() (bool, error) {
		for _, p := range []*Process{n.Containerd, n.Kubelet, n.KubeProxy, n.Scheduler} {
			if p.Exited() {
				return false, fmt.Errorf("%s exited:\n%s", p.Name, tail(p.Output(), 40))
			}
		}
		node := &corev1.Node{}
		if err := c.Client.Get(wctx, client.ObjectKey{Name: NodeName}, node); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return true, nil
				}
				return false, fmt.Errorf("node %s not ready: %s: %s", NodeName, cond.Reason, cond.Message)
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for node %s to be Ready: %w\nkubelet:\n%s", NodeName, err, tail(n.Kubelet.Output(), 40))
	}
	return nil
}

// Cleanup stops everything the node started and removes what it made: the
// pods' containers and shims, mounts under the state directory, the run's
// cgroup, its shims' sockets, CNI results and the kubelet's files in the
// host's directories, the bridge, kube-proxy's nftables tables (the run made
// them), and it puts back the sysctls it changed; then it releases the lock.
// Leftovers says what it missed. It is safe to call more than once and from
// a signal handler.
func (n *Node) Cleanup() {
	if n == nil || n.cleanedUp {
		return
	}
	n.cleanedUp = true
	// The kubelet first, so it restarts nothing while the rest goes.
	_ = n.Kubelet.Stop(5 * time.Second)
	_ = n.Scheduler.Stop(5 * time.Second)
	_ = n.KubeProxy.Stop(5 * time.Second)
	if n.Dir != "" {
		cleanupState(n.Dir)
	}
	// While the lock is held: the next run may start as soon as it goes.
	n.leftovers = n.findLeftovers()
	if n.lock != nil {
		n.lock.Close() // releases the flock
	}
	if n.reaper != nil {
		n.reaper.Close() // the reaper finds nothing left and exits
	}
}

// reaperEnv names the state directory a reaper process cleans up.
const reaperEnv = "KEYHOOK_NODE_REAPER"

// startReaper starts this test binary again as a reaper: a process of its
// own session that waits until this one ends — by any means: a panicking
// test, go test's -timeout, SIGKILL — and then cleans up what it left
// (containers, mounts, cgroups, the bridge, the node's and the API server's
// processes). TestMain calls RunReaper first thing.
func (n *Node) startReaper() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), reaperEnv+"="+n.Dir)
	cmd.ExtraFiles = []*os.File{r} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("node: starting the reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	n.reaper = w
	return nil
}

// RunReaper reports whether this process was started as a node reaper; if
// so it waits for its parent to end, cleans up after it and returns true:
// the caller then exits.
func RunReaper() bool {
	dir := os.Getenv(reaperEnv)
	if dir == "" {
		return false
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	pipe := os.NewFile(3, "reaper")
	_, _ = io.Copy(io.Discard, pipe) // EOF: the parent has ended
	if _, err := os.Stat(dir); err != nil {
		return true // cleaned up normally
	}
	lock, err := os.OpenFile(NodeBase()+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return true
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return true
	}
	if _, err := os.Stat(dir); err != nil {
		return true // the next run cleaned up first
	}
	cleanupState(dir)
	return true
}

// cleanupState removes one run's state directory and everything under it
// and what the run made outside it: the pods' processes (found through the
// run's cgroup), every process whose command line names the directory
// (containerd, its shims, the kubelet, kube-proxy, the control plane), the
// mounts below it, the run's files in the host's directories, its cgroup,
// the bridge, kube-proxy's tables if the run made them, and the sysctls it
// changed.
func cleanupState(dir string) {
	killCgroupProcs(dir)
	shimSockets := runShimSockets(dir) // before the shims die
	killByCmdline(dir)
	killCgroupProcs(dir) // containers a dying shim left behind
	unmountUnder(dir)
	for _, s := range shimSockets {
		_ = os.Remove(s)
	}
	removeRunHostFiles(dir)
	removeCgroups(dir)
	restoreHost(dir)
	_ = os.RemoveAll(dir)
}

func killByCmdline(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var killed []int
	for _, f := range procs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
				break // a zombie waits for its parent, which is dying too
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	for i := 0; i < 5; i++ {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return
		}
		var mounts []string
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 64*1024), 1024*1024)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 5 {
				continue
			}
			mp := unescapeMountPath(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				mounts = append(mounts, mp)
			}
		}
		f.Close()
		if len(mounts) == 0 {
			return
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
		for _, mp := range mounts {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
