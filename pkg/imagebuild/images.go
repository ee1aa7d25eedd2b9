// Package imagebuild builds keyhook's container images from this repository
// with go-containerregistry: no Docker, no daemon, no base image. Each image
// is one static Go binary, an /etc/passwd and /etc/group naming the nonroot
// user 65532, and an empty /tmp; no shell, no package manager. TLS roots are
// compiled into every binary (golang.org/x/crypto/x509roots/fallback, used
// only when the image has no CA file of its own), and the build refuses a
// binary that lacks them.
//
// The same commit gives the same digests: file times are the commit's
// (SOURCE_DATE_EPOCH), tar entries are sorted and owned by root, the Go build
// is -trimpath with an empty build id, and gzip is deterministic.
package imagebuild

import (
	"os"
	"path/filepath"
	"regexp"
)

// Image is one image of the repository: which package is compiled into it,
// with which build tags, and under which name it is published.
type Image struct {
	// Name is the image's name below the registry: ghcr.io/keyhook/<Name>.
	Name string
	// Package is the main package, relative to the module root ("./cmd/webhook").
	Package string
	// Tags are the Go build tags of the binary (per-provider agents).
	Tags []string
	// Binary is the file name of the binary in the image, below /usr/local/bin.
	Binary string
	// Description becomes org.opencontainers.image.description.
	Description string
	// TestOnly images are built by make images but not pushed by make push
	// unless asked (hack/images push -all): they are not part of keyhook.
	TestOnly bool
	// When, if set, decides from the module root whether the repository has
	// this image yet (the controller before the role split, a per-provider
	// agent before its build tag exists). Nil means always.
	When func(root string) bool
}

// Images is every image keyhook publishes, in build order. Adding a process or
// an agent variant is one line here.
var Images = []Image{
	{Name: "webhook", Package: "./cmd/webhook", Binary: "keyhook-webhook",
		Description: "keyhook admission webhook: pod injection, validation of keyhook's kinds, TLS"},
	{Name: "controller", Package: "./cmd/controller", Binary: "keyhook-controller", When: HasPackage("cmd/controller"),
		Description: "keyhook controller: ExternalSecret sync, rollouts, policy labelling, certificates"},
	// "all" selects every provider once providers are build-tagged (an
	// unknown tag changes nothing before).
	{Name: "init-agent", Package: "./cmd/init-agent", Tags: []string{"all"}, Binary: "keyhook-init-agent",
		Description: "keyhook init-agent with every provider"},
	{Name: "init-agent-vault", Package: "./cmd/init-agent", Tags: []string{"vault"}, Binary: "keyhook-init-agent", When: HasBuildTag("vault"),
		Description: "keyhook init-agent for Vault / OpenBao only"},
	{Name: "init-agent-aws", Package: "./cmd/init-agent", Tags: []string{"aws"}, Binary: "keyhook-init-agent", When: HasBuildTag("aws"),
		Description: "keyhook init-agent for AWS Secrets Manager and Parameter Store only"},
	{Name: "init-agent-gcpsm", Package: "./cmd/init-agent", Tags: []string{"gcpsm"}, Binary: "keyhook-init-agent", When: HasBuildTag("gcpsm"),
		Description: "keyhook init-agent for Google Secret Manager only"},
	{Name: "testapp", Package: "./tests/node/testapp", Binary: "testapp", When: HasPackage("tests/node/testapp"), TestOnly: true,
		Description: "keyhook test application for node tests (not for production)"},
}

// IsTestOnly reports whether the image called name is one of Images marked
// TestOnly.
func IsTestOnly(name string) bool {
	for _, im := range Images {
		if im.Name == name {
			return im.TestOnly
		}
	}
	return false
}

// Present returns the images of list whose When admits the repository at root.
func Present(root string, list []Image) []Image {
	var out []Image
	for _, im := range list {
		if im.When == nil || im.When(root) {
			out = append(out, im)
		}
	}
	return out
}

// HasPackage is a When that is true once dir (relative to the module root)
// holds Go files.
func HasPackage(dir string) func(root string) bool {
	return func(root string) bool {
		m, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		return len(m) > 0
	}
}

// HasBuildTag is a When that is true once a Go file below cmd/ or pkg/ has a
// //go:build constraint naming tag: without it, building with the tag would
// publish the all-provider agent under a single-provider name.
func HasBuildTag(tag string) func(root string) bool {
	re := regexp.MustCompile(`(?m)^//go:build .*\b` + regexp.QuoteMeta(tag) + `\b`)
	return func(root string) bool {
		found := false
		for _, dir := range []string{"cmd", "pkg"} {
			_ = filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
				if found {
					return filepath.SkipAll
				}
				if err != nil {
					return nil // an unreadable file or directory names no tag
				}
				if d.IsDir() || filepath.Ext(p) != ".go" {
					return nil
				}
				b, err := os.ReadFile(p)
				if err == nil && re.Match(b) {
					found = true
				}
				return nil
			})
		}
		return found
	}
}
