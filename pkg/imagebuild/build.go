package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotation and label keys of the OCI image spec, and keyhook's own.
const (
	AnnotationRefName     = "org.opencontainers.image.ref.name"
	AnnotationSource      = "org.opencontainers.image.source"
	AnnotationRevision    = "org.opencontainers.image.revision"
	AnnotationVersion     = "org.opencontainers.image.version"
	AnnotationCreated     = "org.opencontainers.image.created"
	AnnotationTitle       = "org.opencontainers.image.title"
	AnnotationDescription = "org.opencontainers.image.description"
	// AnnotationImage names, on an SBOM's entry in the layout's index.json,
	// the image the SBOM belongs to (Push uses it to find the repository).
	AnnotationImage = "dev.keyhook.image.name"

	// SPDXMediaType is the media type of the SBOM blobs and the artifactType
	// of the manifests that carry them.
	SPDXMediaType = "application/spdx+json"
	// emptyJSONMediaType is the OCI 1.1 "no config" config of an artifact.
	emptyJSONMediaType = "application/vnd.oci.empty.v1+json"

	// UID and GID of the nonroot user every image runs as.
	nonrootID = 65532

	// fallbackRoots is the module whose blank import compiles Mozilla's CA
	// roots into a binary; every image needs it, having no CA file.
	fallbackRoots = "golang.org/x/crypto/x509roots/fallback"
)

// DefaultPlatforms are the platforms of every image index.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Options says what to build and where.
type Options struct {
	// Root is the module root; empty means the current directory.
	Root string
	// Out is the OCI layout directory (bin/images). Build replaces the
	// layout, archives/ and images.json there and leaves anything else.
	Out string
	// Images to build; nil means Present(Root, Images).
	Images []Image
	// Platforms of each image index; nil means DefaultPlatforms.
	Platforms []v1.Platform
	// Repo prefixes the names the docker archives are tagged with
	// (<Repo>/<name>:<Tag>); empty means ghcr.io/keyhook.
	Repo string
	// Tag of the docker archives; empty means the version.
	Tag string
	// NoArchives skips the docker-archive tarballs.
	NoArchives bool
	// Source, Revision, Version and Epoch become the org.opencontainers.image
	// labels and every timestamp; empty ones come from GitInfo.
	Source   string
	Revision string
	Version  string
	Epoch    time.Time
	// GoEnv is added to the go command's environment (GOCACHE=... builds
	// with another build cache: the reproducibility test rebuilds every
	// package with an empty one).
	GoEnv []string
	// Log reports progress; nil is silent.
	Log func(format string, args ...any)
}

// Result is what Build wrote; it is also written to <Out>/images.json.
type Result struct {
	Source   string       `json:"source"`
	Revision string       `json:"revision"`
	Version  string       `json:"version"`
	Created  time.Time    `json:"created"`
	Images   []BuiltImage `json:"images"`
	// Layout is Options.Out; not in images.json, which is the same wherever
	// the layout is written.
	Layout string `json:"-"`
}

// BuiltImage is one image index of the layout.
type BuiltImage struct {
	Name string `json:"name"`
	// Ref is the name the docker archives are tagged with.
	Ref string `json:"ref"`
	// Digest of the image index (what a chart's image.digest takes).
	Digest    string          `json:"digest"`
	Platforms []BuiltPlatform `json:"platforms"`
}

// BuiltPlatform is one platform's image of an index.
type BuiltPlatform struct {
	Platform string `json:"platform"`
	// Digest of the image manifest.
	Digest string `json:"digest"`
	// CompressedSize is the sum of the gzip layers (what a pull transfers,
	// manifest and config aside).
	CompressedSize int64 `json:"compressedSize"`
	// BinarySize is the size of the stripped binary.
	BinarySize int64 `json:"binarySize"`
	// SBOM is the digest of the SPDX artifact manifest whose subject is Digest.
	SBOM string `json:"sbom"`
	// Archive is the docker-archive tarball, relative to Out ("" if none).
	Archive string `json:"archive,omitempty"`
}

// GitInfo returns the commit at root: its hash, a version (git describe,
// "-dirty" when the tree has changes) and its commit time. SOURCE_DATE_EPOCH,
// when set, overrides the time.
func GitInfo(ctx context.Context, root string) (revision, version string, epoch time.Time, err error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(ee.Stderr))
			}
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if revision, err = git("rev-parse", "HEAD"); err != nil {
		return "", "", time.Time{}, err
	}
	if version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
		return "", "", time.Time{}, err
	}
	sde := os.Getenv("SOURCE_DATE_EPOCH")
	if sde == "" {
		if sde, err = git("log", "-1", "--format=%ct"); err != nil {
			return "", "", time.Time{}, err
		}
	}
	sec, err := strconv.ParseInt(sde, 10, 64)
	if err != nil {
		return "", "", time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", sde, err)
	}
	return revision, version, time.Unix(sec, 0).UTC(), nil
}

// Build compiles every image of opts for every platform, writes them as one
// OCI layout (an image index per image, annotated with its name, and an SPDX
// SBOM per platform image attached as an artifact whose subject is that
// image), docker-archive tarballs per image and platform, and images.json.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Root == "" {
		opts.Root = "."
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	if opts.Out == "" {
		return nil, errors.New("imagebuild: Options.Out is empty")
	}
	if opts.Images == nil {
		opts.Images = Present(root, Images)
	}
	if len(opts.Images) == 0 {
		return nil, errors.New("imagebuild: no images to build")
	}
	if opts.Platforms == nil {
		opts.Platforms = DefaultPlatforms
	}
	if opts.Revision == "" || opts.Version == "" || opts.Epoch.IsZero() {
		rev, ver, epoch, err := GitInfo(ctx, root)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: the commit to label the images with: %w", err)
		}
		if opts.Revision == "" {
			opts.Revision = rev
		}
		if opts.Version == "" {
			opts.Version = ver
		}
		if opts.Epoch.IsZero() {
			opts.Epoch = epoch
		}
	}
	opts.Epoch = opts.Epoch.UTC().Truncate(time.Second)
	if opts.Source == "" {
		opts.Source = "https://github.com/keyhook/keyhook"
	}
	if opts.Repo == "" {
		opts.Repo = "ghcr.io/keyhook"
	}
	if opts.Tag == "" {
		opts.Tag = opts.Version
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}

	// Start from an empty layout: a stale image or SBOM left in index.json
	// would be pushed with the new ones.
	for _, f := range []string{"index.json", "oci-layout", "blobs", "archives", "images.json"} {
		if err := os.RemoveAll(filepath.Join(opts.Out, f)); err != nil {
			return nil, err
		}
	}
	lp, err := layout.Write(opts.Out, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: OCI layout %s: %w", opts.Out, err)
	}
	work, err := os.MkdirTemp("", "keyhook-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	res := &Result{Source: opts.Source, Revision: opts.Revision, Version: opts.Version, Created: opts.Epoch, Layout: opts.Out}
	for _, im := range opts.Images {
		built, err := buildImage(ctx, root, work, lp, im, opts, logf)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: image %s: %w", im.Name, err)
		}
		res.Images = append(res.Images, built)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(opts.Out, "images.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func buildImage(ctx context.Context, root, work string, lp layout.Path, im Image, opts Options, logf func(string, ...any)) (BuiltImage, error) {
	if im.Binary == "" {
		im.Binary = filepath.Base(im.Package)
	}
	labels := map[string]string{
		AnnotationSource:   opts.Source,
		AnnotationRevision: opts.Revision,
		AnnotationVersion:  opts.Version,
		AnnotationCreated:  opts.Epoch.Format(time.RFC3339),
		AnnotationTitle:    im.Name,
	}
	if im.Description != "" {
		labels[AnnotationDescription] = im.Description
	}
	out := BuiltImage{Name: im.Name, Ref: opts.Repo + "/" + im.Name + ":" + opts.Tag}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	type sbomOf struct {
		art  v1.Image
		plat string
	}
	var sboms []sbomOf
	for _, p := range opts.Platforms {
		plat := p.OS + "/" + p.Architecture
		binPath := filepath.Join(work, im.Name+"_"+p.OS+"_"+p.Architecture, im.Binary)
		logf("build %s %s (%s)", im.Name, plat, im.Package)
		if err := goBuild(ctx, root, im, p, binPath, opts.GoEnv...); err != nil {
			return out, err
		}
		bin, err := os.ReadFile(binPath)
		if err != nil {
			return out, err
		}
		if err := checkBinary(binPath); err != nil {
			return out, err
		}
		img, err := platformImage(im, p, bin, labels, opts.Epoch)
		if err != nil {
			return out, err
		}
		desc, err := partial.Descriptor(img)
		if err != nil {
			return out, err
		}
		desc.Platform = &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: *desc})

		doc, err := SPDX(binPath, im, p, opts)
		if err != nil {
			return out, err
		}
		art, err := sbomArtifact(doc, *desc, im.Name+"_"+p.OS+"_"+p.Architecture+".spdx.json", opts.Epoch)
		if err != nil {
			return out, err
		}
		sboms = append(sboms, sbomOf{art, plat})

		bp := BuiltPlatform{Platform: plat, Digest: desc.Digest.String(), BinarySize: int64(len(bin))}
		layers, err := img.Layers()
		if err != nil {
			return out, err
		}
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				return out, err
			}
			bp.CompressedSize += n
		}
		if d, err := art.Digest(); err == nil {
			bp.SBOM = d.String()
		} else {
			return out, err
		}
		if !opts.NoArchives {
			ref, err := name.NewTag(out.Ref)
			if err != nil {
				return out, fmt.Errorf("archive tag: %w", err)
			}
			rel := filepath.Join("archives", im.Name+"_"+p.OS+"_"+p.Architecture+".tar")
			if err := os.MkdirAll(filepath.Join(opts.Out, "archives"), 0o755); err != nil {
				return out, err
			}
			if err := tarball.WriteToFile(filepath.Join(opts.Out, rel), ref, img); err != nil {
				return out, fmt.Errorf("docker archive: %w", err)
			}
			bp.Archive = rel
		}
		out.Platforms = append(out.Platforms, bp)
		logf("  %s %s: %s, binary %.1f MiB, compressed %.1f MiB", im.Name, plat, bp.Digest, mib(bp.BinarySize), mib(bp.CompressedSize))
	}
	idx = mutate.Annotations(idx, labels).(v1.ImageIndex)
	d, err := idx.Digest()
	if err != nil {
		return out, err
	}
	out.Digest = d.String()
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		AnnotationRefName: im.Name,
		AnnotationVersion: opts.Version,
	})); err != nil {
		return out, fmt.Errorf("layout: %w", err)
	}
	for _, s := range sboms {
		if err := lp.AppendImage(s.art, layout.WithAnnotations(map[string]string{
			AnnotationImage: im.Name,
			AnnotationTitle: im.Name + " " + s.plat + " SBOM",
		})); err != nil {
			return out, fmt.Errorf("layout: SBOM: %w", err)
		}
	}
	logf("  %s: index %s", im.Name, out.Digest)
	return out, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// goBuild compiles im for p into dst: static (CGO_ENABLED=0), -trimpath, no
// build id and no DWARF, and the baseline instruction set of the
// architecture whatever the caller's environment asks for, so the same
// commit gives the same bytes on any machine.
func goBuild(ctx context.Context, root string, im Image, p v1.Platform, dst string, env ...string) error {
	args := []string{"build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", dst}
	if len(im.Tags) > 0 {
		args = append(args, "-tags="+strings.Join(im.Tags, ","))
	}
	args = append(args, im.Package)
	cmd := exec.CommandContext(ctx, goCmd(), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly")
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return nil
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// checkBinary refuses a binary that would not run alone in the image: one
// linked against a C library (a PT_INTERP header names its loader), or one
// without compiled-in TLS roots (the image has no CA file).
func checkBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it has an ELF interpreter); build it with CGO_ENABLED=0", filepath.Base(path))
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: build info: %w", filepath.Base(path), err)
	}
	for _, d := range bi.Deps {
		if d.Path == fallbackRoots {
			return nil
		}
	}
	return fmt.Errorf("%s has no TLS roots and the image has no CA file: add import _ %q to its main package", filepath.Base(path), fallbackRoots)
}

// platformImage assembles the single-layer image of one binary.
func platformImage(im Image, p v1.Platform, bin []byte, labels map[string]string, epoch time.Time) (v1.Image, error) {
	layerTar, err := rootFS(im.Binary, bin, epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: epoch}
	entry := "/usr/local/bin/" + im.Binary
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", nonrootID, nonrootID),
			Entrypoint: []string{entry},
			WorkingDir: "/",
			Env:        []string{"PATH=/usr/local/bin"},
			Labels:     labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	pkg := im.Package
	if len(im.Tags) > 0 {
		pkg += " -tags=" + strings.Join(im.Tags, ",")
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "keyhook hack/images: go build " + pkg + " -> " + entry,
			Comment:   "static binary, /etc/passwd and /etc/group with nonroot 65532, /tmp",
		},
	})
}

// rootFS is the image's one layer, as an uncompressed tar: entries sorted by
// name, owned by root (but the nonroot home), every time the commit's.
func rootFS(binary string, bin []byte, epoch time.Time) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		body []byte
	}
	dir := func(name string, mode int64, uid int) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid}}
	}
	file := func(name string, mode int64, body []byte) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body: body}
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootID, nonrootID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonrootID)
	entries := []entry{
		dir("etc/", 0o755, 0),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("home/", 0o755, 0),
		dir("home/nonroot/", 0o700, nonrootID),
		dir("root/", 0o700, 0),
		dir("tmp/", 0o1777, 0),
		dir("usr/", 0o755, 0),
		dir("usr/local/", 0o755, 0),
		dir("usr/local/bin/", 0o755, 0),
		file("usr/local/bin/"+binary, 0o755, bin),
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		e.hdr.ModTime = epoch
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
