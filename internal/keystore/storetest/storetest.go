// Package storetest is the conformance suite of keystore.Store: every
// backend runs it unchanged from its own tests, so that all backends keep
// the rules written in package keystore.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) keystore.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keys.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Beyond what package keystore says, the suite fixes these details, which
// the verifier's cache relies on:
//   - Create adds one change (the new key), an effective Revoke one (the
//     key), Rotate two (the new key and the old one); failed calls, a
//     repeated Revoke and TouchLastUsed add none.
//   - Change sequence numbers strictly increase, and a reader that follows
//     Changes while others write sees every change exactly once.
//   - Create and Rotate refuse a key that keystore.CheckNew refuses (an
//     error wrapping ErrInvalidKey), storing nothing and adding no change.
//   - Rotate judges the old key at next.CreatedAt; of concurrent rotations
//     of one key exactly one succeeds, the others get ErrReplaced.
//   - A call whose context is cancelled fails and changes nothing.
//   - Times come back within a microsecond of what was stored (exactly, for
//     times with microsecond precision), in UTC; a zero time comes back zero.
//   - Changes returns ErrTooOld exactly when a change after since was
//     pruned, since 0 included (tested only with Options.AgeChanges); a
//     store that pruned nothing never does.
//   - TouchLastUsed records uses of revoked keys too.
//   - Closing a closed store returns nil or ErrClosed.
//   - Owner, Metadata, CreatedBy and the policy lists come back as stored;
//     empty metadata and lists come back nil.
//   - An effective Update adds one change (the key, with its digest); a
//     patch that sets nothing, and a failed Update, add none.
//   - Every change writes its audit events (keystore.CreatedEvent, ...) in
//     its transaction: a failed or cancelled change writes none, a repeated
//     Revoke none, the losing one of two rotations none; event IDs
//     increase in commit order; a User-Agent is cut to 256 bytes.
//   - ReportLeak decides by keystore.LeakAction inside its transaction.
//   - RecordUsage adds counts at every step; concurrent batches, from one
//     store or two sharing a database (Options.Pair), add up exactly,
//     also while pruning.
package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// Options holds the backend-specific hooks of RunWith. A nil hook skips
// the tests that need it.
type Options struct {
	// AgeChanges makes every change s holds older than the time a backend
	// keeps changes for (one hour), so that the next change written prunes
	// them all but the newest. It must not write a change itself.
	AgeChanges func(t *testing.T, s keystore.Store)
	// Pair returns two stores over one fresh, empty database, as two
	// gateway instances sharing it would open it.
	Pair func(t *testing.T) (keystore.Store, keystore.Store)
}

// Run checks the store returned by open against every rule of
// keystore.Store. Each subtest calls open once and must get a fresh,
// empty store; open registers the store's Close with t.Cleanup (the suite
// may close a store itself first: closing twice must be fine).
func Run(t *testing.T, open func(t *testing.T) keystore.Store) {
	t.Helper()
	RunWith(t, open, Options{})
}

// RunWith is Run with backend-specific hooks, which enable the tests that
// need them.
func RunWith(t *testing.T, open func(t *testing.T) keystore.Store, opts Options) {
	t.Helper()
	for _, group := range []struct {
		name string
		run  func(t *testing.T, open func(t *testing.T) keystore.Store, opts Options)
	}{
		{"Create", testCreate},
		{"Get", testGet},
		{"List", testList},
		{"Pages", testPages},
		{"Revoke", testRevoke},
		{"Rotate", testRotate},
		{"Owners", testOwners},
		{"Update", testUpdate},
		{"TouchLastUsed", testTouchLastUsed},
		{"Changes", testChanges},
		{"Concurrency", testConcurrency},
		{"Closed", testClosed},
		{"InvalidInput", testInvalidInput},
		{"CancelledContext", testCancelledContext},
		{"AuditLog", testAuditLog},
		{"ReportLeak", testReportLeak},
		{"Usage", testUsage},
	} {
		t.Run(group.name, func(t *testing.T) { group.run(t, open, opts) })
	}
}

// base is the time the suite's keys are created around. It has microsecond
// precision, which every backend keeps exactly.
var base = time.Date(2031, time.March, 4, 5, 6, 7, 123456000, time.UTC)

var format = func() *apikey.Format {
	f, err := apikey.NewFormat("dk")
	if err != nil {
		panic(err)
	}
	return f
}()

// newKey makes a key record as the key service does.
func newKey(t *testing.T, name string, scope apikey.Scope, expiry apikey.Expiry, created time.Time) apikey.Key {
	t.Helper()
	_, k, err := format.New(name, scope, expiry, created)
	if err != nil {
		t.Fatalf("making key %q: %v", name, err)
	}
	return k
}

// create makes a key created at created and stores it.
func create(t *testing.T, s keystore.Store, name string, expiry apikey.Expiry, created time.Time) apikey.Key {
	t.Helper()
	k := newKey(t, name, apikey.ScopeFull, expiry, created)
	mustCreate(t, s, k)
	return k
}

func mustCreate(t *testing.T, s keystore.Store, k apikey.Key) {
	t.Helper()
	if err := s.Create(t.Context(), k, testAudit); err != nil {
		t.Fatalf("Create(%q) = %v, want nil", k.Name, err)
	}
}

// mustGet returns the stored key id, failing the test if Get fails.
func mustGet(t *testing.T, s keystore.Store, id string) apikey.Key {
	t.Helper()
	k, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s) = %v, want nil", id, err)
	}
	return k
}

// checkKey reports every field in which got differs from want.
func checkKey(t *testing.T, what string, got, want apikey.Key) {
	t.Helper()
	for _, d := range diffKey(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

func diffKey(got, want apikey.Key) []string {
	var diffs []string
	field := func(name string, g, w any) {
		if g != w {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	field("ID", got.ID, want.ID)
	field("Name", got.Name, want.Name)
	field("Scope", got.Scope, want.Scope)
	field("Expiry", got.Expiry, want.Expiry)
	field("Hint", got.Hint, want.Hint)
	field("Digest", got.Digest, want.Digest)
	field("ReplacedBy", got.ReplacedBy, want.ReplacedBy)
	field("Owner", got.Owner, want.Owner)
	field("CreatedBy", got.CreatedBy, want.CreatedBy)
	// A store gives metadata and lists back nil when empty.
	if !maps.Equal(got.Metadata, want.Metadata) || (got.Metadata == nil) != (len(want.Metadata) == 0) {
		diffs = append(diffs, fmt.Sprintf("Metadata = %#v, want %#v", got.Metadata, keystore.CloneMetadata(want.Metadata)))
	}
	for _, l := range []struct {
		name      string
		got, want []string
	}{
		{"AllowedOrigins", got.AllowedOrigins, want.AllowedOrigins},
		{"AllowedIPs", got.AllowedIPs, want.AllowedIPs},
		{"RateLimits", got.RateLimits, want.RateLimits},
	} {
		if !slices.Equal(l.got, l.want) || (l.got == nil) != (len(l.want) == 0) {
			diffs = append(diffs, fmt.Sprintf("%s = %#v, want %#v", l.name, l.got, l.want))
		}
	}
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"ExpiresAt", got.ExpiresAt, want.ExpiresAt},
		{"RevokedAt", got.RevokedAt, want.RevokedAt},
		{"LastUsedAt", got.LastUsedAt, want.LastUsedAt},
	} {
		if d := diffTime(tm.got, tm.want); d != "" {
			diffs = append(diffs, tm.name+" "+d)
		}
	}
	return diffs
}

// diffTime describes how got differs from want: a zero time must come back
// zero, any other exactly and in UTC.
func diffTime(got, want time.Time) string {
	switch {
	case want.IsZero() && got.IsZero():
		return ""
	case want.IsZero():
		return fmt.Sprintf("= %v, want zero", got)
	case !got.Equal(want):
		return fmt.Sprintf("= %v, want %v", got, want)
	case got.Location() != time.UTC:
		return fmt.Sprintf("= %v, want it in UTC", got)
	}
	return ""
}

// seq returns the store's current change sequence.
func seq(t *testing.T, s keystore.Store) int64 {
	t.Helper()
	_, cur, err := s.Changes(t.Context(), 0, 1)
	if err != nil && !errors.Is(err, keystore.ErrTooOld) {
		t.Fatalf("Changes(0, 1) = %v, want nil", err)
	}
	return cur
}

// changesSince returns every change after since, checking that they are in
// strictly increasing order and that the current sequence is the last one.
func changesSince(t *testing.T, s keystore.Store, since int64) ([]keystore.Change, int64) {
	t.Helper()
	chs, cur, err := s.Changes(t.Context(), since, 1_000_000)
	if err != nil {
		t.Fatalf("Changes(%d) = %v, want nil", since, err)
	}
	last := since
	for _, c := range chs {
		if c.Seq <= last {
			t.Fatalf("Changes(%d): sequence %d follows %d, want strictly increasing", since, c.Seq, last)
		}
		last = c.Seq
	}
	if len(chs) > 0 && cur != last {
		t.Errorf("Changes(%d): current sequence %d, want the last change's %d", since, cur, last)
	}
	return chs, cur
}

// changeKeys describes changes as sorted "id digest" pairs, to
// compare them regardless of order within one call.
func changeKeys(chs []keystore.Change) []string {
	out := make([]string, len(chs))
	for i, c := range chs {
		out[i] = c.KeyID + " " + c.Digest.String()
	}
	slices.Sort(out)
	return out
}

// wantChanges is changeKeys for the keys expected to have changed.
func wantChanges(keys ...apikey.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID + " " + k.Digest.String()
	}
	slices.Sort(out)
	return out
}

// testAudit is who makes the suite's changes.
var testAudit = keystore.Audit{
	Actor:     apikey.Actor{Type: apikey.ActorAdmin, ID: "storetest@example"},
	RemoteIP:  "192.0.2.7",
	UserAgent: "storetest/1",
}
