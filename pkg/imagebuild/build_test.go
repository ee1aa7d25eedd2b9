package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"
)

const moduleRoot = "../.."

// testImage is what the tests build: the smallest image keyhook publishes,
// the Vault init-agent (the others build the same way; they only take longer
// to compile and compress).
var testImage = func() Image {
	for _, im := range Images {
		if im.Name == "init-agent-vault" {
			return im
		}
	}
	panic("no init-agent-vault among Images")
}()

var (
	twice     sync.Once
	builds    [2]*Result
	buildErr  error
	buildDirs [2]string
	// buildTimes are the wall times of the two builds.
	buildTimes [2]time.Duration
)

// buildTwice builds testImage for both platforms into two fresh layouts,
// once per test binary; tests share the result. The second build uses an
// empty Go build cache, so the binaries are compiled anew, every package
// of the standard library and of the dependencies included: equal digests
// then mean the compiler's output is reproducible, not that a cache
// returned the same bytes twice.
func buildTwice(t *testing.T) ([2]*Result, [2]string) {
	t.Helper()
	twice.Do(func() {
		base, err := os.MkdirTemp("", "imagebuild-test-")
		if err != nil {
			buildErr = err
			return
		}
		for i := range builds {
			buildDirs[i] = filepath.Join(base, []string{"a", "b"}[i])
			opts := Options{Root: moduleRoot, Out: buildDirs[i], Images: []Image{testImage}}
			if i == 1 {
				opts.GoEnv = []string{"GOCACHE=" + filepath.Join(base, "gocache")}
			}
			start := time.Now()
			builds[i], buildErr = Build(context.Background(), opts)
			buildTimes[i] = time.Since(start)
			if buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builds, buildDirs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDirs[0] != "" {
		// The fresh build cache's files are read-only.
		_ = exec.Command("chmod", "-R", "u+w", filepath.Dir(buildDirs[0])).Run()
		_ = os.RemoveAll(filepath.Dir(buildDirs[0]))
	}
	os.Exit(code)
}

// The same commit built twice, the second time with an empty Go build
// cache, gives the same digests, and the very same layout: every blob and
// index.json.
func TestBuildIsReproducible(t *testing.T) {
	res, dirs := buildTwice(t)
	if diff := cmp.Diff(res[0].Images, res[1].Images, cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".Archive"
	}, cmp.Ignore())); diff != "" {
		t.Fatalf("two builds of one commit differ (-first +second):\n%s", diff)
	}
	for _, f := range []string{"index.json", "images.json"} {
		a, _ := os.ReadFile(filepath.Join(dirs[0], f))
		b, _ := os.ReadFile(filepath.Join(dirs[1], f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (or is empty)", f)
		}
	}
	if a, b := listBlobs(t, dirs[0]), listBlobs(t, dirs[1]); !cmp.Equal(a, b) {
		t.Errorf("blobs differ between two builds:\n%s", cmp.Diff(a, b))
	}
	for _, a := range []string{"archives/" + testImage.Name + "_linux_amd64.tar", "archives/" + testImage.Name + "_linux_arm64.tar"} {
		if fileSum(t, filepath.Join(dirs[0], a)) != fileSum(t, filepath.Join(dirs[1], a)) {
			t.Errorf("%s differs between two builds", a)
		}
	}
	t.Logf("%s %s, %s, twice: %s (build %s with the Go build cache, %s with an empty one)", testImage.Name, res[0].Version,
		res[0].Created.Format(time.RFC3339), res[0].Images[0].Digest, buildTimes[0].Round(time.Second), buildTimes[1].Round(time.Second))
}

// The size target of a one-provider agent: at most 10 MiB
// compressed (what a node pulls) on every platform. The webhook's (20 MiB)
// is checked by tests/node, which builds it.
func TestOneProviderAgentSize(t *testing.T) {
	res, _ := buildTwice(t)
	for _, p := range res[0].Images[0].Platforms {
		t.Logf("%s %s: %.2f MiB compressed, binary %.2f MiB", testImage.Name, p.Platform, mib(p.CompressedSize), mib(p.BinarySize))
		if p.CompressedSize <= 0 || p.CompressedSize > 10<<20 {
			t.Errorf("%s %s is %.2f MiB compressed; the target is at most 10 MiB", testImage.Name, p.Platform, mib(p.CompressedSize))
		}
	}
}

func listBlobs(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "blobs/sha256/*"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no blobs in %s: %v", dir, err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	sort.Strings(m)
	return m
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(b)
}

// What a user inspecting the image would check: both platforms under one
// index, the commit in its labels and times, user 65532, a static binary of
// the right architecture, nothing else but passwd/group and empty dirs (no
// shell), and an SPDX SBOM attached to each platform image.
func TestBuiltImage(t *testing.T) {
	res, dirs := buildTwice(t)
	rev, ver, epoch, err := GitInfo(context.Background(), moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Revision != rev || res[0].Version != ver || !res[0].Created.Equal(epoch) {
		t.Fatalf("result names %s %s %s, the commit is %s %s %s", res[0].Revision, res[0].Version, res[0].Created, rev, ver, epoch)
	}
	lp, err := layout.FromPath(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var idxDesc *v1.Descriptor
	sboms := map[v1.Hash]v1.Hash{} // subject -> SBOM manifest
	for i, d := range topm.Manifests {
		switch {
		case d.Annotations[AnnotationRefName] == testImage.Name:
			idxDesc = &topm.Manifests[i]
		case d.Annotations[AnnotationImage] == testImage.Name:
			art, err := top.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, err := art.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject == nil || m.ArtifactType != SPDXMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != SPDXMediaType {
				t.Fatalf("SBOM manifest %s: subject %v, artifactType %q, layers %v", d.Digest, m.Subject, m.ArtifactType, m.Layers)
			}
			sboms[m.Subject.Digest] = d.Digest
		default:
			t.Errorf("index.json has an entry of nothing built: %+v", d)
		}
	}
	if idxDesc == nil {
		t.Fatalf("index.json has no image named %s: %+v", testImage.Name, topm.Manifests)
	}
	if idxDesc.Digest.String() != res[0].Images[0].Digest {
		t.Errorf("index.json says %s, images.json %s", idxDesc.Digest, res[0].Images[0].Digest)
	}
	idx, err := top.ImageIndex(idxDesc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		AnnotationSource: "https://github.com/keyhook/keyhook", AnnotationRevision: rev, AnnotationVersion: ver,
		AnnotationCreated: epoch.Format(time.RFC3339), AnnotationTitle: testImage.Name, AnnotationDescription: testImage.Description,
	}
	if diff := cmp.Diff(wantLabels, im.Annotations); diff != "" {
		t.Errorf("index annotations (-want +got):\n%s", diff)
	}
	var platforms []string
	for _, d := range im.Manifests {
		plat := d.Platform.OS + "/" + d.Platform.Architecture
		platforms = append(platforms, plat)
		t.Run(plat, func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Config.User != "65532:65532" || cf.OS != d.Platform.OS || cf.Architecture != d.Platform.Architecture ||
				!cf.Created.Time.Equal(epoch) || !cmp.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/" + testImage.Binary}) {
				t.Errorf("config: user %q, %s/%s, created %s, entrypoint %v", cf.Config.User, cf.OS, cf.Architecture, cf.Created, cf.Config.Entrypoint)
			}
			if diff := cmp.Diff(wantLabels, cf.Config.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			files := layerFiles(t, img, epoch)
			var names []string
			for n := range files {
				names = append(names, n)
			}
			sort.Strings(names)
			want := []string{"etc/", "etc/group", "etc/passwd", "home/", "home/nonroot/", "root/", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/" + testImage.Binary}
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("files of the image (-want +got):\n%s", diff)
			}
			if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") || !strings.Contains(string(files["etc/group"]), "nonroot:x:65532:") {
				t.Errorf("/etc/passwd %q and /etc/group %q do not name nonroot 65532", files["etc/passwd"], files["etc/group"])
			}
			f, err := elf.NewFile(bytes.NewReader(files["usr/local/bin/"+testImage.Binary]))
			if err != nil {
				t.Fatal(err)
			}
			wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[d.Platform.Architecture]
			if f.Machine != wantMachine {
				t.Errorf("binary is for %s, want %s", f.Machine, wantMachine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("binary is dynamically linked")
				}
			}
			sd, ok := sboms[d.Digest]
			if !ok {
				t.Fatalf("no SBOM has subject %s", d.Digest)
			}
			doc := readSBOM(t, top, sd)
			var pkgs []string
			for _, p := range doc.Packages {
				pkgs = append(pkgs, p.Name)
			}
			for _, want := range []string{testImage.Binary, "stdlib", "github.com/keyhook/keyhook", fallbackRoots, "github.com/hashicorp/vault/api"} {
				if !contains(pkgs, want) {
					t.Errorf("SBOM lists %v, not %s", pkgs, want)
				}
			}
			if doc.Packages[0].Checksums[0].ChecksumValue != sha256Hex(files["usr/local/bin/"+testImage.Binary]) {
				t.Errorf("SBOM's checksum of the binary is not the binary's")
			}
			if !strings.Contains(doc.Packages[0].Comment, "GOARCH="+d.Platform.Architecture) {
				t.Errorf("SBOM of %s says %q", plat, doc.Packages[0].Comment)
			}

			// The docker archive holds the same image: config and layers.
			arch := filepath.Join(dirs[0], "archives", testImage.Name+"_"+d.Platform.OS+"_"+d.Platform.Architecture+".tar")
			tag, err := name.NewTag(res[0].Images[0].Ref)
			if err != nil {
				t.Fatal(err)
			}
			timg, err := tarball.ImageFromPath(arch, &tag)
			if err != nil {
				t.Fatalf("docker archive %s has no image tagged %s: %v", arch, tag, err)
			}
			for _, get := range []func(v1.Image) (v1.Hash, error){
				func(i v1.Image) (v1.Hash, error) { return i.ConfigName() },
				func(i v1.Image) (v1.Hash, error) {
					ls, err := i.Layers()
					if err != nil || len(ls) != 1 {
						return v1.Hash{}, errors.Join(err, errors.New("not one layer"))
					}
					return ls[0].Digest()
				},
			} {
				a, err1 := get(img)
				b, err2 := get(timg)
				if err := errors.Join(err1, err2); err != nil || a != b {
					t.Errorf("docker archive differs from the layout: %s vs %s (%v)", b, a, err)
				}
			}
		})
	}
	if !cmp.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %v", platforms)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// layerFiles returns the image's one layer as name -> content, checking
// that entries are sorted and timed at the commit.
func layerFiles(t *testing.T, img v1.Image, epoch time.Time) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string][]byte{}
	prev := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name <= prev {
			t.Errorf("tar entry %s after %s: not sorted", h.Name, prev)
		}
		prev = h.Name
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s has time %s, want the commit's %s", h.Name, h.ModTime, epoch)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	return files
}

func readSBOM(t *testing.T, top v1.ImageIndex, d v1.Hash) SPDXDocument {
	t.Helper()
	art, err := top.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := art.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("SBOM artifact: %d layers, %v", len(ls), err)
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var doc SPDXDocument
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) < 3 || doc.Relationships[0].RelationshipType != "DESCRIBES" {
		t.Fatalf("not an SPDX 2.3 document of a binary: %+v", doc)
	}
	return doc
}

// make push: go-containerregistry's registry, with and without the
// referrers API, serves back what the layout holds, digest for digest, and
// lists each platform image's SBOM as its referrer.
func TestPushPullBack(t *testing.T) {
	res, dirs := buildTwice(t)
	for _, tc := range []struct {
		name string
		opts []registry.Option
	}{
		{"referrers API", []registry.Option{registry.WithReferrersSupport(true)}},
		{"tag fallback", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(registry.New(append(tc.opts, registry.Logger(nopLogger()))...))
			defer srv.Close()
			reg := strings.TrimPrefix(srv.URL, "http://") + "/keyhook"
			pushed, err := Push(context.Background(), dirs[0], PushOptions{Registry: reg, Tag: "v0-test"})
			if err != nil {
				t.Fatal(err)
			}
			if len(pushed) != 1 || pushed[0].Ref != reg+"/"+testImage.Name+":v0-test" || len(pushed[0].SBOMs) != 2 {
				t.Fatalf("pushed %+v", pushed)
			}
			checkHelmValues(t, reg, pushed[0])
			ref, err := name.ParseReference(pushed[0].Ref)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := remote.Index(ref)
			if err != nil {
				t.Fatal(err)
			}
			d, err := idx.Digest()
			if err != nil || d.String() != res[0].Images[0].Digest {
				t.Fatalf("registry serves index %s, built %s (%v)", d, res[0].Images[0].Digest, err)
			}
			for _, p := range res[0].Images[0].Platforms {
				pl, err := v1.ParsePlatform(p.Platform)
				if err != nil {
					t.Fatal(err)
				}
				img, err := remote.Image(ref, remote.WithPlatform(*pl))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := img.Digest(); err != nil || got.String() != p.Digest {
					t.Errorf("%s: pulled %s, built %s (%v)", p.Platform, got, p.Digest, err)
				}
				refs, err := remote.Referrers(ref.Context().Digest(p.Digest))
				if err != nil {
					t.Fatal(err)
				}
				rm, err := refs.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				if len(rm.Manifests) != 1 || rm.Manifests[0].Digest.String() != p.SBOM {
					t.Fatalf("%s: referrers %+v, want the SBOM %s", p.Platform, rm.Manifests, p.SBOM)
				}
				// go-containerregistry's registry reports the config's media
				// type as the referrer's artifactType; the manifest has ours.
				art, err := remote.Image(ref.Context().Digest(p.SBOM))
				if err != nil {
					t.Fatal(err)
				}
				am, err := art.Manifest()
				if err != nil || am.ArtifactType != SPDXMediaType || am.Subject == nil || am.Subject.Digest.String() != p.Digest {
					t.Errorf("%s: referrer %s is not the SPDX SBOM of %s: %+v (%v)", p.Platform, p.SBOM, p.Digest, am, err)
				}
			}
		})
	}
}

// checkHelmValues: the values file make push writes names the registry and
// tag pushed to, pins the pushed agent by the digest the registry serves,
// and sends the pods of providers whose agent was not pushed to the
// all-provider agent (null) rather than to an image that is not there.
func checkHelmValues(t *testing.T, reg string, pushed Pushed) {
	t.Helper()
	b, err := HelmValues(reg+"/", []Pushed{pushed})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatalf("values file is not YAML: %v\n%s", err, b)
	}
	want := map[string]any{
		"image": map[string]any{"registry": reg, "tag": "v0-test"},
		"agent": map[string]any{"providerImages": map[string]any{
			"vault": map[string]any{"digest": pushed.Digest}, "aws": nil, "gcpsm": nil,
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("values-images.yaml (-want +got):\n%s\n%s", diff, b)
	}
	if _, err := HelmValues(reg, []Pushed{pushed, {Name: "webhook", Tag: "other", Digest: pushed.Digest}}); err == nil {
		t.Errorf("HelmValues took images of two tags; the chart has one")
	}
}

// make push leaves out the images that are not keyhook's (the node tests'
// app) unless asked: only they are marked test-only.
func TestTestOnlyImages(t *testing.T) {
	var testOnly []string
	for _, im := range Images {
		if IsTestOnly(im.Name) {
			testOnly = append(testOnly, im.Name)
		}
	}
	if !cmp.Equal(testOnly, []string{"testapp"}) {
		t.Errorf("test-only images %v, want [testapp]", testOnly)
	}
}

// A binary without compiled-in TLS roots, or linked against libc, cannot
// work in an image without a CA file or a libc: the build refuses it.
func TestCheckBinaryRefusesBinaryWithoutRoots(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/noroots\n\ngo 1.22\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	bin := filepath.Join(dir, "noroots")
	if err := goBuild(context.Background(), dir, Image{Package: "."}, v1.Platform{OS: "linux", Architecture: "amd64"}, bin); err != nil {
		t.Fatal(err)
	}
	err := checkBinary(bin)
	if err == nil || !strings.Contains(err.Error(), fallbackRoots) {
		t.Fatalf("checkBinary = %v, want a refusal naming %s", err, fallbackRoots)
	}
}

// Every image the repository builds links the TLS roots (checked here with
// go list, so a new process missing the import fails make test, not only
// make images) and has a main package.
func TestEveryImageHasRootsAndAMain(t *testing.T) {
	present := Present(moduleRoot, Images)
	var names []string
	for _, im := range present {
		names = append(names, im.Name)
	}
	for _, want := range []string{"webhook", "init-agent"} {
		if !contains(names, want) {
			t.Errorf("images %v lack %s", names, want)
		}
	}
	seen := map[string]bool{}
	for _, im := range present {
		if seen[im.Name] {
			t.Errorf("two images named %s", im.Name)
		}
		seen[im.Name] = true
		args := []string{"list", "-deps", "-f", "{{.ImportPath}} {{.Name}}"}
		if len(im.Tags) > 0 {
			args = append(args, "-tags="+strings.Join(im.Tags, ","))
		}
		cmd := exec.Command(goCmd(), append(args, im.Package)...)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: go list: %v", im.Name, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !strings.HasSuffix(lines[len(lines)-1], " main") {
			t.Errorf("%s: %s is not a main package", im.Name, im.Package)
		}
		if !contains(lines, fallbackRoots+" fallback") {
			t.Errorf("%s: %s does not import %s; the image has no CA file", im.Name, im.Package, fallbackRoots)
		}
	}
}

func TestHasBuildTag(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "pkg/providers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "pkg/providers/vault.go"), []byte("//go:build vault || all\n\npackage providers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]bool{"vault": true, "all": true, "aws": false, "vaul": false} {
		if got := HasBuildTag(tag)(root); got != want {
			t.Errorf("HasBuildTag(%q) = %v, want %v", tag, got, want)
		}
	}
	if HasPackage("cmd/controller")(root) {
		t.Errorf("HasPackage(cmd/controller) true in a tree without it")
	}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }
