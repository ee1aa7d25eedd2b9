package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhook/keyhook/pkg/agent"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

// recorder is the world the fake providers act in: what happened, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
	lines  []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) log(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// fakeProvider is one login to a store; values are "store/key".
type fakeProvider struct {
	r        *recorder
	store    string
	missing  string // a key that does not exist
	closeErr error
}

func (p *fakeProvider) GetSecret(_ context.Context, ref fetch.Ref) ([]byte, error) {
	p.r.add("read " + p.store + "/" + ref.Key)
	if ref.Key == p.missing {
		return nil, fmt.Errorf("reading %s: %w", ref.Key, fetch.ErrNotFound)
	}
	return []byte(p.store + "/" + ref.Key), nil
}

func (p *fakeProvider) Find(context.Context, fetch.FindQuery) (map[string][]byte, error) {
	return nil, fetch.ErrNotSupported
}

func (p *fakeProvider) CurrentVersion(context.Context, string) (string, error) {
	return "", fetch.ErrNotSupported
}

func (p *fakeProvider) Close() error {
	p.r.add("close " + p.store)
	return p.closeErr
}

func secret(name, store string, keys ...string) plan.Secret {
	s := plan.Secret{Name: name, Dir: "/s/" + name, Store: plan.Store{Kind: "SecretStore", Name: store, Vault: &plan.Vault{Server: "https://" + store}}}
	for _, k := range keys {
		s.Data = append(s.Data, plan.Data{SecretKey: k, Ref: plan.Ref{Key: k}})
	}
	return s
}

func run(t *testing.T, r *recorder, p *plan.Plan, tweak func(*fakeProvider)) error {
	t.Helper()
	return runIn(t, t.TempDir(), r, p, tweak)
}

func runIn(t *testing.T, root string, r *recorder, p *plan.Plan, tweak func(*fakeProvider)) error {
	t.Helper()
	return agent.Run(context.Background(), agent.Config{
		Plan: p, Root: root, Deadline: 10 * time.Second, Getenv: os.Getenv, Log: r.log,
		NewProvider: func(_ context.Context, s plan.Store, _ agent.Config) (fetch.Provider, error) {
			r.add("login " + s.Name)
			fp := &fakeProvider{r: r, store: s.Name}
			if tweak != nil {
				tweak(fp)
			}
			return fp, nil
		},
	})
}

// Each store's login is closed (a Vault token revoked) as soon as the files
// of the last ExternalSecret that uses it are written, not at the end.
func TestCredentialsReleasedAsSoonAsTheirFilesAreWritten(t *testing.T) {
	r := &recorder{}
	p := &plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
		secret("one", "a", "x"), secret("two", "a", "y"), secret("three", "b", "z"),
	}}
	if err := run(t, r, p, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"login a", "read a/x", "read a/y", "close a", "login b", "read b/z", "close b"}
	if strings.Join(r.events, "; ") != strings.Join(want, "; ") {
		t.Errorf("events:\n got %v\nwant %v", r.events, want)
	}
}

// A failure releases every login too.
func TestCredentialsReleasedOnFailure(t *testing.T) {
	r := &recorder{}
	p := &plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
		secret("one", "a", "x"), secret("two", "b", "gone"), secret("three", "a", "y"),
	}}
	err := run(t, r, p, func(fp *fakeProvider) { fp.missing = "gone" })
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	closed := map[string]int{}
	for _, e := range r.events {
		if s, ok := strings.CutPrefix(e, "close "); ok {
			closed[s]++
		}
	}
	if closed["a"] != 1 || closed["b"] != 1 {
		t.Errorf("closed %v, want each login closed once; events %v", closed, r.events)
	}
}

// A revocation that fails does not fail the pod: one line says so. (That
// the error holds no token is pkg/fetch/vault's test.)
func TestFailedReleaseIsLoggedNotFatal(t *testing.T) {
	r := &recorder{}
	root := t.TempDir()
	p := &plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{secret("one", "a", "x")}}
	err := runIn(t, root, r, p, func(fp *fakeProvider) {
		fp.closeErr = fmt.Errorf("revoking the Vault token at auth/token/revoke-self:\n\tvault answered 403: %w", fetch.ErrAccessDenied)
	})
	if err != nil {
		t.Fatalf("the pod failed for a failed revocation: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "s", "one", "x")); err != nil || string(b) != "a/x" {
		t.Errorf("file one/x = %q, %v", b, err)
	}
	var warnings []string
	for _, l := range r.lines {
		if strings.Contains(l, "revoke-self") {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 1 || strings.Contains(warnings[0], "\n") || !strings.Contains(warnings[0], "SecretStore a") {
		t.Errorf("warnings = %q, want one line naming the store", warnings)
	}
}
