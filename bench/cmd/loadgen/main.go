// Command loadgen sends AdmissionReview v1 CREATEs of the benchmark pod
// (bench/fixture) to a running keyhook webhook and prints throughput and
// latency; every response must inject db-creds and api-key. make bench runs
// the same load from bench/suite; this is for a webhook of your own, e.g.
// through kubectl port-forward:
//
//	go run ./bench/cmd/loadgen -url https://127.0.0.1:9443/mutate-v1-pod -ca ca.crt -namespace shop -c 32 -d 10s
//
// The namespace needs the fixture's SecretStore "vault" and ExternalSecrets
// db-creds and api-key (bench/fixture).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/bench/loadgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	url := fs.String("url", "", "URL of the pod mutation, e.g. https://127.0.0.1:9443/mutate-v1-pod")
	caFile := fs.String("ca", "", "PEM file of the CA that signed the webhook's certificate")
	ns := fs.String("namespace", "default", "namespace of the pod under review")
	conc := fs.Int("c", 1, "concurrent streams, one connection each")
	d := fs.Duration("d", 10*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *caFile == "" {
		return errors.New("-url and -ca are required")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	review, err := loadgen.NewReview(fixture.Pod(*ns))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, loadgen.Config{
		URL: *url, CAPEM: ca, Review: review, WantSecrets: fixture.InjectedNames,
		Concurrency: *conc, Duration: *d, Warmup: *warmup,
	}, nil)
	if err != nil {
		return err
	}
	fmt.Println(res)
	if res.Errors > 0 {
		return fmt.Errorf("%d of %d responses failed; first: %w", res.Errors, res.Requests, res.FirstError)
	}
	return nil
}
