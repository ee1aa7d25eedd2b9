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
type Provider interface {
	// GetSecret returns the whole remote secret. Structured secrets (a Vault
	// KV secret, a JSON string) are returned as JSON. Errors wrap ErrNotFound,
	// ErrAccessDenied or ErrInvalid where they apply, and never contain a value.
	GetSecret(ctx context.Context, ref Ref) ([]byte, error)
}

// VersionProber is implemented by providers that can tell the current
// version of a remote secret without reading its value.
type VersionProber interface {
	// CurrentVersion returns an opaque version that changes whenever the
	// secret's value does.
	CurrentVersion(ctx context.Context, key string) (string, error)
}

// Finder is implemented by providers that can read many secrets by name in
// few calls (dataFrom.find).
type Finder interface {
	// Find returns the value of every secret whose name starts with path
	// (Secrets Manager) or lies under it (Parameter Store, recursively),
	// keyed by full name.
	Find(ctx context.Context, path string) (map[string][]byte, error)
}

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
