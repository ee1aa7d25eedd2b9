package gcpsm

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/keyhook/keyhook/pkg/fetch"
)

// Shapes of the parts of resource names, as Secret Manager documents them.
// Checking them here turns a typo into an ErrInvalid that names the field,
// and keeps a key from smuggling extra path segments ("s/versions/1") into
// the request.
var (
	// A project ID (6-30 characters; legacy ones may have a "domain:"
	// prefix) or a project number.
	projectRE = regexp.MustCompile(`^(?:(?:[a-z0-9-]+\.)+[a-z]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]{1,19}$`)
	secretRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	// "latest", a version number (no leading zero) or a version alias.
	versionRE = regexp.MustCompile(`^(?:latest|[1-9][0-9]{0,18}|[A-Za-z_-][A-Za-z0-9_-]{0,62})$`)
	fullRE    = regexp.MustCompile(`^projects/([^/]+)/secrets/([^/]+)(?:/versions/([^/]+))?$`)
)

// latest names a secret's most recently created version.
const latest = "latest"

// secretName is a parsed key: projects/<project>/secrets/<secret>, maybe
// pinned to a version by the key itself.
type secretName struct {
	project, secret, version string
}

func (n secretName) String() string {
	return "projects/" + n.project + "/secrets/" + n.secret
}

// parseKey reads a key: a secret ID, read from project, or a full name
// projects/P/secrets/S, optionally followed by /versions/V.
func parseKey(key, project string) (secretName, error) {
	if !strings.Contains(key, "/") {
		if !secretRE.MatchString(key) {
			return secretName{}, fmt.Errorf("gcpsm: key %q is not a secret ID (1-255 letters, digits, '_' and '-') nor a name projects/<project>/secrets/<secret>: %w", key, fetch.ErrInvalid)
		}
		return secretName{project: project, secret: key}, nil
	}
	n, ok := parseFull(key)
	if !ok {
		return secretName{}, fmt.Errorf("gcpsm: key %q is not a secret ID nor a name projects/<project>/secrets/<secret>[/versions/<version>] (regional secrets, projects/<p>/locations/<l>/secrets/<s>, are not supported): %w", key, fetch.ErrInvalid)
	}
	return n, nil
}

func parseFull(s string) (secretName, bool) {
	m := fullRE.FindStringSubmatch(s)
	if m == nil || !projectRE.MatchString(m[1]) || !secretRE.MatchString(m[2]) || (m[3] != "" && !versionRE.MatchString(m[3])) {
		return secretName{}, false
	}
	return secretName{project: m[1], secret: m[2], version: m[3]}, true
}

// versionName is the full name of the version ref selects: ref.Version
// ("", "latest", a number, an alias, or the full name of a version of the
// same secret), else the version the key pins, else latest.
func versionName(ref fetch.Ref, project string) (string, error) {
	n, err := parseKey(ref.Key, project)
	if err != nil {
		return "", err
	}
	v := ref.Version
	if strings.Contains(v, "/") {
		full, ok := parseFull(v)
		if !ok || full.version == "" {
			return "", fmt.Errorf("gcpsm: version %q of key %q is not a version number, alias, \"latest\" nor a name projects/<project>/secrets/<secret>/versions/<version>: %w", v, ref.Key, fetch.ErrInvalid)
		}
		// The key alone says which secret is read (policies check keys);
		// a version may not name another one.
		if full.String() != n.String() {
			return "", fmt.Errorf("gcpsm: version %q names another secret than key %q (%s): %w", v, ref.Key, n, fetch.ErrInvalid)
		}
		v = full.version
	}
	switch {
	case v == "":
		v = n.version
	case !versionRE.MatchString(v):
		return "", fmt.Errorf("gcpsm: version %q of key %q is not a version number (1, 2, ...), an alias nor \"latest\": %w", ref.Version, ref.Key, fetch.ErrInvalid)
	case n.version != "" && n.version != v:
		return "", fmt.Errorf("gcpsm: key %q pins version %q but version %q is asked for: %w", ref.Key, n.version, ref.Version, fetch.ErrInvalid)
	}
	if v == "" {
		v = latest
	}
	return n.String() + "/versions/" + v, nil
}
