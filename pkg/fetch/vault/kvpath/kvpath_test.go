package kvpath_test

import (
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch/vault/kvpath"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, mount string
		kv          int
		key, want   string // want "" means accepted
	}{
		{"a key relative to the mount", "secret", 2, "app/db", ""},
		{"the KV v2 data path", "secret", 2, "secret/data/app/db",
			`written as the KV v2 API path of "app/db": keys are relative to the store's mount "secret", without "data/"; write "app/db"`},
		{"the KV v2 metadata path", "secret", 2, "secret/metadata/app/db",
			`written as the KV v2 API path of "app/db": keys are relative to the store's mount "secret", without "metadata/"; write "app/db"`},
		{"slashes around key and mount", "/secret/", 2, "/secret/data/app/",
			`written as the KV v2 API path of "app": keys are relative to the store's mount "secret", without "data/"; write "app"`},
		{"a nested mount", "teams/shop/kv", 2, "teams/shop/kv/data/db",
			`written as the KV v2 API path of "db": keys are relative to the store's mount "teams/shop/kv", without "data/"; write "db"`},
		{"another mount's API path is a key like any other", "secret", 2, "kv/data/app", ""},
		{"a path under data of the mount with nothing after", "secret", 2, "secret/data/", ""},
		{"a key that only starts like the mount", "secret", 2, "secrets/data/app", ""},
		{"a key named data under the mount", "secret", 2, "data/app", ""},
		{"the mount with the key as the CLI spells it", "secret", 2, "secret/app/db", ""},
		{"KV v1 has no data/ in its API paths", "kv", 1, "kv/data/app", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := kvpath.Check(tc.mount, tc.kv, tc.key)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check(%q, %d, %q) = %v, want nil", tc.mount, tc.kv, tc.key, err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("Check(%q, %d, %q) = %v, want %q", tc.mount, tc.kv, tc.key, err, tc.want)
			}
		})
	}
}

func TestHint(t *testing.T) {
	for _, tc := range []struct{ mount, key, want string }{
		{"secret", "secret/app/db", `keys are relative to the store's mount "secret": if you meant the secret at secret/app/db, write "app/db"`},
		{"secret/", "/secret/app", `keys are relative to the store's mount "secret": if you meant the secret at secret/app, write "app"`},
		{"secret", "app/db", ""},
		{"secret", "secrets/app", ""},
		{"secret", "secret", ""},
		{"secret", "secret/", ""},
		{"", "app/db", ""},
	} {
		if got := kvpath.Hint(tc.mount, tc.key); got != tc.want {
			t.Errorf("Hint(%q, %q) = %q, want %q", tc.mount, tc.key, got, tc.want)
		}
	}
}
