package secretsync

import (
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

// cachedDataHashKey is where the cache's copy of a Secret keyhook manages
// holds the DataHash of its data instead of the data. It exists only in
// keyhook's memory: write removes it before a Secret from the cache is
// written back.
const cachedDataHashKey = "keyhook.internal/cached-data-hash"

var _ toolscache.TransformFunc = StripSecretData

// StripSecretData is the informer transform of the controller's cache of
// the Secrets keyhook manages: each keeps its metadata (but managedFields)
// and type, and its data becomes a digest, which is all the sync compares
// (UpToDate). The cache's memory then grows with the number of Secrets and
// not with their size, and it holds no secret value. Whatever reads a
// Secret's values — the stores' credentials, a Secret to merge into —
// reads it from the API server.
func StripSecretData(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	ann := make(map[string]string, len(s.Annotations)+1)
	for k, v := range s.Annotations {
		ann[k] = v
	}
	// Computed here, whatever the API server's copy carries under that key.
	ann[cachedDataHashKey] = DataHash(s.Data)
	s.Annotations = ann
	s.Data, s.StringData, s.ManagedFields = nil, nil, nil
	return s, nil
}

// currentDataHash is the DataHash of existing's data: the digest the cache
// holds in place of the data, or computed from a Secret read from the API
// server.
func currentDataHash(existing *corev1.Secret) string {
	if h, ok := existing.Annotations[cachedDataHashKey]; ok && existing.Data == nil {
		return h
	}
	return DataHash(existing.Data)
}

// withoutCacheKeys returns s without what only keyhook's cache adds.
func withoutCacheKeys(s *corev1.Secret) *corev1.Secret {
	delete(s.Annotations, cachedDataHashKey)
	return s
}
