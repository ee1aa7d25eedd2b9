package fetch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

var fuzzSeeds = []struct{ raw, property string }{
	{nested, "password"},
	{nested, "a.c.d"},
	{nested, "a.b"},
	{nested, "list.0"},
	{nested, "db"},
	{nested, ""},
	{`{"a":{"b":{"c":"d"}}}`, "a.b"},
	{`{"a.b":{"c":1}}`, "a.b.c"},
	{`{"":{"":"x"}}`, "."},
	{`{"k":1e400}`, "k"},
	{`{"k":"\ud800"}`, "k"},
	{`{"k":"v"} trailing`, "k"},
	{`{"a/b":"v"}`, ""},
	{`[]`, "0"},
	{`null`, "x"},
	{`"str"`, "x"},
	{"not json", "x"},
	{"", ""},
}

// decode is the test's own reading of raw as a JSON object: the first JSON
// value, numbers kept as written. ok is false when raw is not an object.
func decode(raw []byte) (obj map[string]any, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, false
	}
	return obj, true
}

// walk finds property in obj: a top-level field of that name, else a
// dot-separated path through nested objects.
func walk(obj map[string]any, property string) (any, bool) {
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

// sameValue reports whether got is how want reads as a secret value: a
// string as its text, anything else as JSON of the same value.
func sameValue(got []byte, want any) bool {
	if s, ok := want.(string); ok {
		return string(got) == s
	}
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return false
	}
	return reflect.DeepEqual(v, want)
}

// plant replaces every string in v, at any depth, with the planted value,
// and reports whether any object key contains it (a name, which errors may
// say).
func plant(v any) (any, bool) {
	switch t := v.(type) {
	case string:
		return planted, false
	case []any:
		inKey := false
		for i := range t {
			var k bool
			t[i], k = plant(t[i])
			inKey = inKey || k
		}
		return t, inKey
	case map[string]any:
		inKey := false
		for k := range t {
			var in bool
			t[k], in = plant(t[k])
			inKey = inKey || in || strings.Contains(k, planted)
		}
		return t, inKey
	}
	return v, false
}

// checkFuzzErr checks an error of Property or Extract: classified, with a
// message, and without the planted value unless a name holds it.
func checkFuzzErr(t *testing.T, err error, names ...string) {
	t.Helper()
	if !errors.Is(err, fetch.ErrInvalid) || !fetch.Permanent(err) {
		t.Fatalf("error %q is not ErrInvalid", err)
	}
	if err.Error() == "" {
		t.Fatal("empty error message")
	}
	for _, n := range names {
		if strings.Contains(n, planted) {
			return
		}
	}
	if strings.Contains(err.Error(), planted) {
		t.Fatalf("error %q contains the planted value", err)
	}
}

// FuzzProperty checks that no value and no property make Property panic;
// that on a JSON object it returns exactly what the property designates, and
// fails exactly when it designates nothing; and that its errors never
// contain a value of the secret.
func FuzzProperty(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s.raw, s.property)
	}
	f.Fuzz(func(t *testing.T, raw, property string) {
		got, err := fetch.Property([]byte(raw), property)
		if property == "" {
			if err != nil || string(got) != raw {
				t.Fatalf("no property: got %q, %v; want the value as it is", got, err)
			}
			return
		}
		obj, isObj := decode([]byte(raw))
		var want any
		var exists bool
		if isObj {
			want, exists = walk(obj, property)
		}
		switch {
		case err != nil:
			checkFuzzErr(t, err, property)
			if exists {
				t.Fatalf("property %q exists (%v) but Property failed: %v", property, want, err)
			}
		case !isObj:
			t.Fatalf("Property(%q) of a value that is not a JSON object returned %q", property, got)
		case !exists:
			t.Fatalf("Property(%q) returned %q for a property that does not exist", property, got)
		case !sameValue(got, want):
			t.Fatalf("Property(%q) = %q, want %#v", property, got, want)
		}

		// A value that is not JSON is never quoted.
		if _, err := fetch.Property([]byte(planted+raw), property); err == nil {
			t.Fatalf("Property(%q) of a value that is not JSON succeeded", property)
		} else {
			checkFuzzErr(t, err, property)
		}

		// The same shape with every string a secret: errors never say it.
		if !isObj {
			return
		}
		secret, inKey := plant(obj)
		if inKey {
			return
		}
		b, err := json.Marshal(secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fetch.Property(b, property); err != nil {
			checkFuzzErr(t, err, property)
		}
	})
}

// FuzzExtract checks that no value and no property make Extract panic; that
// what it returns is one valid key per field of the designated object, each
// with that field's value; and that its errors never contain a value.
func FuzzExtract(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s.raw, s.property)
	}
	f.Fuzz(func(t *testing.T, raw, property string) {
		got, err := fetch.Extract([]byte(raw), property)
		obj, isObj := decode([]byte(raw))
		var sub map[string]any
		if isObj {
			sub = obj
			if property != "" {
				v, _ := walk(obj, property)
				sub, _ = v.(map[string]any)
			}
		}
		if err != nil {
			checkFuzzErr(t, err, property)
			if sub != nil {
				for k := range sub {
					if !plan.ValidFileName(k) {
						return
					}
				}
				t.Fatalf("Extract(%q) failed on an object of valid keys: %v", property, err)
			}
		} else {
			if sub == nil {
				t.Fatalf("Extract(%q) of %q returned %q, but designates no object", property, raw, strs(got))
			}
			if len(got) != len(sub) {
				t.Fatalf("Extract(%q) returned %d keys for %d fields", property, len(got), len(sub))
			}
			for k, v := range got {
				if !plan.ValidFileName(k) {
					t.Fatalf("Extract(%q) returned invalid key %q", property, k)
				}
				want, ok := sub[k]
				if !ok || !sameValue(v, want) {
					t.Fatalf("Extract(%q)[%q] = %q, want %#v", property, k, v, want)
				}
			}
		}

		if _, err := fetch.Extract([]byte(planted+raw), property); err == nil {
			t.Fatalf("Extract(%q) of a value that is not JSON succeeded", property)
		} else {
			checkFuzzErr(t, err, property)
		}
		if !isObj {
			return
		}
		secret, inKey := plant(obj)
		if inKey {
			return
		}
		b, err := json.Marshal(secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fetch.Extract(b, property); err != nil {
			checkFuzzErr(t, err, property)
		}
	})
}
