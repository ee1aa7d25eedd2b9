// Command init-agent runs as the first init container of a pod injected by
// keyhook. It reads its plan from $KEYHOOK_PLAN, authenticates as the pod,
// writes the pod's secrets into its in-memory volume and exits. On failure it
// prints one line naming the ExternalSecret, the key and the reason, and
// exits non-zero, so the pod shows Init:Error with that line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	// TLS roots compiled in, for Vault, AWS and Google: the images have no
	// CA file (pkg/imagebuild refuses a binary without them). A CA file or
	// SSL_CERT_FILE in the container still takes precedence.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/keyhook/keyhook/pkg/agent"
	"github.com/keyhook/keyhook/pkg/plan"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook-agent: error:", err)
		// In a pod the kubelet shows this file as the termination message.
		// Outside one it does not exist, and is not created.
		if f, ferr := os.OpenFile("/dev/termination-log", os.O_WRONLY|os.O_TRUNC, 0); ferr == nil {
			_, _ = f.WriteString(err.Error())
			_ = f.Close()
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("init-agent", flag.ContinueOnError)
	deadline := fs.Duration("deadline", 2*time.Minute, "give up after this long, retries included")
	root := fs.String("root", os.Getenv("KEYHOOK_AGENT_ROOT"), "prefix for every path of the plan (only for running outside a pod; default $KEYHOOK_AGENT_ROOT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
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
			fmt.Fprintf(os.Stderr, "keyhook-agent: "+format+"\n", args...)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "keyhook-agent: done: %d ExternalSecrets in %s\n", len(p.Secrets), time.Since(start).Round(time.Millisecond))
	return nil
}
