// Package rollout rolls Deployments, StatefulSets, DaemonSets, CronJobs and
// Argo Rollouts when the Secrets and ConfigMaps they use change, as Stakater
// Reloader does and with its annotations, and also when an ExternalSecret
// they get injected changes remotely: once per burst of changes, never in a
// storm, and without losing or doubling a rollout when the leader changes.
package rollout

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/injection"
)

// InjectedExternalSecrets returns the ExternalSecrets pods of a template get
// injected: those its annotation names and those the ClusterInjectionPolicies
// selecting it add, decided as admission decides (pkg/injection).
func InjectedExternalSecrets(namespace string, in injection.Inputs, tmpl *corev1.PodTemplateSpec) map[string]bool {
	out := map[string]bool{}
	plan, _, err := injection.For(namespace, in, tmpl.Annotations, tmpl.Labels)
	if err != nil {
		return out
	}
	for _, n := range plan.Names() {
		out[n] = true
	}
	return out
}

// State is what the decisions read of a namespace, by name: its Secrets and
// ConfigMaps (from the stripped cache: metadata and a hash of the data), its
// ExternalSecrets, and what decides injection.
type State struct {
	Secrets         map[string]*corev1.Secret
	ConfigMaps      map[string]*corev1.ConfigMap
	ExternalSecrets map[string]*v1alpha1.ExternalSecret
	Injection       injection.Inputs
}

// Current returns the versions of what a workload follows: each followed
// Secret and ConfigMap by a keyed hash of its content, each followed
// injected ExternalSecret by a digest of its remote versions (creationPolicy
// None) or else by the content of the Secret it is synced into. What does
// not exist (yet) is left out.
func Current(sel Selection, namespace string, tmpl *corev1.PodTemplateSpec, st State) map[string]string {
	out := map[string]string{}
	refs := ReferencesOf(&tmpl.Spec)
	follow := func(name string, ann map[string]string, t TypeSelection, referenced bool) bool {
		if ann[annotations.ReloaderIgnore] == "true" {
			return false
		}
		if t.follows(name, ann, referenced) {
			return true
		}
		owner := ann[annotations.ExternalSecretName]
		return referenced && (sel.All || (owner != "" && sel.ExternalSecrets[owner]))
	}
	for name, s := range candidates(st.Secrets, refs.Secrets, len(sel.Secrets.Reload) > 0) {
		if follow(name, s.Annotations, sel.Secrets, refs.Secrets[name]) {
			out[secretPrefix+name] = contentVersion(s)
		}
	}
	for name, c := range candidates(st.ConfigMaps, refs.ConfigMaps, len(sel.ConfigMaps.Reload) > 0) {
		if follow(name, c.Annotations, sel.ConfigMaps, refs.ConfigMaps[name]) {
			out[configMapPrefix+name] = contentVersion(c)
		}
	}
	for name := range InjectedExternalSecrets(namespace, st.Injection, tmpl) {
		es, ok := st.ExternalSecrets[name]
		if !ok || !(sel.All || sel.ExternalSecrets[name]) {
			continue
		}
		if len(es.Status.Versions) > 0 {
			out[externalSecretPrefix+name] = versionDigest(es.Status.Versions)
			continue
		}
		// Synced into a Secret as well (any creationPolicy but None): the
		// injected files change when its content does.
		if s, ok := st.Secrets[es.TargetName()]; ok && s.Annotations[annotations.ExternalSecretName] == name && s.Annotations[annotations.DataHash] != "" {
			out[externalSecretPrefix+name] = contentVersion(s)
		}
	}
	return out
}

// candidates are the objects worth checking: the referenced ones, or all of
// the namespace when a reload pattern may name unreferenced ones.
func candidates[T any](all map[string]T, referenced map[string]bool, everything bool) map[string]T {
	if everything {
		return all
	}
	out := make(map[string]T, len(referenced))
	for name := range referenced {
		if o, ok := all[name]; ok {
			out[name] = o
		}
	}
	return out
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

// Pending is a rollout that is due but waits for its inputs to settle. It is
// stored on the workload (annotation keyhook.dev/rollout-pending), so that a
// new leader neither loses it nor starts its wait afresh.
type Pending struct {
	// Since is when the first change of the burst was seen.
	Since time.Time `json:"since"`
	// Seen is when the last change of the burst was seen.
	Seen time.Time `json:"seen"`
	// Inputs is the hash of the versions last seen.
	Inputs string `json:"inputs"`
	// Waiting is set once a rollout waits for the previous one to finish,
	// so that the event saying so is emitted once.
	Waiting bool `json:"waiting,omitempty"`
}

// Timing is when a due rollout starts.
type Timing struct {
	// Quiet: a rollout starts once the inputs have not changed for this long...
	Quiet time.Duration
	// Debounce: ...or once the first change is this old, whichever is first.
	Debounce time.Duration
}

// Track updates the pending state of a workload whose inputs differ from
// its record, now that they hash to inputs, and returns when the rollout is
// due. A change of the inputs restarts the quiet period; the first change
// bounds the wait.
func Track(p *Pending, inputs string, now time.Time, t Timing) (Pending, time.Time) {
	next := Pending{Since: now, Seen: now, Inputs: inputs}
	if p != nil {
		next.Since, next.Waiting = p.Since, p.Waiting
		if p.Inputs == inputs {
			next.Seen = p.Seen
		}
	}
	due := next.Seen.Add(t.Quiet)
	if limit := next.Since.Add(t.Debounce); limit.Before(due) {
		due = limit
	}
	return next, due
}

// ParsePending reads the pending annotation; nil when there is none or it
// does not parse.
func ParsePending(s string) *Pending {
	if s == "" {
		return nil
	}
	p := &Pending{}
	if json.Unmarshal([]byte(s), p) != nil {
		return nil
	}
	return p
}

// Encode writes the pending annotation.
func (p Pending) Encode() string {
	b, _ := json.Marshal(p)
	return string(b)
}

// Reason is the reason label of keyhook_rollouts_total for a rollout of
// these changed sources: the kinds that changed, e.g. "configmap+secret".
func Reason(changed []string) string {
	kinds := map[string]bool{}
	for _, c := range changed {
		if k, _, ok := strings.Cut(c, "/"); ok {
			kinds[k] = true
		}
	}
	return strings.Join(slices.Sorted(maps.Keys(kinds)), "+")
}
