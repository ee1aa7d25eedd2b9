// Package fetch turns what an ExternalSecret asks for into secret data. It
// holds the one Provider interface every secret manager implements and the one
// resolver that the init-agent and the reconciler share: property extraction,
// dataFrom expansion and de-duplication of remote reads live here, once.
//
// Providers live in subpackages (pkg/fetch/vault, ...) that import this
// package, never the other way round.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Ref names one remote secret.
type Ref struct {
	// Key is the provider's name or path of the secret.
	Key string
	// Version is provider-specific; empty means the current version.
	Version string
}

// Provider reads secrets from one secret manager, already authenticated.
//
// Every capability is a method of the interface. A provider without one
// answers with an error wrapping ErrNotSupported, and declares as much up
// front in its Capabilities. Capabilities are never discovered by type
// assertion: a type that wraps a provider (the sync's read cache) must then
// forward each method or fail to compile, where an optional interface would
// be dropped without a word.
type Provider interface {
	// GetSecret returns the whole remote secret. Structured secrets (a Vault
	// KV secret, a JSON string) are returned as JSON. Errors wrap ErrNotFound,
	// ErrAccessDenied or ErrInvalid where they apply, and never contain a value.
	GetSecret(ctx context.Context, ref Ref) ([]byte, error)

	// Find returns the current value of every secret that q selects,
	// keyed by full name (dataFrom.find), in few calls. A provider without
	// Capabilities.Find (or without the part of it q uses) returns an
	// error wrapping ErrNotSupported.
	Find(ctx context.Context, q FindQuery) (map[string][]byte, error)

	// CurrentVersion returns an opaque version that changes whenever the
	// secret's value does, without reading the value (the version probe of
	// rollouts). Without Capabilities.VersionProbe it returns an error
	// wrapping ErrNotSupported.
	CurrentVersion(ctx context.Context, key string) (string, error)

	// Close releases what the provider holds: it revokes a Vault token it
	// logged in for and closes connections. It is safe to call twice.
	Close() error
}

// FindQuery selects secrets by name (dataFrom.find).
type FindQuery struct {
	// Path is a name prefix: for providers with hierarchical names (Vault,
	// Parameter Store) everything under it, recursively.
	Path string
	// Name, when set, is a regular expression (RE2) that the full name
	// must match, anywhere in it unless anchored.
	Name string
	// Tags, when set, must all be labels (Google) or tags of the secret,
	// with these values.
	Tags map[string]string
}

// Capabilities is what a provider can do beyond GetSecret, declared by its
// package for a store's configuration before any login: admission refuses
// an ExternalSecret its store cannot serve, and the provider's methods
// answer ErrNotSupported exactly where these say no.
type Capabilities struct {
	// Find is what dataFrom.find may use.
	Find FindCapabilities
	// VersionProbe reports whether CurrentVersion tells a secret's version
	// without reading its value (Vault KV v2 metadata, Secrets Manager
	// DescribeSecret, Secret Manager GetSecretVersion, Parameter Store
	// GetParameterHistory).
	VersionProbe bool
}

// FindCapabilities says which parts of a FindQuery a provider serves.
type FindCapabilities struct {
	// Path: secrets by name prefix. A provider that finds at all does this.
	Path bool
	// Name: a regular expression over names.
	Name bool
	// Tags: labels or tags with given values.
	Tags bool
}

// Check returns an error wrapping ErrNotSupported when c cannot serve q.
func (c FindCapabilities) Check(q FindQuery) error {
	switch {
	case !c.Path:
		return fmt.Errorf("dataFrom.find: %w", ErrNotSupported)
	case q.Name != "" && !c.Name:
		return fmt.Errorf("dataFrom.find.name: %w", ErrNotSupported)
	case len(q.Tags) > 0 && !c.Tags:
		return fmt.Errorf("dataFrom.find.tags: %w", ErrNotSupported)
	}
	return nil
}

// MaxFound bounds how many secrets one dataFrom.find may return, so that a
// short prefix does not read a whole secret manager into one Secret (which
// the API server caps at 1 MiB anyway).
const MaxFound = 500

// Matcher returns a function telling whether a full name is selected by
// q's path and name; an invalid regular expression wraps ErrInvalid.
func (q FindQuery) Matcher() (func(name string) bool, error) {
	var re *regexp.Regexp
	if q.Name != "" {
		var err error
		if re, err = regexp.Compile(q.Name); err != nil {
			return nil, fmt.Errorf("dataFrom.find.name %q is not a regular expression (%v): %w", q.Name, err, ErrInvalid)
		}
	}
	return func(name string) bool {
		return strings.HasPrefix(name, q.Path) && (re == nil || re.MatchString(name))
	}, nil
}

// ErrNotSupported means the provider does not have the capability asked
// for. It wraps errors.ErrUnsupported.
var ErrNotSupported = fmt.Errorf("not supported by this provider: %w", errors.ErrUnsupported)

// Classes of provider errors. Errors that wrap none of them are transient:
// worth retrying.
var (
	// ErrNotFound means the remote secret or version does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAccessDenied means the identity in use may not read the secret.
	ErrAccessDenied = errors.New("access denied")
	// ErrInvalid means the request can never succeed as written: a property
	// that does not exist, a value that is not JSON, a bad version.
	ErrInvalid = errors.New("invalid")
	// ErrThrottled means the provider asked us to slow down. It is
	// transient: callers retry with backoff and jitter, and count it.
	ErrThrottled = errors.New("throttled")
)

// Permanent reports whether err will not go away by retrying.
func Permanent(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrInvalid)
}

// KeyError attributes an error to one key of the data being resolved.
type KeyError struct {
	// Key is the secretKey (file name) or, for dataFrom, the remote key.
	Key string
	// Remote is the remote key read for it.
	Remote string
	Err    error
}

func (e *KeyError) Error() string {
	if e.Key == e.Remote {
		return fmt.Sprintf("remote key %q: %v", e.Remote, e.Err)
	}
	return fmt.Sprintf("key %q (remote key %q): %v", e.Key, e.Remote, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

// CallError is a failed provider call as providers report it: a message
// written for people (never a value), the class it falls in, and the SDK's
// own error, both reachable with errors.Is and errors.As.
type CallError struct {
	Msg   string
	Class error // ErrNotFound, ErrAccessDenied, ErrInvalid, ErrThrottled; nil when transient
	Err   error // the SDK's error, if any
}

func (e *CallError) Error() string {
	if e.Class != nil {
		return e.Msg + ": " + e.Class.Error()
	}
	return e.Msg
}

func (e *CallError) Unwrap() []error {
	var out []error
	for _, err := range []error{e.Class, e.Err} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// OneLine returns msg with every run of white space that holds a line
// break or a tab turned into one space, and the ends trimmed. What keyhook
// shows a user — the agent's failure, a status condition, an event — is one
// line, whatever an SDK or a server wrote into an error.
func OneLine(msg string) string {
	if !strings.ContainsAny(msg, "\n\r\t\v\f\u0085\u2028\u2029") {
		return strings.TrimSpace(msg)
	}
	var b strings.Builder
	b.Grow(len(msg))
	for _, run := range strings.FieldsFunc(msg, func(r rune) bool { return unicode.IsSpace(r) && r != ' ' }) {
		if run = strings.TrimSpace(run); run == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(run)
	}
	return b.String()
}
