// Package agent executes a plan inside an injected pod: it authenticates as
// the pod, fetches every ExternalSecret of the plan and writes each key as a
// file, atomically, into the pod's in-memory volume.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/providers/agentlogins"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

// Config of one agent run.
type Config struct {
	// Plan to execute.
	Plan *plan.Plan
	// Root prefixes every path of the plan. "" in a pod; a temporary
	// directory when the agent runs outside one (tests, the demo).
	Root string
	// Deadline bounds the whole run, retries included.
	Deadline time.Duration
	// Getenv reads the agent's environment (token env vars).
	Getenv func(string) string
	// Log receives one line per event; never a value.
	Log func(format string, args ...any)
	// NewProvider builds a provider for a store; nil means the real ones.
	NewProvider func(ctx context.Context, store plan.Store, cfg Config) (fetch.Provider, error)
}

// Run executes the plan. Transient failures are retried with backoff and
// jitter until the deadline; permanent ones (not found, access denied, an
// invalid reference) fail at once, since the kubelet restarts the init
// container anyway. The error names the ExternalSecret, the key and the cause.
func Run(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	if cfg.NewProvider == nil {
		cfg.NewProvider = NewProvider
	}
	// One provider per distinct store: one login however many keys it serves.
	// Each is closed (its Vault token revoked) as soon as the files of the
	// last ExternalSecret that uses it are written, and on failure before
	// Run returns: a token must not outlive the agent's need for it.
	providers := map[string]fetch.Provider{}
	storeNames := map[string]string{}
	release := func(key string) {
		p, ok := providers[key]
		if !ok {
			return
		}
		delete(providers, key)
		if err := p.Close(); err != nil {
			// The files are what the pod needs; a token left to expire
			// with its TTL is not worth failing the pod for.
			cfg.Log("warning: %s: %s", storeNames[key], oneLine(err.Error()))
		}
	}
	defer func() {
		for _, key := range slices.Sorted(maps.Keys(providers)) {
			release(key)
		}
	}()
	keys := make([]string, len(cfg.Plan.Secrets))
	last := map[string]int{} // store key → index of the last secret using it
	for i, s := range cfg.Plan.Secrets {
		storeKey, err := json.Marshal(s.Store)
		if err != nil {
			return fmt.Errorf("ExternalSecret %s: %w", s.Name, err)
		}
		keys[i] = string(storeKey)
		last[keys[i]] = i
		storeNames[keys[i]] = s.Store.Kind + " " + s.Store.Name
	}
	for i, s := range cfg.Plan.Secrets {
		storeKey := keys[i]
		var data map[string][]byte
		err := retry(ctx, func() error {
			p, ok := providers[storeKey]
			if !ok {
				var err error
				if p, err = cfg.NewProvider(ctx, s.Store, cfg); err != nil {
					return fmt.Errorf("%s %s: %w", s.Store.Kind, s.Store.Name, err)
				}
				providers[storeKey] = p
			}
			var err error
			data, err = fetch.Resolve(ctx, p, s.Data, s.DataFrom)
			return err
		}, func(err error, wait time.Duration) {
			cfg.Log("ExternalSecret %s: %v; retrying in %s", s.Name, err, wait.Round(time.Millisecond))
		})
		if err != nil {
			return fmt.Errorf("ExternalSecret %s: %w", s.Name, err)
		}
		dir := filepath.Join(cfg.Root, s.Dir)
		if err := writeFiles(dir, data, os.FileMode(cfg.Plan.FileMode)); err != nil {
			return fmt.Errorf("ExternalSecret %s: %w", s.Name, err)
		}
		cfg.Log("ExternalSecret %s: wrote %s to %s", s.Name, keyList(data), s.Dir)
		if last[storeKey] == i {
			release(storeKey)
		}
	}
	return nil
}

// NewProvider builds the real provider for a store of the plan. Which
// providers an agent has depends on its build (Built): a store of a provider
// it lacks fails at once, naming the image to use instead.
func NewProvider(ctx context.Context, store plan.Store, cfg Config) (fetch.Provider, error) {
	for _, l := range agentlogins.All() {
		if l.Planned(store) {
			return l.Login(ctx, store, agentdriver.Env{Root: cfg.Root, Getenv: cfg.Getenv})
		}
	}
	if name := store.Provider(); name != "" {
		return nil, notBuilt(name)
	}
	return nil, fmt.Errorf("no provider this agent supports: %w", fetch.ErrInvalid)
}

// Built lists the providers this agent was built with (build tags vault,
// aws, gcpsm; all, or none, builds every one), by their plan.Provider names.
func Built() []string {
	var out []string
	for _, l := range agentlogins.All() {
		out = append(out, l.Name)
	}
	return out
}

// notBuilt is the error of a store whose provider this agent lacks:
// permanent, so the pod fails at once with what to change.
func notBuilt(provider string) error {
	return fmt.Errorf("this init-agent was built without the %s provider (it has %s): the webhook's --agent-image-%s must name an image with it, e.g. the all-provider image: %w",
		provider, strings.Join(Built(), ", "), provider, fetch.ErrInvalid)
}

func retry(ctx context.Context, op func() error, onRetry func(error, time.Duration)) error {
	const (
		first = 200 * time.Millisecond
		most  = 5 * time.Second
	)
	wait := first
	var last error
	for {
		err := op()
		if err == nil || fetch.Permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			// The attempt cut short by the deadline says less than the one
			// before it ("connection refused" beats "deadline exceeded").
			if last != nil && errors.Is(err, context.DeadlineExceeded) {
				err = last
			}
			return fmt.Errorf("gave up at the deadline: %w", err)
		}
		last = err
		// Full jitter keeps a fleet of pods from retrying in step.
		d := wait/2 + rand.N(wait/2+1)
		onRetry(err, d)
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up at the deadline: %w", last)
		case <-time.After(d):
		}
		wait = min(2*wait, most)
	}
}

// writeFiles writes each key to dir/key with mode, atomically: a reader sees
// the old file or the new one, never a partial write.
func writeFiles(dir string, data map[string][]byte, mode os.FileMode) error {
	dirMode := os.FileMode(0o700)
	if mode&0o040 != 0 {
		dirMode = 0o750
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", dir, err)
	}
	for _, k := range sortedKeys(data) {
		if !plan.ValidFileName(k) {
			return fmt.Errorf("key %q is not a valid file name", k)
		}
		if err := writeFile(filepath.Join(dir, k), data[k], mode); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
	}
	return nil
}

func writeFile(path string, value []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("creating a temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("setting the file mode: %w", err)
	}
	if _, err = f.Write(value); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("renaming into place: %w", err)
	}
	return nil
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func keyList(m map[string][]byte) string {
	keys := sortedKeys(m)
	if len(keys) == 1 {
		return "1 key (" + keys[0] + ")"
	}
	return fmt.Sprintf("%d keys (%s)", len(keys), strings.Join(keys, ", "))
}

// oneLine folds an error message onto one line: the pod's log and
// termination message are read line by line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// ErrNoPlan is returned when the agent's environment holds no plan.
var ErrNoPlan = errors.New("no plan: $" + plan.EnvVar + " is empty; the keyhook webhook sets it when it injects a pod")
