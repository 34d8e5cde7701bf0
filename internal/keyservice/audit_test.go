package keyservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

var asAdmin = keystore.Audit{Actor: apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}, RemoteIP: "203.0.113.9", UserAgent: "keygate-cli"}

func auditEvents(t *testing.T, svc *keyservice.Service, opts keyservice.AuditOptions) []keystore.Event {
	t.Helper()
	p, err := svc.Audit(context.Background(), opts)
	if err != nil {
		t.Fatalf("Audit(%+v) = %v", opts, err)
	}
	return p.Events
}

func TestAsWritesWhoAndWhereOfEveryChangeAndNoSecret(t *testing.T) {
	f := newFixture(t)
	svc := f.svc.As(asAdmin)
	ctx := context.Background()
	secret, k, err := svc.Create(ctx, keyservice.NewKey{Name: "audited", Scope: "full", ExpiresIn: "never", CreatedBy: asAdmin.Actor})
	if err != nil {
		t.Fatal(err)
	}
	name := "renamed"
	if _, err := svc.Update(ctx, k.ID, keyservice.KeyUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	secret2, next, _, err := svc.Rotate(ctx, k.ID, "1h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Revoke(ctx, next.ID); err != nil {
		t.Fatal(err)
	}
	evs := auditEvents(t, f.svc, keyservice.AuditOptions{})
	var got []string
	for _, e := range evs {
		got = append(got, e.Action)
		if e.Actor != asAdmin.Actor || e.RemoteIP != asAdmin.RemoteIP || e.UserAgent != asAdmin.UserAgent {
			t.Errorf("%s: actor %+v from %q %q, want %+v", e.Action, e.Actor, e.RemoteIP, e.UserAgent, asAdmin)
		}
	}
	if want := "key.revoked key.rotated key.created key.updated key.created"; strings.Join(got, " ") != want {
		t.Errorf("actions = %s, want %s", strings.Join(got, " "), want)
	}
	views := make([]keyservice.EventJSON, len(evs))
	for i, e := range evs {
		views[i] = keyservice.EventView(e)
	}
	b, _ := json.Marshal(views)
	for _, s := range []string{secret, secret2, secret[3:], k.Digest.String(), next.Digest.String()} {
		if strings.Contains(string(b), s) {
			t.Errorf("the events hold a secret or digest %q: %s", s[:6], b)
		}
	}
	// The service without As is keygate itself.
	if _, err := f.svc.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if e := auditEvents(t, f.svc, keyservice.AuditOptions{Limit: 1})[0]; e.Actor.Type != apikey.ActorSystem {
		t.Errorf("actor without As = %+v, want system", e.Actor)
	}
}

func TestAuditPagesFiltersAndOwnerViews(t *testing.T) {
	f := newFixture(t)
	a := f.createOwned(t, "a", "org_a")
	b := f.createOwned(t, "b", "org_b")
	for range 3 {
		n := "x" + time.Now().String()[:1]
		if _, err := f.svc.Update(context.Background(), a.ID, keyservice.KeyUpdate{Name: &n}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := f.svc.Audit(context.Background(), keyservice.AuditOptions{Limit: 2})
	if err != nil || len(p.Events) != 2 || p.Next == "" {
		t.Fatalf("first page = %+v, %v; want 2 events and a cursor", p, err)
	}
	var seen int
	for opts := (keyservice.AuditOptions{Limit: 2}); ; {
		p, err := f.svc.Audit(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(p.Events)
		if p.Next == "" {
			break
		}
		opts.Cursor = p.Next
	}
	if seen != 5 {
		t.Errorf("pages hold %d events, want 5", seen)
	}
	view := f.svc.ForOwner("org_b")
	for _, opts := range []keyservice.AuditOptions{{}, {Owner: "org_a"}, {KeyID: a.ID}} {
		for _, e := range auditEvents(t, view, opts) {
			if e.KeyID != b.ID {
				t.Errorf("org_b's view, %+v: sees an event of %s", opts, e.KeyID)
			}
		}
	}
	if n := len(auditEvents(t, view, keyservice.AuditOptions{})); n != 1 {
		t.Errorf("org_b's view sees %d events, want 1", n)
	}
	for _, c := range []struct {
		opts  keyservice.AuditOptions
		field string
	}{
		{keyservice.AuditOptions{Action: "key.deleted"}, "action"},
		{keyservice.AuditOptions{KeyID: "dk_secret"}, "key_id"},
		{keyservice.AuditOptions{Cursor: "x"}, "cursor"},
		{keyservice.AuditOptions{Since: "yesterday"}, "since"},
		{keyservice.AuditOptions{Limit: 1001}, "limit"},
		{keyservice.AuditOptions{Owner: "a b"}, "owner"},
	} {
		_, err := f.svc.Audit(context.Background(), c.opts)
		wantInputError(t, err, c.field)
	}
}

func TestReportLeakDecidesRecordsAndSyncs(t *testing.T) {
	for _, c := range []struct {
		name   string
		setup  func(t *testing.T, f *fixture) apikey.Key
		revoke bool
		taken  string
		status apikey.Status
	}{
		{"revoked", func(t *testing.T, f *fixture) apikey.Key { _, k := f.create(t, "k", "full", "never"); return k }, true, "revoked", apikey.StatusRevoked},
		{"none", func(t *testing.T, f *fixture) apikey.Key { _, k := f.create(t, "k", "full", "never"); return k }, false, "none", apikey.StatusActive},
		{"already_inactive", func(t *testing.T, f *fixture) apikey.Key {
			_, k := f.create(t, "k", "full", "1h")
			*f.now = f.now.Add(2 * time.Hour)
			return k
		}, true, "already_inactive", apikey.StatusExpired},
		{"kept_public_widget", func(t *testing.T, f *fixture) apikey.Key {
			_, k, err := f.svc.Create(context.Background(), keyservice.NewKey{Name: "w", Scope: "widget", ExpiresIn: "never", CreatedBy: admin,
				AllowedOrigins: []string{"https://example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			return k
		}, true, "kept_public_widget", apikey.StatusActive},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			k := c.setup(t, f)
			syncs := f.syncs.n
			out, err := f.svc.ReportLeak(context.Background(), k.Digest, keyservice.Leak{URL: "https://x/y", Source: "github", Revoke: c.revoke})
			if err != nil {
				t.Fatal(err)
			}
			if out.ActionTaken != c.taken || out.Key.ID != k.ID || out.Key.Status(*f.now) != c.status {
				t.Errorf("outcome = %s, key %s %v; want %s, %v", out.ActionTaken, out.Key.ID, out.Key.Status(*f.now), c.taken, c.status)
			}
			if f.syncs.n != syncs+1 {
				t.Errorf("syncs = %d, want one more than %d", f.syncs.n, syncs)
			}
			evs := auditEvents(t, f.svc, keyservice.AuditOptions{KeyID: k.ID})
			wantN := 2
			if c.taken == "revoked" {
				wantN = 3
			}
			if len(evs) != wantN {
				t.Fatalf("events = %d, want %d", len(evs), wantN)
			}
			leak := evs[len(evs)-2]
			if leak.Action != keystore.ActionLeakReported || leak.Details["action_taken"] != c.taken ||
				leak.Details["url"] != "https://x/y" || leak.Actor != (apikey.Actor{Type: "system", ID: "leak_report"}) {
				t.Errorf("leak event = %+v", leak)
			}
		})
	}
	t.Run("not found", func(t *testing.T) {
		f := newFixture(t)
		_, k, err := f.format.New("never stored", apikey.ScopeFull, apikey.ExpiryNever, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.ReportLeak(context.Background(), k.Digest, keyservice.Leak{Revoke: true}); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("ReportLeak(unknown) = %v, want ErrNotFound", err)
		}
	})
}
