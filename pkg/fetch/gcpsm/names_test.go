package gcpsm

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch"
)

func TestVersionName(t *testing.T) {
	t.Parallel()
	const project = "my-project"
	tests := []struct {
		name    string
		ref     fetch.Ref
		want    string // empty: ErrInvalid
		mention string
	}{
		{name: "secret ID", ref: fetch.Ref{Key: "db"}, want: "projects/my-project/secrets/db/versions/latest"},
		{name: "latest", ref: fetch.Ref{Key: "db", Version: "latest"}, want: "projects/my-project/secrets/db/versions/latest"},
		{name: "number", ref: fetch.Ref{Key: "db", Version: "42"}, want: "projects/my-project/secrets/db/versions/42"},
		{name: "alias", ref: fetch.Ref{Key: "db", Version: "prod_v-2"}, want: "projects/my-project/secrets/db/versions/prod_v-2"},
		{name: "secret ID of every allowed character", ref: fetch.Ref{Key: "A-z_0"}, want: "projects/my-project/secrets/A-z_0/versions/latest"},
		{name: "full name", ref: fetch.Ref{Key: "projects/other-proj/secrets/db"}, want: "projects/other-proj/secrets/db/versions/latest"},
		{name: "full name, project number", ref: fetch.Ref{Key: "projects/123456789012/secrets/db", Version: "3"}, want: "projects/123456789012/secrets/db/versions/3"},
		{name: "domain-scoped project", ref: fetch.Ref{Key: "projects/example.com:my-proj/secrets/db"}, want: "projects/example.com:my-proj/secrets/db/versions/latest"},
		{name: "key pins a version", ref: fetch.Ref{Key: "projects/p-12345/secrets/db/versions/7"}, want: "projects/p-12345/secrets/db/versions/7"},
		{name: "key and version agree", ref: fetch.Ref{Key: "projects/p-12345/secrets/db/versions/7", Version: "7"}, want: "projects/p-12345/secrets/db/versions/7"},
		{name: "version is a full name", ref: fetch.Ref{Key: "db", Version: "projects/my-project/secrets/db/versions/5"}, want: "projects/my-project/secrets/db/versions/5"},

		{name: "empty key", ref: fetch.Ref{}, mention: `key ""`},
		{name: "secret ID with a dot", ref: fetch.Ref{Key: "db.password"}, mention: `"db.password"`},
		{name: "secret ID too long", ref: fetch.Ref{Key: strings.Repeat("a", 256)}, mention: "secret ID"},
		{name: "path smuggled into an ID", ref: fetch.Ref{Key: "db/versions/1"}, mention: `"db/versions/1"`},
		{name: "regional secret", ref: fetch.Ref{Key: "projects/p-12345/locations/us-east1/secrets/db"}, mention: "regional"},
		{name: "bad project", ref: fetch.Ref{Key: "projects/P/secrets/db"}, mention: `"projects/P/secrets/db"`},
		{name: "trailing slash", ref: fetch.Ref{Key: "projects/p-12345/secrets/db/"}},
		{name: "dot-dot", ref: fetch.Ref{Key: "projects/p-12345/secrets/../db"}},
		{name: "version zero", ref: fetch.Ref{Key: "db", Version: "0"}, mention: `"0"`},
		{name: "version with leading zero", ref: fetch.Ref{Key: "db", Version: "07"}},
		{name: "negative version", ref: fetch.Ref{Key: "db", Version: "-1x!"}},
		{name: "version with a slash", ref: fetch.Ref{Key: "db", Version: "1/x"}},
		{name: "version of another secret", ref: fetch.Ref{Key: "db", Version: "projects/my-project/secrets/other/versions/1"}, mention: "another secret"},
		{name: "version in another project", ref: fetch.Ref{Key: "db", Version: "projects/evil-project/secrets/db/versions/1"}, mention: "another secret"},
		{name: "version name without a version", ref: fetch.Ref{Key: "db", Version: "projects/my-project/secrets/db"}},
		{name: "key and version disagree", ref: fetch.Ref{Key: "projects/p-12345/secrets/db/versions/7", Version: "latest"}, mention: `pins version "7"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := versionName(tt.ref, project)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Errorf("versionName(%+v) = %q, %v; want %q", tt.ref, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, fetch.ErrInvalid) {
				t.Fatalf("versionName(%+v) = %q, %v; want ErrInvalid", tt.ref, got, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// FuzzVersionName checks that whatever a ref holds, versionName either
// refuses it as ErrInvalid or names one version of the secret the key
// names, in a name with no extra segments.
func FuzzVersionName(f *testing.F) {
	for _, seed := range [][2]string{
		{"db", ""}, {"db", "latest"}, {"db", "3"}, {"db", "prod"},
		{"projects/p-12345/secrets/db", "1"}, {"projects/p-12345/secrets/db/versions/2", ""},
		{"db", "projects/my-project/secrets/db/versions/4"}, {"db/../x", ""}, {"projects//secrets/db", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, key, version string) {
		got, err := versionName(fetch.Ref{Key: key, Version: version}, "my-project")
		if err != nil {
			if !errors.Is(err, fetch.ErrInvalid) {
				t.Fatalf("versionName(%q, %q): error %v is not ErrInvalid", key, version, err)
			}
			return
		}
		n, ok := parseFull(got)
		if !ok || n.version == "" {
			t.Fatalf("versionName(%q, %q) = %q, not a version name", key, version, got)
		}
		want := "projects/my-project/secrets/" + key
		if strings.Contains(key, "/") {
			k, _ := parseFull(key)
			want = k.String()
		}
		if n.String() != want {
			t.Fatalf("versionName(%q, %q) = %q, a version of another secret than %s", key, version, got, want)
		}
	})
}
