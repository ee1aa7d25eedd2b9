package gcpsm_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/fetchtest"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
	"github.com/keyhook/keyhook/pkg/plan"
)

// TestNothingLeaks turns the Google client's debug logging on (which logs
// whole responses) and drives successes and every failure the provider
// reports, then checks that no secret value, key or token appears in any
// error (at any depth of its chain) nor in anything written to stderr or
// the standard loggers. It swaps process-wide state, so it does not run in
// parallel.
func TestNothingLeaks(t *testing.T) {
	t.Setenv("GOOGLE_SDK_GO_LOGGING_LEVEL", "debug")
	var logs bytes.Buffer
	stdOut, stdFlags, slogDefault, stderr := log.Writer(), log.Flags(), slog.Default(), os.Stderr
	captured, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	log.SetOutput(&logs)
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	os.Stderr = captured
	t.Cleanup(func() {
		os.Stderr = stderr
		log.SetOutput(stdOut)
		log.SetFlags(stdFlags)
		slog.SetDefault(slogDefault)
	})

	const (
		value   = "leak-value-Qx81"
		binary  = "\x00leak-binary-Lm5\xff"
		pinned  = "leak-old-Rt62"
		invalid = "leak-invalid-Wz07"
	)
	srv := newServer(t)
	key := srv.ServiceAccountKey(reader)
	srv.Allow(reader, "db")
	srv.Allow(reader, "bin")
	srv.Put("db", []byte(pinned))
	srv.Put("db", []byte(value))
	srv.Disable("db", 1)
	srv.Put("bin", []byte(binary))
	srv.Put("denied", []byte(value))
	srv.Put("plain", []byte(invalid))
	srv.Allow(reader, "plain")
	token := srv.AddToken(reader)
	revoked := srv.ServiceAccountKey(other)
	srv.RevokeKeys(other)

	ctx := context.Background()
	p := mustNew(t, config(srv, key))
	for _, k := range []string{"db", "bin"} {
		if _, err := p.GetSecret(ctx, fetch.Ref{Key: k}); err != nil {
			t.Fatalf("GetSecret(%s): %v", k, err)
		}
	}

	var errs []error
	get := func(key, version string) {
		_, err := p.GetSecret(ctx, fetch.Ref{Key: key, Version: version})
		errs = append(errs, err)
	}
	get("db", "1")
	get("denied", "")
	get("nope", "")
	srv.Throttle(1)
	get("db", "")
	srv.CorruptChecksum(1)
	get("db", "")
	srv.CorruptChecksum(1)
	get("bin", "")
	_, err = fetch.Resolve(ctx, p, []plan.Data{{SecretKey: "k", Ref: plan.Ref{Key: "plain", Property: "x"}}}, nil)
	errs = append(errs, err)
	_, err = gcpsm.New(ctx, config(srv, revoked))
	errs = append(errs, err)
	_, err = gcpsm.New(ctx, config(srv, []byte(strings.Replace(string(key), "service_account", "external_account", 1))))
	errs = append(errs, err)
	_, err = gcpsm.New(ctx, config(srv, []byte(strings.Replace(string(key), "-----BEGIN", "--BEGIN", 1))))
	errs = append(errs, err)
	_, err = gcpsm.New(ctx, config(srv, key[:len(key)/2]))
	errs = append(errs, err)

	never := []string{value, binary, pinned, invalid, token, "PRIVATE KEY", "MII", "ya29."}
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
	out, err := os.ReadFile(captured.Name())
	if err != nil {
		t.Fatal(err)
	}
	all := string(out) + logs.String()
	for _, v := range []string{value, binary, pinned, invalid} {
		// Protocol buffers log bytes fields in base64.
		never = append(never, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	for _, n := range never {
		if strings.Contains(all, n) {
			t.Errorf("logs hold %q:\n%s", n, all)
		}
	}
}

// TestApplicationDefaultCredentials reads as the key that
// GOOGLE_APPLICATION_CREDENTIALS names when Config has no credentials, and
// names it in errors. t.Setenv rules out t.Parallel.
func TestApplicationDefaultCredentials(t *testing.T) {
	srv := newServer(t)
	srv.Allow(reader, "db")
	srv.Put("db", []byte("adc-value"))
	srv.Put("other", []byte("other-value"))
	file := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(file, srv.ServiceAccountKey(reader), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", file)

	p := mustNew(t, config(srv, nil))
	got, err := p.GetSecret(context.Background(), fetch.Ref{Key: "db"})
	if err != nil || string(got) != "adc-value" {
		t.Fatalf("GetSecret = %q, %v", got, err)
	}
	_, err = p.GetSecret(context.Background(), fetch.Ref{Key: "other"})
	checkErr(t, err, fetch.ErrAccessDenied, []string{"application default credentials (service account " + reader + ")"}, []string{"other-value"})
	if calls := srv.Calls(); calls[0].Method != gcpsmtest.MethodToken || calls[0].Principal != reader {
		t.Errorf("first call %+v, want a token for %s", calls[0], reader)
	}

	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	_, err = gcpsm.New(context.Background(), config(srv, nil))
	checkErr(t, err, fetch.ErrAccessDenied, []string{"application default credentials", "missing.json"}, nil)
}
