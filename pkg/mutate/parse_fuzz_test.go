package mutate_test

import (
	"maps"
	"path"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// FuzzParseAnnotations drives Parse and ParseMode with every keyhook pod
// annotation present or not, with any value, in any namespace. Neither may
// panic or change the annotations; every error names the annotation at fault;
// and what Parse accepts is a request Apply can use: unique valid names of
// the pod's own namespace, a clean absolute mount path, a known mode.
func FuzzParseAnnotations(f *testing.F) {
	for _, s := range []struct {
		ns, inject, mountPath, mode string
		present                     uint8
	}{
		{"team-a", "db", "/etc/secrets", "files", 0b111},
		{"team-a", "db,api,db", "", "secret", 0b101},
		{"team-a", "team-a/db, api", "/etc/secrets/", "", 0b011},
		{"team-a", "team-b/db", "", "", 0b001},
		{"team-a", " false ", "relative", "nope", 0b111},
		{"team-a", ",, ,", "/", " secret ", 0b111},
		{"team-a", "db", "/a/../b", "FILES", 0b111},
		{"", "/db", "/x", "", 0b011},
		{"team-a", "a/b/c", "//x", "", 0b011},
		{"team-a", strings.Repeat("a", 254), "/x", "", 0b001},
		{"team-a", "", "", "secret", 0b100},
		{"team-a", "Db", "/x\x00", "files\n", 0b111},
	} {
		f.Add(s.ns, s.inject, s.mountPath, s.mode, s.present)
	}
	f.Fuzz(func(t *testing.T, ns, inject, mountPath, mode string, present uint8) {
		ann := map[string]string{"other.example/key": "kept"}
		for i, kv := range []struct{ key, value string }{
			{annotations.Inject, inject}, {annotations.MountPath, mountPath}, {annotations.InjectMode, mode},
		} {
			if present&(1<<i) != 0 {
				ann[kv.key] = kv.value
			}
		}
		before := maps.Clone(ann)

		gotMode, modeErr := mutate.ParseMode(ann)
		switch {
		case modeErr != nil:
			if !strings.HasPrefix(modeErr.Error(), "annotation "+annotations.InjectMode+": ") {
				t.Fatalf("ParseMode error %q does not name %s", modeErr, annotations.InjectMode)
			}
		case present&0b100 == 0 && gotMode != "":
			t.Fatalf("ParseMode without the annotation = %q", gotMode)
		case present&0b100 != 0 && gotMode != v1alpha1.InjectionModeFiles && gotMode != v1alpha1.InjectionModeSecret:
			t.Fatalf("ParseMode(%q) = %q", mode, gotMode)
		}

		req, err := mutate.Parse(ns, ann)
		if !reflect.DeepEqual(ann, before) {
			t.Fatalf("Parse changed the annotations: %v, was %v", ann, before)
		}
		again, againErr := mutate.Parse(ns, ann)
		if !reflect.DeepEqual(req, again) || (err == nil) != (againErr == nil) {
			t.Fatalf("Parse is not deterministic: %+v, %v then %+v, %v", req, err, again, againErr)
		}
		asksNothing := present&0b001 == 0 || strings.TrimSpace(inject) == annotations.OptOut
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "annotation "+annotations.Inject+": ") &&
				!strings.HasPrefix(msg, "annotation "+annotations.MountPath+": ") &&
				!strings.HasPrefix(msg, "annotation "+annotations.InjectMode+": ") {
				t.Fatalf("error %q does not name the annotation", msg)
			}
			if req != nil {
				t.Fatalf("Parse returned %+v with error %v", req, err)
			}
			if asksNothing {
				t.Fatalf("Parse failed (%v) on a pod that asks for nothing", err)
			}
			return
		}
		if asksNothing {
			if req != nil {
				t.Fatalf("Parse returned %+v for a pod that asks for nothing", req)
			}
			return
		}
		if req == nil {
			t.Fatalf("Parse(%q) returned neither a request nor an error", inject)
		}
		if modeErr != nil || req.Mode != gotMode {
			t.Fatalf("Parse accepted mode %q as %q where ParseMode says %q, %v", mode, req.Mode, gotMode, modeErr)
		}
		if len(req.Names) == 0 {
			t.Fatalf("Parse(%q) accepted no names", inject)
		}
		seen := map[string]bool{}
		for _, n := range req.Names {
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Fatalf("Parse(%q) accepted invalid name %q: %v", inject, n, errs)
			}
			if seen[n] {
				t.Fatalf("Parse(%q) returned %q twice", inject, n)
			}
			seen[n] = true
			if !strings.Contains(inject, n) {
				t.Fatalf("Parse(%q) returned %q, which the annotation does not name", inject, n)
			}
		}
		for _, item := range strings.Split(inject, ",") {
			name := strings.TrimSpace(item)
			if _, n, found := strings.Cut(name, "/"); found {
				name = n
			}
			if name != "" && !seen[name] {
				t.Fatalf("Parse(%q) dropped %q", inject, item)
			}
		}
		wantMount := annotations.DefaultMountPath
		if present&0b010 != 0 {
			wantMount = mountPath
		}
		if req.MountPath != wantMount || !path.IsAbs(req.MountPath) || path.Clean(req.MountPath) != req.MountPath || req.MountPath == "/" {
			t.Fatalf("Parse accepted mount path %q as %q", mountPath, req.MountPath)
		}
	})
}
