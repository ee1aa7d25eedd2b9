// Command testapp is the application of keyhook's node tests: a static
// program that lists what keyhook's init-agent wrote into its volume —
// names, sizes and modes, never contents — and then serves that list on
// :8080 until it is stopped, so a test can check a running injected pod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	// TLS roots for an image without a CA file (every keyhook image has it).
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "/var/run/secrets/keyhook", "directory whose files are listed")
	addr := flag.String("listen", ":8080", "address serving the list; empty: print it and exit")
	flag.Parse()
	list := func() string {
		var b strings.Builder
		_ = filepath.WalkDir(*dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if info, err := d.Info(); err == nil {
				fmt.Fprintf(&b, "%s %d %v\n", strings.TrimPrefix(p, *dir+"/"), info.Size(), info.Mode().Perm())
			}
			return nil
		})
		return b.String()
	}
	fmt.Print(list())
	if *addr == "" {
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, list())
	})}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
