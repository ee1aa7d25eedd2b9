package gcpsm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
	"github.com/keyhook/keyhook/pkg/plan"
)

const (
	reader = "reader@keyhook-test.iam.gserviceaccount.com"
	other  = "other@keyhook-test.iam.gserviceaccount.com"
)

// newServer starts a fake Secret Manager for one test.
func newServer(t *testing.T, opts ...gcpsmtest.Options) *gcpsmtest.Server {
	t.Helper()
	var o gcpsmtest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	srv := gcpsmtest.New(o)
	t.Cleanup(srv.Close)
	return srv
}

// config points a provider at srv, authenticating with key (a
// service-account key file).
func config(srv *gcpsmtest.Server, key []byte, opts ...func(*gcpsm.Config)) gcpsm.Config {
	cfg := gcpsm.Config{
		ProjectID:       srv.ProjectID(),
		Endpoint:        srv.Addr(),
		CABundle:        srv.CABundle(),
		CredentialsJSON: key,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// withToken makes cfg use a token the server issued to principal, instead
// of a key.
func withToken(srv *gcpsmtest.Server, principal string) func(*gcpsm.Config) {
	return func(c *gcpsm.Config) {
		c.CredentialsJSON = nil
		c.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: srv.AddToken(principal)})
	}
}

func mustNew(t *testing.T, cfg gcpsm.Config) *gcpsm.Provider {
	t.Helper()
	p, err := gcpsm.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.(*gcpsm.Provider).Close() })
	return p.(*gcpsm.Provider)
}

// checkErr fails the test unless err is of class want (nil: no error; an
// error that is of no class when transient is true) and its message holds
// every one of mention and none of never.
func checkErr(t *testing.T, err, want error, mention, never []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want one wrapping %q", err, want)
	}
	checkMessage(t, err, mention, never)
}

func checkTransient(t *testing.T, err error, mention, never []string) {
	t.Helper()
	if err == nil || fetch.Permanent(err) {
		t.Fatalf("error = %v, want a transient one", err)
	}
	checkMessage(t, err, mention, never)
}

func checkMessage(t *testing.T, err error, mention, never []string) {
	t.Helper()
	t.Logf("error: %v", err)
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	for _, n := range never {
		if n != "" && strings.Contains(err.Error(), n) {
			t.Errorf("error %q contains %q, which it must never show", err, n)
		}
	}
}

func TestGetSecret(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	key := srv.ServiceAccountKey(reader)
	srv.Allow(reader, "db")
	srv.Allow(reader, "keystore")
	srv.Allow(reader, "empty")
	srv.Allow(reader, "old", gcpsmtest.PermAccess)
	srv.Allow(reader, "nope") // else a missing secret is PermissionDenied, as in Google
	binary := []byte{0x00, 0x01, 0xfe, 0xff, '\n', 0x80}
	srv.Put("db", []byte(`{"user":"app","password":"first-pw"}`))
	srv.Put("db", []byte(`{"user":"app","password":"second-pw"}`))
	srv.Put("db", []byte(`{"user":"app","password":"third-pw"}`))
	srv.SetAlias("db", "stable", 2)
	srv.Disable("db", 1)
	srv.Put("keystore", binary)
	srv.Put("old", []byte("destroyed-value"))
	srv.Destroy("old", 1)
	srv.Put("other", []byte("other-value"))
	srv.Allow(other, "other")

	p := mustNew(t, config(srv, key))
	project, number := srv.ProjectID(), srv.ProjectNumber()
	never := []string{"first-pw", "second-pw", "third-pw", "destroyed-value", "other-value", "PRIVATE KEY"}
	tests := []struct {
		name    string
		ref     fetch.Ref
		want    []byte
		wantErr error
		mention []string
	}{
		{name: "latest by default", ref: fetch.Ref{Key: "db"}, want: []byte(`{"user":"app","password":"third-pw"}`)},
		{name: "latest", ref: fetch.Ref{Key: "db", Version: "latest"}, want: []byte(`{"user":"app","password":"third-pw"}`)},
		{name: "version number", ref: fetch.Ref{Key: "db", Version: "2"}, want: []byte(`{"user":"app","password":"second-pw"}`)},
		{name: "alias", ref: fetch.Ref{Key: "db", Version: "stable"}, want: []byte(`{"user":"app","password":"second-pw"}`)},
		{name: "full name", ref: fetch.Ref{Key: "projects/" + project + "/secrets/db"}, want: []byte(`{"user":"app","password":"third-pw"}`)},
		{name: "full name by project number", ref: fetch.Ref{Key: "projects/" + number + "/secrets/db", Version: "3"}, want: []byte(`{"user":"app","password":"third-pw"}`)},
		{name: "version pinned by the key", ref: fetch.Ref{Key: "projects/" + project + "/secrets/db/versions/2"}, want: []byte(`{"user":"app","password":"second-pw"}`)},
		{name: "version pinned by key and version alike", ref: fetch.Ref{Key: "projects/" + project + "/secrets/db/versions/2", Version: "2"}, want: []byte(`{"user":"app","password":"second-pw"}`)},
		{name: "full version name as version", ref: fetch.Ref{Key: "db", Version: "projects/" + project + "/secrets/db/versions/2"}, want: []byte(`{"user":"app","password":"second-pw"}`)},
		{name: "binary payload as raw bytes", ref: fetch.Ref{Key: "keystore"}, want: binary},
		{
			name: "no such secret", ref: fetch.Ref{Key: "nope"}, wantErr: fetch.ErrNotFound,
			mention: []string{"projects/" + project + "/secrets/nope/versions/latest", "project " + project, "NotFound", reader},
		},
		{
			name: "no such version", ref: fetch.Ref{Key: "db", Version: "9"}, wantErr: fetch.ErrNotFound,
			mention: []string{"projects/" + project + "/secrets/db/versions/9", "NotFound"},
		},
		{
			name: "no such alias", ref: fetch.Ref{Key: "db", Version: "canary"}, wantErr: fetch.ErrNotFound,
			mention: []string{"versions/canary"},
		},
		{
			name: "not allowed", ref: fetch.Ref{Key: "other"}, wantErr: fetch.ErrAccessDenied,
			mention: []string{"projects/" + project + "/secrets/other/versions/latest", "service account " + reader, "PermissionDenied", "roles/secretmanager.secretAccessor"},
		},
		{
			name: "another project", ref: fetch.Ref{Key: "projects/elsewhere/secrets/db"}, wantErr: fetch.ErrAccessDenied,
			mention: []string{"projects/elsewhere/secrets/db/versions/latest", "project elsewhere"},
		},
		{
			name: "disabled version", ref: fetch.Ref{Key: "db", Version: "1"}, wantErr: fetch.ErrInvalid,
			mention: []string{"FailedPrecondition", "DISABLED"},
		},
		{
			name: "destroyed version", ref: fetch.Ref{Key: "old"}, wantErr: fetch.ErrInvalid,
			mention: []string{"FailedPrecondition", "DESTROYED"},
		},
		{name: "empty key", ref: fetch.Ref{}, wantErr: fetch.ErrInvalid},
		{name: "path in a secret ID", ref: fetch.Ref{Key: "db/versions/1"}, wantErr: fetch.ErrInvalid, mention: []string{`"db/versions/1"`}},
		{name: "regional secret", ref: fetch.Ref{Key: "projects/p-1234/locations/europe-west1/secrets/db"}, wantErr: fetch.ErrInvalid, mention: []string{"regional"}},
		{name: "version zero", ref: fetch.Ref{Key: "db", Version: "0"}, wantErr: fetch.ErrInvalid, mention: []string{`"0"`}},
		{
			name: "version of another secret", ref: fetch.Ref{Key: "db", Version: "projects/" + project + "/secrets/other/versions/1"}, wantErr: fetch.ErrInvalid,
			mention: []string{"another secret"},
		},
		{
			name: "key and version disagree", ref: fetch.Ref{Key: "projects/" + project + "/secrets/db/versions/2", Version: "3"}, wantErr: fetch.ErrInvalid,
			mention: []string{`"2"`, `"3"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := p.GetSecret(context.Background(), tt.ref)
			checkErr(t, err, tt.wantErr, tt.mention, never)
			if diff := cmp.Diff(tt.want, got); tt.wantErr == nil && diff != "" {
				t.Errorf("GetSecret(%+v) mismatch (-want +got):\n%s", tt.ref, diff)
			}
		})
	}
}

// TestResolve checks the provider behind fetch.Resolve: properties are
// picked out of JSON payloads there, and each secret is read once.
func TestResolve(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "*")
	srv.Put("db", []byte(`{"user":"app","password":"pw"}`))
	srv.Put("tls-key", []byte("-----BEGIN EC PRIVATE KEY-----\n..."))
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))

	got, err := fetch.Resolve(context.Background(), p, []plan.Data{
		{SecretKey: "username", Ref: plan.Ref{Key: "db", Property: "user"}},
		{SecretKey: "password", Ref: plan.Ref{Key: "db", Property: "password"}},
		{SecretKey: "tls.key", Ref: plan.Ref{Key: "tls-key"}},
	}, nil)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := map[string][]byte{"username": []byte("app"), "password": []byte("pw"), "tls.key": []byte("-----BEGIN EC PRIVATE KEY-----\n...")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve mismatch (-want +got):\n%s", diff)
	}
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 2 {
		t.Errorf("%d AccessSecretVersion calls, want 2 (one per secret)", n)
	}
}

// TestTokenReused checks that New gets one token and every call uses it,
// and that all calls are made as the key's service account.
func TestTokenReused(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("value"))
	p := mustNew(t, config(srv, srv.ServiceAccountKey(reader)))
	if n := srv.Count(gcpsmtest.MethodToken); n != 1 {
		t.Fatalf("New made %d token requests, want 1", n)
	}
	for range 3 {
		if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.CurrentVersion(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	want := []gcpsmtest.Call{
		{Method: gcpsmtest.MethodToken, Principal: reader},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: reader, Name: srv.SecretName("db") + "/versions/latest"},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: reader, Name: srv.SecretName("db") + "/versions/latest"},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: reader, Name: srv.SecretName("db") + "/versions/latest"},
		{Method: gcpsmtest.MethodGetSecretVersion, Principal: reader, Name: srv.SecretName("db") + "/versions/latest"},
	}
	if diff := cmp.Diff(want, srv.Calls()); diff != "" {
		t.Errorf("calls mismatch (-want +got):\n%s", diff)
	}
}

// TestTokenRefresh runs with tokens that are stale as soon as they are
// issued, so every call gets a new one; once the key is revoked, calls fail
// as access denied, naming the account, not as a transient error.
func TestTokenRefresh(t *testing.T) {
	t.Parallel()
	srv := newServer(t, gcpsmtest.Options{TokenLifetime: 5 * time.Second})
	key := srv.ServiceAccountKey(reader)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("refresh-value"))
	p := mustNew(t, config(srv, key))
	if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count(gcpsmtest.MethodToken); n != 2 {
		t.Errorf("%d token requests, want 2: a stale token must be refreshed", n)
	}
	srv.RevokeKeys(reader)
	_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"})
	checkErr(t, err, fetch.ErrAccessDenied, []string{"Unauthenticated", "service account " + reader, srv.TokenURL(), "invalid_grant", "Invalid JWT Signature"},
		[]string{"refresh-value", "PRIVATE KEY"})
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 1 {
		t.Errorf("%d AccessSecretVersion calls, want 1: no call is made without a token", n)
	}
}

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("value-x"))
	const bogus = "ya29.not-a-token-of-this-server"
	p := mustNew(t, config(srv, nil, func(c *gcpsm.Config) {
		c.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: bogus})
	}))
	_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"})
	checkErr(t, err, fetch.ErrAccessDenied, []string{"Unauthenticated", "the configured token source", "were refused"}, []string{"value-x", bogus})
	_, err = p.CurrentVersion(context.Background(), "db")
	checkErr(t, err, fetch.ErrAccessDenied, []string{"Unauthenticated"}, []string{bogus})
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("value-y"))
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))

	srv.Throttle(1)
	_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"})
	checkErr(t, err, fetch.ErrThrottled, []string{"ResourceExhausted", "Quota exceeded"}, []string{"value-y"})
	if fetch.Permanent(err) {
		t.Errorf("throttling is permanent: %v", err)
	}
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 1 {
		t.Errorf("%d AccessSecretVersion calls, want 1: the client must not retry on its own", n)
	}
	srv.Throttle(1)
	_, err = p.CurrentVersion(context.Background(), "db")
	checkErr(t, err, fetch.ErrThrottled, nil, nil)

	if got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil || string(got) != "value-y" {
		t.Errorf("GetSecret after throttling = %q, %v", got, err)
	}
}

func TestChecksumMismatch(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("value-z"))
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))

	srv.CorruptChecksum(1)
	got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"})
	checkTransient(t, err, []string{"checksum mismatch", srv.SecretName("db") + "/versions/latest"}, []string{"value-z"})
	if got != nil {
		t.Errorf("GetSecret returned %q with a checksum mismatch", got)
	}
	if got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil || string(got) != "value-z" {
		t.Errorf("GetSecret after the mismatch = %q, %v", got, err)
	}
}

func TestCurrentVersion(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "*")
	srv.Allow(other, "db", gcpsmtest.PermAccess) // secretAccessor only
	srv.Put("db", []byte("v1-value"))
	srv.Put("gone", []byte("gone-value"))
	srv.Disable("gone", 1)
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))
	ctx := context.Background()

	got, err := p.CurrentVersion(ctx, "db")
	if want := srv.VersionName("db", 1); err != nil || got != want {
		t.Fatalf("CurrentVersion = %q, %v; want %q", got, err, want)
	}
	srv.Put("db", []byte("v2-value"))
	got, err = p.CurrentVersion(ctx, "db")
	if want := srv.VersionName("db", 2); err != nil || got != want {
		t.Fatalf("CurrentVersion after Put = %q, %v; want %q", got, err, want)
	}
	got, err = p.CurrentVersion(ctx, srv.SecretName("db")+"/versions/1")
	if want := srv.VersionName("db", 1); err != nil || got != want {
		t.Fatalf("CurrentVersion of a pinned version = %q, %v; want %q", got, err, want)
	}
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 0 {
		t.Errorf("CurrentVersion made %d AccessSecretVersion calls, want none", n)
	}

	never := []string{"v1-value", "v2-value", "gone-value"}
	_, err = p.CurrentVersion(ctx, "nope")
	checkErr(t, err, fetch.ErrNotFound, []string{"GetSecretVersion", srv.SecretName("nope") + "/versions/latest"}, never)
	_, err = p.CurrentVersion(ctx, "gone")
	checkErr(t, err, fetch.ErrInvalid, []string{"DISABLED", srv.VersionName("gone", 1)}, never)
	_, err = p.CurrentVersion(ctx, "no/such/shape")
	checkErr(t, err, fetch.ErrInvalid, []string{`"no/such/shape"`}, never)

	accessor := mustNew(t, config(srv, nil, withToken(srv, other)))
	if _, err := accessor.GetSecret(ctx, fetch.Ref{Key: "db"}); err != nil {
		t.Fatalf("GetSecret as a secretAccessor: %v", err)
	}
	_, err = accessor.CurrentVersion(ctx, "db")
	checkErr(t, err, fetch.ErrAccessDenied, []string{"PermissionDenied", "secretmanager.versions.get", "roles/secretmanager.viewer"}, never)

	// fetch.Versions is what callers use.
	versions, err := fetch.Versions(ctx, p, []plan.Data{{SecretKey: "a", Ref: plan.Ref{Key: "db"}}}, nil)
	if diff := cmp.Diff(map[string]string{"db": srv.VersionName("db", 2)}, versions); err != nil || diff != "" {
		t.Errorf("Versions = %v, %v; mismatch (-want +got):\n%s", versions, err, diff)
	}
}

func TestNewBadConfig(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	key := srv.ServiceAccountKey(reader)
	keyPEM := "-----BEGIN PRIVATE KEY-----"
	replace := func(old, new string) []byte { return []byte(strings.Replace(string(key), old, new, 1)) }
	tests := []struct {
		name    string
		cfg     func(*gcpsm.Config)
		mention []string
	}{
		{"no project", func(c *gcpsm.Config) { c.ProjectID = "" }, []string{"projectID"}},
		{"bad project", func(c *gcpsm.Config) { c.ProjectID = "My_Project" }, []string{"projectID", `"My_Project"`}},
		{"endpoint as URL", func(c *gcpsm.Config) { c.Endpoint = "https://secretmanager.googleapis.com" }, []string{"endpoint", "host:port"}},
		{"endpoint without port", func(c *gcpsm.Config) { c.Endpoint = "secretmanager.googleapis.com" }, []string{"endpoint"}},
		{"endpoint port zero", func(c *gcpsm.Config) { c.Endpoint = "127.0.0.1:0" }, []string{"endpoint"}},
		{"CA bundle without certificates", func(c *gcpsm.Config) { c.CABundle = []byte("not PEM") }, []string{"caBundle"}},
		{"key and token source", func(c *gcpsm.Config) { c.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"}) }, []string{"both"}},
		{"key not JSON", func(c *gcpsm.Config) { c.CredentialsJSON = []byte("{" + keyPEM) }, []string{"credentialsJSON", "not a JSON"}},
		{"key of another type", func(c *gcpsm.Config) { c.CredentialsJSON = replace(`"service_account"`, `"external_account"`) }, []string{`"external_account"`}},
		{"key without email", func(c *gcpsm.Config) { c.CredentialsJSON = replace(reader, "") }, []string{"client_email"}},
		{"key not PEM", func(c *gcpsm.Config) { c.CredentialsJSON = replace(keyPEM, "----BEGIN SOMETHING") }, []string{reader, "private_key"}},
		{"token_uri not https", func(c *gcpsm.Config) { c.CredentialsJSON = replace(`"https://127.0.0.1`, `"http://127.0.0.1`) }, []string{reader, "token_uri"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := gcpsm.New(context.Background(), config(srv, key, tt.cfg))
			if p != nil {
				t.Errorf("New returned a provider with an error")
			}
			checkErr(t, err, fetch.ErrInvalid, tt.mention, []string{"PRIVATE KEY", "MII"})
		})
	}
	if n := srv.Count(gcpsmtest.MethodToken); n != 0 {
		t.Errorf("%d token requests for bad configurations, want none", n)
	}
}

// TestNewBadKey checks that a key the token endpoint refuses fails New
// with access denied, naming the account and never the key.
func TestNewBadKey(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	revoked := srv.ServiceAccountKey(reader)
	srv.RevokeKeys(reader)
	stranger := newServer(t).ServiceAccountKey(other) // its kid is unknown to srv
	stranger = []byte(strings.Replace(string(stranger), `"token_uri": "`, `"token_uri": "`+srv.TokenURL()+`", "x": "`, 1))

	for name, tc := range map[string]struct {
		key   []byte
		email string
	}{"revoked": {revoked, reader}, "unknown": {stranger, other}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := gcpsm.New(context.Background(), config(srv, tc.key))
			checkErr(t, err, fetch.ErrAccessDenied, []string{"service account " + tc.email, "invalid_grant", srv.TokenURL()}, []string{"PRIVATE KEY", "MII"})
		})
	}
}

// TestUntrustedServer checks that a server whose certificate is not signed
// by the CA bundle (or, without one, by the system roots) is not talked
// to, and that this is a transient error that says why.
func TestUntrustedServer(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("value-u"))
	otherCA := newServer(t).CABundle()

	t.Run("secret manager endpoint", func(t *testing.T) {
		t.Parallel()
		for _, ca := range [][]byte{nil, otherCA} {
			p := mustNew(t, config(srv, nil, withToken(srv, reader), func(c *gcpsm.Config) { c.CABundle = ca }))
			_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"})
			checkTransient(t, err, []string{"Unavailable", "certificate"}, []string{"value-u"})
		}
		if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 0 {
			t.Errorf("%d calls reached the server", n)
		}
	})
	t.Run("token endpoint", func(t *testing.T) {
		t.Parallel()
		_, err := gcpsm.New(context.Background(), config(srv, srv.ServiceAccountKey(other), func(c *gcpsm.Config) { c.CABundle = nil }))
		checkTransient(t, err, []string{"service account " + other, "certificate"}, []string{"PRIVATE KEY"})
	})
}

func TestNewCancelled(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := gcpsm.New(ctx, config(srv, srv.ServiceAccountKey(reader)))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("New with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestGetSecretDeadline(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("value-d"))
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	_, err := p.GetSecret(ctx, fetch.Ref{Key: "db"})
	if !errors.Is(err, context.DeadlineExceeded) || fetch.Permanent(err) {
		t.Errorf("GetSecret past its deadline = %v, want a transient error wrapping context.DeadlineExceeded", err)
	}
}

func TestOwnProjectOnly(t *testing.T) {
	t.Parallel()
	srv := gcpsmtest.New(gcpsmtest.Options{ProjectID: "shop-prod"})
	t.Cleanup(srv.Close)
	tok := srv.AddToken("keyhook@shared.iam.gserviceaccount.com")
	srv.Allow("keyhook@shared.iam.gserviceaccount.com", "*")
	srv.Put("db", []byte("v"))
	p, err := gcpsm.New(context.Background(), gcpsm.Config{
		ProjectID: "shop-prod", Endpoint: srv.Addr(), CABundle: srv.CABundle(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}), OwnProjectOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.(*gcpsm.Provider).Close() })
	if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil {
		t.Fatalf("the store's own project: %v", err)
	}
	if _, err := p.GetSecret(context.Background(), fetch.Ref{Key: "projects/shop-prod/secrets/db"}); err != nil {
		t.Fatalf("the store's own project by full name: %v", err)
	}
	before := len(srv.Calls())
	for _, ref := range []fetch.Ref{
		{Key: "projects/other-project/secrets/db"},
		{Key: "projects/123456789012/secrets/db"}, // a number is another name: refused, not resolved
	} {
		_, err := p.GetSecret(context.Background(), ref)
		if !errors.Is(err, fetch.ErrAccessDenied) || !strings.Contains(err.Error(), "another project") {
			t.Errorf("%s: err = %v, want access denied naming another project", ref.Key, err)
		}
		if _, err := p.CurrentVersion(context.Background(), ref.Key); !errors.Is(err, fetch.ErrAccessDenied) {
			t.Errorf("CurrentVersion %s: err = %v, want access denied", ref.Key, err)
		}
	}
	if n := len(srv.Calls()) - before; n != 0 {
		t.Errorf("%d calls reached the server for other projects", n)
	}
}
