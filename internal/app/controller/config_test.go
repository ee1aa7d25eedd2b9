package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keyhook/keyhook/pkg/certs"
)

func TestParseConfigTLS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		want  certs.Config
		error string
	}{{
		name: "files: the default, self-managed flags are not read",
		args: []string{"--cert-secret=garbage"},
	}, {
		name: "self-managed with the defaults of manifests/",
		args: []string{"--tls-mode=self-managed"},
		want: certs.Config{
			Secret:               types.NamespacedName{Namespace: "keyhook-system", Name: "keyhook-webhook-tls"},
			WebhookConfiguration: "keyhook",
			Hosts:                []string{"keyhook-webhook.keyhook-system.svc", "keyhook-webhook.keyhook-system.svc.cluster.local"},
			CAValidity:           365 * 24 * time.Hour,
			CARenewBefore:        365 * 24 * time.Hour / 3,
			CertValidity:         90 * 24 * time.Hour,
			CertRenewBefore:      30 * 24 * time.Hour,
			Propagation:          time.Minute,
		},
	}, {
		name: "self-managed, every flag",
		args: []string{"--tls-mode=self-managed", "--cert-secret=ns/tls", "--webhook-configuration=kh", "--webhook-service= a.ns.svc , 127.0.0.1,",
			"--ca-validity=10s", "--ca-renew-before=5s", "--cert-validity=4s", "--cert-renew-before=2s"},
		want: certs.Config{
			Secret:               types.NamespacedName{Namespace: "ns", Name: "tls"},
			WebhookConfiguration: "kh",
			Hosts:                []string{"a.ns.svc", "127.0.0.1"},
			CAValidity:           10 * time.Second,
			CARenewBefore:        5 * time.Second,
			CertValidity:         4 * time.Second,
			CertRenewBefore:      2 * time.Second,
			Propagation:          time.Second,
		},
	}, {
		name:  "unknown mode",
		args:  []string{"--tls-mode=cert-manager"},
		error: `--tls-mode "cert-manager" is not files or self-managed`,
	}, {
		name:  "a CA that would not outlive its certificates",
		args:  []string{"--tls-mode=self-managed", "--ca-validity=2400h"},
		error: "--ca-renew-before 800h0m0s must be longer than --cert-validity 2160h0m0s",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.args)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("error %v, want one saying %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.Certs); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConfigSync(t *testing.T) {
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.SyncWorkers != 4 || c.ProviderSessionTTL != 5*time.Minute {
		t.Errorf("defaults: --sync-workers %d, --provider-session-ttl %s; want 4 and 5m", c.SyncWorkers, c.ProviderSessionTTL)
	}
	for args, want := range map[string]string{
		"--sync-workers=0":           "--sync-workers 0 must be at least 1",
		"--provider-session-ttl=-1s": "--provider-session-ttl -1s must not be negative",
	} {
		if _, err := ParseConfig([]string{args}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", args, err, want)
		}
	}
}

func TestParseConfigRejectsArguments(t *testing.T) {
	if _, err := ParseConfig([]string{"--sync-workers=2", "stray"}); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Errorf("err = %v, want one naming the stray argument", err)
	}
}
