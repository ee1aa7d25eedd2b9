package imagebuild

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Pushed is one image index pushed by Push.
type Pushed struct {
	Name string
	// Ref is <registry>/<name>:<tag>.
	Ref string
	// Tag is the tag of Ref.
	Tag string
	// Digest of the image index, as the registry now serves it.
	Digest string
	// SBOMs are the digests of the SBOM artifacts pushed for its platforms.
	SBOMs []string
}

// PushOptions says where Push pushes and what.
type PushOptions struct {
	// Registry and path to push to: images go to <Registry>/<name>.
	Registry string
	// Tag of every image; empty means the version each was built as.
	Tag string
	// Include decides by name which images of the layout are pushed; nil
	// means every image but the test-only ones (Image.TestOnly).
	Include func(name string) bool
	// Remote are go-containerregistry's options (authentication, transport).
	Remote []remote.Option
}

// Push copies the image indexes of the OCI layout at dir that o includes to
// <registry>/<name>:<tag>, then their SBOM artifacts by digest into the same
// repositories, so the registry lists them as referrers of the platform
// images. Digests do not change on the way.
func Push(ctx context.Context, dir string, o PushOptions) ([]Pushed, error) {
	registry, tag := strings.TrimSuffix(o.Registry, "/"), o.Tag
	include := o.Include
	if include == nil {
		include = func(name string) bool { return !IsTestOnly(name) }
	}
	if registry == "" {
		return nil, fmt.Errorf("imagebuild: push: no registry given (REGISTRY=host[:port]/path)")
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: push: %s is not an OCI layout (run make images): %w", dir, err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	opts := append([]remote.Option{remote.WithContext(ctx)}, o.Remote...)
	var out []Pushed
	byName := map[string]int{}
	// Images first: an SBOM's subject must exist before the SBOM names it.
	for _, d := range im.Manifests {
		n := d.Annotations[AnnotationRefName]
		if n == "" || !d.MediaType.IsIndex() || !include(n) {
			continue
		}
		t := tag
		if t == "" {
			t = d.Annotations[AnnotationVersion]
		}
		ref, err := name.NewTag(registry + "/" + n + ":" + t)
		if err != nil {
			return out, fmt.Errorf("imagebuild: push %s: %w", n, err)
		}
		idx, err := top.ImageIndex(d.Digest)
		if err != nil {
			return out, err
		}
		if err := remote.WriteIndex(ref, idx, opts...); err != nil {
			return out, fmt.Errorf("imagebuild: push %s: %w", ref, err)
		}
		byName[n] = len(out)
		out = append(out, Pushed{Name: n, Ref: ref.String(), Tag: t, Digest: d.Digest.String()})
	}
	for _, d := range im.Manifests {
		n := d.Annotations[AnnotationImage]
		if n == "" || !include(n) {
			continue
		}
		i, ok := byName[n]
		if !ok {
			return out, fmt.Errorf("imagebuild: push: SBOM %s belongs to image %q, which the layout does not have", d.Digest, n)
		}
		art, err := top.Image(d.Digest)
		if err != nil {
			return out, err
		}
		if err := checkSubject(art); err != nil {
			return out, fmt.Errorf("imagebuild: push: SBOM %s: %w", d.Digest, err)
		}
		repo, err := name.NewRepository(registry + "/" + n)
		if err != nil {
			return out, err
		}
		if err := remote.Write(repo.Digest(d.Digest.String()), art, opts...); err != nil {
			return out, fmt.Errorf("imagebuild: push SBOM of %s: %w", n, err)
		}
		out[i].SBOMs = append(out[i].SBOMs, d.Digest.String())
	}
	return out, nil
}

func checkSubject(img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	var m struct {
		Subject *v1.Descriptor `json:"subject"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	if m.Subject == nil {
		return fmt.Errorf("has no subject")
	}
	return nil
}
