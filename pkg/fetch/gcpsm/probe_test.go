package gcpsm_test

import (
	"context"
	"testing"

	"golang.org/x/oauth2"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	const lister = "lister@keyhook-test.iam.gserviceaccount.com"
	srv.Allow(lister, "*", gcpsmtest.PermList)
	srv.Allow(reader, "db") // may read db, may not list
	srv.Put("db", []byte("value-x"))

	if err := mustNew(t, config(srv, nil, withToken(srv, lister))).Probe(context.Background()); err != nil {
		t.Errorf("a principal that may list: %v", err)
	}
	if err := mustNew(t, config(srv, nil, withToken(srv, reader))).Probe(context.Background()); err != nil {
		t.Errorf("a principal that may read but not list (PermissionDenied proves its token): %v", err)
	}
	const bogus = "ya29.not-a-token-of-this-server"
	p := mustNew(t, config(srv, nil, func(c *gcpsm.Config) {
		c.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: bogus})
	}))
	checkErr(t, p.Probe(context.Background()), fetch.ErrAccessDenied, []string{"ListSecrets", "Unauthenticated"}, []string{bogus, "value-x"})
	if n := srv.Count(gcpsmtest.MethodListSecrets); n != 3 {
		t.Errorf("%d ListSecrets calls, want one per probe (3)", n)
	}
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 0 {
		t.Errorf("a probe read a value (%d AccessSecretVersion calls)", n)
	}
}
