package secretsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// backend counts logins, reads and closes of the providers it hands out.
type backend struct {
	mu             sync.Mutex
	logins, closed int
	finds          int
	reads          map[string]int // key → reads
	deny           func(login int) bool
	closeErr       error // what Close returns
}

type fakeProvider struct {
	b     *backend
	login int
	ns    string
}

func (b *backend) factory(_ context.Context, src *resolve.Source) (fetch.Provider, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logins++
	return &fakeProvider{b: b, login: b.logins, ns: src.ExternalSecret.Namespace}, nil
}

func (p *fakeProvider) GetSecret(_ context.Context, ref fetch.Ref) ([]byte, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.deny != nil && p.b.deny(p.login) {
		return nil, fmt.Errorf("login %d: %w", p.login, fetch.ErrAccessDenied)
	}
	p.b.reads[ref.Key]++
	return []byte(p.ns + ":" + ref.Key), nil
}

// Find finds the keys read so far, with their value: enough to tell that
// the query reached this provider through the cache.
func (p *fakeProvider) Find(_ context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.b.finds++
	out := map[string][]byte{}
	for k := range p.b.reads {
		if strings.HasPrefix(k, q.Path) {
			out[k] = []byte(p.ns + ":" + k)
		}
	}
	return out, nil
}

func (p *fakeProvider) CurrentVersion(context.Context, string) (string, error) {
	return "", fetch.ErrNotSupported
}

func (p *fakeProvider) Close() error {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.b.closed++
	return p.b.closeErr
}

func source(ns string) *resolve.Source {
	return &resolve.Source{
		ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "es"}},
		StoreKind:      v1alpha1.SecretStoreKindCluster,
		StoreName:      "vault",
		Store:          &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: "https://vault"}}},
	}
}

// sync reads key as one reconcile of an ExternalSecret of ns does, and lets
// go of the provider after.
func syncOnce(t *testing.T, c *ReadCache, b *backend, ns, key string) (string, error) {
	t.Helper()
	p, err := c.Provider(source(ns), b.factory, c.TTL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = closeProvider(p) }()
	v, err := p.GetSecret(context.Background(), fetch.Ref{Key: key})
	return string(v), err
}

func TestReadCacheSharesReadsWithinANamespaceOnly(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(10*time.Second, clk)
	b := &backend{reads: map[string]int{}}
	for _, ns := range []string{"a", "a", "b"} {
		v, err := syncOnce(t, c, b, ns, "db")
		if err != nil || v != ns+":db" {
			t.Fatalf("namespace %s read %q, %v", ns, v, err)
		}
	}
	if b.reads["db"] != 2 || b.logins != 2 {
		t.Errorf("reads %d, logins %d; want 2 and 2 (one per namespace)", b.reads["db"], b.logins)
	}
	if b.closed != 2 {
		t.Errorf("%d providers closed, want 2: without sessions every login is closed after its sync", b.closed)
	}
}

func TestSessionsReuseOneLogin(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(10*time.Second, clk)
	c.SessionTTL = 5 * time.Minute
	b := &backend{reads: map[string]int{}}

	// Three refresh cycles a minute apart: the reads are fresh each time
	// (past the read TTL), the login is not.
	for range 3 {
		if _, err := syncOnce(t, c, b, "a", "db"); err != nil {
			t.Fatal(err)
		}
		clk.Step(time.Minute)
	}
	if b.reads["db"] != 3 || b.logins != 1 || b.closed != 0 {
		t.Errorf("reads %d, logins %d, closed %d; want 3, 1, 0", b.reads["db"], b.logins, b.closed)
	}
	// Another namespace never gets that session.
	if v, _ := syncOnce(t, c, b, "b", "db"); v != "b:db" || b.logins != 2 {
		t.Errorf("namespace b read %q with %d logins in all, want its own login", v, b.logins)
	}
	// Past SessionTTL: a new login, and the expired sessions (a's, and b's
	// of the same age) are closed.
	clk.Step(5 * time.Minute)
	if _, err := syncOnce(t, c, b, "a", "db"); err != nil {
		t.Fatal(err)
	}
	if b.logins != 3 || b.closed != 2 {
		t.Errorf("logins %d, closed %d after the sessions expired; want 3 and 2", b.logins, b.closed)
	}
}

func TestSessionRefusedLogsInAgain(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Second, clk)
	c.SessionTTL = 5 * time.Minute
	b := &backend{reads: map[string]int{}}
	if _, err := syncOnce(t, c, b, "a", "db"); err != nil {
		t.Fatal(err)
	}
	// The first login's token is revoked: its reuse is refused, one fresh
	// login reads.
	b.deny = func(login int) bool { return login == 1 }
	clk.Step(2 * time.Second)
	if v, err := syncOnce(t, c, b, "a", "db"); err != nil || v != "a:db" {
		t.Fatalf("after a refused session: %q, %v", v, err)
	}
	if b.logins != 2 || b.closed != 1 {
		t.Errorf("logins %d, closed %d; want 2 and 1", b.logins, b.closed)
	}
	// A fresh login that is refused is an answer: no second try.
	b.deny = func(int) bool { return true }
	clk.Step(6 * time.Minute)
	_, err := syncOnce(t, c, b, "a", "db")
	if !errors.Is(err, fetch.ErrAccessDenied) {
		t.Fatalf("err = %v, want access denied", err)
	}
	if b.logins != 3 {
		t.Errorf("logins %d, want 3: a refused fresh login is not retried", b.logins)
	}
}

func TestSessionsConcurrentSyncs(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Nanosecond, clk)
	c.SessionTTL = time.Minute
	b := &backend{reads: map[string]int{}}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, err := syncOnce(t, c, b, "a", fmt.Sprint("k", i%5)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	clk.Step(2 * time.Minute)
	if _, err := syncOnce(t, c, b, "a", "k0"); err != nil {
		t.Fatal(err)
	}
	// Every login but the live session's has been closed, none twice.
	if b.closed != b.logins-1 {
		t.Errorf("logins %d, closed %d; want all but the live session closed", b.logins, b.closed)
	}
}

func TestExpiredSessionsOfOtherScopesAreClosed(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Second, clk)
	c.SessionTTL = time.Minute
	b := &backend{reads: map[string]int{}}
	if _, err := syncOnce(t, c, b, "gone", "db"); err != nil {
		t.Fatal(err)
	}
	clk.Step(2 * time.Minute)
	// Namespace "gone" is never read again; the next login anywhere closes
	// its expired session.
	if _, err := syncOnce(t, c, b, "other", "db"); err != nil {
		t.Fatal(err)
	}
	if b.closed != 1 || len(c.sessions) != 1 {
		t.Errorf("closed %d, sessions %d; want the expired session closed and only the new one kept", b.closed, len(c.sessions))
	}
}

func TestReadCacheForgetsExpiredValues(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Minute, clk)
	b := &backend{reads: map[string]int{}}
	if _, err := syncOnce(t, c, b, "a", "db"); err != nil {
		t.Fatal(err)
	}
	clk.Step(2 * time.Minute)
	if _, err := syncOnce(t, c, b, "a", "api"); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if strings.Contains(k, "db") {
			t.Error("an expired value is still held in memory")
		}
	}
}

// A session expires on the clock, not at the next login: a scope nobody
// reads again has its login closed (its Vault token revoked) by the sweep.
func TestExpiredSessionsAreClosedWithoutAnotherLogin(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Second, clk)
	c.SessionTTL = time.Minute
	b := &backend{reads: map[string]int{}}
	for _, ns := range []string{"a", "b"} {
		if _, err := syncOnce(t, c, b, ns, "db"); err != nil {
			t.Fatal(err)
		}
	}
	c.RetireExpired()
	if b.closed != 0 {
		t.Fatalf("closed %d live sessions", b.closed)
	}
	clk.Step(time.Minute)
	c.RetireExpired()
	if b.closed != 2 || len(c.sessions) != 0 || b.logins != 2 {
		t.Errorf("logins %d, closed %d, sessions left %d; want both expired sessions closed, no login", b.logins, b.closed, len(c.sessions))
	}
}

// On shutdown every session is closed, one in use as soon as its sync lets
// go, and a login made after the stop is not kept as a session.
func TestStopClosesEverySession(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Second, clk)
	c.SessionTTL = time.Hour
	b := &backend{reads: map[string]int{}}
	if _, err := syncOnce(t, c, b, "idle", "db"); err != nil {
		t.Fatal(err)
	}
	busy, err := c.Provider(source("busy"), b.factory, c.TTL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := busy.GetSecret(context.Background(), fetch.Ref{Key: "db"}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Start(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.closed != 1 {
		t.Errorf("closed %d after the stop, want the idle session's 1", b.closed)
	}
	if err := closeProvider(busy); err != nil {
		t.Fatal(err)
	}
	if b.closed != 2 {
		t.Errorf("closed %d after the busy sync let go, want 2", b.closed)
	}
	// A sync still in flight after the stop logs in; its login is its own.
	if _, err := syncOnce(t, c, b, "late", "db"); err != nil {
		t.Fatal(err)
	}
	if b.logins != 3 || b.closed != 3 || len(c.sessions) != 0 {
		t.Errorf("logins %d, closed %d, sessions %d; want the late login closed, no session kept", b.logins, b.closed, len(c.sessions))
	}
}

// The read cache forwards find (dataFrom.find) to the provider it wraps, and
// shares its answer within a scope as it shares reads: it used to wrap
// providers in a type that dropped the capability, so find failed in the
// sync alone.
func TestReadCacheForwardsFind(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Minute, clk)
	b := &backend{reads: map[string]int{"app/db": 1, "app/api": 1, "other/x": 1}}
	es := source("a").ExternalSecret
	es.Spec.DataFrom = []v1alpha1.ExternalSecretDataFrom{{Find: &v1alpha1.ExternalSecretFind{Path: "app/"}}}
	for range 2 {
		p, err := c.Provider(source("a"), b.factory, c.TTL)
		if err != nil {
			t.Fatal(err)
		}
		got, err := resolveData(context.Background(), p, es)
		if err != nil {
			t.Fatalf("find through the read cache: %v", err)
		}
		want := map[string]string{"db": "a:app/db", "api": "a:app/api"}
		if len(got) != len(want) || string(got["db"]) != want["db"] || string(got["api"]) != want["api"] {
			t.Errorf("found %q, want %q", got, want)
		}
		_ = closeProvider(p)
	}
	if b.finds != 1 {
		t.Errorf("the provider was asked to find %d times for one query within the TTL, want 1", b.finds)
	}
}

// A session that cannot be closed (a Vault token revoke-self refused or
// unreachable) is logged by the cache: the token then lives to its TTL and
// whoever counts Vault's leases must be able to see why.
func TestSessionCloseFailureIsLogged(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(time.Second, clk)
	c.SessionTTL = time.Minute
	var lines []string
	c.Log = funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	b := &backend{reads: map[string]int{}, closeErr: errors.New("revoke-self: connection refused")}
	if _, err := syncOnce(t, c, b, "a", "db"); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 0 {
		t.Fatalf("logged %q before any session closed", lines)
	}
	clk.Step(2 * time.Minute)
	c.RetireExpired()
	if b.closed != 1 {
		t.Fatalf("closed %d sessions, want the expired 1", b.closed)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "revoke-self: connection refused") || !strings.Contains(lines[0], "unrevoked") {
		t.Errorf("logged %q, want one line with the close error", lines)
	}
}
