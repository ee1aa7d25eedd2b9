package aws_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/aws"
	"github.com/keyhook/keyhook/pkg/fetch/aws/awstest"
	"github.com/keyhook/keyhook/pkg/plan"
)

// newServer starts a fake AWS for one test.
func newServer(t *testing.T) *awstest.Server {
	t.Helper()
	srv := awstest.New(awstest.Options{})
	t.Cleanup(srv.Close)
	return srv
}

// config points a provider of service at srv, as keys.
func config(srv *awstest.Server, service string, keys awstest.Keys, opts ...func(*aws.Config)) aws.Config {
	cfg := aws.Config{
		Service:     service,
		Region:      srv.Region(),
		Endpoint:    srv.URL(),
		STSEndpoint: srv.URL(),
		CABundle:    srv.CABundle(),
		Static:      &aws.StaticKeys{AccessKeyID: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func mustNew(t *testing.T, cfg aws.Config) fetch.Provider {
	t.Helper()
	p, err := aws.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// checkErr fails the test unless err is of class want (nil: no error) and
// its message holds every one of mention and none of never.
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

func TestSecretsManagerGetSecret(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "app/", "secretsmanager:GetSecretValue")
	v1 := srv.PutSecretString("app/db", `{"user":"app","password":"first-pw"}`)
	v2 := srv.PutSecretString("app/db", `{"user":"app","password":"second-pw"}`)
	srv.SetSecretStage("app/db", "blue", v1)
	srv.PutSecretBinary("app/keystore", []byte{0x00, 0x01, 0xfe, 0xff, '\n'})
	srv.PutSecretString("other/x", "other-value")
	if v1 == v2 {
		t.Fatalf("two puts made one version %s", v1)
	}

	p := mustNew(t, config(srv, aws.ServiceSecretsManager, alice))
	never := []string{alice.SecretAccessKey, "first-pw", "second-pw", "other-value"}
	tests := []struct {
		name    string
		ref     fetch.Ref
		want    string
		wantErr error
		mention []string
	}{
		{name: "current", ref: fetch.Ref{Key: "app/db"}, want: `{"user":"app","password":"second-pw"}`},
		{name: "stage AWSCURRENT", ref: fetch.Ref{Key: "app/db", Version: "AWSCURRENT"}, want: `{"user":"app","password":"second-pw"}`},
		{name: "stage AWSPREVIOUS", ref: fetch.Ref{Key: "app/db", Version: "AWSPREVIOUS"}, want: `{"user":"app","password":"first-pw"}`},
		{name: "custom stage", ref: fetch.Ref{Key: "app/db", Version: "blue"}, want: `{"user":"app","password":"first-pw"}`},
		{name: "version id", ref: fetch.Ref{Key: "app/db", Version: v1}, want: `{"user":"app","password":"first-pw"}`},
		{name: "version id with uuid/ prefix", ref: fetch.Ref{Key: "app/db", Version: "uuid/" + v2}, want: `{"user":"app","password":"second-pw"}`},
		{name: "by ARN", ref: fetch.Ref{Key: srv.SecretARN("app/db")}, want: `{"user":"app","password":"second-pw"}`},
		{name: "SecretBinary as raw bytes", ref: fetch.Ref{Key: "app/keystore"}, want: "\x00\x01\xfe\xff\n"},
		{
			name: "no such secret", ref: fetch.Ref{Key: "app/nope"},
			wantErr: fetch.ErrNotFound, mention: []string{`"app/nope"`, srv.Region(), "ResourceNotFoundException"},
		},
		{
			name: "no such stage", ref: fetch.Ref{Key: "app/db", Version: "AWSPENDING"},
			wantErr: fetch.ErrNotFound, mention: []string{`"app/db"`, "AWSPENDING", srv.Region()},
		},
		{
			name: "no such version id", ref: fetch.Ref{Key: "app/db", Version: "0bd4a6a4-8c7e-4f8e-9a39-2b0d7c1e0000"},
			wantErr: fetch.ErrNotFound, mention: []string{"0bd4a6a4-8c7e-4f8e-9a39-2b0d7c1e0000"},
		},
		{
			name: "not allowed", ref: fetch.Ref{Key: "other/x"},
			wantErr: fetch.ErrAccessDenied, mention: []string{`"other/x"`, "access key " + alice.AccessKeyID, "AccessDeniedException"},
		},
		{name: "empty key", ref: fetch.Ref{}, wantErr: fetch.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := p.GetSecret(context.Background(), tt.ref)
			checkErr(t, err, tt.wantErr, tt.mention, never)
			if tt.wantErr == nil && string(got) != tt.want {
				t.Errorf("GetSecret(%+v) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestParameterStoreGetSecret(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	bob := srv.AddUser("bob")
	srv.Allow(bob.ARN, "/app/", "ssm:GetParameter")
	for _, v := range []string{"pw-one", "pw-two", "pw-three"} {
		srv.PutParameter("/app/db/password", awstest.SecureString, v)
	}
	srv.LabelParameterVersion("/app/db/password", 2, "stable")
	srv.PutParameter("/app/plain", awstest.String, "hello")
	srv.PutParameter("/other/x", awstest.SecureString, "other-value")

	p := mustNew(t, config(srv, aws.ServiceParameterStore, bob))
	never := []string{bob.SecretAccessKey, "pw-one", "pw-two", "pw-three", "other-value"}
	arn := "arn:aws:ssm:" + srv.Region() + ":" + srv.AccountID() + ":parameter/app/db/password"
	tests := []struct {
		name    string
		ref     fetch.Ref
		want    string
		wantErr error
		mention []string
	}{
		{name: "latest SecureString, decrypted", ref: fetch.Ref{Key: "/app/db/password"}, want: "pw-three"},
		{name: "String", ref: fetch.Ref{Key: "/app/plain"}, want: "hello"},
		{name: "version in the key", ref: fetch.Ref{Key: "/app/db/password:1"}, want: "pw-one"},
		{name: "version number", ref: fetch.Ref{Key: "/app/db/password", Version: "3"}, want: "pw-three"},
		{name: "label", ref: fetch.Ref{Key: "/app/db/password", Version: "stable"}, want: "pw-two"},
		{name: "label in the key and as version", ref: fetch.Ref{Key: "/app/db/password:stable", Version: "stable"}, want: "pw-two"},
		{name: "by ARN", ref: fetch.Ref{Key: arn}, want: "pw-three"},
		{name: "by ARN with version", ref: fetch.Ref{Key: arn + ":1"}, want: "pw-one"},
		{
			name: "no such parameter", ref: fetch.Ref{Key: "/app/nope"},
			wantErr: fetch.ErrNotFound, mention: []string{`"/app/nope"`, srv.Region(), "ParameterNotFound"},
		},
		{
			name: "no such version", ref: fetch.Ref{Key: "/app/db/password:9"},
			wantErr: fetch.ErrNotFound, mention: []string{`"/app/db/password:9"`, "ParameterVersionNotFound"},
		},
		{
			name: "no such label", ref: fetch.Ref{Key: "/app/db/password", Version: "canary"},
			wantErr: fetch.ErrNotFound, mention: []string{"canary"},
		},
		{
			name: "not allowed", ref: fetch.Ref{Key: "/other/x"},
			wantErr: fetch.ErrAccessDenied, mention: []string{`"/other/x"`, "access key " + bob.AccessKeyID},
		},
		{
			name: "key and version disagree", ref: fetch.Ref{Key: "/app/db/password:1", Version: "2"},
			wantErr: fetch.ErrInvalid, mention: []string{`"/app/db/password:1"`, `"2"`},
		},
		{name: "empty selector", ref: fetch.Ref{Key: "/app/db/password:"}, wantErr: fetch.ErrInvalid},
		{name: "version zero", ref: fetch.Ref{Key: "/app/db/password", Version: "0"}, wantErr: fetch.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := p.GetSecret(context.Background(), tt.ref)
			checkErr(t, err, tt.wantErr, tt.mention, never)
			if tt.wantErr == nil && string(got) != tt.want {
				t.Errorf("GetSecret(%+v) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestWebIdentity(t *testing.T) {
	t.Parallel()
	const token = "eyJhbGciOiJSUzI1NiJ9.pod-token.sig"
	srv := newServer(t)
	var (
		mu   sync.Mutex
		seen []string
	)
	role := srv.AddRole("reader", awstest.Trust{WebIdentity: func(ctx context.Context, tok, roleARN string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, tok+" for "+roleARN)
		return awstest.ExpectToken(token, "system:serviceaccount:shop:api")(ctx, tok, roleARN)
	}})
	srv.Allow(role, "app/", "secretsmanager:GetSecretValue")
	for _, k := range []string{"app/a", "app/b", "app/c"} {
		srv.PutSecretString(k, "value-of-"+k)
	}

	p := mustNew(t, config(srv, aws.ServiceSecretsManager, awstest.Keys{}, func(c *aws.Config) {
		c.Static = nil
		c.WebIdentity = &aws.WebIdentity{RoleARN: role, Token: token}
		c.SessionName = "keyhook-shop/api" // '/' is not allowed by STS
	}))
	for range 2 {
		for _, k := range []string{"app/a", "app/b", "app/c"} {
			got, err := p.GetSecret(context.Background(), fetch.Ref{Key: k})
			if err != nil {
				t.Fatalf("GetSecret(%s): %v", k, err)
			}
			if string(got) != "value-of-"+k {
				t.Errorf("GetSecret(%s) = %q", k, got)
			}
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{token + " for " + role}, seen); diff != "" {
		t.Errorf("tokens STS verified (-want +got):\n%s", diff)
	}
	if n := srv.Calls(awstest.OpAssumeRoleWithWebIdentity); n != 1 {
		t.Errorf("AssumeRoleWithWebIdentity called %d times for 6 reads, want once", n)
	}
	for _, c := range srv.CallLog() {
		if c.Op != awstest.OpGetSecretValue {
			continue
		}
		if c.Principal != role || !strings.HasPrefix(c.AccessKeyID, "ASIA") {
			t.Errorf("GetSecretValue signed by %s as %q, want temporary keys of %s", c.AccessKeyID, c.Principal, role)
		}
	}
}

func TestWebIdentityRejected(t *testing.T) {
	t.Parallel()
	const token = "eyJhbGciOiJSUzI1NiJ9.good-token.sig"
	srv := newServer(t)
	role := srv.AddRole("reader", awstest.Trust{WebIdentity: awstest.ExpectToken(token, "system:serviceaccount:shop:api")})
	untrusting := srv.AddRole("strict", awstest.Trust{WebIdentity: func(context.Context, string, string) (string, error) {
		return "", awstest.ErrUntrusted
	}})
	tests := []struct {
		name, role, token string
		mention           []string
	}{
		{name: "token does not verify", role: role, token: "eyJhbGciOiJSUzI1NiJ9.stolen-token.sig", mention: []string{role, "InvalidIdentityToken"}},
		{name: "role does not trust the subject", role: untrusting, token: token, mention: []string{untrusting, "AccessDenied"}},
		{name: "no such role", role: "arn:aws:iam::123456789012:role/nope", token: token, mention: []string{"role/nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := aws.New(context.Background(), config(srv, aws.ServiceSecretsManager, awstest.Keys{}, func(c *aws.Config) {
				c.Static = nil
				c.WebIdentity = &aws.WebIdentity{RoleARN: tt.role, Token: tt.token}
			}))
			checkErr(t, err, fetch.ErrAccessDenied, tt.mention, []string{tt.token})
		})
	}
}

func TestAssumeRole(t *testing.T) {
	t.Parallel()
	// Each case gets its own server: they assert on its call log.
	setup := func(t *testing.T) (srv *awstest.Server, alice, mallory awstest.Keys, role string) {
		srv = newServer(t)
		alice = srv.AddUser("alice") // may read nothing herself
		mallory = srv.AddUser("mallory")
		role = srv.AddRole("deployer", awstest.Trust{Principals: []string{alice.ARN}})
		srv.Allow(role, "/app/", "ssm:GetParameter")
		srv.PutParameter("/app/token", awstest.SecureString, "role-only-value")
		return srv, alice, mallory, role
	}

	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		srv, alice, _, role := setup(t)
		p := mustNew(t, config(srv, aws.ServiceParameterStore, alice, func(c *aws.Config) { c.RoleARN = role }))
		for range 3 {
			got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "/app/token"})
			if err != nil {
				t.Fatalf("GetSecret: %v", err)
			}
			if string(got) != "role-only-value" {
				t.Errorf("GetSecret = %q", got)
			}
		}
		var calls []string
		for _, c := range srv.CallLog() {
			calls = append(calls, c.Op+" as "+c.Principal)
		}
		want := []string{
			awstest.OpAssumeRole + " as " + alice.ARN,
			awstest.OpGetParameter + " as " + role,
			awstest.OpGetParameter + " as " + role,
			awstest.OpGetParameter + " as " + role,
		}
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	})
	t.Run("not trusted", func(t *testing.T) {
		t.Parallel()
		srv, _, mallory, role := setup(t)
		_, err := aws.New(context.Background(), config(srv, aws.ServiceParameterStore, mallory, func(c *aws.Config) { c.RoleARN = role }))
		checkErr(t, err, fetch.ErrAccessDenied, []string{role, mallory.AccessKeyID, "AccessDenied"}, []string{mallory.SecretAccessKey})
	})
	t.Run("on top of web identity", func(t *testing.T) {
		t.Parallel()
		srv, _, _, _ := setup(t)
		const token = "eyJ.chained.sig"
		first := srv.AddRole("federated", awstest.Trust{WebIdentity: awstest.ExpectToken(token, "system:serviceaccount:ns:sa")})
		second := srv.AddRole("target", awstest.Trust{Principals: []string{first}})
		srv.Allow(second, "/app/", "ssm:GetParameter")
		p := mustNew(t, config(srv, aws.ServiceParameterStore, awstest.Keys{}, func(c *aws.Config) {
			c.Static = nil
			c.WebIdentity = &aws.WebIdentity{RoleARN: first, Token: token}
			c.RoleARN = second
		}))
		got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "/app/token"})
		if err != nil || string(got) != "role-only-value" {
			t.Fatalf("GetSecret = %q, %v", got, err)
		}
		var calls []string
		for _, c := range srv.CallLog() {
			calls = append(calls, c.Op+" as "+c.Principal)
		}
		want := []string{
			awstest.OpAssumeRoleWithWebIdentity + " as ", // unsigned
			awstest.OpAssumeRole + " as " + first,
			awstest.OpGetParameter + " as " + second,
		}
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	})
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "", "*")
	srv.PutSecretString("app/db", "db-value")
	wrongSecret := alice
	wrongSecret.SecretAccessKey = strings.Repeat("x", 40)
	tests := []struct {
		name    string
		cfg     aws.Config
		mention []string
	}{
		{
			name:    "wrong secret key",
			cfg:     config(srv, aws.ServiceSecretsManager, wrongSecret),
			mention: []string{alice.AccessKeyID, "InvalidSignatureException"},
		},
		{
			name:    "unknown access key",
			cfg:     config(srv, aws.ServiceSecretsManager, awstest.Keys{AccessKeyID: "AKIAUNKNOWN000000000", SecretAccessKey: alice.SecretAccessKey}),
			mention: []string{"AKIAUNKNOWN000000000", "UnrecognizedClientException"},
		},
		{
			name:    "session token that was never issued",
			cfg:     config(srv, aws.ServiceSecretsManager, alice, func(c *aws.Config) { c.Static.SessionToken = "forged-session-token" }),
			mention: []string{alice.AccessKeyID, "UnrecognizedClientException"},
		},
		{
			name:    "signed for another region",
			cfg:     config(srv, aws.ServiceSecretsManager, alice, func(c *aws.Config) { c.Region = "us-east-1" }),
			mention: []string{"us-east-1", "scoped to a valid region"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustNew(t, tt.cfg) // static keys: nothing to check until the first call
			_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app/db"})
			checkErr(t, err, fetch.ErrAccessDenied, tt.mention,
				[]string{alice.SecretAccessKey, wrongSecret.SecretAccessKey, "forged-session-token", "db-value"})
		})
	}
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "", "*")
	srv.PutSecretString("app/db", "db-value")
	srv.PutParameter("/app/db", awstest.SecureString, "db-value")

	for _, tc := range []struct {
		service, key, op string
	}{
		{aws.ServiceSecretsManager, "app/db", awstest.OpGetSecretValue},
		{aws.ServiceParameterStore, "/app/db", awstest.OpGetParameter},
	} {
		p := mustNew(t, config(srv, tc.service, alice))
		before := srv.Calls(tc.op)
		srv.Throttle(1)
		_, err := p.GetSecret(context.Background(), fetch.Ref{Key: tc.key})
		checkErr(t, err, fetch.ErrThrottled, []string{"ThrottlingException", tc.key}, []string{"db-value"})
		if fetch.Permanent(err) {
			t.Errorf("%s: throttling is permanent: %v", tc.service, err)
		}
		// One call: the SDK must not retry behind the caller's back.
		if n := srv.Calls(tc.op) - before; n != 1 {
			t.Errorf("%s: %d calls for one throttled read, want 1 (SDK retries must be off)", tc.service, n)
		}
		if got, err := p.GetSecret(context.Background(), fetch.Ref{Key: tc.key}); err != nil || string(got) != "db-value" {
			t.Errorf("%s: after throttling GetSecret = %q, %v", tc.service, got, err)
		}
	}

	t.Run("STS", func(t *testing.T) {
		role := srv.AddRole("reader", awstest.Trust{WebIdentity: awstest.ExpectToken("tok-tok", "sub")})
		srv.Throttle(1)
		_, err := aws.New(context.Background(), config(srv, aws.ServiceSecretsManager, awstest.Keys{}, func(c *aws.Config) {
			c.Static = nil
			c.WebIdentity = &aws.WebIdentity{RoleARN: role, Token: "tok-tok"}
		}))
		checkErr(t, err, fetch.ErrThrottled, []string{role, "Throttling"}, []string{"tok-tok"})
	})
}

func TestSecretsManagerFind(t *testing.T) {
	t.Parallel()
	srv := newServer(t) // pages of 2
	reader := srv.AddUser("reader")
	srv.Allow(reader.ARN, "", "secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets")
	srv.Allow(reader.ARN, "app/", "secretsmanager:GetSecretValue")
	partial := srv.AddUser("partial")
	srv.Allow(partial.ARN, "", "secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets")
	srv.Allow(partial.ARN, "app/a", "secretsmanager:GetSecretValue")
	nolist := srv.AddUser("nolist")
	srv.Allow(nolist.ARN, "", "secretsmanager:BatchGetSecretValue")
	srv.Allow(nolist.ARN, "app/", "secretsmanager:GetSecretValue")

	want := map[string][]byte{
		"app/a":     []byte("va"),
		"app/b":     []byte(`{"k":"vb"}`),
		"app/c/d":   []byte("vcd"),
		"app/e":     {0x00, 0xff},
		"app/f.txt": []byte("vf"),
	}
	for name, v := range want {
		if name == "app/e" {
			srv.PutSecretBinary(name, v)
		} else {
			srv.PutSecretString(name, string(v))
		}
	}
	srv.PutSecretString("app/a", "va") // a second version: Find reads the current one
	srv.PutSecretString("apple", "not-under-app/")
	srv.PutSecretString("other/z", "not-under-app/")

	t.Run("across pages", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceSecretsManager, reader))
		got, err := p.Find(context.Background(), fetch.FindQuery{Path: "app/"})
		if err != nil {
			t.Fatalf("Find: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Find (-want +got):\n%s", diff)
		}
		// 5 secrets, 2 a page: 3 calls, no more, and no single reads.
		if n := callsBy(srv, awstest.OpBatchGetSecretValue, reader.ARN); n != 3 {
			t.Errorf("BatchGetSecretValue called %d times, want 3 (one per page)", n)
		}
		if n := callsBy(srv, awstest.OpGetSecretValue, reader.ARN); n != 0 {
			t.Errorf("GetSecretValue called %d times, want 0", n)
		}
	})
	t.Run("a secret that may not be read", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceSecretsManager, partial))
		_, err := p.Find(context.Background(), fetch.FindQuery{Path: "app/"})
		checkErr(t, err, fetch.ErrAccessDenied, []string{`"app/b"`, partial.AccessKeyID}, []string{"va", "vb", partial.SecretAccessKey})
	})
	t.Run("without ListSecrets", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceSecretsManager, nolist))
		_, err := p.Find(context.Background(), fetch.FindQuery{Path: "app/"})
		checkErr(t, err, fetch.ErrAccessDenied, []string{"ListSecrets", nolist.AccessKeyID}, nil)
	})
	t.Run("negated prefix", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceSecretsManager, reader))
		_, err := p.Find(context.Background(), fetch.FindQuery{Path: "!app/"})
		checkErr(t, err, fetch.ErrInvalid, nil, nil)
	})
	// As Capabilities declares: by prefix only, on both services.
	t.Run("name and tags are not supported", func(t *testing.T) {
		t.Parallel()
		for _, service := range []string{aws.ServiceSecretsManager, aws.ServiceParameterStore} {
			if c := aws.Capabilities(service).Find; !c.Path || c.Name || c.Tags {
				t.Errorf("%s declares find %+v, want by path only", service, c)
			}
			p := mustNew(t, config(srv, service, reader))
			for _, q := range []fetch.FindQuery{{Path: "app/", Name: "db"}, {Path: "app/", Tags: map[string]string{"team": "a"}}} {
				_, err := p.Find(context.Background(), q)
				checkErr(t, err, fetch.ErrNotSupported, nil, nil)
			}
		}
	})
}

func callsBy(srv *awstest.Server, op, principal string) int {
	n := 0
	for _, c := range srv.CallLog() {
		if c.Op == op && c.Principal == principal {
			n++
		}
	}
	return n
}

func TestParameterStoreFind(t *testing.T) {
	t.Parallel()
	srv := newServer(t) // pages of 2
	reader := srv.AddUser("reader")
	srv.Allow(reader.ARN, "/app", "ssm:GetParametersByPath")
	want := map[string][]byte{
		"/app/a":       []byte("va"),
		"/app/b/c":     []byte("vbc"),
		"/app/b/d/e":   []byte("secure-vbde"),
		"/app/f":       []byte("x,y,z"),
		"/app/g/h/i/j": []byte("deep"),
	}
	srv.PutParameter("/app/a", awstest.String, "old")
	srv.PutParameter("/app/a", awstest.String, "va")
	srv.PutParameter("/app/b/c", awstest.String, "vbc")
	srv.PutParameter("/app/b/d/e", awstest.SecureString, "secure-vbde")
	srv.PutParameter("/app/f", awstest.StringList, "x,y,z")
	srv.PutParameter("/app/g/h/i/j", awstest.SecureString, "deep")
	srv.PutParameter("/apple", awstest.String, "not-under")
	srv.PutParameter("/other/x", awstest.String, "not-under")

	p := mustNew(t, config(srv, aws.ServiceParameterStore, reader))
	got, err := p.Find(context.Background(), fetch.FindQuery{Path: "/app"})
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Find (-want +got):\n%s", diff)
	}
	if n := srv.Calls(awstest.OpGetParametersByPath); n != 3 {
		t.Errorf("GetParametersByPath called %d times, want 3 (5 parameters, 2 a page)", n)
	}

	_, err = p.Find(context.Background(), fetch.FindQuery{Path: "/other"})
	checkErr(t, err, fetch.ErrAccessDenied, []string{`"/other"`, reader.AccessKeyID}, []string{"not-under"})
}

func TestSecretsManagerCurrentVersion(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	watcher := srv.AddUser("watcher")
	srv.Allow(watcher.ARN, "app/", "secretsmanager:DescribeSecret")
	p := mustNew(t, config(srv, aws.ServiceSecretsManager, watcher))
	ctx := context.Background()

	v1 := srv.PutSecretString("app/db", "one")
	got, err := p.CurrentVersion(ctx, "app/db")
	if err != nil || got != v1 {
		t.Fatalf("CurrentVersion = %q, %v; want %q", got, err, v1)
	}
	v2 := srv.PutSecretString("app/db", "two")
	got, err = p.CurrentVersion(ctx, "app/db")
	if err != nil || got != v2 {
		t.Fatalf("after Put CurrentVersion = %q, %v; want the new AWSCURRENT %q", got, err, v2)
	}
	if got == v1 {
		t.Errorf("CurrentVersion did not change after Put")
	}
	// Moving AWSCURRENT back (a rollback) is a change too.
	srv.SetSecretStage("app/db", "AWSCURRENT", v1)
	if got, err = p.CurrentVersion(ctx, "app/db"); err != nil || got != v1 {
		t.Errorf("after rollback CurrentVersion = %q, %v; want %q", got, err, v1)
	}
	if n := srv.Calls(awstest.OpGetSecretValue); n != 0 {
		t.Errorf("CurrentVersion read values: %d GetSecretValue calls", n)
	}

	_, err = p.CurrentVersion(ctx, "app/nope")
	checkErr(t, err, fetch.ErrNotFound, []string{`"app/nope"`, srv.Region()}, nil)
	srv.PutSecretString("other/x", "x")
	_, err = p.CurrentVersion(ctx, "other/x")
	checkErr(t, err, fetch.ErrAccessDenied, []string{`"other/x"`, watcher.AccessKeyID, "DescribeSecret"}, nil)
}

func TestParameterStoreCurrentVersion(t *testing.T) {
	t.Parallel()
	srv := newServer(t) // pages of 2: the parameter is not on the first page
	for _, n := range []string{"/a/1", "/a/2", "/a/3", "/a/4"} {
		srv.PutParameter(n, awstest.String, "filler")
	}
	srv.PutParameter("/app/db", awstest.SecureString, "one")
	describer := srv.AddUser("describer")
	srv.Allow(describer.ARN, "", "ssm:DescribeParameters")
	scoped := srv.AddUser("scoped") // GetParameter on its own parameters only
	srv.Allow(scoped.ARN, "/app/", "ssm:GetParameter")
	ctx := context.Background()

	t.Run("DescribeParameters", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceParameterStore, describer))
		got, err := p.CurrentVersion(ctx, "/app/db")
		if err != nil || got != "1" {
			t.Fatalf("CurrentVersion = %q, %v; want 1", got, err)
		}
		_, err = p.CurrentVersion(ctx, "/app/nope")
		checkErr(t, err, fetch.ErrNotFound, []string{`"/app/nope"`, srv.Region()}, nil)
		if n := callsBy(srv, awstest.OpGetParameter, describer.ARN); n != 0 {
			t.Errorf("GetParameter called %d times, want 0", n)
		}
	})
	t.Run("GetParameter when DescribeParameters is denied", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceParameterStore, scoped))
		for range 3 {
			got, err := p.CurrentVersion(ctx, "/app/db")
			if err != nil || got != "1" {
				t.Fatalf("CurrentVersion = %q, %v; want 1", got, err)
			}
		}
		if n := callsBy(srv, awstest.OpDescribeParameters, scoped.ARN); n != 1 {
			t.Errorf("DescribeParameters tried %d times, want once (then remembered as denied)", n)
		}
	})
	t.Run("changes after Put", func(t *testing.T) {
		t.Parallel()
		srv.PutParameter("/app/rotating", awstest.String, "one")
		p := mustNew(t, config(srv, aws.ServiceParameterStore, describer))
		before, err := p.CurrentVersion(ctx, "/app/rotating")
		if err != nil {
			t.Fatal(err)
		}
		want := srv.PutParameter("/app/rotating", awstest.String, "two")
		after, err := p.CurrentVersion(ctx, "/app/rotating")
		if err != nil || before == after || after != "2" || want != 2 {
			t.Errorf("CurrentVersion before %q, after %q (%v); want 1 then 2", before, after, err)
		}
	})
	t.Run("pinned version", func(t *testing.T) {
		t.Parallel()
		p := mustNew(t, config(srv, aws.ServiceParameterStore, describer))
		_, err := p.CurrentVersion(ctx, "/app/db:1")
		checkErr(t, err, fetch.ErrInvalid, []string{"/app/db:1"}, nil)
	})
}

func TestResolve(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "", "secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets")
	srv.Allow(alice.ARN, "shop/", "secretsmanager:GetSecretValue")
	srv.PutSecretString("shop/db", `{"user":"shop","password":"hunter2","tls":{"ca":"PEM"}}`)
	srv.PutSecretString("shop/flags/beta", "on")

	p := mustNew(t, config(srv, aws.ServiceSecretsManager, alice))
	got, err := fetch.Resolve(context.Background(), p,
		[]plan.Data{
			{SecretKey: "password", Ref: plan.Ref{Key: "shop/db", Property: "password"}},
			{SecretKey: "ca.crt", Ref: plan.Ref{Key: "shop/db", Property: "tls.ca"}},
		},
		[]plan.DataFrom{{Find: &plan.Find{Path: "shop/flags/"}}},
	)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := map[string][]byte{"password": []byte("hunter2"), "ca.crt": []byte("PEM"), "beta": []byte("on")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve (-want +got):\n%s", diff)
	}
	if n := srv.Calls(awstest.OpGetSecretValue); n != 1 {
		t.Errorf("GetSecretValue called %d times for one secret, want 1", n)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	alice := srv.AddUser("alice")
	tests := []struct {
		name   string
		modify func(*aws.Config)
	}{
		{"unknown service", func(c *aws.Config) { c.Service = "S3" }},
		{"no region", func(c *aws.Config) { c.Region = "" }},
		{"region with a path", func(c *aws.Config) { c.Region = "eu-west-1/../x" }},
		{"http endpoint", func(c *aws.Config) { c.Endpoint = "http://127.0.0.1:1" }},
		{"http STS endpoint", func(c *aws.Config) { c.STSEndpoint = "http://127.0.0.1:1" }},
		{"CA bundle without PEM", func(c *aws.Config) { c.CABundle = []byte("not pem") }},
		{"no auth", func(c *aws.Config) { c.Static = nil }},
		{"two auths", func(c *aws.Config) { c.WebIdentity = &aws.WebIdentity{RoleARN: "arn:aws:iam::1:role/r", Token: "t"} }},
		{"static without secret", func(c *aws.Config) { c.Static.SecretAccessKey = "" }},
		{"web identity without token", func(c *aws.Config) {
			c.Static = nil
			c.WebIdentity = &aws.WebIdentity{RoleARN: "arn:aws:iam::1:role/r"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := aws.New(context.Background(), config(srv, aws.ServiceSecretsManager, alice, tt.modify))
			checkErr(t, err, fetch.ErrInvalid, nil, []string{alice.SecretAccessKey})
		})
	}
}

func TestUntrustedServerCertificate(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "", "*")
	srv.PutSecretString("app/db", "v")
	// Without the bundle only the system roots are trusted, and they did not
	// sign the fake's certificate.
	p := mustNew(t, config(srv, aws.ServiceSecretsManager, alice, func(c *aws.Config) { c.CABundle = nil }))
	_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app/db"})
	if err == nil || fetch.Permanent(err) {
		t.Fatalf("GetSecret with an untrusted server certificate = %v, want a transient error", err)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %q does not say the certificate is the problem", err)
	}
}
