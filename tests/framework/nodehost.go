package framework

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What a node run may change on the machine outside its state directory,
// because the component that does it has no setting to put it elsewhere:
//
//   - containerd's shims bind their sockets in /run/containerd/s (fixed in
//     containerd: defaults.DefaultStateDir);
//   - libcni caches every ADD's result in /var/lib/cni/results (go-cni sets
//     no cache directory), e.g. cni-loopback-<sandbox>-lo;
//   - the kubelet's device-plugin socket is /var/lib/kubelet/device-plugins/
//     kubelet.sock whatever --root-dir says, and it links every container's
//     log into /var/log/containers;
//   - mount(8) creates /run/mount;
//   - the kubelet sets kernel tunables (vm.overcommit_memory, kernel.panic,
//     ...) and the node turns on IP forwarding;
//   - kube-proxy's nftables tables are named kube-proxy in ip and ip6;
//   - the bridge, the pods' veths, cgroups and mounts.
//
// A run snapshots these before it starts (hostState, kept in its state
// directory so that a later run or the reaper can clean up after it), removes
// what it made — found by what belongs to it, never by a name another node
// could share — and Leftovers compares the machine afterwards with the
// snapshot.

// hostDirs are the directories outside the state directory that the node's
// components write to.
var hostDirs = []string{"/run/containerd", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/run/mount",
	// Moved into the run's directory by configuration; checked all the same.
	"/opt/containerd", "/usr/libexec/kubernetes"}

// kernelTunables are the sysctls the kubelet (setupKernelTunables) and the
// node change; a run puts back the values it found.
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
}

// kubeProxyTables are kube-proxy's nftables tables ("family name"); their
// names are fixed, so a run deletes them only if they did not exist before it.
var kubeProxyTables = []string{"ip kube-proxy", "ip6 kube-proxy"}

const hostStateFile = "host-before.json"

// hostState is the part of the machine a node run must leave as it found it.
type hostState struct {
	Mounts   []string          `json:"mounts"`   // mount points
	Links    []string          `json:"links"`    // network devices
	Cgroups  []string          `json:"cgroups"`  // top-level cgroups, <hierarchy>/<name>
	NFTables []string          `json:"nftables"` // "family name"
	Files    []string          `json:"files"`    // everything under hostDirs, the dirs included
	Sysctls  map[string]string `json:"sysctls"`
}

func snapshotHost() (*hostState, error) {
	s := &hostState{Sysctls: map[string]string{}}
	var err error
	if s.Mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, i := range ifs {
		s.Links = append(s.Links, i.Name)
	}
	for _, h := range cgroupHierarchies() {
		entries, _ := os.ReadDir(h)
		for _, e := range entries {
			if e.IsDir() {
				s.Cgroups = append(s.Cgroups, filepath.Join(h, e.Name()))
			}
		}
	}
	if s.NFTables, err = nftTables(); err != nil {
		return nil, err
	}
	for _, d := range hostDirs {
		_ = filepath.WalkDir(d, func(p string, _ fs.DirEntry, err error) error {
			if err == nil {
				s.Files = append(s.Files, p)
			}
			return nil
		})
	}
	for _, k := range kernelTunables {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	return s, nil
}

func (s *hostState) save(dir string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, hostStateFile), b, 0o600)
}

// loadHostState reads what the run of dir found before it started; nil when
// it had not got that far.
func loadHostState(dir string) *hostState {
	b, err := os.ReadFile(filepath.Join(dir, hostStateFile))
	if err != nil {
		return nil
	}
	s := &hostState{}
	if json.Unmarshal(b, s) != nil {
		return nil
	}
	return s
}

// diff lists what now has that s had not (and the sysctls that differ).
func (s *hostState) diff(now *hostState) []string {
	var out []string
	add := func(kind string, before, after []string) {
		had := map[string]bool{}
		for _, b := range before {
			had[b] = true
		}
		for _, a := range after {
			if !had[a] {
				out = append(out, kind+" "+a)
			}
		}
	}
	add("mount", s.Mounts, now.Mounts)
	add("network device", s.Links, now.Links)
	add("cgroup", s.Cgroups, now.Cgroups)
	add("nftables table", s.NFTables, now.NFTables)
	add("file", s.Files, now.Files)
	keys := make([]string, 0, len(s.Sysctls))
	for k := range s.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if now.Sysctls[k] != s.Sysctls[k] {
			out = append(out, fmt.Sprintf("sysctl %s = %s (was %s)", strings.ReplaceAll(k, "/", "."), now.Sysctls[k], s.Sysctls[k]))
		}
	}
	return out
}

func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mps []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) >= 5 {
			mps = append(mps, unescapeMountPath(fields[4]))
		}
	}
	return mps, s.Err()
}

// cgroupHierarchies are the mount points of the machine's cgroup
// hierarchies (v1 controllers, name=systemd and the unified one).
func cgroupHierarchies() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var hs []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		// <id> <parent> <major:minor> <root> <mount point> <options> [optional...] - <fstype> ...
		fields := strings.Fields(s.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") && fields[3] == "/" {
				hs = append(hs, unescapeMountPath(fields[4]))
			}
		}
	}
	return hs
}

func nftTables() ([]string, error) {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil, fmt.Errorf("nft list tables: %w", err)
	}
	var ts []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(l), "table "); ok {
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// runCgroup is the cgroup (under every hierarchy's root) that the kubelet of
// the run in dir puts its pods in (cgroupRoot): only the run's pods live
// there, so cleanup kills and removes nothing else.
func runCgroup(dir string) string { return "keyhook-node-" + filepath.Base(dir) }

// runCgroupPaths are the run's cgroup in every hierarchy.
func runCgroupPaths(dir string) []string {
	var ps []string
	for _, h := range cgroupHierarchies() {
		ps = append(ps, filepath.Join(h, runCgroup(dir)))
	}
	return ps
}

// makeRunCgroup creates the run's cgroup in every hierarchy: the kubelet
// refuses a cgroupRoot that does not exist. A v1 cpuset cgroup starts with
// no CPUs and memory nodes; it gets its parent's.
func makeRunCgroup(dir string) error {
	for _, p := range runCgroupPaths(dir) {
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("node: creating cgroup %s: %w", p, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if _, err := os.Stat(filepath.Join(p, f)); err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join(filepath.Dir(p), f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(p, f), b, 0o644); err != nil {
				return fmt.Errorf("node: %s/%s: %w", p, f, err)
			}
		}
	}
	return nil
}

// checkHostFree fails when something on the machine would collide with a
// node run: another kube-proxy's nftables tables (same names as ours),
// another kubelet (its device-plugin socket is at a fixed path), routes or
// addresses in the node's subnets.
func checkHostFree(before *hostState) error {
	for _, t := range kubeProxyTables {
		for _, have := range before.NFTables {
			if have == t {
				return fmt.Errorf("node: the nftables table %q exists: another kube-proxy runs on this machine (or a run killed before its cleanup left it: nft delete table %s); the node's kube-proxy would share it", t, t)
			}
		}
	}
	if c, err := net.DialTimeout("unix", "/var/lib/kubelet/device-plugins/kubelet.sock", time.Second); err == nil {
		c.Close()
		return errors.New("node: another kubelet runs on this machine (/var/lib/kubelet/device-plugins/kubelet.sock answers); the node's kubelet would take over its socket")
	}
	return checkSubnetsFree(PodSubnet, ServiceCIDR)
}

// checkSubnetsFree fails when a route (other than a default route) or an
// address of this machine overlaps one of the node's subnets: the bridge's
// route would shadow it, or pods would reach something that is not theirs.
func checkSubnetsFree(cidrs ...string) error {
	out, err := exec.Command("ip", "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return fmt.Errorf("node: ip route: %w", err)
	}
	var routes []struct {
		Dst string `json:"dst"`
		Dev string `json:"dev"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return fmt.Errorf("node: ip -j route: %w", err)
	}
	for _, c := range cidrs {
		_, want, err := net.ParseCIDR(c)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == "" || r.Dst == "default" {
				continue
			}
			dst := r.Dst
			if !strings.Contains(dst, "/") {
				dst += "/32"
			}
			_, got, err := net.ParseCIDR(dst)
			if err != nil {
				continue
			}
			if got.Contains(want.IP) || want.Contains(got.IP) {
				return fmt.Errorf("node: this machine has a route to %s (dev %s) that overlaps the node's subnet %s; the test bed's subnets are fixed (framework.PodSubnet, ServiceCIDR): free it or change them", r.Dst, r.Dev, c)
			}
		}
	}
	return nil
}

// runContainerIDs are the containers and sandboxes of the run in dir that
// containerd still had a bundle for: those the run did not stop and remove.
func runContainerIDs(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", "*", "*"))
	var ids []string
	for _, p := range m {
		ids = append(ids, filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p))
	}
	return ids
}

// runShimSockets are the sockets in /run/containerd/s of the run's live
// shims (processes whose command line names dir): a shim removes its socket
// when it exits, not when it is killed.
func runShimSockets(dir string) []string {
	inodes := map[string]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), dir) || !strings.Contains(string(b), "containerd-shim") {
			continue
		}
		fds, _ := filepath.Glob(filepath.Join(filepath.Dir(f), "fd", "*"))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	// /proc/net/unix: Num RefCount Protocol Flags Type St Inode [Path]
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil
	}
	var socks []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], "/run/containerd/s/") {
			socks = append(socks, f[7])
		}
	}
	return socks
}

// removeRunHostFiles removes what the run in dir left outside it: its
// shims' sockets, libcni's cached results of its sandboxes, the kubelet's
// log links to its pods, and — what only a kubelet makes, which checkHostFree
// made sure was the run's — new files under /var/lib/kubelet; then the host
// directories it created, if empty. before is what the run found (nil: the
// run did not get that far; then only what provably is the run's goes).
func removeRunHostFiles(dir string) {
	before := loadHostState(dir)
	sock := filepath.Join(dir, "containerd.sock")
	for _, nsID := range runContainerIDs(dir) {
		ns, id, _ := strings.Cut(nsID, "/")
		bundle := filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", ns, id)
		// The shim's socket: its address file, else containerd's formula
		// (pkg/shim.SocketAddress: sha256 of <address>/<namespace>/<id>).
		if b, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
			if p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "unix://"); ok && strings.HasPrefix(p, "/run/containerd/s/") {
				_ = os.Remove(p)
			}
		}
		_ = os.Remove(fmt.Sprintf("/run/containerd/s/%x", sha256.Sum256([]byte(filepath.Join(sock, ns, id)))))
	}
	// libcni's cached results (<network>-<container>-<interface>) name the
	// sandbox's network namespace, in the run's directory
	// (netns_mounts_under_state_dir), whether or not containerd still had
	// the sandbox: it may have stopped it and not yet torn down its network.
	if m, _ := filepath.Glob("/var/lib/cni/results/*"); len(m) > 0 {
		for _, f := range m {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), dir+"/") {
				_ = os.Remove(f)
			}
		}
	}
	// The kubelet's links to the pods' logs, which are in the run's directory.
	if m, _ := filepath.Glob("/var/log/containers/*.log"); len(m) > 0 {
		for _, f := range m {
			if t, err := os.Readlink(f); err == nil && strings.HasPrefix(t, dir+"/") {
				_ = os.Remove(f)
			}
		}
	}
	if before == nil {
		return
	}
	had := map[string]bool{}
	for _, f := range before.Files {
		had[f] = true
	}
	var made []string
	_ = filepath.WalkDir("/var/lib/kubelet", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !had[p] {
			made = append(made, p)
		}
		return nil
	})
	for _, d := range hostDirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && !had[p] {
				made = append(made, p)
			}
			return nil
		})
	}
	// Deepest first; directories only when empty (os.Remove).
	sort.Slice(made, func(i, j int) bool { return len(made[i]) > len(made[j]) })
	for _, p := range made {
		_ = os.Remove(p)
	}
}

// restoreHost puts back what the run in dir changed on the machine's
// network and kernel: the bridge (its name is the test bed's), kube-proxy's
// nftables tables if the run created them, the sysctls it found.
func restoreHost(dir string) {
	_ = exec.Command("ip", "link", "del", nodeBridge).Run()
	before := loadHostState(dir)
	if before == nil {
		return
	}
	had := map[string]bool{}
	for _, t := range before.NFTables {
		had[t] = true
	}
	for _, t := range kubeProxyTables {
		if !had[t] {
			_ = exec.Command("nft", append([]string{"delete", "table"}, strings.Fields(t)...)...).Run()
		}
	}
	for k, v := range before.Sysctls {
		p := filepath.Join("/proc/sys", k)
		if now, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(now)) != v {
			_ = os.WriteFile(p, []byte(v+"\n"), 0o644)
		}
	}
}

// killCgroupProcs kills every process in the run's cgroup, until none is
// left (a dying shim may leave its container behind for a moment).
func killCgroupProcs(dir string) {
	for i := 0; i < 20; i++ {
		found := false
		for _, root := range runCgroupPaths(dir) {
			_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
						found = true
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroups removes the run's cgroup tree in every hierarchy, deepest
// first.
func removeCgroups(dir string) {
	for _, root := range runCgroupPaths(dir) {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			for i := 0; i < 20; i++ {
				if err := syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// Leftovers is what Cleanup found the run had left on the machine after it
// had cleaned up — compared with what the run found before it started:
// mounts, network devices, top-level cgroups, nftables tables, files in the
// host directories the node's components write to, and the kernel tunables
// the kubelet sets. Each entry names one thing. Cleanup looks before it
// releases the machine's node lock, so that the next run's bridge is not
// taken for this one's.
func (n *Node) Leftovers() []string {
	if n == nil {
		return nil
	}
	return n.leftovers
}

// findLeftovers compares the machine with n.before; the node's veths go with
// their network namespaces, so it waits a little for the list to empty.
func (n *Node) findLeftovers() []string {
	if n.before == nil {
		return nil
	}
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := snapshotHost()
		if err != nil {
			return []string{"cannot inspect the machine: " + err.Error()}
		}
		if left = n.before.diff(now); len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(250 * time.Millisecond)
	}
}
