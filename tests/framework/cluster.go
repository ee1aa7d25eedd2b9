package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// Cluster is a real control plane: etcd and kube-apiserver (through
// envtest) plus kube-controller-manager, so that Deployments create
// ReplicaSets and Pods. On its own (tests/e2e, make demo) it has no node, so
// pods stay Pending; tests/node adds one (see Node), whose kubelet runs them.
type Cluster struct {
	Env        *envtest.Environment
	Config     *rest.Config
	Client     client.Client
	Clientset  *kubernetes.Clientset
	Scheme     *runtime.Scheme
	Kubeconfig string // admin kubeconfig file
	CAFile     string // the apiserver's CA, PEM
	CAPEM      []byte
	Host       string // https://127.0.0.1:PORT
	KCM        *Process
	// StartedIn is how long it took from start until the API server answered
	// and the controller-manager had created the default service account.
	StartedIn time.Duration
}

// ClusterOptions configure StartClusterWith.
type ClusterOptions struct {
	// Address is where the API server listens and what it advertises as the
	// kubernetes Service's endpoint; default 127.0.0.1. A node's pods reach
	// the API server only on an address of the node (see StartNode).
	Address string
	// APIServerCertDir, when set, holds the API server's certificates
	// (apiserver.crt/.key, sa-signer.crt/.key) made beforehand, with CAPEM
	// the CA that signed its serving certificate.
	APIServerCertDir string
	CAPEM            []byte
	// APIServerArgs are extra (or overriding) kube-apiserver flags.
	APIServerArgs map[string]string
	// EtcdDataDir, when set, is etcd's data directory (default: a new
	// temporary one).
	EtcdDataDir string
}

// StartCluster starts the control plane with binaries from $KEYHOOK_TESTENV
// (hack/testenv.sh prints it). dir receives kubeconfigs and logs.
func StartCluster(ctx context.Context, dir string) (*Cluster, error) {
	return StartClusterWith(ctx, dir, ClusterOptions{})
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(ctx context.Context, dir string, opts ClusterOptions) (*Cluster, error) {
	start := time.Now()
	assets, err := mustEnv("KEYHOOK_TESTENV", "run the tests through make test, or export KEYHOOK_TESTENV=$(hack/testenv.sh)")
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(RepoRoot(), "manifests", "crd")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := env.ControlPlane.GetAPIServer()
	address := opts.Address
	if address == "" {
		address = "127.0.0.1"
	}
	api.Configure().
		// envtest turns the ServiceAccount admission plugin off; pods in a real
		// cluster go through it, so ours do too.
		Disable("disable-admission-plugins").
		Set("advertise-address", address).
		Set("endpoint-reconciler-type", "none")
	if opts.Address != "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		api.SecureServing.ListenAddr.Address, api.SecureServing.ListenAddr.Port = opts.Address, itoa(port)
	}
	if opts.EtcdDataDir != "" {
		if err := os.MkdirAll(opts.EtcdDataDir, 0o700); err != nil {
			return nil, err
		}
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: opts.EtcdDataDir}
	}
	if opts.APIServerCertDir != "" {
		api.CertDir, api.SecureServing.CA = opts.APIServerCertDir, opts.CAPEM
	}
	for k, v := range opts.APIServerArgs {
		api.Configure().Set(k, v)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	c := &Cluster{Env: env, Config: cfg, Scheme: scheme, Host: cfg.Host}
	if err := c.init(ctx, dir, assets); err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.StartedIn = time.Since(start)
	return c, nil
}

func (c *Cluster) init(ctx context.Context, dir, assets string) error {
	var err error
	if c.Client, err = client.New(c.Config, client.Options{Scheme: c.Scheme}); err != nil {
		return err
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.CAPEM = c.Config.CAData
	c.CAFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(c.CAFile, c.CAPEM, 0o600); err != nil {
		return err
	}
	admin, err := c.Env.AddUser(envtest.User{Name: "keyhook-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return err
	}
	certDir := c.Env.ControlPlane.APIServer.CertDir
	c.KCM, err = Start("kube-controller-manager", filepath.Join(dir, "kube-controller-manager.log"), os.Environ(),
		filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig,
		"--authorization-kubeconfig="+c.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file="+c.CAFile,
		"--controllers=*",
		"--concurrent-deployment-syncs=5",
		// Default /usr/libexec/kubernetes/kubelet-plugins/volume/exec, which
		// it creates.
		"--flex-volume-plugin-dir="+filepath.Join(dir, "flexvolume"),
		"--v=1",
	)
	if err != nil {
		return err
	}
	// Ready when the service-account controller has made "default" in a
	// fresh namespace: then pods of new namespaces can be admitted.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ready-"}}
	if err := c.Client.Create(ctx, ns); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = WaitFor(wctx, 100*time.Millisecond, func() (bool, error) {
		if c.KCM.Exited() {
			return false, fmt.Errorf("kube-controller-manager exited:\n%s", tail(c.KCM.Output(), 30))
		}
		err := c.Client.Get(wctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-controller-manager: %w\n%s", err, tail(c.KCM.Output(), 30))
	}
	return c.Client.Delete(ctx, ns)
}

// Stop stops every process of the cluster.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	_ = c.KCM.Stop(10 * time.Second)
	return c.Env.Stop()
}

// Namespace creates a namespace with a generated name and waits for its
// default service account, as a kubelet-less cluster needs before pods.
func (c *Cluster) Namespace(ctx context.Context, prefix string, labels map[string]string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := c.Client.Create(ctx, ns); err != nil {
		return "", err
	}
	return ns.Name, c.WaitForServiceAccount(ctx, ns.Name, "default")
}

// WaitForServiceAccount waits until a service account exists.
func (c *Cluster) WaitForServiceAccount(ctx context.Context, ns, name string) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return WaitFor(wctx, 50*time.Millisecond, func() (bool, error) {
		err := c.Client.Get(wctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.ServiceAccount{})
		return err == nil, client.IgnoreNotFound(err)
	})
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return s[i+1:]
			}
		}
	}
	return s
}

// As is a client of the cluster that acts as user (impersonated by the
// admin), for tests of what an identity other than the admin may do.
func (c *Cluster) As(user string, groups ...string) (client.Client, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return client.New(cfg, client.Options{Scheme: c.Scheme})
}
