// Package rollout rolls Deployments, StatefulSets and DaemonSets when the
// secrets they use change, as Stakater Reloader does, and also when an
// ExternalSecret they inject into files changes remotely: once per change,
// never in a storm.
package rollout

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// Source keys in a version record.
const (
	secretPrefix         = "secret/"
	externalSecretPrefix = "externalsecret/"
)

// Selection is what a workload asked to follow, from its annotations.
type Selection struct {
	// AllSecrets follows every keyhook-managed Secret the pod template references.
	AllSecrets bool
	// AllInjected follows every ExternalSecret the pod template injects.
	AllInjected bool
	// ExternalSecrets follows these ExternalSecrets: their Secrets if the
	// template references them, their remote versions if it injects them.
	ExternalSecrets map[string]bool
	// Secrets follows these Secrets by name (Reloader's reload list).
	Secrets map[string]bool
}

// SelectionFor reads the opt-in annotations of a workload; ok is false when
// it has none.
func SelectionFor(ann map[string]string) (sel Selection, ok bool) {
	if v := strings.TrimSpace(ann[annotations.Rollout]); v != "" {
		ok = true
		if v == annotations.RolloutAuto {
			sel.AllSecrets, sel.AllInjected = true, true
		} else {
			sel.ExternalSecrets = nameSet(v)
		}
	}
	if strings.EqualFold(ann[annotations.ReloaderAuto], "true") || strings.EqualFold(ann[annotations.ReloaderSecretAuto], "true") {
		ok, sel.AllSecrets = true, true
	}
	if v := strings.TrimSpace(ann[annotations.ReloaderSecretReload]); v != "" {
		ok, sel.Secrets = true, nameSet(v)
	}
	return sel, ok
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

// ReferencedSecrets returns the names of the Secrets a pod spec references:
// env, envFrom, secret volumes and projected volumes, in every container.
func ReferencedSecrets(spec *corev1.PodSpec) map[string]bool {
	out := map[string]bool{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out[e.ValueFrom.SecretKeyRef.Name] = true
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				out[e.SecretRef.Name] = true
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			out[v.Secret.SecretName] = true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					out[s.Secret.Name] = true
				}
			}
		}
	}
	return out
}

// InjectedExternalSecrets returns the ExternalSecrets a pod template injects.
func InjectedExternalSecrets(namespace string, tmpl *corev1.PodTemplateSpec) map[string]bool {
	out := map[string]bool{}
	req, err := mutate.Parse(namespace, tmpl.Annotations)
	if err != nil || req == nil {
		return out
	}
	for _, n := range req.Names {
		out[n] = true
	}
	return out
}

// Current returns the versions of what a workload follows: each followed
// keyhook-managed Secret by its data hash, each followed injected
// ExternalSecret by a digest of its remote versions (creationPolicy None) or
// else by the data hash of the Secret it is synced into. secrets and
// externalSecrets are the namespace's managed Secrets and ExternalSecrets by
// name; what does not exist (yet) is left out.
func Current(sel Selection, namespace string, tmpl *corev1.PodTemplateSpec, secrets map[string]*corev1.Secret, externalSecrets map[string]*v1alpha1.ExternalSecret) map[string]string {
	out := map[string]string{}
	for name := range ReferencedSecrets(&tmpl.Spec) {
		s, ok := secrets[name]
		if !ok {
			continue
		}
		owner := s.Annotations[annotations.ExternalSecretName]
		if sel.AllSecrets || sel.Secrets[name] || sel.ExternalSecrets[owner] {
			out[secretPrefix+name] = contentVersion(s)
		}
	}
	for name := range sel.Secrets {
		if s, ok := secrets[name]; ok {
			out[secretPrefix+name] = contentVersion(s)
		}
	}
	for name := range InjectedExternalSecrets(namespace, tmpl) {
		es, ok := externalSecrets[name]
		if !ok || !(sel.AllInjected || sel.ExternalSecrets[name]) {
			continue
		}
		if len(es.Status.Versions) > 0 {
			out[externalSecretPrefix+name] = versionDigest(es.Status.Versions)
			continue
		}
		// Synced into a Secret as well (any creationPolicy but None): the
		// injected files change when its content does.
		if s, ok := secrets[es.TargetName()]; ok && s.Annotations[annotations.ExternalSecretName] == name && s.Annotations[annotations.DataHash] != "" {
			out[externalSecretPrefix+name] = contentVersion(s)
		}
	}
	return out
}

// contentVersion is what a workload records of a Secret's content: the
// Secret's data hash keyed (HMAC) with the Secret's UID, which only those who
// may read the Secret know. The workload's annotations are readable by
// anyone who may read the workload; a bare hash there would let a short
// value (a PIN) be guessed offline.
func contentVersion(s *corev1.Secret) string {
	m := hmac.New(sha256.New, []byte(s.UID))
	m.Write([]byte(s.Annotations[annotations.DataHash]))
	return hex.EncodeToString(m.Sum(nil))
}

func versionDigest(v map[string]string) string {
	b, _ := json.Marshal(v) // map keys are sorted by encoding/json
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Decision is what to do about a workload.
type Decision struct {
	// Record is the version record to store on the workload.
	Record map[string]string
	// Changed lists the sources whose version differs from the record; a
	// rollout is due when it is not empty.
	Changed []string
}

// Decide compares what a workload follows now with what it recorded. A
// source seen for the first time is recorded, not a change: opting in, or an
// ExternalSecret's first sync, never rolls. A source that is gone keeps its
// recorded version, so that a Secret deleted and recreated with new content
// is a change and one recreated as it was is not.
func Decide(recorded, current map[string]string) Decision {
	d := Decision{Record: maps.Clone(recorded)}
	if d.Record == nil {
		d.Record = map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(current)) {
		v := current[k]
		if old, ok := recorded[k]; ok && old != v {
			d.Changed = append(d.Changed, k)
		}
		d.Record[k] = v
	}
	return d
}

// Hash is the pod-template annotation value for a record.
func Hash(record map[string]string) string {
	return versionDigest(record)
}

// ParseRecord reads the record annotation; a malformed one counts as none.
func ParseRecord(s string) map[string]string {
	out := map[string]string{}
	if s != "" {
		_ = json.Unmarshal([]byte(s), &out)
	}
	return out
}

// EncodeRecord writes the record annotation.
func EncodeRecord(r map[string]string) string {
	b, _ := json.Marshal(r)
	return string(b)
}
