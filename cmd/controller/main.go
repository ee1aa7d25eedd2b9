// Command controller is keyhook's controller: the ExternalSecret → Secret
// sync, workload rollouts, ClusterInjectionPolicy namespace labelling and the
// issuance of the webhook's self-managed certificate, leader-elected. It
// holds keyhook's Secret-writing and token-creating rights; the wiring is
// internal/app/controller.
package main

import (
	"fmt"
	"os"

	// TLS roots compiled in, for Vault, AWS and Google: the images have no
	// CA file (pkg/imagebuild refuses a binary without them). A CA file or
	// SSL_CERT_FILE in the container still takes precedence.
	_ "golang.org/x/crypto/x509roots/fallback"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyhook/keyhook/internal/app/controller"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook-controller:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := controller.ParseConfig(args)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cfg.Zap)))
	return controller.Run(ctrl.SetupSignalHandler(), cfg)
}
