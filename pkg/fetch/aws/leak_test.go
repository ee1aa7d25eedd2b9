package aws_test

import (
	"bytes"
	"context"
	"errors"
	"log"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/aws"
	"github.com/keyhook/keyhook/pkg/fetch/aws/awstest"
	"github.com/keyhook/keyhook/pkg/fetch/fetchtest"
	"github.com/keyhook/keyhook/pkg/plan"
)

// TestNothingLeaks drives every failure the providers report, and a few
// successes, and checks that no secret value, secret key or token appears in
// any error (at any depth of its chain) or in anything logged through the
// standard loggers. It swaps the process-wide loggers, so it does not run in
// parallel.
func TestNothingLeaks(t *testing.T) {
	var logs bytes.Buffer
	stdOut, stdFlags := log.Writer(), log.Flags()
	slogDefault := slog.Default()
	log.SetOutput(&logs)
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		log.SetOutput(stdOut)
		log.SetFlags(stdFlags)
		slog.SetDefault(slogDefault)
	})

	const (
		smValue   = "sm-value-7Hq2"
		ssmValue  = "ssm-value-Zp9w"
		notJSON   = "plain-value-Kd3r"
		webToken  = "eyJ.web-token-Qm4x.sig"
		wrongToke = "eyJ.wrong-token-Vb8n.sig"
	)
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "app/", "secretsmanager:GetSecretValue")
	srv.Allow(alice.ARN, "/app/", "ssm:GetParameter", "ssm:GetParametersByPath")
	srv.Allow(alice.ARN, "", "secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets")
	role := srv.AddRole("reader", awstest.Trust{WebIdentity: awstest.ExpectToken(webToken, "system:serviceaccount:ns:sa")})
	srv.Allow(role, "app/", "secretsmanager:GetSecretValue")
	srv.PutSecretString("app/db", `{"password":"`+smValue+`"}`)
	srv.PutSecretString("app/plain", notJSON)
	srv.PutSecretString("secret-elsewhere/x", smValue)
	srv.PutSecretString("app/zz-denied-by-name", smValue) // readable by prefix "app/"
	srv.PutParameter("/app/db", awstest.SecureString, ssmValue)
	srv.PutParameter("/elsewhere/db", awstest.SecureString, ssmValue)
	wrongKey := alice
	wrongKey.SecretAccessKey = strings.Repeat("W", 40)

	ctx := context.Background()
	sm := mustNew(t, config(srv, aws.ServiceSecretsManager, alice))
	ps := mustNew(t, config(srv, aws.ServiceParameterStore, alice))
	bad := mustNew(t, config(srv, aws.ServiceSecretsManager, wrongKey))

	// Successes first: whatever they log must not hold values either.
	for _, r := range []struct {
		p   fetch.Provider
		key string
	}{{sm, "app/db"}, {ps, "/app/db"}} {
		if _, err := r.p.GetSecret(ctx, fetch.Ref{Key: r.key}); err != nil {
			t.Fatalf("GetSecret(%s): %v", r.key, err)
		}
	}

	var errs []error
	get := func(p fetch.Provider, key, version string) {
		_, err := p.GetSecret(ctx, fetch.Ref{Key: key, Version: version})
		errs = append(errs, err)
	}
	get(sm, "app/db", "AWSPENDING")
	get(sm, "secret-elsewhere/x", "")
	get(bad, "app/db", "")
	get(ps, "/app/db", "7")
	get(ps, "/app/db:1", "2")
	get(ps, "/elsewhere/db", "")
	srv.Throttle(1)
	get(sm, "app/db", "")
	_, err := sm.Find(ctx, fetch.FindQuery{Path: "secret-elsewhere/"})
	errs = append(errs, err)
	_, err = ps.Find(ctx, fetch.FindQuery{Path: "/elsewhere"})
	errs = append(errs, err)
	_, err = fetch.Resolve(ctx, sm, []plan.Data{{SecretKey: "k", Ref: plan.Ref{Key: "app/db", Property: "nope"}}}, nil)
	errs = append(errs, err)
	_, err = fetch.Resolve(ctx, sm, nil, []plan.DataFrom{{Extract: &plan.Ref{Key: "app/plain"}}})
	errs = append(errs, err)
	_, err = aws.New(ctx, config(srv, aws.ServiceSecretsManager, awstest.Keys{}, func(c *aws.Config) {
		c.Static = nil
		c.WebIdentity = &aws.WebIdentity{RoleARN: role, Token: wrongToke}
	}))
	errs = append(errs, err)

	never := []string{smValue, ssmValue, notJSON, webToken, wrongToke, alice.SecretAccessKey, wrongKey.SecretAccessKey}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		for _, e := range fetchtest.Chain(err) {
			for _, n := range never {
				if strings.Contains(e.Error(), n) {
					t.Errorf("case %d: error %q holds %q", i, e, n)
				}
			}
		}
	}
	for _, n := range never {
		if strings.Contains(logs.String(), n) {
			t.Errorf("log output holds %q:\n%s", n, logs.String())
		}
	}
}

// TestEnvironmentIgnored sets the variables the SDK's default chain reads
// and checks that they change nothing: endpoints, region, keys, retries and
// web identity all come from Config alone. t.Setenv rules out t.Parallel.
func TestEnvironmentIgnored(t *testing.T) {
	srv := newServer(t)
	alice := srv.AddUser("alice")
	srv.Allow(alice.ARN, "app/", "secretsmanager:GetSecretValue")
	srv.PutSecretString("app/db", "value")
	other := srv.AddUser("env-user")
	srv.Allow(other.ARN, "", "*")
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte("env-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":                 "https://127.0.0.1:1",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": "https://127.0.0.1:1",
		"AWS_REGION":                       "us-west-2",
		"AWS_DEFAULT_REGION":               "us-west-2",
		"AWS_ACCESS_KEY_ID":                other.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":            other.SecretAccessKey,
		"AWS_ROLE_ARN":                     "arn:aws:iam::123456789012:role/from-env",
		"AWS_WEB_IDENTITY_TOKEN_FILE":      tokenFile,
		"AWS_MAX_ATTEMPTS":                 "5",
		"AWS_RETRY_MODE":                   "adaptive",
		"AWS_CA_BUNDLE":                    "/nonexistent/ca.pem",
		"AWS_CONFIG_FILE":                  "/nonexistent/config",
		"AWS_SHARED_CREDENTIALS_FILE":      "/nonexistent/credentials",
	} {
		t.Setenv(k, v)
	}

	p := mustNew(t, config(srv, aws.ServiceSecretsManager, alice))
	if got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app/db"}); err != nil || string(got) != "value" {
		t.Fatalf("GetSecret = %q, %v", got, err)
	}
	srv.Throttle(1)
	_, err := p.GetSecret(context.Background(), fetch.Ref{Key: "app/db"})
	if !errors.Is(err, fetch.ErrThrottled) {
		t.Fatalf("throttled GetSecret = %v, want ErrThrottled", err)
	}
	for _, c := range srv.CallLog() {
		if c.Principal == other.ARN {
			t.Errorf("a call was made with the keys of the environment: %+v", c)
		}
	}
	if n := srv.Calls(awstest.OpGetSecretValue); n != 2 {
		t.Errorf("%d GetSecretValue calls, want 2: AWS_MAX_ATTEMPTS must not turn retries on", n)
	}
}
