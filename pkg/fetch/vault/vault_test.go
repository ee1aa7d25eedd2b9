package vault_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/fetchtest"
	"github.com/keyhook/keyhook/pkg/fetch/vault"
)

const (
	value     = "s3cr3t-value-never-logged"
	nsHeader  = "team-a"
	goodToken = "hvs.issued"
)

// fakeVault answers the few Vault API calls the provider makes, as Vault
// does, and records what it was asked.
type fakeVault struct {
	srv *httptest.Server

	mu         sync.Mutex
	logins     []string // login paths
	loginBody  []map[string]any
	namespaces []string          // X-Vault-Namespace of every request
	reads      []string          // paths read with a token
	revoked    int               // tokens revoked with revoke-self
	revokeFail int               // status revoke-self answers with; 0 means success
	open       int               // client connections not closed
	kv         map[string]string // find tests: secret path → password, for LIST and reads
	lists      []string          // folders listed
	// loginStarted, when set, is closed as a login arrives; the login is
	// then answered once loginGate is closed.
	loginStarted chan struct{}
	loginGate    chan struct{}
}

func (f *fakeVault) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

func newFakeVault(t *testing.T) *fakeVault {
	t.Helper()
	f := &fakeVault{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch state {
		case http.StateNew:
			f.open++
		case http.StateClosed, http.StateHijacked:
			f.open--
		}
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVault) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.namespaces = append(f.namespaces, r.Header.Get("X-Vault-Namespace"))
	f.mu.Unlock()
	reply := func(code int, body any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login") {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.logins = append(f.logins, path)
		f.loginBody = append(f.loginBody, body)
		started, gate := f.loginStarted, f.loginGate
		f.mu.Unlock()
		if gate != nil {
			close(started)
			<-gate
		}
		if body["jwt"] == "rejected" || body["secret_id"] == "rejected" {
			reply(http.StatusBadRequest, map[string]any{"errors": []string{"permission denied"}})
			return
		}
		reply(http.StatusOK, map[string]any{"auth": map[string]any{"client_token": goodToken}})
		return
	}
	if r.Header.Get("X-Vault-Token") != goodToken {
		reply(http.StatusForbidden, map[string]any{"errors": []string{"permission denied"}})
		return
	}
	if path == "auth/token/revoke-self" {
		f.mu.Lock()
		fail := f.revokeFail
		if fail == 0 {
			f.revoked++
		}
		f.mu.Unlock()
		if fail != 0 {
			reply(fail, map[string]any{"errors": []string{"permission denied"}})
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	f.mu.Lock()
	f.reads = append(f.reads, r.URL.RequestURI())
	kv := f.kv
	f.mu.Unlock()
	if kv != nil {
		f.serveKV(w, r, path, kv, reply)
		return
	}
	switch path {
	case "secret/data/app":
		v := r.URL.Query().Get("version")
		if v == "" {
			v = "3"
		}
		reply(http.StatusOK, map[string]any{"data": map[string]any{
			"data":     map[string]any{"password": value, "version": v},
			"metadata": map[string]any{"version": 3},
		}})
	case "secret/metadata/app":
		reply(http.StatusOK, map[string]any{"data": map[string]any{"current_version": 3, "versions": map[string]any{}}})
	case "kv1/legacy":
		reply(http.StatusOK, map[string]any{"data": map[string]any{"token": value}})
	case "secret/data/denied":
		reply(http.StatusForbidden, map[string]any{"errors": []string{"1 error occurred:\n\t* permission denied\n\n"}})
	case "secret/data/two-reasons":
		reply(http.StatusBadRequest, map[string]any{"errors": []string{"2 errors occurred:\n\t* first reason\n\t* second\nreason\n\n", "first reason"}})
	case "secret/data/throttled":
		reply(http.StatusTooManyRequests, map[string]any{"errors": []string{"request path \"secret/data/throttled\": rate limit quota exceeded"}})
	case "secret/data/broken":
		// A proxy in front of Vault failing with a body that echoes data.
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "upstream said: "+value)
	default:
		reply(http.StatusNotFound, map[string]any{"errors": []string{}})
	}
}

func (f *fakeVault) config(mount string, kv int) vault.Config {
	return vault.Config{Server: f.srv.URL, Mount: mount, KVVersion: kv, Namespace: nsHeader, CABundle: f.caPEM()}
}

func TestLoginOncePerProvider(t *testing.T) {
	for name, tc := range map[string]struct {
		auth      func(*vault.Config)
		loginPath string
		fields    []string
	}{
		"kubernetes": {func(c *vault.Config) {
			c.Kubernetes = &vault.KubernetesAuth{MountPath: "kubernetes", Role: "app", JWT: "pod-token"}
		}, "auth/kubernetes/login", []string{"role", "jwt"}},
		"jwt": {func(c *vault.Config) {
			c.JWT = &vault.KubernetesAuth{MountPath: "oidc-k8s", Role: "app", JWT: "pod-token"}
		}, "auth/oidc-k8s/login", []string{"role", "jwt"}},
		"approle": {func(c *vault.Config) {
			c.AppRole = &vault.AppRoleAuth{MountPath: "approle", RoleID: "rid", SecretID: "sid"}
		}, "auth/approle/login", []string{"role_id", "secret_id"}},
		"token": {func(c *vault.Config) { c.Token = goodToken }, "", nil},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeVault(t)
			cfg := f.config("secret", 2)
			tc.auth(&cfg)
			p, err := vault.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app"})
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(got), value) {
					t.Fatalf("GetSecret = %s", got)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			switch {
			case tc.loginPath == "" && len(f.logins) != 0:
				t.Errorf("token auth logged in: %v", f.logins)
			case tc.loginPath != "" && (len(f.logins) != 1 || f.logins[0] != tc.loginPath):
				t.Errorf("logins = %v, want one at %s", f.logins, tc.loginPath)
			}
			for _, k := range tc.fields {
				if f.loginBody[0][k] == nil {
					t.Errorf("login body has no %q: %v", k, f.loginBody[0])
				}
			}
			for i, ns := range f.namespaces {
				if ns != nsHeader {
					t.Errorf("request %d carried namespace %q, want %q", i, ns, nsHeader)
				}
			}
			f.mu.Unlock()
			// Close leaves no connection open (the server sees it close
			// shortly after).
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for f.openConns() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := f.openConns(); n != 0 {
				t.Errorf("%d connections still open after Close", n)
			}
			f.mu.Lock()
		})
	}
}

func TestVersionsAndKV1(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "/app/", Version: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"version":"2"`) {
		t.Errorf("version 2 not requested: %s", got)
	}
	for _, bad := range []string{"latest", "0", "-1", "AWSCURRENT"} {
		if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app", Version: bad}); !errors.Is(err, fetch.ErrInvalid) {
			t.Errorf("version %q: err = %v, want ErrInvalid", bad, err)
		}
	}
	before := len(f.reads)
	v, err := p.CurrentVersion(context.Background(), "app")
	if err != nil || v != "3" {
		t.Fatalf("CurrentVersion = %q, %v; want 3", v, err)
	}
	if r := f.reads[before:]; len(r) != 1 || !strings.HasPrefix(r[0], "/v1/secret/metadata/") {
		t.Errorf("CurrentVersion read %v, want the metadata only", r)
	}

	cfg = f.config("kv1", 1)
	cfg.Token = goodToken
	p1, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p1.GetSecret(context.Background(), fetch.Ref{Key: "legacy"}); err != nil || !strings.Contains(string(got), value) {
		t.Errorf("KV v1 GetSecret = %s, %v", got, err)
	}
	if _, err := p1.GetSecret(context.Background(), fetch.Ref{Key: "legacy", Version: "1"}); !errors.Is(err, fetch.ErrInvalid) {
		t.Errorf("KV v1 with a version: err = %v, want ErrInvalid", err)
	}
	if _, err := p1.CurrentVersion(context.Background(), "legacy"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("KV v1 CurrentVersion: err = %v, want ErrUnsupported", err)
	}
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]error{"missing": fetch.ErrNotFound, "denied": fetch.ErrAccessDenied, "throttled": fetch.ErrThrottled} {
		_, err := p.GetSecret(context.Background(), fetch.Ref{Key: key})
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", key, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "secret/"+key) {
			t.Errorf("%s: error %q does not name the path", key, err)
		}
	}
	_, err = p.GetSecret(context.Background(), fetch.Ref{Key: "broken"})
	switch {
	case err == nil:
		t.Fatal("a 502 was read as a secret")
	case fetch.Permanent(err):
		t.Errorf("a 502 is permanent: %v", err)
	case strings.Contains(err.Error(), value):
		t.Errorf("the error repeats the response body: %q", err)
	}
	if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "throttled"}); fetch.Permanent(err) {
		t.Error("throttling is permanent")
	}
}

func TestLoginFailures(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	cfg := f.config("secret", 2)
	cfg.AppRole = &vault.AppRoleAuth{MountPath: "approle", RoleID: "rid", SecretID: "rejected"}
	_, err := vault.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "auth/approle/login") || !strings.Contains(err.Error(), `"rid"`) {
		t.Errorf("err = %v, want it to name the login path and the role", err)
	}
	if err != nil && strings.Contains(err.Error(), "rejected") {
		t.Errorf("the error repeats the secret id: %v", err)
	}

	cfg = f.config("secret", 2)
	if _, err := vault.New(context.Background(), cfg); err == nil {
		t.Error("a config without auth was accepted")
	}
	cfg.Token, cfg.KVVersion = goodToken, 3
	if _, err := vault.New(context.Background(), cfg); !errors.Is(err, fetch.ErrInvalid) {
		t.Errorf("KV version 3: err = %v, want ErrInvalid", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	cfg.CABundle = nil
	p, err := vault.New(context.Background(), cfg)
	if err == nil {
		_, err = p.GetSecret(context.Background(), fetch.Ref{Key: "app"})
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("an untrusted server: err = %v, want a certificate error", err)
	}
	cfg.CABundle = []byte("not PEM")
	if _, err := vault.New(context.Background(), cfg); !errors.Is(err, fetch.ErrInvalid) {
		t.Errorf("a bad caBundle: err = %v, want ErrInvalid", err)
	}
}

// The process environment must not decide where secrets come from or as whom.
func TestEnvironmentIgnored(t *testing.T) {
	f := newFakeVault(t)
	t.Setenv("VAULT_TOKEN", goodToken)
	t.Setenv("VAULT_NAMESPACE", "someone-else")
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	cfg := f.config("secret", 2)
	cfg.Namespace = ""
	cfg.Kubernetes = &vault.KubernetesAuth{MountPath: "kubernetes", Role: "app", JWT: "pod-token"}
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app"}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range f.namespaces {
		if ns != "" {
			t.Errorf("a request carried VAULT_NAMESPACE %q", ns)
		}
	}
	if len(f.logins) != 1 {
		t.Errorf("VAULT_TOKEN was used instead of logging in: %d logins", len(f.logins))
	}
	cfg.CABundle = nil
	cfg.Kubernetes = nil
	cfg.Token = goodToken
	p, err = vault.New(context.Background(), cfg)
	if err == nil {
		_, err = p.GetSecret(context.Background(), fetch.Ref{Key: "app"})
	}
	if err == nil {
		t.Error("VAULT_SKIP_VERIFY turned TLS verification off")
	}
}

// Vault's multi-error answers become one line that names the path and says
// Vault's reasons, reachable as a *vault.ResponseError with its class.
func TestErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     string
		want    string
		status  int
		reasons []string
		class   error
	}{
		{"denied", "reading secret/denied: Vault answered 403: permission denied", 403, []string{"permission denied"}, fetch.ErrAccessDenied},
		{"two-reasons", "reading secret/two-reasons: Vault answered 400: first reason; second reason", 400, []string{"first reason", "second reason"}, fetch.ErrInvalid},
		{"throttled", `reading secret/throttled: Vault answered 429: request path "secret/data/throttled": rate limit quota exceeded`, 429,
			[]string{`request path "secret/data/throttled": rate limit quota exceeded`}, fetch.ErrThrottled},
		{"broken", "reading secret/broken: Vault answered 502", 502, nil, nil},
	} {
		_, err := p.GetSecret(context.Background(), fetch.Ref{Key: tc.key})
		if err == nil {
			t.Fatalf("%s: no error", tc.key)
		}
		if err.Error() != tc.want {
			t.Errorf("%s: error %q, want %q", tc.key, err, tc.want)
		}
		var re *vault.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("%s: %T is not a *vault.ResponseError", tc.key, err)
		}
		if re.StatusCode != tc.status || !slices.Equal(re.Reasons, tc.reasons) || re.Class != tc.class {
			t.Errorf("%s: ResponseError{%d, %q, %v}, want {%d, %q, %v}", tc.key, re.StatusCode, re.Reasons, re.Class, tc.status, tc.reasons, tc.class)
		}
	}

	// A login refused: one line naming the login path and the role.
	cfg = f.config("secret", 2)
	cfg.Kubernetes = &vault.KubernetesAuth{MountPath: "kubernetes", Role: "app", JWT: "rejected"}
	_, err = vault.New(context.Background(), cfg)
	if want := `vault login at auth/kubernetes/login as role "app": Vault answered 400: permission denied`; err == nil || err.Error() != want {
		t.Errorf("login error %q, want %q", err, want)
	}
}

// Keys are relative to the mount: the KV v2 API path of a key is refused
// without a request, with what to write; a key that starts with the mount is
// read as written and, when that fails, the error says what to write.
func TestKeysRelativeToTheMount(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"secret/data/app", "/secret/data/app", "secret/metadata/app"} {
		before := len(f.reads)
		_, err := p.GetSecret(context.Background(), fetch.Ref{Key: key})
		if !errors.Is(err, fetch.ErrInvalid) || !strings.Contains(err.Error(), `write "app"`) {
			t.Errorf("GetSecret(%q): err = %v, want ErrInvalid saying to write \"app\"", key, err)
		}
		if _, err := p.CurrentVersion(context.Background(), key); !errors.Is(err, fetch.ErrInvalid) {
			t.Errorf("CurrentVersion(%q): err = %v, want ErrInvalid", key, err)
		}
		if len(f.reads) != before {
			t.Errorf("%q: Vault was asked %v", key, f.reads[before:])
		}
	}
	_, err = p.GetSecret(context.Background(), fetch.Ref{Key: "secret/app"})
	if want := `reading secret/secret/app: not found; keys are relative to the store's mount "secret": if you meant the secret at secret/app, write "app"`; err == nil || err.Error() != want {
		t.Errorf("GetSecret(secret/app): err = %q, want %q", err, want)
	}
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Errorf("GetSecret(secret/app): err = %v, want ErrNotFound", err)
	}
}

// A provider that logged in revokes its token on Close; a token it was given
// is someone else's and stays.
func TestCloseRevokesOwnToken(t *testing.T) {
	for name, tc := range map[string]struct {
		auth        func(*vault.Config)
		wantRevoked int
	}{
		"kubernetes": {func(c *vault.Config) {
			c.Kubernetes = &vault.KubernetesAuth{MountPath: "kubernetes", Role: "app", JWT: "pod-token"}
		}, 1},
		"jwt": {func(c *vault.Config) {
			c.JWT = &vault.KubernetesAuth{MountPath: "jwt", Role: "app", JWT: "pod-token"}
		}, 1},
		"approle": {func(c *vault.Config) {
			c.AppRole = &vault.AppRoleAuth{MountPath: "approle", RoleID: "rid", SecretID: "sid"}
		}, 1},
		"token": {func(c *vault.Config) { c.Token = goodToken }, 0},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeVault(t)
			cfg := f.config("secret", 2)
			tc.auth(&cfg)
			p, err := vault.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app"}); err != nil {
				t.Fatal(err)
			}
			for range 2 { // idempotent
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.revoked != tc.wantRevoked {
				t.Errorf("revoked %d tokens, want %d", f.revoked, tc.wantRevoked)
			}
		})
	}
}

// TestLoginCancelledMidRequest: a login Vault is already answering when the
// caller gives up (a shutdown, a probe's deadline) still creates a token.
// New waits for it and revokes it rather than leave it to live its TTL.
func TestLoginCancelledMidRequest(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	f.loginStarted, f.loginGate = make(chan struct{}), make(chan struct{})
	cfg := f.config("secret", 2)
	cfg.Kubernetes = &vault.KubernetesAuth{MountPath: "kubernetes", Role: "app", JWT: "pod-token"}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-f.loginStarted
		cancel()
		time.Sleep(50 * time.Millisecond) // the answer arrives after the caller left
		close(f.loginGate)
	}()
	p, err := vault.New(ctx, cfg)
	if err == nil {
		_ = p.Close()
		t.Fatal("New succeeded after its context was cancelled")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("New = %v, want context.Canceled", err)
	}
	if strings.Contains(err.Error(), goodToken) {
		t.Errorf("the error holds the token: %q", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revoked != 1 {
		t.Errorf("revoked %d tokens, want the late login's token revoked", f.revoked)
	}
}

func TestCloseReportsAFailedRevocation(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	f.revokeFail = http.StatusForbidden
	cfg := f.config("secret", 2)
	cfg.AppRole = &vault.AppRoleAuth{MountPath: "approle", RoleID: "rid", SecretID: "sid"}
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Close()
	if !errors.Is(err, fetch.ErrAccessDenied) || !strings.Contains(err.Error(), "revoke-self") {
		t.Fatalf("Close = %v, want an access-denied error naming revoke-self", err)
	}
	for _, e := range fetchtest.Chain(err) {
		if strings.Contains(e.Error(), goodToken) || strings.Contains(e.Error(), "sid") {
			t.Errorf("the error holds a credential: %q", e)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error spans lines: %q", err)
	}
}

// serveKV answers LIST and reads of a KV v2 mount "secret" holding kv.
func (f *fakeVault) serveKV(w http.ResponseWriter, r *http.Request, path string, kv map[string]string, reply func(int, any)) {
	if path == "secret/metadata" {
		path += "/" // the mount's root folder
	}
	if dir, ok := strings.CutPrefix(path, "secret/metadata/"); ok && (r.Method == "LIST" || r.URL.Query().Get("list") == "true") {
		if dir != "" && !strings.HasSuffix(dir, "/") {
			dir += "/" // the client may trim it; Vault reads a folder either way
		}
		f.mu.Lock()
		f.lists = append(f.lists, dir)
		f.mu.Unlock()
		if dir == "denied/" {
			reply(http.StatusForbidden, map[string]any{"errors": []string{"permission denied"}})
			return
		}
		seen := map[string]bool{}
		var keys []string
		for name := range kv {
			rest, ok := strings.CutPrefix(name, dir)
			if !ok {
				continue
			}
			if i := strings.Index(rest, "/"); i >= 0 {
				rest = rest[:i+1]
			}
			if !seen[rest] {
				seen[rest] = true
				keys = append(keys, rest)
			}
		}
		if len(keys) == 0 {
			reply(http.StatusNotFound, map[string]any{"errors": []string{}})
			return
		}
		reply(http.StatusOK, map[string]any{"data": map[string]any{"keys": keys}})
		return
	}
	if name, ok := strings.CutPrefix(path, "secret/data/"); ok {
		if v, ok := kv[name]; ok {
			reply(http.StatusOK, map[string]any{"data": map[string]any{"data": map[string]any{"password": v}, "metadata": map[string]any{"version": 1}}})
			return
		}
	}
	reply(http.StatusNotFound, map[string]any{"errors": []string{}})
}

func TestFind(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	f.kv = map[string]string{
		"app/db": "1", "app/api/token": "2", "app/api/user": "3", "app/deep/a/b/c": "4",
		"apple/x": "5", "other/y": "6", "app-old": "7",
	}
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    fetch.FindQuery
		want []string
	}{
		{"folder", fetch.FindQuery{Path: "app/"}, []string{"app/db", "app/api/token", "app/api/user", "app/deep/a/b/c"}},
		{"name prefix", fetch.FindQuery{Path: "app"}, []string{"app/db", "app/api/token", "app/api/user", "app/deep/a/b/c", "apple/x", "app-old"}},
		{"prefix within a folder", fetch.FindQuery{Path: "app/a"}, []string{"app/api/token", "app/api/user"}},
		{"regexp", fetch.FindQuery{Path: "app/", Name: "/(db|user)$"}, []string{"app/db", "app/api/user"}},
		{"whole mount", fetch.FindQuery{Path: "", Name: "^other/"}, []string{"other/y"}},
		{"leading slash kept in names", fetch.FindQuery{Path: "/app/api/"}, []string{"/app/api/token", "/app/api/user"}},
		{"nothing there", fetch.FindQuery{Path: "none/"}, nil},
	} {
		got, err := p.Find(context.Background(), tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var names []string
		for n, v := range got {
			names = append(names, n)
			if !strings.Contains(string(v), `"password"`) {
				t.Errorf("%s: %s = %s, want the secret's fields", tc.name, n, v)
			}
		}
		if diff := cmp.Diff(tc.want, names, cmpopts.SortSlices(func(a, b string) bool { return a < b }), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// Only folders that can hold a match are listed.
	f.mu.Lock()
	f.lists = nil
	f.mu.Unlock()
	if _, err := p.Find(context.Background(), fetch.FindQuery{Path: "app/api/"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	if diff := cmp.Diff([]string{"app/api/"}, f.lists); diff != "" {
		t.Errorf("folders listed (-want +got):\n%s", diff)
	}
	f.mu.Unlock()

	_, err = p.Find(context.Background(), fetch.FindQuery{Path: "denied/"})
	if !errors.Is(err, fetch.ErrAccessDenied) || !strings.Contains(err.Error(), `"list" capability`) || !strings.Contains(err.Error(), "secret/metadata/denied/") {
		t.Errorf("a denied LIST: err = %v, want access denied naming the path and the capability", err)
	}
	_, err = p.Find(context.Background(), fetch.FindQuery{Path: "app/", Name: "(["})
	if !errors.Is(err, fetch.ErrInvalid) {
		t.Errorf("a bad regexp: err = %v, want ErrInvalid", err)
	}
	_, err = p.Find(context.Background(), fetch.FindQuery{Path: "app/", Tags: map[string]string{"a": "b"}})
	if !errors.Is(err, fetch.ErrNotSupported) {
		t.Errorf("tags: err = %v, want ErrNotSupported", err)
	}
}

// A find bigger than fetch.MaxFound fails before reading any value.
func TestFindBounded(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	f.kv = map[string]string{}
	for i := range fetch.MaxFound + 1 {
		f.kv[fmt.Sprintf("big/s%d", i)] = "v"
	}
	cfg := f.config("secret", 2)
	cfg.Token = goodToken
	p, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := len(f.reads)
	_, err = p.Find(context.Background(), fetch.FindQuery{Path: "big/"})
	if !errors.Is(err, fetch.ErrInvalid) || !strings.Contains(err.Error(), "narrow") {
		t.Fatalf("err = %v, want ErrInvalid asking to narrow the find", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.reads) - before; n != 1 {
		t.Errorf("%d requests, want the one LIST and no read", n)
	}
}
