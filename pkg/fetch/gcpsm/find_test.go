package gcpsm_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
	"github.com/keyhook/keyhook/pkg/plan"
)

// findServer holds secrets of two teams, some labelled, one without any
// version.
func findServer(t *testing.T) *gcpsmtest.Server {
	srv := newServer(t)
	srv.Allow(reader, "*", gcpsmtest.PermAccess, gcpsmtest.PermList)
	for id, v := range map[string]string{
		"shop-db": "db-value", "shop-api": "api-value", "shop-old": "old-value", "shopping": "not-under-prefix",
		"billing-db": "billing-value",
	} {
		srv.Put(id, []byte(v))
	}
	srv.SetLabels("shop-db", map[string]string{"team": "shop", "env": "prod"})
	srv.SetLabels("shop-api", map[string]string{"team": "shop", "env": "prod"})
	srv.SetLabels("shop-old", map[string]string{"team": "shop", "env": "dev"})
	srv.SetLabels("billing-db", map[string]string{"team": "billing", "env": "prod"})
	return srv
}

func TestFind(t *testing.T) {
	t.Parallel()
	srv := findServer(t)
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))
	for _, tc := range []struct {
		name string
		q    fetch.FindQuery
		want map[string]string
	}{
		{"prefix", fetch.FindQuery{Path: "shop-"}, map[string]string{"shop-db": "db-value", "shop-api": "api-value", "shop-old": "old-value"}},
		{"prefix and name", fetch.FindQuery{Path: "shop-", Name: "(db|api)$"}, map[string]string{"shop-db": "db-value", "shop-api": "api-value"}},
		{"prefix and labels", fetch.FindQuery{Path: "shop", Tags: map[string]string{"env": "prod", "team": "shop"}}, map[string]string{"shop-db": "db-value", "shop-api": "api-value"}},
		{"labels across prefixes", fetch.FindQuery{Path: "", Tags: map[string]string{"env": "prod"}, Name: "-db$"}, map[string]string{"shop-db": "db-value", "billing-db": "billing-value"}},
		{"nothing", fetch.FindQuery{Path: "shop-", Tags: map[string]string{"team": "billing"}}, map[string]string{}},
	} {
		got, err := p.Find(context.Background(), tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		gotS := map[string]string{}
		for k, v := range got {
			gotS[k] = string(v)
		}
		if diff := cmp.Diff(tc.want, gotS); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// Through the one resolver the agent and the sync share: keys are named by
// the secret ID after the path.
func TestFindResolve(t *testing.T) {
	t.Parallel()
	srv := findServer(t)
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))
	got, err := fetch.Resolve(context.Background(), p, nil, []plan.DataFrom{{Find: &plan.Find{Path: "shop-", Tags: map[string]string{"env": "prod"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"db": []byte("db-value"), "api": []byte("api-value")}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFindErrors(t *testing.T) {
	t.Parallel()
	srv := findServer(t)
	p := mustNew(t, config(srv, nil, withToken(srv, reader)))
	_, err := p.Find(context.Background(), fetch.FindQuery{Path: "shop-", Tags: map[string]string{"env": "prod OR name:billing"}})
	checkErr(t, err, fetch.ErrInvalid, []string{"not a Google label"}, nil)
	_, err = p.Find(context.Background(), fetch.FindQuery{Path: "shop-", Name: "(["})
	checkErr(t, err, fetch.ErrInvalid, []string{"not a regular expression"}, nil)

	// Listing needs secretmanager.secrets.list on the project.
	srv.Allow(other, "*", gcpsmtest.PermAccess)
	denied := mustNew(t, config(srv, nil, withToken(srv, other)))
	_, err = denied.Find(context.Background(), fetch.FindQuery{Path: "shop-"})
	checkErr(t, err, fetch.ErrAccessDenied, []string{"ListSecrets", "secretmanager.secrets.list"}, []string{"db-value"})
}

func TestCapabilities(t *testing.T) {
	c := gcpsm.Capabilities()
	if !c.Find.Path || !c.Find.Name || !c.Find.Tags || !c.VersionProbe {
		t.Errorf("Capabilities = %+v, want find by path, name and tags, and versions", c)
	}
}
