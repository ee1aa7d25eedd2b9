// Package vault reads secrets from the KV secrets engines of HashiCorp Vault
// and OpenBao.
package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/vault/kvpath"
	storevault "github.com/keyhook/keyhook/pkg/store/vault/vaultagent"
)

// Config says how to reach one KV mount and how to authenticate; it is
// pkg/store/vault's, which builds it from a store without this SDK.
type Config = storevault.Config

// AppRoleAuth is Vault's approle auth method.
type AppRoleAuth = storevault.AppRoleAuth

// KubernetesAuth is Vault's kubernetes auth method.
type KubernetesAuth = storevault.KubernetesAuth

// Provider reads one KV mount with one token: it logs in once, however many
// secrets it then reads.
type Provider struct {
	client    *vaultapi.Client
	transport *http.Transport
	mount     string
	version   int
	// loggedIn is set when the token came from a login of this provider's
	// own, which Close revokes. A token the store was given (token auth) is
	// someone else's and outlives the provider.
	loggedIn bool

	closeOnce sync.Once
	closeErr  error
}

// LoginGrace is how long a Vault login may outlive the context it was
// started with before it is abandoned (see New).
const LoginGrace = 5 * time.Second

// loginTimeout bounds a login whose context has no deadline.
const loginTimeout = 30 * time.Second

// loginContext is ctx without its cancellation, ending LoginGrace after
// ctx's deadline (or loginTimeout from now without one).
func loginContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(loginTimeout)
	} else {
		deadline = deadline.Add(LoginGrace)
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// RevokeTimeout bounds the revocation of a provider's token in Close, which
// runs after the caller's own deadline may have passed.
const RevokeTimeout = 5 * time.Second

// Close revokes the token the provider logged in with (auth/token/revoke-self)
// and releases its idle connections. Every login creates a token with a lease
// that would otherwise live its whole TTL: at thousands of pods a day, the
// lease count that slows Vault down. Each provider has its own transport:
// without closing it, every login's keep-alive connections would stay open
// until the transport's idle timeout (make bench saw hundreds).
//
// A failed revocation is returned (the token then expires with its TTL);
// the error never holds the token. Close is idempotent.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		if p.loggedIn {
			ctx, cancel := context.WithTimeout(context.Background(), RevokeTimeout)
			defer cancel()
			if err := p.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
				p.closeErr = fmt.Errorf("revoking the Vault token at auth/token/revoke-self (it expires with its TTL): %w", classify(err))
			}
			p.client.ClearToken()
		}
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}

var _ fetch.Provider = (*Provider)(nil)

// Capabilities declares what a store of a KV engine of this version (1 or
// 2) can do: find by path and name on both, versions on KV v2 only.
func Capabilities(kvVersion int) fetch.Capabilities { return storevault.Capabilities(kvVersion) }

// New returns a Provider logged in to Vault. The environment of the process
// (VAULT_ADDR, VAULT_TOKEN, VAULT_SKIP_VERIFY, ...) is ignored on purpose:
// only the store's configuration decides where secrets come from.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.KVVersion != 1 && cfg.KVVersion != 2 {
		return nil, fmt.Errorf("KV version %d is not 1 or 2: %w", cfg.KVVersion, fetch.ErrInvalid)
	}
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", vc.Error)
	}
	vc.Address = cfg.Server
	// Callers retry with their own backoff and deadline (and say so in their
	// logs); retries hidden in the client would eat that deadline silently.
	vc.MaxRetries = 0
	transport, ok := vc.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("vault client has an unexpected transport")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CABundle) {
			return nil, fmt.Errorf("caBundle holds no PEM certificate: %w", fetch.ErrInvalid)
		}
		tlsCfg.RootCAs = pool
	}
	transport.TLSClientConfig = tlsCfg

	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client for %s: %w", cfg.Server, err)
	}
	client.ClearToken()
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}

	// One login, however many secrets the provider then reads.
	login := func(mount, who string, body map[string]any) error {
		path := "auth/" + strings.Trim(mount, "/") + "/login"
		// A login that Vault has begun creates a token whether or not the
		// caller is still waiting: cancelled mid-request (a shutdown, a
		// probe's deadline), the token would be created, never seen, and
		// live its whole TTL. So the request is not cancelled with ctx; it
		// is bounded by ctx's deadline plus LoginGrace, and a token that
		// arrives after ctx ended is revoked at once.
		lctx, cancel := loginContext(ctx)
		defer cancel()
		secret, err := client.Logical().WriteWithContext(lctx, path, body)
		if err != nil {
			transport.CloseIdleConnections()
			if ctx.Err() != nil {
				return fmt.Errorf("vault login at %s as %s: %w", path, who, context.Cause(ctx))
			}
			return fmt.Errorf("vault login at %s as %s: %w", path, who, classify(err))
		}
		if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
			transport.CloseIdleConnections()
			return fmt.Errorf("vault login at %s as %s returned no token", path, who)
		}
		client.SetToken(secret.Auth.ClientToken)
		if ctx.Err() != nil {
			late := &Provider{client: client, transport: transport, loggedIn: true}
			_ = late.Close()
			return fmt.Errorf("vault login at %s as %s: %w (the token it returned late is revoked)", path, who, context.Cause(ctx))
		}
		return nil
	}
	loggedIn := true
	switch {
	case cfg.Kubernetes != nil:
		k := cfg.Kubernetes
		if err := login(k.MountPath, fmt.Sprintf("role %q", k.Role), map[string]any{"role": k.Role, "jwt": k.JWT}); err != nil {
			return nil, err
		}
	case cfg.JWT != nil:
		k := cfg.JWT
		if err := login(k.MountPath, fmt.Sprintf("role %q", k.Role), map[string]any{"role": k.Role, "jwt": k.JWT}); err != nil {
			return nil, err
		}
	case cfg.AppRole != nil:
		a := cfg.AppRole
		if err := login(a.MountPath, fmt.Sprintf("approle %q", a.RoleID), map[string]any{"role_id": a.RoleID, "secret_id": a.SecretID}); err != nil {
			return nil, err
		}
	case cfg.Token != "":
		client.SetToken(cfg.Token)
		loggedIn = false
	default:
		return nil, fmt.Errorf("no vault auth configured: %w", fetch.ErrInvalid)
	}
	return &Provider{client: client, transport: transport, mount: strings.Trim(cfg.Mount, "/"), version: cfg.KVVersion, loggedIn: loggedIn}, nil
}

// GetSecret returns the fields of the KV secret at ref.Key as a JSON object.
// Keys are relative to the mount; one written as the KV v2 API path
// ("secret/data/app/db") is refused with what to write instead (kvpath.Check).
func (p *Provider) GetSecret(ctx context.Context, ref fetch.Ref) ([]byte, error) {
	var (
		s   *vaultapi.KVSecret
		err error
	)
	key := kvpath.Key(ref.Key)
	if err := kvpath.Check(p.mount, p.version, key); err != nil {
		return nil, invalid(err)
	}
	switch {
	case p.version == 1 && ref.Version != "":
		return nil, fmt.Errorf("version %q requested but mount %q is KV v1, which has no versions: %w", ref.Version, p.mount, fetch.ErrInvalid)
	case p.version == 1:
		s, err = p.client.KVv1(p.mount).Get(ctx, key)
	case ref.Version != "":
		v, convErr := strconv.Atoi(ref.Version)
		if convErr != nil || v < 1 {
			return nil, fmt.Errorf("version %q is not a positive number: %w", ref.Version, fetch.ErrInvalid)
		}
		s, err = p.client.KVv2(p.mount).GetVersion(ctx, key, v)
	default:
		s, err = p.client.KVv2(p.mount).Get(ctx, key)
	}
	if err != nil {
		return nil, p.readError("reading", key, err)
	}
	if s == nil || s.Data == nil {
		return nil, p.readError("reading", key, fetch.ErrNotFound)
	}
	b, err := json.Marshal(s.Data)
	if err != nil {
		return nil, fmt.Errorf("encoding %s/%s: %w", p.mount, key, fetch.ErrInvalid)
	}
	return b, nil
}

// CurrentVersion returns the current version of a KV v2 secret from its
// metadata, without reading its value.
func (p *Provider) CurrentVersion(ctx context.Context, key string) (string, error) {
	if !Capabilities(p.version).VersionProbe {
		return "", fmt.Errorf("mount %q is KV v1, which has no versions: %w", p.mount, fetch.ErrNotSupported)
	}
	key = kvpath.Key(key)
	if err := kvpath.Check(p.mount, p.version, key); err != nil {
		return "", invalid(err)
	}
	m, err := p.client.KVv2(p.mount).GetMetadata(ctx, key)
	if err != nil {
		return "", p.readError("reading metadata of", key, err)
	}
	return strconv.Itoa(m.CurrentVersion), nil
}

// invalidError classes err as fetch.ErrInvalid without saying so in its
// message, which says what is wrong already.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{e.err, fetch.ErrInvalid} }

func invalid(err error) error { return invalidError{err} }

// readError is a failed read of key, in one line: what was read, Vault's
// reason and, when the key starts with the mount and Vault found nothing or
// refused, what to write instead.
func (p *Provider) readError(what, key string, err error) error {
	err = classify(err)
	if errors.Is(err, fetch.ErrNotFound) || errors.Is(err, fetch.ErrAccessDenied) {
		if hint := kvpath.Hint(p.mount, key); hint != "" {
			return fmt.Errorf("%s %s/%s: %w; %s", what, p.mount, key, err, hint)
		}
	}
	return fmt.Errorf("%s %s/%s: %w", what, p.mount, key, err)
}

// ResponseError is Vault's answer to a failed call, in one line: its HTTP
// status and its reasons, each flattened (Vault sends go-multierror text,
// "1 error occurred:\n\t* permission denied\n\n"). It never holds a response
// body Vault did not write as its JSON errors.
type ResponseError struct {
	// StatusCode is the HTTP status of Vault's answer.
	StatusCode int
	// Reasons are Vault's error messages, one line each.
	Reasons []string
	// Class is fetch.ErrNotFound, ErrAccessDenied, ErrInvalid, ErrThrottled,
	// or nil when the failure is transient.
	Class error
	// Err is the Vault client's error.
	Err error
}

func (e *ResponseError) Error() string {
	msg := "Vault answered " + strconv.Itoa(e.StatusCode)
	switch {
	case len(e.Reasons) > 0:
		return msg + ": " + strings.Join(e.Reasons, "; ")
	case e.Class != nil:
		return msg + " (" + e.Class.Error() + ")"
	}
	return msg
}

// Unwrap makes the class and the client's error reachable with errors.Is
// and errors.As.
func (e *ResponseError) Unwrap() []error {
	var out []error
	for _, err := range []error{e.Class, e.Err} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// maxLists bounds the LIST calls of one Find: a find over a deep tree
// fails with a message instead of walking all of it.
const maxLists = 100

// Find returns every secret of the mount whose path starts with q.Path and
// matches q.Name, keyed by its path (as q.Path spells its start), each as
// the JSON object of its current fields. It LISTs the folders under q.Path,
// recursively (KV v2: <mount>/metadata/<folder>, KV v1: <mount>/<folder>),
// then reads each match: the token needs "list" there, and "read" on each
// secret. Secrets deleted in KV v2 (their metadata still listed) are left
// out. At most fetch.MaxFound secrets and maxLists folders.
func (p *Provider) Find(ctx context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	if err := Capabilities(p.version).Find.Check(q); err != nil {
		return nil, err
	}
	prefix := strings.TrimLeft(q.Path, "/")
	match, err := fetch.FindQuery{Path: prefix, Name: q.Name}.Matcher()
	if err != nil {
		return nil, err
	}
	var names []string
	queue := []string{prefix[:strings.LastIndex(prefix, "/")+1]}
	for lists := 0; len(queue) > 0; lists++ {
		if lists == maxLists {
			return nil, fmt.Errorf("find under %s/%s: more than %d folders to list; narrow the path: %w", p.mount, prefix, maxLists, fetch.ErrInvalid)
		}
		dir := queue[0]
		queue = queue[1:]
		keys, err := p.list(ctx, dir)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			full := dir + k
			if strings.HasSuffix(k, "/") {
				// A folder that can hold names with the prefix.
				if strings.HasPrefix(full, prefix) || strings.HasPrefix(prefix, full) {
					queue = append(queue, full)
				}
				continue
			}
			if !match(full) {
				continue
			}
			if names = append(names, full); len(names) > fetch.MaxFound {
				return nil, fmt.Errorf("find under %s/%s: more than %d secrets; narrow the path or name: %w", p.mount, prefix, fetch.MaxFound, fetch.ErrInvalid)
			}
		}
	}
	out := make(map[string][]byte, len(names))
	for _, name := range names {
		v, err := p.GetSecret(ctx, fetch.Ref{Key: name})
		if errors.Is(err, fetch.ErrNotFound) {
			continue // deleted between the LIST and the read, or soft-deleted
		}
		if err != nil {
			return nil, err
		}
		out[q.Path+strings.TrimPrefix(name, prefix)] = v
	}
	return out, nil
}

// list returns the entries of one folder of the mount ("" for its root),
// folders ending in "/"; none when the folder does not exist.
func (p *Provider) list(ctx context.Context, dir string) ([]string, error) {
	path := p.mount + "/" + dir
	if p.version == 2 {
		path = p.mount + "/metadata/" + dir
	}
	s, err := p.client.Logical().ListWithContext(ctx, path)
	if err != nil {
		err = classify(err)
		if errors.Is(err, fetch.ErrNotFound) {
			return nil, nil
		}
		if errors.Is(err, fetch.ErrAccessDenied) {
			return nil, fmt.Errorf("listing %s (dataFrom.find needs the \"list\" capability there): %w", path, err)
		}
		return nil, fmt.Errorf("listing %s: %w", path, err)
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	raw, _ := s.Data["keys"].([]any)
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		if str, ok := k.(string); ok && str != "" {
			keys = append(keys, str)
		}
	}
	return keys, nil
}

// classify maps Vault errors onto fetch's error classes: a *ResponseError
// for an answer of Vault, fetch.ErrNotFound for a secret that is not there.
func classify(err error) error {
	if errors.Is(err, fetch.ErrNotFound) || errors.Is(err, vaultapi.ErrSecretNotFound) {
		return fetch.ErrNotFound
	}
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	out := &ResponseError{StatusCode: re.StatusCode, Err: err}
	if !re.RawError {
		out.Reasons = reasons(re.Errors)
	}
	switch {
	case re.StatusCode == http.StatusNotFound:
		out.Class = fetch.ErrNotFound
	case re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized:
		out.Class = fetch.ErrAccessDenied
	case re.StatusCode == http.StatusBadRequest:
		out.Class = fetch.ErrInvalid
	case re.StatusCode == http.StatusTooManyRequests:
		out.Class = fetch.ErrThrottled
	}
	return out
}

// multiErrorHeader starts go-multierror's text: "1 error occurred:".
var multiErrorHeader = regexp.MustCompile(`^\d+ errors? occurred:\s*`)

// maxReason bounds one reason: Vault's reasons are short, and a long one is
// more likely to carry something that is not Vault's own words.
const maxReason = 200

// reasons flattens Vault's error strings into one-line reasons:
// go-multierror's list becomes its items, any other line break a space, and
// a reason Vault repeats is said once.
func reasons(errs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range errs {
		e = multiErrorHeader.ReplaceAllString(strings.TrimSpace(e), "")
		for _, item := range strings.Split(e, "\n\t* ") {
			item = strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(item), "* ")), " ")
			if r := []rune(item); len(r) > maxReason {
				item = string(r[:maxReason]) + "…"
			}
			if item != "" && !seen[item] {
				seen[item] = true
				out = append(out, item)
			}
		}
	}
	return out
}
