package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

// planted is a value no message may ever contain.
const planted = "kh-planted-S3cr3t-9f8e7d"

// fakeProvider is a Provider whose reads are counted by ref.
type fakeProvider struct {
	getSecret func(ctx context.Context, ref fetch.Ref) ([]byte, error)
	reads     map[fetch.Ref]int
}

func (p *fakeProvider) GetSecret(ctx context.Context, ref fetch.Ref) ([]byte, error) {
	if p.reads == nil {
		p.reads = map[fetch.Ref]int{}
	}
	p.reads[ref]++
	return p.getSecret(ctx, ref)
}

// Find, CurrentVersion: a fakeProvider has neither.
func (p *fakeProvider) Find(_ context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	return nil, fetch.FindCapabilities{}.Check(q)
}

func (p *fakeProvider) CurrentVersion(context.Context, string) (string, error) {
	return "", fmt.Errorf("versions: %w", fetch.ErrNotSupported)
}

func (p *fakeProvider) Close() error { return nil }

// fakeFinder is a Provider that can find.
type fakeFinder struct {
	fakeProvider
	find  func(ctx context.Context, path string) (map[string][]byte, error)
	finds []fetch.FindQuery
}

func (p *fakeFinder) Find(ctx context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	p.finds = append(p.finds, q)
	return p.find(ctx, q.Path)
}

// store answers reads from key → value (any version), and ErrNotFound for
// any other key, as real providers do.
func store(secrets map[string]string) func(context.Context, fetch.Ref) ([]byte, error) {
	return func(_ context.Context, ref fetch.Ref) ([]byte, error) {
		v, ok := secrets[ref.Key]
		if !ok {
			return nil, fmt.Errorf("secret %q: %w", ref.Key, fetch.ErrNotFound)
		}
		return []byte(v), nil
	}
}

func found(secrets map[string]string) func(context.Context, string) (map[string][]byte, error) {
	return func(context.Context, string) (map[string][]byte, error) {
		out := make(map[string][]byte, len(secrets))
		for k, v := range secrets {
			out[k] = []byte(v)
		}
		return out, nil
	}
}

func strs(m map[string][]byte) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// checkErr checks what every error of this package promises: it is
// classified as wantClass, says each of wantIn, and carries no value.
func checkErr(t *testing.T, err error, wantClass error, wantIn []string, values ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got none")
	}
	if !errors.Is(err, wantClass) {
		t.Errorf("error %q does not wrap %v", err, wantClass)
	}
	msg := err.Error()
	for _, w := range wantIn {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	for _, v := range append(values, planted) {
		if v != "" && strings.Contains(msg, v) {
			t.Errorf("error %q contains the secret value %q", msg, v)
		}
	}
}

const nested = `{"user":"admin","password":"` + planted + `","port":5432,"ratio":1.50,"big":12345678901234567890,` +
	`"on":true,"none":null,"list":["a",1],"a.b":"dotted","a":{"b":"deep","c":{"d":"deeper"}},"db":{"password":"` + planted + `"}}`

func TestProperty(t *testing.T) {
	for _, tc := range []struct {
		name     string
		raw      string
		property string
		want     string
	}{
		{name: "no property returns the value as it is", raw: "plain " + planted, want: "plain " + planted},
		{name: "no property on JSON returns the JSON unchanged", raw: nested, want: nested},
		{name: "a string field is its text", raw: nested, property: "user", want: "admin"},
		{name: "a number keeps its JSON text", raw: nested, property: "port", want: "5432"},
		{name: "a decimal is not reformatted", raw: nested, property: "ratio", want: "1.50"},
		{name: "a big integer keeps every digit", raw: nested, property: "big", want: "12345678901234567890"},
		{name: "a boolean is JSON", raw: nested, property: "on", want: "true"},
		{name: "null is JSON", raw: nested, property: "none", want: "null"},
		{name: "an array is JSON", raw: nested, property: "list", want: `["a",1]`},
		{name: "an object is compact JSON with sorted keys", raw: nested, property: "a", want: `{"b":"deep","c":{"d":"deeper"}}`},
		{name: "a dotted path reads nested objects", raw: nested, property: "a.c.d", want: "deeper"},
		{name: "a top-level field with a dot wins over the path", raw: nested, property: "a.b", want: "dotted"},
		{name: "the path is used when no top-level field has the name", raw: `{"a":{"b":"deep"}}`, property: "a.b", want: "deep"},
		{name: "an empty field name", raw: `{"":"empty"}`, property: "", want: `{"":"empty"}`},
		{name: "unicode and escapes are decoded", raw: `{"k":"caf\u00e9 \"q\" \n"}`, property: "k", want: "café \"q\" \n"},
		{name: "trailing whitespace after the object", raw: "{\"k\":\"v\"}\n", property: "k", want: "v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch.Property([]byte(tc.raw), tc.property)
			if err != nil {
				t.Fatalf("Property(%q): %v", tc.property, err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("Property(%q) (-want +got):\n%s", tc.property, diff)
			}
		})
	}
}

func TestPropertyErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		raw      string
		property string
		wantIn   []string
	}{
		{name: "missing field names the property and the fields, not the values", raw: nested, property: "passwd",
			wantIn: []string{`property "passwd" does not exist`, `"password"`, `"a.b"`}},
		{name: "missing nested field", raw: nested, property: "db.passwd", wantIn: []string{`"db.passwd" does not exist`}},
		{name: "a path through a string", raw: nested, property: "password.x", wantIn: []string{`"password.x" does not exist`}},
		{name: "arrays are not indexed", raw: nested, property: "list.0", wantIn: []string{`"list.0" does not exist`}},
		{name: "an empty object has no fields", raw: `{}`, property: "k", wantIn: []string{`"k" does not exist`, "no fields"}},
		{name: "many fields are cut short", raw: `{"f0":0,"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9,"f10":` + `"` + planted + `"}`,
			property: "k", wantIn: []string{`"f0"`, "..."}},
		{name: "a value that is not JSON", raw: planted, property: "password", wantIn: []string{`property "password" requested`, "not a JSON object"}},
		{name: "a value that is almost JSON", raw: `{"password":"` + planted + `"`, property: "password", wantIn: []string{"not a JSON object"}},
		{name: "a JSON string", raw: `"` + planted + `"`, property: "password", wantIn: []string{"not a JSON object"}},
		{name: "a JSON array", raw: `["` + planted + `"]`, property: "0", wantIn: []string{"not a JSON object"}},
		{name: "JSON null", raw: `null`, property: "password", wantIn: []string{"not a JSON object"}},
		{name: "an empty value", raw: ``, property: "password", wantIn: []string{"not a JSON object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch.Property([]byte(tc.raw), tc.property)
			checkErr(t, err, fetch.ErrInvalid, tc.wantIn, tc.raw)
			if got != nil {
				t.Errorf("got %q with the error", got)
			}
			if !fetch.Permanent(err) {
				t.Errorf("Permanent(%v) = false, want true: retrying never fixes a property", err)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	for _, tc := range []struct {
		name     string
		raw      string
		property string
		want     map[string]string
	}{
		{name: "every field, strings as text and the rest as JSON",
			raw:  `{"user":"admin","port":5432,"on":false,"none":null,"list":[1,"x"],"obj":{"z":1,"a":"b"},"dotted.name":"d"}`,
			want: map[string]string{"user": "admin", "port": "5432", "on": "false", "none": "null", "list": `[1,"x"]`, "obj": `{"a":"b","z":1}`, "dotted.name": "d"}},
		{name: "an empty object", raw: `{}`, want: map[string]string{}},
		{name: "the object at a property", raw: nested, property: "db", want: map[string]string{"password": planted}},
		{name: "the object at a dotted path", raw: nested, property: "a.c", want: map[string]string{"d": "deeper"}},
		{name: "the last of duplicate fields", raw: `{"k":"first","k":"last"}`, want: map[string]string{"k": "last"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch.Extract([]byte(tc.raw), tc.property)
			if err != nil {
				t.Fatalf("Extract(%q): %v", tc.property, err)
			}
			if diff := cmp.Diff(tc.want, strs(got)); diff != "" {
				t.Errorf("Extract(%q) (-want +got):\n%s", tc.property, diff)
			}
		})
	}
}

func TestExtractErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		raw      string
		property string
		wantIn   []string
	}{
		{name: "not JSON", raw: planted, wantIn: []string{"extract needs a JSON object", "not a JSON object"}},
		{name: "a JSON array", raw: `["` + planted + `"]`, wantIn: []string{"not a JSON object"}},
		{name: "a missing property", raw: nested, property: "nope", wantIn: []string{`property "nope" does not exist`, `"password"`}},
		{name: "a property that is a string", raw: nested, property: "password", wantIn: []string{`property "password" is not a JSON object`}},
		{name: "a property that is an array", raw: nested, property: "list", wantIn: []string{`property "list" is not a JSON object`}},
		{name: "a field with a slash", raw: `{"ok":"x","a/b":"` + planted + `"}`, wantIn: []string{`field "a/b" cannot be a key`, "remoteRef.property"}},
		{name: "a field that is ..", raw: `{"..":"` + planted + `"}`, wantIn: []string{`field ".." cannot be a key`}},
		{name: "an empty field name", raw: `{"":"` + planted + `"}`, wantIn: []string{`field "" cannot be a key`}},
		{name: "a field with a space", raw: `{"a b":"` + planted + `"}`, wantIn: []string{`field "a b" cannot be a key`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch.Extract([]byte(tc.raw), tc.property)
			checkErr(t, err, fetch.ErrInvalid, tc.wantIn, tc.raw)
			if got != nil {
				t.Errorf("got %q with the error", strs(got))
			}
		})
	}
}

func TestFindKey(t *testing.T) {
	for _, tc := range []struct {
		path, name, want string
	}{
		{path: "/app/", name: "/app/db/password", want: "db_password"},
		{path: "/app", name: "/app/db", want: "db"},
		{path: "app/", name: "app/db", want: "db"},
		{path: "prod-", name: "prod-db", want: "db"},                         // Secrets Manager matches a prefix, not a directory
		{path: "", name: "/a/b/c", want: "a_b_c"},                            // everything
		{path: "/app/db", name: "/app/db", want: "app_db"},                   // the path itself: its whole name
		{path: "/other/", name: "/app/db", want: "app_db"},                   // not under the path: its whole name
		{path: "/app/", name: "/app/a//b/", want: "a__b"},                    // slashes inside are kept as underscores
		{path: "/app/", name: "/app/db.conf", want: "db.conf"},               // dots are allowed in keys
		{path: "/app/", name: "/app/with space", want: "with space"},         // Resolve rejects it, FindKey just names it
		{path: "/app/", name: "/app/" + "x/y/z", want: "x_y_z"},              // deep names
		{path: "/app/", name: "/app/ä", want: "ä"},                           // non-ASCII is passed through
		{path: "/app/", name: "/app/", want: "app"},                          // the path itself, with its slash
		{path: "/", name: "/db", want: "db"},                                 // root path
		{path: "/app/", name: "/app/a_b", want: "a_b"},                       // see TestResolveFindCollision
		{path: "/app/", name: "/app/a/b", want: "a_b"},                       // ...for the two above
		{path: "app", name: "application/db", want: "lication_db"},           // a prefix that is not a directory cuts names
		{path: "/app/", name: "/app/" + strings.Repeat("d", 3), want: "ddd"}, // plain
	} {
		t.Run(tc.path+" "+tc.name, func(t *testing.T) {
			if got := fetch.FindKey(tc.path, tc.name); got != tc.want {
				t.Errorf("FindKey(%q, %q) = %q, want %q", tc.path, tc.name, got, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	remote := map[string]string{
		"app/db":     `{"user":"admin","password":"` + planted + `","port":5432}`,
		"app/api":    `{"token":"t0k3n","user":"api"}`,
		"app/plain":  "plain-value",
		"app/nested": `{"creds":{"user":"n-user","pass":"n-pass"}}`,
	}
	ref := func(key, property string) plan.Ref { return plan.Ref{Key: key, Property: property} }
	for _, tc := range []struct {
		name      string
		data      []plan.Data
		dataFrom  []plan.DataFrom
		want      map[string]string
		wantReads map[fetch.Ref]int
	}{
		{
			name:      "nothing asked, nothing read",
			want:      map[string]string{},
			wantReads: nil,
		},
		{
			name: "data: a property and a whole value",
			data: []plan.Data{
				{SecretKey: "password", Ref: ref("app/db", "password")},
				{SecretKey: "plain", Ref: ref("app/plain", "")},
				{SecretKey: "nested-user", Ref: ref("app/nested", "creds.user")},
			},
			want:      map[string]string{"password": planted, "plain": "plain-value", "nested-user": "n-user"},
			wantReads: map[fetch.Ref]int{{Key: "app/db"}: 1, {Key: "app/plain"}: 1, {Key: "app/nested"}: 1},
		},
		{
			name: "one remote secret is read once for many keys and an extract",
			data: []plan.Data{
				{SecretKey: "user", Ref: ref("app/db", "user")},
				{SecretKey: "password", Ref: ref("app/db", "password")},
				{SecretKey: "all", Ref: ref("app/db", "")},
			},
			dataFrom:  []plan.DataFrom{{Extract: &plan.Ref{Key: "app/db"}}},
			want:      map[string]string{"user": "admin", "password": planted, "port": "5432", "all": remote["app/db"]},
			wantReads: map[fetch.Ref]int{{Key: "app/db"}: 1},
		},
		{
			name: "data wins over an extract of the same key",
			data: []plan.Data{{SecretKey: "user", Ref: ref("app/api", "user")}},
			dataFrom: []plan.DataFrom{
				{Extract: &plan.Ref{Key: "app/db"}},
			},
			want:      map[string]string{"user": "api", "password": planted, "port": "5432"},
			wantReads: map[fetch.Ref]int{{Key: "app/db"}: 1, {Key: "app/api"}: 1},
		},
		{
			name: "a later extract wins over an earlier one",
			dataFrom: []plan.DataFrom{
				{Extract: &plan.Ref{Key: "app/db"}},
				{Extract: &plan.Ref{Key: "app/api"}},
			},
			want:      map[string]string{"user": "api", "password": planted, "port": "5432", "token": "t0k3n"},
			wantReads: map[fetch.Ref]int{{Key: "app/db"}: 1, {Key: "app/api"}: 1},
		},
		{
			name:      "an extract of a nested object",
			dataFrom:  []plan.DataFrom{{Extract: &plan.Ref{Key: "app/nested", Property: "creds"}}},
			want:      map[string]string{"user": "n-user", "pass": "n-pass"},
			wantReads: map[fetch.Ref]int{{Key: "app/nested"}: 1},
		},
		{
			name: "each version is its own read",
			data: []plan.Data{
				{SecretKey: "current", Ref: ref("app/plain", "")},
				{SecretKey: "v1", Ref: plan.Ref{Key: "app/plain", Version: "1"}},
				{SecretKey: "v1-again", Ref: plan.Ref{Key: "app/plain", Version: "1"}},
			},
			want:      map[string]string{"current": "plain-value", "v1": "plain-value", "v1-again": "plain-value"},
			wantReads: map[fetch.Ref]int{{Key: "app/plain"}: 1, {Key: "app/plain", Version: "1"}: 1},
		},
		{
			name:      "a dataFrom entry with neither extract nor find is skipped",
			dataFrom:  []plan.DataFrom{{}},
			want:      map[string]string{},
			wantReads: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProvider{getSecret: store(remote)}
			got, err := fetch.Resolve(context.Background(), p, tc.data, tc.dataFrom)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if diff := cmp.Diff(tc.want, strs(got)); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantReads, p.reads); diff != "" {
				t.Errorf("reads (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvePassesContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "here")
	p := &fakeProvider{getSecret: func(ctx context.Context, _ fetch.Ref) ([]byte, error) {
		if ctx.Value(key{}) != "here" {
			t.Error("GetSecret did not get the caller's context")
		}
		return []byte("v"), nil
	}}
	if _, err := fetch.Resolve(ctx, p, []plan.Data{{SecretKey: "k", Ref: plan.Ref{Key: "x"}}}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestResolveFind(t *testing.T) {
	p := &fakeFinder{
		fakeProvider: fakeProvider{getSecret: store(map[string]string{"/app/db": `{"user":"from-data"}`})},
		find: found(map[string]string{
			"/app/db":          "db-value",
			"/app/api/token":   "token-value",
			"/app/api/user":    "api-user",
			"/app/config.json": `{"a":1}`,
		}),
	}
	got, err := fetch.Resolve(context.Background(), p,
		[]plan.Data{{SecretKey: "api_user", Ref: plan.Ref{Key: "/app/db", Property: "user"}}},
		[]plan.DataFrom{{Find: &plan.Find{Path: "/app/", Name: "^/app/(db|api/)", Tags: map[string]string{"team": "a"}}}})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := map[string]string{"db": "db-value", "api_token": "token-value", "api_user": "from-data", "config.json": `{"a":1}`}
	if diff := cmp.Diff(want, strs(got)); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	// The whole query reaches the provider.
	if diff := cmp.Diff([]fetch.FindQuery{{Path: "/app/", Name: "^/app/(db|api/)", Tags: map[string]string{"team": "a"}}}, p.finds); diff != "" {
		t.Errorf("finds (-want +got):\n%s", diff)
	}
}

// TestResolveFindCollision: two remote secrets whose names give the same key
// must not make the data depend on map order (a Secret that changes at
// every sync, and rolls its workloads each time).
func TestResolveFindCollision(t *testing.T) {
	p := &fakeFinder{
		fakeProvider: fakeProvider{getSecret: store(nil)},
		find:         found(map[string]string{"/app/a/b": planted + "-1", "/app/a_b": planted + "-2", "/app/c": "c"}),
	}
	for range 20 {
		_, err := fetch.Resolve(context.Background(), p, nil, []plan.DataFrom{{Find: &plan.Find{Path: "/app/"}}})
		checkErr(t, err, fetch.ErrInvalid, []string{`"/app/a/b"`, `"/app/a_b"`, `"a_b"`, `remote key "/app/"`})
	}
}

func TestResolveErrors(t *testing.T) {
	remote := map[string]string{
		"app/db":    `{"user":"admin","password":"` + planted + `"}`,
		"app/plain": planted,
	}
	transient := errors.New("connection reset")
	for _, tc := range []struct {
		name          string
		provider      fetch.Provider
		data          []plan.Data
		dataFrom      []plan.DataFrom
		wantKey       string
		wantRemote    string
		wantClass     error
		wantPermanent bool
		wantIn        []string
	}{
		{
			name:    "a missing remote secret",
			data:    []plan.Data{{SecretKey: "password", Ref: plan.Ref{Key: "app/nope", Property: "password"}}},
			wantKey: "password", wantRemote: "app/nope",
			wantClass: fetch.ErrNotFound, wantPermanent: true,
			wantIn: []string{`key "password" (remote key "app/nope")`, "not found"},
		},
		{
			name:    "a missing property",
			data:    []plan.Data{{SecretKey: "pw", Ref: plan.Ref{Key: "app/db", Property: "passwd"}}},
			wantKey: "pw", wantRemote: "app/db",
			wantClass: fetch.ErrInvalid, wantPermanent: true,
			wantIn: []string{`key "pw" (remote key "app/db")`, `property "passwd" does not exist`, `"password"`},
		},
		{
			name:    "a property of a value that is not JSON",
			data:    []plan.Data{{SecretKey: "pw", Ref: plan.Ref{Key: "app/plain", Property: "password"}}},
			wantKey: "pw", wantRemote: "app/plain",
			wantClass: fetch.ErrInvalid, wantPermanent: true,
			wantIn: []string{`key "pw" (remote key "app/plain")`, "not a JSON object"},
		},
		{
			name:     "an extract of a value that is not JSON",
			dataFrom: []plan.DataFrom{{Extract: &plan.Ref{Key: "app/plain"}}},
			wantKey:  "app/plain", wantRemote: "app/plain",
			wantClass: fetch.ErrInvalid, wantPermanent: true,
			wantIn: []string{`remote key "app/plain": extract needs a JSON object`},
		},
		{
			name:     "an extract of a missing secret",
			dataFrom: []plan.DataFrom{{Extract: &plan.Ref{Key: "app/nope"}}},
			wantKey:  "app/nope", wantRemote: "app/nope",
			wantClass: fetch.ErrNotFound, wantPermanent: true,
			wantIn: []string{`remote key "app/nope"`},
		},
		{
			name: "access denied",
			provider: &fakeProvider{getSecret: func(context.Context, fetch.Ref) ([]byte, error) {
				return nil, fmt.Errorf("reading: %w", fetch.ErrAccessDenied)
			}},
			data:    []plan.Data{{SecretKey: "pw", Ref: plan.Ref{Key: "app/db"}}},
			wantKey: "pw", wantRemote: "app/db",
			wantClass: fetch.ErrAccessDenied, wantPermanent: true,
			wantIn: []string{"access denied"},
		},
		{
			name: "throttled is worth retrying",
			provider: &fakeProvider{getSecret: func(context.Context, fetch.Ref) ([]byte, error) {
				return nil, fmt.Errorf("reading: %w", fetch.ErrThrottled)
			}},
			data:    []plan.Data{{SecretKey: "pw", Ref: plan.Ref{Key: "app/db"}}},
			wantKey: "pw", wantRemote: "app/db",
			wantClass: fetch.ErrThrottled, wantPermanent: false,
			wantIn: []string{"throttled"},
		},
		{
			name: "an unclassified error is worth retrying",
			provider: &fakeProvider{getSecret: func(context.Context, fetch.Ref) ([]byte, error) {
				return nil, transient
			}},
			dataFrom: []plan.DataFrom{{Extract: &plan.Ref{Key: "app/db"}}},
			wantKey:  "app/db", wantRemote: "app/db",
			wantClass: transient, wantPermanent: false,
			wantIn: []string{"connection reset"},
		},
		{
			name:     "find on a provider that cannot",
			dataFrom: []plan.DataFrom{{Find: &plan.Find{Path: "/app/"}}},
			wantKey:  "/app/", wantRemote: "/app/",
			wantClass: fetch.ErrInvalid, wantPermanent: true,
			wantIn: []string{"dataFrom.find: not supported by this provider"},
		},
		{
			name: "find of too many secrets",
			provider: &fakeFinder{find: func(context.Context, string) (map[string][]byte, error) {
				out := map[string][]byte{}
				for i := range fetch.MaxFound + 1 {
					out[fmt.Sprintf("/app/s%d", i)] = []byte(planted)
				}
				return out, nil
			}},
			dataFrom: []plan.DataFrom{{Find: &plan.Find{Path: "/app/"}}},
			wantKey:  "/app/", wantRemote: "/app/",
			wantClass: fetch.ErrInvalid, wantPermanent: true,
			wantIn: []string{"more than 500", "narrow"},
		},
		{
			name: "find that fails",
			provider: &fakeFinder{find: func(context.Context, string) (map[string][]byte, error) {
				return nil, fmt.Errorf("listing: %w", fetch.ErrAccessDenied)
			}},
			dataFrom: []plan.DataFrom{{Find: &plan.Find{Path: "/app/"}}},
			wantKey:  "/app/", wantRemote: "/app/",
			wantClass: fetch.ErrAccessDenied, wantPermanent: true,
			wantIn: []string{`remote key "/app/"`, "listing"},
		},
		{
			name:     "find of a name that is no key",
			provider: &fakeFinder{find: found(map[string]string{"/app/ok": "fine", "/app/with space": planted})},
			dataFrom: []plan.DataFrom{{Find: &plan.Find{Path: "/app/"}}},
			wantKey:  "/app/", wantRemote: "/app/",
			wantClass: fetch.ErrInvalid, wantPermanent: true,
			wantIn: []string{`secret "/app/with space" found under "/app/" has no valid key name ("with space")`},
		},
		{
			name: "the first failure stops the rest",
			data: []plan.Data{
				{SecretKey: "first", Ref: plan.Ref{Key: "app/nope"}},
				{SecretKey: "second", Ref: plan.Ref{Key: "app/db", Property: "nope"}},
			},
			wantKey: "first", wantRemote: "app/nope",
			wantClass: fetch.ErrNotFound, wantPermanent: true,
			wantIn: []string{`key "first"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.provider
			if p == nil {
				p = &fakeProvider{getSecret: store(remote)}
			}
			got, err := fetch.Resolve(context.Background(), p, tc.data, tc.dataFrom)
			if got != nil {
				t.Errorf("got data %q with an error", strs(got))
			}
			checkErr(t, err, tc.wantClass, tc.wantIn, remote["app/db"])
			var ke *fetch.KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %q is not a *KeyError", err)
			}
			if ke.Key != tc.wantKey || ke.Remote != tc.wantRemote {
				t.Errorf("KeyError names key %q remote %q, want key %q remote %q", ke.Key, ke.Remote, tc.wantKey, tc.wantRemote)
			}
			if got := fetch.Permanent(err); got != tc.wantPermanent {
				t.Errorf("Permanent(%q) = %v, want %v", err, got, tc.wantPermanent)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                                  "plain",
		"  spaces  kept  inside ":                "spaces  kept  inside",
		"1 error occurred:\n\t* denied\n\n":      "1 error occurred: * denied",
		"a\r\nb\tc\vd\fe\u0085f\u2028g\u2029h":   "a b c d e f g h",
		"trailing: \n":                           "trailing:",
		"key \"x\" (remote \"y\"): \n\n  : boom": "key \"x\" (remote \"y\"): : boom",
		"":                                       "",
	} {
		got := fetch.OneLine(in)
		if got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(got, "\n\r\t") {
			t.Errorf("OneLine(%q) = %q has a line break or a tab", in, got)
		}
	}
}
