// Package secretsync keeps every ExternalSecret materialised as a Kubernetes
// Secret: it reads the data with the same resolver the init-agent uses, writes
// only when something changed, and never deletes or blanks the last good
// Secret when the provider fails.
package secretsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// TargetName is the name of the Secret an ExternalSecret materialises.
func TargetName(es *v1alpha1.ExternalSecret) string { return es.TargetName() }

// creationPolicy returns the effective creation policy.
func creationPolicy(es *v1alpha1.ExternalSecret) v1alpha1.CreationPolicy {
	if es.Spec.Target.CreationPolicy == "" {
		return v1alpha1.CreationPolicyOwner
	}
	return es.Spec.Target.CreationPolicy
}

// DataHash is a stable digest of secret data: keys sorted, lengths framed so
// that no two different maps hash alike.
func DataHash(data map[string][]byte) string {
	return digest(sha256.New(), data)
}

// KeyedDataHash is DataHash keyed (HMAC-SHA256) with key, for where the
// digest is readable by more people than the data: a bare hash of a short
// value can be reversed by guessing.
func KeyedDataHash(key string, data map[string][]byte) string {
	return digest(hmac.New(sha256.New, []byte(key)), data)
}

func digest(h hash.Hash, data map[string][]byte) string {
	for _, k := range slices.Sorted(maps.Keys(data)) {
		v := data[k]
		var n [16]byte
		putLen(n[:8], len(k))
		putLen(n[8:], len(v))
		h.Write(n[:])
		h.Write([]byte(k))
		h.Write(v)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func putLen(b []byte, n int) {
	for i := range 8 {
		b[i] = byte(uint64(n) >> (8 * i))
	}
}

// Desired returns the Secret that es with (rendered) data should produce
// (Owner and Orphan policies); see Merge for Merge. The data-hash annotation
// covers the data and the template's type, labels and annotations, so that a
// change to either is written and nothing else is.
func Desired(es *v1alpha1.ExternalSecret, data map[string][]byte) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   es.Namespace,
			Name:        TargetName(es),
			Labels:      map[string]string{},
			Annotations: map[string]string{},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if t := es.Spec.Target.Template; t != nil {
		maps.Copy(s.Labels, t.Metadata.Labels)
		maps.Copy(s.Annotations, t.Metadata.Annotations)
		if t.Type != "" {
			s.Type = t.Type
		}
	}
	// keyhook's own keys win over the template's.
	s.Labels[annotations.Managed] = "true"
	s.Annotations[annotations.ExternalSecretName] = es.Name
	s.Annotations[annotations.DataHash] = desiredHash(s, data)
	if creationPolicy(es) == v1alpha1.CreationPolicyOwner {
		s.OwnerReferences = []metav1.OwnerReference{{
			APIVersion:         v1alpha1.GroupVersion.String(),
			Kind:               "ExternalSecret",
			Name:               es.Name,
			UID:                es.UID,
			Controller:         ptr.To(true),
			BlockOwnerDeletion: ptr.To(true),
		}}
	}
	return s
}

// desiredHash digests data with the type, labels and annotations keyhook
// sets (all but the hash itself).
func desiredHash(s *corev1.Secret, data map[string][]byte) string {
	// NUL never occurs in a data key, so metadata cannot collide with data.
	meta := map[string][]byte{"\x00type": []byte(s.Type)}
	for k, v := range s.Labels {
		meta["\x00label\x00"+k] = []byte(v)
	}
	for k, v := range s.Annotations {
		if k != annotations.DataHash {
			meta["\x00annotation\x00"+k] = []byte(v)
		}
	}
	maps.Copy(meta, data)
	return DataHash(meta)
}

// Merge returns existing with keyhook's keys of data written into it: the
// other keys, labels and owners stay as they are. The data-hash annotation
// digests the whole merged data, not just keyhook's keys: several Merge
// ExternalSecrets may share one Secret, and a digest of one's keys would
// flip at each of their syncs (and rollouts read it as the Secret's
// content).
func Merge(existing *corev1.Secret, data map[string][]byte) *corev1.Secret {
	out := existing.DeepCopy()
	if out.Data == nil {
		out.Data = map[string][]byte{}
	}
	maps.Copy(out.Data, data)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[annotations.DataHash] = DataHash(out.Data)
	return out
}

// UpToDate reports whether existing already is what keyhook would write:
// the recorded hash matches the desired one, and the keys keyhook owns hold
// exactly data (someone may have edited the Secret by hand).
func UpToDate(existing *corev1.Secret, es *v1alpha1.ExternalSecret, data map[string][]byte) bool {
	if existing == nil {
		return false
	}
	if creationPolicy(es) == v1alpha1.CreationPolicyMerge {
		// Only es's own keys: other keys belong to others, and so does the
		// hash of the whole.
		got := make(map[string][]byte, len(data))
		for k := range data {
			if v, ok := existing.Data[k]; ok {
				got[k] = v
			}
		}
		return DataHash(got) == DataHash(data)
	}
	want := Desired(es, data)
	if existing.Annotations[annotations.DataHash] != want.Annotations[annotations.DataHash] || existing.Type != want.Type {
		return false
	}
	for k, v := range want.Labels {
		if existing.Labels[k] != v {
			return false
		}
	}
	for k, v := range want.Annotations {
		if existing.Annotations[k] != v {
			return false
		}
	}
	return currentDataHash(existing) == DataHash(data)
}
