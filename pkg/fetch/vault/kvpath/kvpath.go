// Package kvpath knows how keys of a Vault / OpenBao KV store are spelled:
// relative to the store's mount, never as the HTTP API path. It imports no
// Vault SDK, so that the admission webhook can check keys with the same
// rules the provider reads them by.
package kvpath

import (
	"fmt"
	"strings"
)

// Key trims the slashes a key may carry around it ("/app/db/" reads app/db).
func Key(key string) string { return strings.Trim(key, "/") }

// Check returns an error, saying exactly what to write instead (callers
// name the key), when key is
// written as a KV v2 API path of the store's own mount: "secret/data/app/db"
// or "secret/metadata/app/db" for mount "secret". Vault's HTTP API and
// tools like `vault read` spell paths so, but a store's keys are relative to
// its mount, and read as written such a key would be the path
// secret/data/secret/data/app/db (a 403 or a 404 that hides the mistake).
//
// The key is refused rather than rewritten: a rewrite would read another
// path than the one the namespace's permittedKeys and the admission checks
// saw. It returns nil for every other key, and for KV v1, whose API path is
// the mount and the key with nothing between.
func Check(mount string, kvVersion int, key string) error {
	if kvVersion != 2 {
		return nil
	}
	mount, key = strings.Trim(mount, "/"), Key(key)
	for _, infix := range []string{"data", "metadata"} {
		rest, ok := strings.CutPrefix(key, mount+"/"+infix+"/")
		if !ok || Key(rest) == "" {
			continue
		}
		return fmt.Errorf("written as the KV v2 API path of %q: keys are relative to the store's mount %q, without %q; write %q",
			Key(rest), mount, infix+"/", Key(rest))
	}
	return nil
}

// Hint says what to write instead of a key that starts with the store's
// mount ("secret/app/db" for mount "secret", as `vault kv get` spells it),
// for the message of a read that failed; "" for any other key. Such a key is
// read as written, since the mount may hold a path of that name, and only a
// failure suggests the mistake.
func Hint(mount, key string) string {
	mount, key = strings.Trim(mount, "/"), Key(key)
	rest, ok := strings.CutPrefix(key, mount+"/")
	if mount == "" || !ok || Key(rest) == "" {
		return ""
	}
	return fmt.Sprintf("keys are relative to the store's mount %q: if you meant the secret at %s, write %q", mount, key, Key(rest))
}
