// Command images builds keyhook's container images into an OCI layout, with
// docker-archive tarballs and SPDX SBOMs, and pushes them (pkg/imagebuild).
//
//	go run ./hack/images [-out bin/images] [-platform linux/amd64,linux/arm64] [-only webhook,init-agent]
//	go run ./hack/images push -registry REGISTRY [-layout bin/images] [-tag TAG] [-all]
//	go run ./hack/images list
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/keyhook/keyhook/pkg/imagebuild"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cmd := "build"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "build":
		return build(ctx, args)
	case "push":
		return push(ctx, args)
	case "list":
		for _, im := range imagebuild.Present(".", imagebuild.Images) {
			fmt.Printf("%s\t%s %s\n", im.Name, im.Package, strings.Join(im.Tags, ","))
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q: build, push or list", cmd)
	}
}

func build(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	out := fs.String("out", "bin/images", "OCI layout directory; docker archives go to <out>/archives, a summary to <out>/images.json")
	platforms := fs.String("platform", "linux/amd64,linux/arm64", "comma-separated platforms of each image index")
	only := fs.String("only", "", "comma-separated image names to build (default: every image the repository has; see 'list')")
	repo := fs.String("repo", "ghcr.io/keyhook", "repository prefix the docker archives are tagged with: <repo>/<name>:<tag>")
	tag := fs.String("tag", "", "tag of the docker archives (default: git describe)")
	noArchives := fs.Bool("no-archives", false, "write only the OCI layout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := imagebuild.Options{Out: *out, Repo: *repo, Tag: *tag, NoArchives: *noArchives,
		Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	for _, p := range strings.Split(*platforms, ",") {
		pl, err := v1.ParsePlatform(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("-platform %q: %w", p, err)
		}
		opts.Platforms = append(opts.Platforms, *pl)
	}
	present := imagebuild.Present(".", imagebuild.Images)
	if *only != "" {
		want := map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			want[strings.TrimSpace(n)] = true
		}
		for _, im := range present {
			if want[im.Name] {
				opts.Images = append(opts.Images, im)
				delete(want, im.Name)
			}
		}
		for n := range want {
			return fmt.Errorf("-only: no image %q in this repository (go run ./hack/images list)", n)
		}
	} else {
		opts.Images = present
	}
	res, err := imagebuild.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("%s (%s, %s)\n", res.Layout, res.Version, res.Revision)
	for _, im := range res.Images {
		fmt.Printf("%-18s %s\n", im.Name, im.Digest)
		for _, p := range im.Platforms {
			fmt.Printf("  %-14s %s  %6.2f MiB compressed  %6.2f MiB binary  %s\n", p.Platform, p.Digest,
				float64(p.CompressedSize)/(1<<20), float64(p.BinarySize)/(1<<20), p.Archive)
		}
	}
	return nil
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("images push", flag.ContinueOnError)
	dir := fs.String("layout", "bin/images", "OCI layout written by 'images build'")
	registry := fs.String("registry", os.Getenv("REGISTRY"), "registry and path to push to, e.g. ghcr.io/you (default $REGISTRY)")
	tag := fs.String("tag", "", "tag to push (default: the version the images were built as)")
	all := fs.Bool("all", false, "push the test-only images too (testapp)")
	values := fs.String("values", "", "Helm values for charts/keyhook naming the pushed images (default <layout>/"+imagebuild.HelmValuesFile+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *registry == "" {
		return errors.New("push: -registry (or REGISTRY) is required")
	}
	o := imagebuild.PushOptions{Registry: *registry, Tag: *tag,
		Remote: []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}}
	if *all {
		o.Include = func(string) bool { return true }
	}
	pushed, err := imagebuild.Push(ctx, *dir, o)
	for _, p := range pushed {
		fmt.Printf("%s@%s (%d SBOMs)\n", p.Ref, p.Digest, len(p.SBOMs))
	}
	if err != nil {
		return err
	}
	vals, err := imagebuild.HelmValues(*registry, pushed)
	if err != nil {
		return err
	}
	if *values == "" {
		*values = filepath.Join(*dir, imagebuild.HelmValuesFile)
	}
	if err := os.WriteFile(*values, vals, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nInstall these images (pinned by digest):\n  helm install keyhook charts/keyhook -n keyhook-system --create-namespace -f %s\n", *values)
	fmt.Printf("or by tag:\n  --set image.registry=%s --set image.tag=%s\n", strings.TrimSuffix(*registry, "/"), pushed[0].Tag)
	return nil
}
