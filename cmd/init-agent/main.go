// Command init-agent runs as the first init container of a pod injected by
// keyhook. It reads its plan from $KEYHOOK_PLAN, authenticates as the pod,
// writes the pod's secrets into its in-memory volume and exits. On failure it
// prints one line naming the ExternalSecret, the key and the reason, and
// exits non-zero, so the pod shows Init:Error with that line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	// TLS roots compiled in, for Vault, AWS and Google: the images have no
	// CA file (pkg/imagebuild refuses a binary without them). A CA file or
	// SSL_CERT_FILE in the container still takes precedence.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/keyhook/keyhook/pkg/agent"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook-agent: error:", err)
		os.Exit(1)
	}
}

// terminationLog is the container's default terminationMessagePath: the
// kubelet shows what the agent writes there as the pod's termination message.
const terminationLog = "/dev/termination-log"

func run(args []string) (err error) {
	fs := flag.NewFlagSet("init-agent", flag.ContinueOnError)
	deadline := fs.Duration("deadline", 2*time.Minute, "give up after this long, retries included")
	root := fs.String("root", os.Getenv("KEYHOOK_AGENT_ROOT"), "prefix for every path of the plan (only for running outside a pod; default $KEYHOOK_AGENT_ROOT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		// One line, whatever a provider's SDK put into its error: the
		// README promises it, and kubectl shows only so much.
		err = errors.New(fetch.OneLine(err.Error()))
		// The kubelet creates the file in a pod; outside one (root set) it
		// is under root if whoever runs the agent created it, and nowhere
		// otherwise: it is never created here.
		if f, ferr := os.OpenFile(filepath.Join(*root, terminationLog), os.O_WRONLY|os.O_TRUNC, 0); ferr == nil {
			_, _ = f.WriteString(err.Error())
			_ = f.Close()
		}
	}()
	if *deadline <= 0 {
		return fmt.Errorf("--deadline %s must be positive", *deadline)
	}
	raw := os.Getenv(plan.EnvVar)
	if raw == "" {
		return agent.ErrNoPlan
	}
	p, err := plan.Decode(raw)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	err = agent.Run(ctx, agent.Config{
		Plan:     p,
		Root:     *root,
		Deadline: *deadline,
		Getenv:   os.Getenv,
		Log: func(format string, args ...any) {
			fmt.Fprintln(os.Stderr, "keyhook-agent: "+fetch.OneLine(fmt.Sprintf(format, args...)))
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "keyhook-agent: done: %d ExternalSecrets in %s\n", len(p.Secrets), time.Since(start).Round(time.Millisecond))
	return nil
}
