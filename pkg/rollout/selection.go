package rollout

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
)

// Source kinds: the prefix of a key in a version record.
const (
	secretPrefix         = "secret/"
	configMapPrefix      = "configmap/"
	externalSecretPrefix = "externalsecret/"
)

// Selection is what a workload asked to follow, from its annotations.
type Selection struct {
	// All follows every Secret and ConfigMap the pod template references
	// and every ExternalSecret it gets injected (keyhook.dev/rollout: auto).
	All bool
	// ExternalSecrets follows these ExternalSecrets: their Secrets if the
	// template references them, their remote versions if it injects them.
	ExternalSecrets map[string]bool
	// Secrets and ConfigMaps are what Reloader's annotations ask for.
	Secrets, ConfigMaps TypeSelection
}

// TypeSelection is what Reloader's annotations ask for of one kind, Secret
// or ConfigMap.
type TypeSelection struct {
	// Auto follows every one the template references (reloader.stakater.com/auto,
	// secret.reloader.stakater.com/auto, configmap.reloader.stakater.com/auto).
	Auto bool
	// Search follows the referenced ones annotated reloader.stakater.com/match: "true".
	Search bool
	// Reload follows those whose name matches one of these, referenced or
	// not (secret.reloader.stakater.com/reload: anchored regular expressions).
	Reload []*regexp.Regexp
	// Exclude are names never followed by Auto (secrets.exclude.reloader.stakater.com/reload).
	Exclude map[string]bool
}

func (t TypeSelection) any() bool { return t.Auto || t.Search || len(t.Reload) > 0 }

// reloaderKeys are the annotation keys of one kind.
type reloaderKeys struct{ auto, reload, exclude string }

var (
	secretKeys    = reloaderKeys{annotations.ReloaderSecretAuto, annotations.ReloaderSecretReload, annotations.ReloaderSecretExclude}
	configMapKeys = reloaderKeys{annotations.ReloaderConfigMapAuto, annotations.ReloaderConfigMapReload, annotations.ReloaderConfigMapExclude}
)

// SelectionFor reads the opt-in annotations of a workload and of its pod
// template; ok is false when neither opts in. As in Reloader, the
// workload's own Reloader annotations win, and the pod template's are read
// only when the workload has none for that kind. errs lists reload patterns
// that are not regular expressions; they match nothing.
func SelectionFor(workload, template map[string]string) (sel Selection, ok bool, errs []error) {
	if v := strings.TrimSpace(workload[annotations.Rollout]); v != "" {
		if v == annotations.RolloutAuto {
			sel.All = true
		} else {
			sel.ExternalSecrets = nameSet(v)
		}
	}
	sel.Secrets, errs = typeSelection(workload, template, secretKeys, errs)
	sel.ConfigMaps, errs = typeSelection(workload, template, configMapKeys, errs)
	return sel, sel.All || len(sel.ExternalSecrets) > 0 || sel.Secrets.any() || sel.ConfigMaps.any(), errs
}

func typeSelection(workload, template map[string]string, k reloaderKeys, errs []error) (TypeSelection, []error) {
	ann := workload
	if !has(ann, k.reload) && !has(ann, annotations.ReloaderAuto) && !has(ann, k.auto) && !has(ann, annotations.ReloaderSearch) {
		ann = template
	}
	var t TypeSelection
	auto, _ := strconv.ParseBool(ann[annotations.ReloaderAuto])
	typed, _ := strconv.ParseBool(ann[k.auto])
	t.Auto = auto || typed
	t.Search = ann[annotations.ReloaderSearch] == "true"
	if v, found := ann[k.reload]; found {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			re, err := regexp.Compile("^" + p + "$")
			if err != nil {
				errs = append(errs, fmt.Errorf("annotation %s: %q is not a regular expression: %w", k.reload, p, err))
				continue
			}
			t.Reload = append(t.Reload, re)
		}
	}
	// Exclusions are read from the workload alone, as Reloader does.
	if v := workload[k.exclude]; v != "" {
		t.Exclude = nameSet(v)
	}
	return t, errs
}

func has(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func nameSet(list string) map[string]bool {
	out := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out[n] = true
		}
	}
	return out
}

// follows reports whether the selection follows a Secret or ConfigMap of
// this name and annotations, referenced by the template or not. Reloader's
// order: the object's ignore annotation, the workload's exclusions, the
// reload list, search and match, auto.
func (t TypeSelection) follows(name string, objAnnotations map[string]string, referenced bool) bool {
	if objAnnotations[annotations.ReloaderIgnore] == "true" {
		return false
	}
	if t.Exclude[name] {
		return false
	}
	if slices.ContainsFunc(t.Reload, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
		return true
	}
	if !referenced {
		return false
	}
	return (t.Search && objAnnotations[annotations.ReloaderMatch] == "true") || t.Auto
}

// References are the Secrets and ConfigMaps a pod spec uses, by name: env,
// envFrom, secret and configMap volumes and projected volumes, in init and
// app containers.
type References struct {
	Secrets, ConfigMaps map[string]bool
}

// ReferencesOf returns what spec uses.
func ReferencesOf(spec *corev1.PodSpec) References {
	r := References{Secrets: map[string]bool{}, ConfigMaps: map[string]bool{}}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if e.ValueFrom.SecretKeyRef != nil {
				r.Secrets[e.ValueFrom.SecretKeyRef.Name] = true
			}
			if e.ValueFrom.ConfigMapKeyRef != nil {
				r.ConfigMaps[e.ValueFrom.ConfigMapKeyRef.Name] = true
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				r.Secrets[e.SecretRef.Name] = true
			}
			if e.ConfigMapRef != nil {
				r.ConfigMaps[e.ConfigMapRef.Name] = true
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			r.Secrets[v.Secret.SecretName] = true
		}
		if v.ConfigMap != nil {
			r.ConfigMaps[v.ConfigMap.Name] = true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					r.Secrets[s.Secret.Name] = true
				}
				if s.ConfigMap != nil {
					r.ConfigMaps[s.ConfigMap.Name] = true
				}
			}
		}
	}
	return r
}
