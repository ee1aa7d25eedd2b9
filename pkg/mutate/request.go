// Package mutate turns a pod and what it asks for into the injected pod. It is
// a staged, pure pipeline: Parse reads the annotations into a Request and
// validates them; the caller resolves the named ExternalSecrets; Apply
// returns the mutated copy of the pod. Nothing here talks to the API server.
package mutate

import (
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// Request is what a pod asks keyhook for.
type Request struct {
	// Names of the ExternalSecrets to inject, in annotation order, without duplicates.
	Names []string
	// MountPath of the secret volume in every container.
	MountPath string
	// Mode is files (the init-agent writes the data) or secret (the
	// materialised Secrets are mounted).
	Mode v1alpha1.InjectionMode
}

// ParseMode reads the pod's keyhook.dev/inject-mode annotation; "" when it
// has none.
func ParseMode(ann map[string]string) (v1alpha1.InjectionMode, error) {
	raw, ok := ann[annotations.InjectMode]
	if !ok {
		return "", nil
	}
	switch m := v1alpha1.InjectionMode(strings.TrimSpace(raw)); m {
	case v1alpha1.InjectionModeFiles, v1alpha1.InjectionModeSecret:
		return m, nil
	}
	return "", fmt.Errorf("annotation %s: %q is not \"files\" or \"secret\"", annotations.InjectMode, raw)
}

// Parse reads the keyhook annotations of a pod in namespace. It returns nil
// and no error when the pod asks for nothing. Every error names the
// annotation and says how to fix it.
func Parse(namespace string, ann map[string]string) (*Request, error) {
	raw, ok := ann[annotations.Inject]
	if !ok || strings.TrimSpace(raw) == annotations.OptOut {
		return nil, nil
	}
	req := &Request{MountPath: annotations.DefaultMountPath}
	seen := map[string]bool{}
	for _, item := range strings.Split(raw, ",") {
		name := strings.TrimSpace(item)
		if name == "" {
			continue
		}
		if ns, n, found := strings.Cut(name, "/"); found {
			if ns != namespace {
				return nil, fmt.Errorf("annotation %s: %q refers to namespace %q, but a pod can inject only ExternalSecrets of its own namespace %q; create the ExternalSecret in %q and list it by name",
					annotations.Inject, name, ns, namespace, namespace)
			}
			name = n
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("annotation %s: %q is not an ExternalSecret name (%s); list ExternalSecret names separated by commas, e.g. \"db-creds,api-key\"",
				annotations.Inject, name, strings.Join(errs, "; "))
		}
		if !seen[name] {
			seen[name] = true
			req.Names = append(req.Names, name)
		}
	}
	if len(req.Names) == 0 {
		return nil, fmt.Errorf("annotation %s: %q names no ExternalSecret; list ExternalSecret names separated by commas, e.g. \"db-creds,api-key\", or remove the annotation",
			annotations.Inject, raw)
	}
	if mp, ok := ann[annotations.MountPath]; ok {
		if !path.IsAbs(mp) || path.Clean(mp) != mp || mp == "/" {
			return nil, fmt.Errorf("annotation %s: %q is not a clean absolute directory other than \"/\", e.g. \"/etc/secrets\"",
				annotations.MountPath, mp)
		}
		req.MountPath = mp
	}
	mode, err := ParseMode(ann)
	if err != nil {
		return nil, err
	}
	req.Mode = mode
	return req, nil
}
