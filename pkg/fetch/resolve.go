package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/keyhook/keyhook/pkg/plan"
)

// Resolve reads what one ExternalSecret asks for from p and returns it as
// key → value. dataFrom is applied first, in order, then data, so that an
// explicit data entry wins over a key of the same name from an extract. Each
// remote secret is read once however many keys use it.
func Resolve(ctx context.Context, p Provider, data []plan.Data, dataFrom []plan.DataFrom) (map[string][]byte, error) {
	r := &reader{p: p, seen: map[Ref][]byte{}}
	out := make(map[string][]byte, len(data))
	for _, df := range dataFrom {
		if df.Find != nil {
			fields, err := r.find(ctx, FindQuery{Path: df.Find.Path, Name: df.Find.Name, Tags: df.Find.Tags})
			if err != nil {
				return nil, &KeyError{Key: df.Find.Path, Remote: df.Find.Path, Err: err}
			}
			for k, v := range fields {
				out[k] = v
			}
			continue
		}
		if df.Extract == nil {
			continue
		}
		ref := *df.Extract
		raw, err := r.get(ctx, Ref{Key: ref.Key, Version: ref.Version})
		if err != nil {
			return nil, &KeyError{Key: ref.Key, Remote: ref.Key, Err: err}
		}
		fields, err := Extract(raw, ref.Property)
		if err != nil {
			return nil, &KeyError{Key: ref.Key, Remote: ref.Key, Err: err}
		}
		for k, v := range fields {
			out[k] = v
		}
	}
	for _, d := range data {
		raw, err := r.get(ctx, Ref{Key: d.Ref.Key, Version: d.Ref.Version})
		if err != nil {
			return nil, &KeyError{Key: d.SecretKey, Remote: d.Ref.Key, Err: err}
		}
		v, err := Property(raw, d.Ref.Property)
		if err != nil {
			return nil, &KeyError{Key: d.SecretKey, Remote: d.Ref.Key, Err: err}
		}
		out[d.SecretKey] = v
	}
	return out, nil
}

// reader remembers what it read so one Resolve reads each remote secret once.
type reader struct {
	p    Provider
	seen map[Ref][]byte
}

// find reads the secrets q selects and names each by its name relative to
// q.Path, with "/" turned into "_" so that every name is a valid file name
// and Secret key.
func (r *reader) find(ctx context.Context, q FindQuery) (map[string][]byte, error) {
	path := q.Path
	found, err := r.p.Find(ctx, q)
	if errors.Is(err, ErrNotSupported) {
		// It will not become supported by retrying.
		return nil, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if len(found) > MaxFound {
		return nil, fmt.Errorf("dataFrom.find under %q selects %d secrets, more than %d; narrow its path or name: %w", path, len(found), MaxFound, ErrInvalid)
	}
	out := make(map[string][]byte, len(found))
	from := make(map[string]string, len(found))
	// In name order, so that which error is reported does not depend on map order.
	for _, name := range slices.Sorted(maps.Keys(found)) {
		key := FindKey(path, name)
		if !plan.ValidFileName(key) {
			return nil, fmt.Errorf("secret %q found under %q has no valid key name (%q): %w", name, path, key, ErrInvalid)
		}
		// Two names that give one key would leave the value to map order:
		// data that changes at every read.
		if other, dup := from[key]; dup {
			return nil, fmt.Errorf("secrets %q and %q found under %q both give key %q; rename one, or read them with data[] and distinct secretKeys: %w", other, name, path, key, ErrInvalid)
		}
		from[key] = name
		out[key] = found[name]
	}
	return out, nil
}

// FindKey is the key dataFrom.find gives the secret name found under path.
func FindKey(path, name string) string {
	rel := strings.TrimPrefix(name, path)
	if rel == "" {
		rel = name
	}
	return strings.ReplaceAll(strings.Trim(rel, "/"), "/", "_")
}

func (r *reader) get(ctx context.Context, ref Ref) ([]byte, error) {
	if v, ok := r.seen[ref]; ok {
		return v, nil
	}
	v, err := r.p.GetSecret(ctx, ref)
	if err != nil {
		return nil, err
	}
	r.seen[ref] = v
	return v, nil
}

// Property returns one property of a JSON secret. An empty property returns
// the secret as it is. A property is looked up as a top-level field first,
// then as a dot-separated path into nested objects. String values are returned
// as their text; other values as JSON.
func Property(raw []byte, property string) ([]byte, error) {
	if property == "" {
		return raw, nil
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("property %q requested but %w", property, err)
	}
	v, ok := lookup(obj, property)
	if !ok {
		return nil, fmt.Errorf("property %q does not exist (the secret has %s): %w", property, fieldList(obj), ErrInvalid)
	}
	return encodeValue(v)
}

// Extract expands a JSON object secret (or the object at property) into
// key → value, one entry per field. Every field name must be usable as a
// file name.
func Extract(raw []byte, property string) (map[string][]byte, error) {
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("extract needs a JSON object but %w", err)
	}
	if property != "" {
		v, ok := lookup(obj, property)
		if !ok {
			return nil, fmt.Errorf("property %q does not exist (the secret has %s): %w", property, fieldList(obj), ErrInvalid)
		}
		sub, isObj := v.(map[string]any)
		if !isObj {
			return nil, fmt.Errorf("property %q is not a JSON object, so it cannot be extracted: %w", property, ErrInvalid)
		}
		obj = sub
	}
	out := make(map[string][]byte, len(obj))
	for k, v := range obj {
		if !plan.ValidFileName(k) {
			return nil, fmt.Errorf("field %q cannot be a key (allowed: letters, digits, '-', '_', '.'); read it with data[].remoteRef.property and a valid secretKey: %w", k, ErrInvalid)
		}
		b, err := encodeValue(v)
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return out, nil
}

func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		// Never wrap the decoder's error: it can quote the value.
		return nil, fmt.Errorf("the secret is not a JSON object: %w", ErrInvalid)
	}
	return obj, nil
}

func lookup(obj map[string]any, property string) (any, bool) {
	if v, ok := obj[property]; ok {
		return v, true
	}
	var cur any = obj
	for _, part := range strings.Split(property, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func encodeValue(v any) ([]byte, error) {
	if s, ok := v.(string); ok {
		return []byte(s), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding a field as JSON: %w", ErrInvalid)
	}
	return b, nil
}

// fieldList names the fields of obj (never their values) for messages.
func fieldList(obj map[string]any) string {
	if len(obj) == 0 {
		return "no fields"
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, fmt.Sprintf("%q", k))
	}
	sort.Strings(keys)
	const most = 10
	if len(keys) > most {
		keys = append(keys[:most], "...")
	}
	return "fields " + strings.Join(keys, ", ")
}

// Versions returns the current version of every remote secret that data and
// dataFrom read, by remote key, without reading values: pinned versions as
// they are, others from p's CurrentVersion. It returns an error wrapping
// errors.ErrUnsupported when p cannot tell versions without reading values.
func Versions(ctx context.Context, p Provider, data []plan.Data, dataFrom []plan.DataFrom) (map[string]string, error) {
	refs := make([]plan.Ref, 0, len(data)+len(dataFrom))
	for _, df := range dataFrom {
		if df.Extract == nil {
			// The set of secrets a find matches has no one version.
			return nil, fmt.Errorf("dataFrom.find has no version: %w", errors.ErrUnsupported)
		}
		refs = append(refs, *df.Extract)
	}
	for _, d := range data {
		refs = append(refs, d.Ref)
	}
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		if _, seen := out[ref.Key]; seen {
			continue
		}
		if ref.Version != "" {
			out[ref.Key] = ref.Version
			continue
		}
		v, err := p.CurrentVersion(ctx, ref.Key)
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, fmt.Errorf("the provider has no versions: %w", err)
		}
		if err != nil {
			return nil, &KeyError{Key: ref.Key, Remote: ref.Key, Err: err}
		}
		out[ref.Key] = v
	}
	return out, nil
}
