package secretsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// ProviderCalls counts calls to providers by the sync, by provider, call
// (login, get_secret, find, current_version) and status (success,
// not_found, access_denied, invalid, throttled, not_supported, error).
var ProviderCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "keyhook_provider_calls_total",
	Help: "Calls from the sync to secret providers, by provider, call and status.",
}, []string{"provider", "call", "status"})

func callStatus(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, fetch.ErrNotFound):
		return "not_found"
	case errors.Is(err, fetch.ErrAccessDenied):
		return "access_denied"
	case errors.Is(err, fetch.ErrInvalid):
		return "invalid"
	case errors.Is(err, fetch.ErrThrottled):
		return "throttled"
	case errors.Is(err, errors.ErrUnsupported):
		return "not_supported"
	default:
		return "error"
	}
}

// ReadCache lets ExternalSecrets that read the same remote secret within a
// short window share one provider read (and one login). Entries are scoped by
// the reader's namespace and the store's whole configuration, so a namespace
// only ever gets what was read with its own identity and store.
type ReadCache struct {
	// TTL bounds how old a shared read may be; a reader whose refresh
	// interval is shorter uses that instead.
	TTL   time.Duration
	Clock clock.PassiveClock
	// Log records sessions that could not be closed (a Vault token not
	// revoked); the zero Logger discards.
	Log logr.Logger

	// SessionTTL is how long a logged-in provider (a Vault token, AWS
	// credentials, a Google connection) serves the ExternalSecrets of one
	// namespace and store before the next read logs in again; 0 logs in
	// for every sync. A session refused with access denied is dropped and
	// the read retried once with a fresh login.
	SessionTTL time.Duration

	mu       sync.Mutex
	entries  map[string]cacheEntry
	sessions map[string]*session
	swept    time.Time // last eviction of expired entries
	stopped  bool      // shut down: no more sessions are shared
	toClose  []fetch.Provider
	flight   singleflight.Group
}

var _ manager.Runnable = (*ReadCache)(nil)

// Start retires expired sessions as they expire, even in scopes nobody reads
// again (a store edited, a namespace deleted), so that their logins are
// closed (a Vault token revoked) within about SessionTTL/4 of expiring; when
// ctx ends (the manager stops) it closes every session: a token must not
// outlive the process that uses it. It implements manager.Runnable.
func (c *ReadCache) Start(ctx context.Context) error {
	if c.SessionTTL > 0 {
		tick := time.NewTicker(max(c.SessionTTL/4, 10*time.Millisecond))
		defer tick.Stop()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-tick.C:
				c.RetireExpired()
			}
		}
	} else {
		<-ctx.Done()
	}
	c.Stop()
	return nil
}

// NeedLeaderElection reports false: every replica closes what it opened.
func (c *ReadCache) NeedLeaderElection() bool { return false }

// RetireExpired retires every session older than SessionTTL; those in use
// are closed when their last user lets go.
func (c *ReadCache) RetireExpired() {
	c.mu.Lock()
	defer c.unlockAndClose()
	now := c.Clock.Now()
	for _, s := range c.sessions {
		if now.Sub(s.at) >= c.SessionTTL {
			c.retireLocked(s)
		}
	}
}

// Stop retires every session and shares no new one: logins made after it
// (a sync still in flight) are closed by the sync that made them.
func (c *ReadCache) Stop() {
	c.mu.Lock()
	defer c.unlockAndClose()
	c.stopped = true
	for _, s := range c.sessions {
		c.retireLocked(s)
	}
}

// session is one login, shared by the syncs of one scope until it expires.
type session struct {
	scope    string
	provider fetch.Provider
	at       time.Time
	users    int  // cachedProviders holding it
	retired  bool // no longer handed out; closed when the last user lets go
}

type cacheEntry struct {
	value []byte
	at    time.Time // when it was asked for
	// first is when the oldest call still in the cache that gave this same
	// answer was made: a remote version has been current at least since.
	first time.Time
}

// NewReadCache returns an empty cache.
func NewReadCache(ttl time.Duration, c clock.PassiveClock) *ReadCache {
	return &ReadCache{TTL: ttl, Clock: c, entries: map[string]cacheEntry{}, sessions: map[string]*session{}}
}

// Provider returns a provider for src that serves reads from the cache and
// builds (logs in with) the real one, from factory, only on a miss. maxAge
// bounds how old a shared read this reader accepts (at most TTL); 0 accepts
// none, as a forced sync must.
func (c *ReadCache) Provider(src *resolve.Source, factory ProviderFactory, maxAge time.Duration) (fetch.Provider, error) {
	return c.provider(src, factory, maxAge)
}

// provider is Provider, with the methods the sync and the version probes
// use besides fetch.Provider's: versionAt and the bounds since and after.
func (c *ReadCache) provider(src *resolve.Source, factory ProviderFactory, maxAge time.Duration) (*cachedProvider, error) {
	spec, err := json.Marshal(src.Store)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spec)
	scope := fmt.Sprintf("%s\x00%s\x00%s\x00%s", src.ExternalSecret.Namespace, src.StoreKind, src.StoreName, hex.EncodeToString(sum[:]))
	maxAge = min(maxAge, c.TTL)
	return &cachedProvider{cache: c, scope: scope, maxAge: maxAge, src: src, factory: factory}, nil
}

type cachedProvider struct {
	cache   *ReadCache
	scope   string
	maxAge  time.Duration
	src     *resolve.Source
	factory ProviderFactory
	// since, when set, refuses shared answers (reads, versions, finds)
	// older than it: a version probe saw a change at since.
	since time.Time
	// after refuses shared reads of a remote key older than the version
	// the sync observed of it: the value it reads is at least that version.
	after map[string]time.Time

	mu      sync.Mutex
	inner   fetch.Provider
	session *session // when inner is a shared session's
	reused  bool     // the session was another sync's login
}

// A cachedProvider is a fetch.Provider: it forwards every capability of
// the provider it wraps (the compiler sees to it), through the cache.
var _ fetch.Provider = (*cachedProvider)(nil)

// provider returns the logged-in provider: this reader's, else a live
// session of its scope, else a new login (shared as a session when
// SessionTTL allows).
func (p *cachedProvider) provider(ctx context.Context) (fetch.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inner != nil {
		return p.inner, nil
	}
	c := p.cache
	if c.SessionTTL > 0 {
		if s := c.acquire(p.scope); s != nil {
			p.inner, p.session, p.reused = s.provider, s, true
			return s.provider, nil
		}
	}
	inner, err := p.factory(ctx, p.src)
	ProviderCalls.WithLabelValues(ProviderName(p.src.Store), "login", callStatus(err)).Inc()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", p.src.StoreKind, p.src.StoreName, err)
	}
	p.inner = inner
	if c.SessionTTL > 0 {
		p.session = c.share(p.scope, inner)
	}
	return inner, nil
}

// relogin drops a reused session that a provider refused, so that the next
// read logs in afresh. It reports whether there was one to drop: a refusal
// of this reader's own fresh login stands.
func (p *cachedProvider) relogin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.session == nil || !p.reused {
		return false
	}
	p.cache.release(p.session, true)
	p.inner, p.session, p.reused = nil, nil, false
	return true
}

// acquire returns a live session of scope, counted as used, or nil.
func (c *ReadCache) acquire(scope string) *session {
	c.mu.Lock()
	defer c.unlockAndClose()
	s := c.sessions[scope]
	if s == nil {
		return nil
	}
	if c.Clock.Since(s.at) >= c.SessionTTL {
		c.retireLocked(s)
		return nil
	}
	s.users++
	return s
}

// share makes a new login the session of scope, retiring the one it
// replaces (two syncs may log in at once) and every expired one: scopes
// that are not read again (a store edited, a namespace deleted) do not keep
// their logins open.
func (c *ReadCache) share(scope string, p fetch.Provider) *session {
	c.mu.Lock()
	defer c.unlockAndClose()
	if c.stopped {
		return nil
	}
	now := c.Clock.Now()
	for _, old := range c.sessions {
		if old.scope == scope || now.Sub(old.at) >= c.SessionTTL {
			c.retireLocked(old)
		}
	}
	s := &session{scope: scope, provider: p, at: now, users: 1}
	c.sessions[scope] = s
	return s
}

// release lets go of a session; retire also stops handing it out.
func (c *ReadCache) release(s *session, retire bool) {
	c.mu.Lock()
	defer c.unlockAndClose()
	s.users--
	if retire || s.retired {
		c.retireLocked(s)
	}
}

// retireLocked stops handing s out, and closes it (after the lock is let
// go) once nobody uses it.
func (c *ReadCache) retireLocked(s *session) {
	if !s.retired {
		s.retired = true
		if c.sessions[s.scope] == s {
			delete(c.sessions, s.scope)
		}
	}
	if s.users == 0 && s.provider != nil {
		c.toClose = append(c.toClose, s.provider)
		s.provider = nil
	}
}

// unlockAndClose unlocks c.mu and then closes the providers of the sessions
// retired meanwhile: closing revokes a Vault token, a network call that
// must not hold up every other sync waiting for the lock.
func (c *ReadCache) unlockAndClose() {
	closing := c.toClose
	c.toClose = nil
	c.mu.Unlock()
	for _, p := range closing {
		closeLogged(c.Log, p)
	}
}

// Close lets go of the provider it used: a session stays open for the next
// sync of its scope; a login of its own is closed.
func (p *cachedProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.session != nil {
		p.cache.release(p.session, false)
		p.inner, p.session, p.reused = nil, nil, false
		return nil
	}
	err := closeProvider(p.inner)
	p.inner = nil
	return err
}

func (p *cachedProvider) GetSecret(ctx context.Context, ref fetch.Ref) ([]byte, error) {
	notBefore := p.since
	if at := p.after[ref.Key]; at.After(notBefore) {
		notBefore = at
	}
	e, err := p.cached(ctx, "get_secret", ref.Key+"\x00"+ref.Version, notBefore, func(inner fetch.Provider) ([]byte, error) {
		return inner.GetSecret(ctx, ref)
	})
	return e.value, err
}

func (p *cachedProvider) CurrentVersion(ctx context.Context, key string) (string, error) {
	v, _, err := p.versionAt(ctx, key)
	return v, err
}

// versionAt is CurrentVersion, and since when the remote secret has been
// at that version at the latest: the first of this process's calls that
// answered it, as long as every later one did too. A value read after that
// time is of this version or a later one.
func (p *cachedProvider) versionAt(ctx context.Context, key string) (string, time.Time, error) {
	e, err := p.cached(ctx, "current_version", key, p.since, func(inner fetch.Provider) ([]byte, error) {
		v, err := inner.CurrentVersion(ctx, key)
		return []byte(v), err
	})
	return string(e.value), e.first, err
}

// Find shares one provider's find among the ExternalSecrets of a scope as
// GetSecret shares reads: the same query within maxAge is answered once.
func (p *cachedProvider) Find(ctx context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	key, err := json.Marshal(q) // map keys are sorted: one key per query
	if err != nil {
		return nil, err
	}
	e, err := p.cached(ctx, "find", string(key), p.since, func(inner fetch.Provider) ([]byte, error) {
		found, err := inner.Find(ctx, q)
		if err != nil {
			return nil, err
		}
		return json.Marshal(found)
	})
	raw := e.value
	if err != nil {
		return nil, err
	}
	var found map[string][]byte
	if err := json.Unmarshal(raw, &found); err != nil {
		return nil, fmt.Errorf("decoding a cached find: %w", err)
	}
	return found, nil
}

// cached answers call for key from an entry at most maxAge old and not
// older than notBefore, else asks the provider (one call for concurrent
// askers). It returns the answer and when it was asked for.
func (p *cachedProvider) cached(ctx context.Context, call, key string, notBefore time.Time, read func(fetch.Provider) ([]byte, error)) (cacheEntry, error) {
	c := p.cache
	k := p.scope + "\x00" + call + "\x00" + key
	now := c.Clock.Now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < p.maxAge && !e.at.Before(notBefore) {
		return e, nil
	}
	// Concurrent readers of one key wait for one read. A reader bounded by
	// notBefore joins only readers with the same bound, whose call starts
	// after it; never one that began before a change was seen.
	flight := k
	if !notBefore.IsZero() {
		flight += "\x00" + strconv.FormatInt(notBefore.UnixNano(), 10)
	}
	v, err, _ := c.flight.Do(flight, func() (any, error) {
		inner, err := p.provider(ctx)
		if err != nil {
			return nil, err
		}
		at := c.Clock.Now()
		b, err := read(inner)
		ProviderCalls.WithLabelValues(ProviderName(p.src.Store), call, callStatus(err)).Inc()
		if errors.Is(err, fetch.ErrAccessDenied) && p.relogin() {
			// A reused login may have expired or been revoked: once more
			// with a fresh one, whose answer stands.
			if inner, err = p.provider(ctx); err != nil {
				return nil, err
			}
			b, err = read(inner)
			ProviderCalls.WithLabelValues(ProviderName(p.src.Store), call, callStatus(err)).Inc()
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", p.src.StoreKind, p.src.StoreName, err)
		}
		e := cacheEntry{value: b, at: at, first: at}
		c.mu.Lock()
		old, ok := c.entries[k]
		if ok && bytes.Equal(old.value, b) && old.first.Before(at) {
			e.first = old.first // the same answer all along
		}
		if !ok || !old.at.After(at) {
			c.entries[k] = e
		}
		c.evictLocked(at)
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return cacheEntry{}, err
	}
	return v.(cacheEntry), nil
}

// evictLocked drops expired entries, at most twice per TTL, so that values
// do not linger in memory much longer than they can be served.
func (c *ReadCache) evictLocked(now time.Time) {
	if now.Sub(c.swept) < c.TTL/2 {
		return
	}
	c.swept = now
	for k, e := range c.entries {
		if now.Sub(e.at) >= c.TTL {
			delete(c.entries, k)
		}
	}
}
