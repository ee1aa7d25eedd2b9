package rollout

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/annotations"
)

// contentHashKey is where the cache's copy of a Secret or ConfigMap holds a
// hash of its data instead of the data. It exists only in keyhook's memory,
// never on the API server.
const contentHashKey = "keyhook.internal/content-hash"

// keptAnnotations are the annotations of a Secret or ConfigMap that the
// rollout decisions read; the cache keeps no other (kubectl's
// last-applied-configuration, for one, holds a copy of the data).
var keptAnnotations = []string{
	annotations.ReloaderIgnore, annotations.ReloaderMatch,
	annotations.ExternalSecretName, annotations.DataHash,
}

// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch

// NewCache returns the cache of every Secret and ConfigMap of the cluster
// that the rollouts read: metadata and a hash of the data, never the data,
// so that its memory grows with the number of objects and not with their
// size, and no secret value stays in keyhook's memory for it.
func NewCache(cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, error) {
	return cache.New(cfg, cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Transform: StripData},
			&corev1.ConfigMap{}: {Transform: StripData},
		},
	})
}

var _ toolscache.TransformFunc = StripData

// StripData is the informer transform of NewCache: a Secret or ConfigMap
// becomes its name, namespace, UID, resource version, the annotations
// keyhook reads and a hash of its data.
func StripData(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Secret:
		h := o.Annotations[annotations.DataHash]
		if h == "" {
			h = "sha256:" + dataHash(o.Data, nil)
		}
		return &corev1.Secret{ObjectMeta: strippedMeta(&o.ObjectMeta, h), Type: o.Type}, nil
	case *corev1.ConfigMap:
		return &corev1.ConfigMap{ObjectMeta: strippedMeta(&o.ObjectMeta, "sha256:"+dataHash(o.BinaryData, o.Data))}, nil
	}
	return obj, nil
}

func strippedMeta(m *metav1.ObjectMeta, contentHash string) metav1.ObjectMeta {
	ann := map[string]string{contentHashKey: contentHash}
	for _, k := range keptAnnotations {
		if v, ok := m.Annotations[k]; ok {
			ann[k] = v
		}
	}
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp, Annotations: ann,
	}
}

// dataHash is a sha256 over the keys and values, each length-prefixed so
// that no two different maps hash alike.
func dataHash(bin map[string][]byte, str map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(bin)) {
		writeField(h, "b", k, bin[k])
	}
	for _, k := range slices.Sorted(maps.Keys(str)) {
		writeField(h, "s", k, []byte(str[k]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeField(h hash.Hash, kind, k string, v []byte) {
	var n [8]byte
	h.Write([]byte(kind))
	binary.BigEndian.PutUint64(n[:], uint64(len(k)))
	h.Write(n[:])
	h.Write([]byte(k))
	binary.BigEndian.PutUint64(n[:], uint64(len(v)))
	h.Write(n[:])
	h.Write(v)
}

// contentVersion is what a workload records of a Secret's or ConfigMap's
// content: its hash keyed (HMAC) with the object's UID, which only those who
// may read the object know. The workload's annotations (and, with the
// env-vars strategy, its pods' env) are readable by anyone who may read the
// workload; a bare hash there would let a short value (a PIN) be guessed
// offline. For a keyhook-managed Secret the hash is its data-hash
// annotation, as versions recorded before ConfigMaps were followed were.
func contentVersion(obj client.Object) string {
	ann := obj.GetAnnotations()
	h := ann[contentHashKey]
	if h == "" { // not from the stripped cache
		h = ann[annotations.DataHash]
	}
	m := hmac.New(sha256.New, []byte(obj.GetUID()))
	m.Write([]byte(h))
	return hex.EncodeToString(m.Sum(nil))
}
