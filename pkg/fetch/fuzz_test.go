package fetch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch"
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

// oracle answers what Property and Extract must return for one raw value,
// by an algorithm of its own: where the code under test decodes the value
// into nested maps and walks them for each property, the oracle lists every
// path of the value once — each chain of field names from the top, with the
// raw JSON found there — and answers each property from that list.
type oracle struct {
	top   map[string]json.RawMessage // the value's fields; nil when it is not a JSON object
	paths map[string]json.RawMessage // pathKey(chain of names) → raw JSON
}

// newOracle reads the first JSON value of raw (what follows it is ignored,
// as a stream decoder does) and lists its paths.
func newOracle(raw []byte) oracle {
	var first json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&first); err != nil {
		return oracle{}
	}
	var top map[string]json.RawMessage
	if !isObject(first) || json.Unmarshal(first, &top) != nil {
		return oracle{}
	}
	o := oracle{top: top, paths: map[string]json.RawMessage{}}
	var list func(prefix []string, obj map[string]json.RawMessage)
	list = func(prefix []string, obj map[string]json.RawMessage) {
		for name, v := range obj {
			chain := append(slices.Clip(prefix), name)
			o.paths[pathKey(chain)] = v
			var sub map[string]json.RawMessage
			if isObject(v) && json.Unmarshal(v, &sub) == nil {
				list(chain, sub)
			}
		}
	}
	list(nil, top)
	return o
}

// pathKey encodes a chain of names unambiguously, whatever bytes they hold.
func pathKey(chain []string) string {
	var b strings.Builder
	for _, name := range chain {
		fmt.Fprintf(&b, "%d:%s", len(name), name)
	}
	return b.String()
}

func isObject(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '{'
}

// find returns what property designates: a top-level field of that name,
// else the chain of names it spells with dots.
func (o oracle) find(property string) (json.RawMessage, bool) {
	if v, ok := o.top[property]; ok {
		return v, true
	}
	v, ok := o.paths[pathKey(strings.Split(property, "."))]
	return v, ok
}

// object returns the fields of the object property designates ("" is the
// whole value), or false.
func (o oracle) object(property string) (map[string]json.RawMessage, bool) {
	if o.top == nil {
		return nil, false
	}
	if property == "" {
		return o.top, true
	}
	v, ok := o.find(property)
	var fields map[string]json.RawMessage
	if !ok || !isObject(v) || json.Unmarshal(v, &fields) != nil {
		return nil, false
	}
	return fields, true
}

// sameValue reports whether got is how the raw JSON v reads as a secret
// value: a string as its text, a number, boolean or null exactly as written,
// an object or array as JSON of the same value.
func sameValue(got []byte, v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	switch v[0] {
	case '"':
		var s string
		return json.Unmarshal(v, &s) == nil && string(got) == s
	case '{', '[':
		a, errA := decodeAny(got)
		b, errB := decodeAny(v)
		return errA == nil && errB == nil && reflect.DeepEqual(a, b)
	default:
		return string(got) == string(v)
	}
}

func decodeAny(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one value")
	}
	return v, nil
}

// validKey is the rule for a key that becomes a file: the characters of a
// Secret's data keys, and never ".", ".." or a name starting with "..".
func validKey(k string) bool {
	if k == "" || strings.HasPrefix(k, "..") || k == "." {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// TestOracle checks the oracle itself against answers worked out by hand,
// so that a fuzz run that agrees with it means something.
func TestOracle(t *testing.T) {
	o := newOracle([]byte(nested + " trailing"))
	for property, want := range map[string]string{
		"user": `"admin"`, "ratio": "1.50", "a.b": `"dotted"`, "a.c.d": `"deeper"`, "a.c": `{"d":"deeper"}`, "none": "null",
	} {
		if got, ok := o.find(property); !ok || string(got) != want {
			t.Errorf("find(%q) = %s, %v; want %s", property, got, ok, want)
		}
	}
	for _, property := range []string{"list.0", "password.x", "a.b.c", "db.passwd", ""} {
		if got, ok := o.find(property); ok {
			t.Errorf("find(%q) = %s; want nothing", property, got)
		}
	}
	if f, ok := o.object("a.c"); !ok || len(f) != 1 || string(f["d"]) != `"deeper"` {
		t.Errorf("object(a.c) = %v, %v", f, ok)
	}
	if _, ok := o.object("user"); ok {
		t.Error("object(user) is a string, not an object")
	}
	dotted := newOracle([]byte(`{"a.b":{"c":1},"a":{"b":{"c":2}}}`))
	if got, _ := dotted.find("a.b.c"); string(got) != "2" {
		t.Errorf(`find("a.b.c") = %s; want the nested path, 2`, got)
	}
	for _, raw := range []string{"null", `"s"`, "[]", "{", "", "not json"} {
		if o := newOracle([]byte(raw)); o.top != nil {
			t.Errorf("newOracle(%q) is an object", raw)
		}
	}
	for k, want := range map[string]bool{"a": true, "A-b_c.d": true, ".env": true, "": false, ".": false, "..": false, "..x": false, "a/b": false, "é": false} {
		if validKey(k) != want {
			t.Errorf("validKey(%q) = %v", k, !want)
		}
	}
}

// decodeObject decodes raw as an object for planting values into its shape;
// it is no oracle.
func decodeObject(raw string) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, false
	}
	return obj, true
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
		o := newOracle([]byte(raw))
		want, exists := o.find(property)
		switch {
		case err != nil:
			checkFuzzErr(t, err, property)
			if exists {
				t.Fatalf("property %q exists (%s) but Property failed: %v", property, want, err)
			}
		case o.top == nil:
			t.Fatalf("Property(%q) of a value that is not a JSON object returned %q", property, got)
		case !exists:
			t.Fatalf("Property(%q) returned %q for a property that does not exist", property, got)
		case !sameValue(got, want):
			t.Fatalf("Property(%q) = %q, want %s", property, got, want)
		}

		// A value that is not JSON is never quoted.
		if _, err := fetch.Property([]byte(planted+raw), property); err == nil {
			t.Fatalf("Property(%q) of a value that is not JSON succeeded", property)
		} else {
			checkFuzzErr(t, err, property)
		}

		// The same shape with every string a secret: errors never say it.
		obj, isObj := decodeObject(raw)
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
		fields, isObj := newOracle([]byte(raw)).object(property)
		allValid := true
		for k := range fields {
			allValid = allValid && validKey(k)
		}
		switch {
		case err != nil:
			checkFuzzErr(t, err, property)
			if isObj && allValid {
				t.Fatalf("Extract(%q) failed on an object of valid keys: %v", property, err)
			}
		case !isObj:
			t.Fatalf("Extract(%q) of %q returned %q, but designates no object", property, raw, strs(got))
		case !allValid:
			t.Fatalf("Extract(%q) returned %q for an object with a key that is no file name", property, strs(got))
		case len(got) != len(fields):
			t.Fatalf("Extract(%q) returned %d keys for %d fields", property, len(got), len(fields))
		default:
			for k, v := range got {
				want, ok := fields[k]
				if !ok || !sameValue(v, want) {
					t.Fatalf("Extract(%q)[%q] = %q, want %s", property, k, v, want)
				}
			}
		}

		if _, err := fetch.Extract([]byte(planted+raw), property); err == nil {
			t.Fatalf("Extract(%q) of a value that is not JSON succeeded", property)
		} else {
			checkFuzzErr(t, err, property)
		}
		obj, isObj := decodeObject(raw)
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
