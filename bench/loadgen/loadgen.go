// Package loadgen is keyhook's admission load generator: it sends
// AdmissionReview v1 CREATEs of a pod to a running webhook over HTTPS with
// keep-alive (HTTP/1.1, as the API server's webhook client), a unique UID per
// request, validates every response, and reports throughput and latency
// percentiles. The suite (bench/suite) and the loadgen command use it.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config of one run.
type Config struct {
	// URL of the pod mutation, e.g. https://127.0.0.1:9443/mutate-v1-pod.
	URL string
	// CAPEM is the CA that signed the webhook's serving certificate.
	CAPEM []byte
	// Review is what is sent; every response is checked against it.
	Review *Review
	// WantSecrets are the ExternalSecrets every response must inject.
	WantSecrets []string
	// Concurrency is the number of streams, each one connection.
	Concurrency int
	// Duration of the measured part; Warmup runs before it, unmeasured.
	Duration, Warmup time.Duration
}

// Result of one run.
type Result struct {
	Concurrency int
	Requests    int // measured requests, errors included
	Errors      int
	FirstError  error
	Elapsed     time.Duration
	// Latencies of the measured successful requests, sorted.
	Latencies []time.Duration
	// DistinctPatches is how many distinct patches were checked in full.
	DistinctPatches int
}

// RPS is the measured throughput, errors included.
func (r *Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Quantile returns the q-quantile (0..1) of the latencies, nearest rank.
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(r.Latencies))+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Max is the largest latency.
func (r *Result) Max() time.Duration { return r.Quantile(1) }

func (r *Result) String() string {
	return fmt.Sprintf("c=%d %d req in %s: %.0f req/s, p50 %s p90 %s p99 %s max %s, %d errors",
		r.Concurrency, r.Requests, r.Elapsed.Round(time.Millisecond), r.RPS(),
		r.Quantile(0.5), r.Quantile(0.9), r.Quantile(0.99), r.Max(), r.Errors)
}

// Client returns an HTTP/1.1 keep-alive client that trusts caPEM and keeps
// up to conns connections.
func Client(caPEM []byte, conns int) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in the CA PEM")
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   false,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}, nil
}

// Run sends reviews until Warmup+Duration have passed, from Concurrency
// streams, and returns what was measured after the warm-up. A response that
// fails validation counts as an error. The returned measured window is
// bracketed by onMeasure(true) and onMeasure(false), called from Run's
// goroutine, so a caller can sample the server at its edges.
func Run(ctx context.Context, cfg Config, onMeasure func(start bool)) (*Result, error) {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	client, err := Client(cfg.CAPEM, cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()

	// phase: 0 warming up, 1 measuring, 2 stopped.
	var (
		phase atomic.Int32
		wg    sync.WaitGroup
	)
	type stream struct {
		lat      []time.Duration
		requests int
		errors   int
		first    error
		distinct int
	}
	streams := make([]*stream, cfg.Concurrency)
	for i := range streams {
		s := &stream{lat: make([]time.Duration, 0, 1<<14)}
		streams[i] = s
		checker := NewChecker(cfg.Review, cfg.WantSecrets)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, cfg.Review.Size())
			resp := make([]byte, 0, 16<<10)
			for ctx.Err() == nil {
				startPhase := phase.Load()
				if startPhase == 2 {
					break
				}
				uid := newUID()
				body := cfg.Review.Body(buf, uid)
				start := time.Now()
				resp, err = post(ctx, client, cfg.URL, body, resp)
				lat := time.Since(start)
				if err == nil {
					err = checker.Check(resp, uid)
				}
				// Only requests sent and answered inside the window count.
				if startPhase != 1 || phase.Load() != 1 {
					continue
				}
				s.requests++
				if err != nil {
					s.errors++
					if s.first == nil {
						s.first = err
					}
					continue
				}
				s.lat = append(s.lat, lat)
			}
			s.distinct = checker.Distinct()
		}()
	}
	sleep(ctx, cfg.Warmup)
	if onMeasure != nil {
		onMeasure(true)
	}
	phase.Store(1)
	begin := time.Now()
	sleep(ctx, cfg.Duration)
	phase.Store(2)
	elapsed := time.Since(begin)
	if onMeasure != nil {
		onMeasure(false)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := &Result{Concurrency: cfg.Concurrency, Elapsed: elapsed}
	for _, s := range streams {
		res.Requests += s.requests
		res.Errors += s.errors
		if res.FirstError == nil {
			res.FirstError = s.first
		}
		res.Latencies = append(res.Latencies, s.lat...)
		res.DistinctPatches = max(res.DistinctPatches, s.distinct)
	}
	slices.Sort(res.Latencies)
	return res, nil
}

func post(ctx context.Context, c *http.Client, url string, body, buf []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return buf, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf[:0])
	if _, err := io.Copy(b, resp.Body); err != nil {
		return buf, err
	}
	if resp.StatusCode != http.StatusOK {
		return b.Bytes(), fmt.Errorf("HTTP %s: %.200s", resp.Status, b.Bytes())
	}
	return b.Bytes(), nil
}

// newUID returns a random UUID (version 4), as the API server's request UIDs.
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
