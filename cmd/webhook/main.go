// Command webhook is keyhook's admission webhook: it injects the init-agent
// into pods, validates keyhook's own kinds and serves TLS (from files, or from
// the Secret keyhook-controller issues). It only reads the API and links no
// provider SDK; the wiring is internal/app/webhook.
package main

import (
	"fmt"
	"os"

	// TLS roots compiled in: the images have no CA file (pkg/imagebuild
	// refuses a binary without them). The webhook dials only the API
	// server, whose CA the service-account mount brings; a CA file or
	// SSL_CERT_FILE in the container still takes precedence.
	_ "golang.org/x/crypto/x509roots/fallback"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyhook/keyhook/internal/app/webhook"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook-webhook:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := webhook.ParseConfig(args)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cfg.Zap)))
	return webhook.Run(ctrl.SetupSignalHandler(), cfg)
}
