package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// testPages checks List's filters beyond status (scope, query) and its
// keyset pages (Limit, After, Before).
func testPages(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("pages of every size cover every key exactly once, in order, ties on created_at broken by ID", func(t *testing.T) {
		s := open(t)
		// 23 keys on 7 distinct creation times, so most pages end inside
		// a run of keys created at the same microsecond.
		for i := range 23 {
			create(t, s, fmt.Sprintf("key %02d", i), apikey.ExpiryNever, base.Add(time.Duration(i%7)*time.Microsecond))
		}
		all := mustList(t, s, keystore.Filter{Now: base})
		if len(all) != 23 {
			t.Fatalf("List returned %d keys, want 23", len(all))
		}
		checkOrder(t, all)
		for _, limit := range []int{1, 2, 3, 5, 22, 23, 24, 1000} {
			got := walkForward(t, s, keystore.Filter{Now: base}, limit)
			if !slices.Equal(ids(got), ids(all)) {
				t.Errorf("pages of %d going forward = %q, want %q", limit, ids(got), ids(all))
			}
			got = walkBackward(t, s, keystore.Filter{Now: base}, all[len(all)-1], limit)
			if want := ids(all[:len(all)-1]); !slices.Equal(ids(got), want) {
				t.Errorf("pages of %d going backward from the oldest = %q, want %q", limit, ids(got), want)
			}
		}
	})

	t.Run("a limit returns at most that many keys; zero or less returns all", func(t *testing.T) {
		s := open(t)
		for i := range 5 {
			create(t, s, fmt.Sprintf("key %d", i), apikey.ExpiryNever, base.Add(time.Duration(i)*time.Second))
		}
		for _, tc := range []struct{ limit, want int }{{-1, 5}, {0, 5}, {1, 1}, {4, 4}, {5, 5}, {6, 5}, {1 << 30, 5}} {
			if got := mustList(t, s, keystore.Filter{Now: base, Limit: tc.limit}); len(got) != tc.want {
				t.Errorf("List(Limit %d) returned %d keys, want %d", tc.limit, len(got), tc.want)
			}
		}
	})

	t.Run("a position need not be a stored key, and a page past the end is empty", func(t *testing.T) {
		s := open(t)
		a := create(t, s, "a", apikey.ExpiryNever, base)
		b := create(t, s, "b", apikey.ExpiryNever, base.Add(time.Second))
		between := keystore.Position{CreatedAt: base.Add(time.Millisecond), ID: "key_0000000000000000000000"}
		if got := mustList(t, s, keystore.Filter{Now: base, After: between}); !slices.Equal(ids(got), []string{a.ID}) {
			t.Errorf("List(After between) = %q, want [%s]", ids(got), a.ID)
		}
		if got := mustList(t, s, keystore.Filter{Now: base, Before: between}); !slices.Equal(ids(got), []string{b.ID}) {
			t.Errorf("List(Before between) = %q, want [%s]", ids(got), b.ID)
		}
		if got := mustList(t, s, keystore.Filter{Now: base, After: keystore.PositionOf(a)}); len(got) != 0 {
			t.Errorf("List(After the oldest) = %q, want none", ids(got))
		}
		if got := mustList(t, s, keystore.Filter{Now: base, Before: keystore.PositionOf(b)}); len(got) != 0 {
			t.Errorf("List(Before the newest) = %q, want none", ids(got))
		}
	})

	t.Run("keys created between pages do not disturb the pages after", func(t *testing.T) {
		s := open(t)
		var made []apikey.Key
		for i := range 6 {
			made = append(made, create(t, s, fmt.Sprintf("old %d", i), apikey.ExpiryNever, base.Add(time.Duration(i)*time.Second)))
		}
		first := mustList(t, s, keystore.Filter{Now: base, Limit: 2})
		// A newer key lands before the pages already read; one created at
		// the same time as the cursor but with a greater ID is not listed
		// after it either, one with a smaller ID is.
		create(t, s, "newer", apikey.ExpiryNever, base.Add(time.Hour))
		rest := walkForward(t, s, keystore.Filter{Now: base, After: keystore.PositionOf(first[len(first)-1])}, 2)
		got := append(ids(first), ids(rest)...)
		slices.Reverse(made)
		if want := ids(made); !slices.Equal(got, want) {
			t.Errorf("pages with a key created between them = %q, want %q", got, want)
		}
	})

	t.Run("status, scope and query filters combine with pages", func(t *testing.T) {
		s := open(t)
		now := base.Add(48 * time.Hour)
		names := []string{"Prod backend", "prod-widget", "STAGING", "cron 100%", "under_score", `back\slash`, "Été prod"}
		var all []apikey.Key
		for i := range 42 {
			expiry := []apikey.Expiry{apikey.ExpiryNever, apikey.ExpiryHour, apikey.ExpiryYear}[i%3]
			scope := apikey.Scopes[(i/3)%len(apikey.Scopes)]
			k := newKey(t, names[i%len(names)], scope, expiry, base.Add(time.Duration(i/2)*time.Second))
			mustCreate(t, s, k)
			if i%5 == 0 {
				if _, err := s.Revoke(t.Context(), k.ID, base.Add(time.Hour), testAudit); err != nil {
					t.Fatalf("Revoke = %v", err)
				}
				k.RevokedAt = base.Add(time.Hour)
			}
			all = append(all, k)
		}
		slices.SortFunc(all, listOrder)
		for _, status := range append([]apikey.Status{0}, apikey.Statuses...) {
			for _, scope := range append([]apikey.Scope{0}, apikey.Scopes...) {
				for _, q := range []string{"", "prod", "PROD", "%", "_", `\`, "100%", all[7].ID} {
					f := keystore.Filter{Status: status, Scope: scope, Query: q, Now: now}
					var want []apikey.Key
					for _, k := range all {
						if matches(f, k) {
							want = append(want, k)
						}
					}
					if got := walkForward(t, s, f, 3); !slices.Equal(ids(got), ids(want)) {
						t.Errorf("List(status %v, scope %v, query %q) in pages of 3 = %q, want %q", status, scope, q, ids(got), ids(want))
					}
				}
			}
		}
	})

	t.Run("a query matches an ID exactly and a name as a substring, folding ASCII letters only", func(t *testing.T) {
		s := open(t)
		k := map[string]apikey.Key{}
		for i, name := range []string{"Prod Backend", "ÉTÉ", "été", "100% sure", "100 percent", "a_b", "axb", `c\d`, "İstanbul", "ǅemal"} {
			k[name] = create(t, s, name, apikey.ExpiryNever, base.Add(time.Duration(i)*time.Second))
		}
		id := k["axb"].ID
		for _, tc := range []struct {
			query string
			want  []string
		}{
			{"prod", []string{"Prod Backend"}},
			{"BACKEND", []string{"Prod Backend"}},
			{"d b", []string{"Prod Backend"}},
			{"ÉTÉ", []string{"ÉTÉ"}},
			{"été", []string{"été"}},
			{"t", []string{"ÉTÉ", "été", "100 percent", "İstanbul"}},
			{"T", []string{"ÉTÉ", "été", "100 percent", "İstanbul"}},
			{"istanbul", nil},
			{"STANBUL", []string{"İstanbul"}},
			{"ǆemal", nil},
			{"%", []string{"100% sure"}},
			{"100%", []string{"100% sure"}},
			{"_", []string{"a_b"}},
			{"a_b", []string{"a_b"}},
			{`\`, []string{`c\d`}},
			{`c\d`, []string{`c\d`}},
			{"nothing", nil},
			{id, []string{"axb"}},
			{strings.ToUpper(id), nil},
			{id[:len(id)-1], nil},
			{"key_", nil},
		} {
			got := names(mustList(t, s, keystore.Filter{Now: base, Query: tc.query}))
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("List(query %q) = %q, want %q", tc.query, got, want)
			}
		}
	})

	t.Run("After and Before together are refused", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "a", apikey.ExpiryNever, base)
		p := keystore.PositionOf(k)
		if got, err := s.List(t.Context(), keystore.Filter{Now: base, After: p, Before: p}); err == nil {
			t.Errorf("List(After and Before) = %d keys, nil; want an error", len(got))
		}
	})
}

// matches is the suite's own reading of keystore.Filter's selection.
func matches(f keystore.Filter, k apikey.Key) bool {
	if f.Status != 0 && k.Status(f.Now) != f.Status {
		return false
	}
	if f.Scope != 0 && k.Scope != f.Scope {
		return false
	}
	if f.Owner != "" && k.Owner != f.Owner {
		return false
	}
	return f.Query == "" || k.ID == f.Query || strings.Contains(keystore.FoldQuery(k.Name), keystore.FoldQuery(f.Query))
}

// listOrder is List's order: newest first, then ID descending.
func listOrder(a, b apikey.Key) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

func checkOrder(t *testing.T, keys []apikey.Key) {
	t.Helper()
	if !slices.IsSortedFunc(keys, listOrder) {
		t.Errorf("List = %q, not newest first with ties by ID descending", ids(keys))
	}
}

func mustList(t *testing.T, s keystore.Store, f keystore.Filter) []apikey.Key {
	t.Helper()
	keys, err := s.List(t.Context(), f)
	if err != nil {
		t.Fatalf("List(%+v) = %v", f, err)
	}
	return keys
}

// walkForward reads f page by page, limit keys a page, following After
// from each page's last key, until a page comes back short.
func walkForward(t *testing.T, s keystore.Store, f keystore.Filter, limit int) []apikey.Key {
	t.Helper()
	f.Limit = limit
	var out []apikey.Key
	for range 10_000 {
		page := mustList(t, s, f)
		if len(page) > limit {
			t.Fatalf("List(Limit %d) returned %d keys", limit, len(page))
		}
		checkOrder(t, page)
		out = append(out, page...)
		if len(page) < limit {
			return out
		}
		f.After = keystore.PositionOf(page[len(page)-1])
	}
	t.Fatal("pages never ended")
	return nil
}

// walkBackward reads the keys listed before from, page by page, following
// Before from each page's first key, and returns them in listing order.
func walkBackward(t *testing.T, s keystore.Store, f keystore.Filter, from apikey.Key, limit int) []apikey.Key {
	t.Helper()
	f.Limit, f.Before = limit, keystore.PositionOf(from)
	var out []apikey.Key
	for range 10_000 {
		page := mustList(t, s, f)
		if len(page) > limit {
			t.Fatalf("List(Limit %d) returned %d keys", limit, len(page))
		}
		checkOrder(t, page)
		out = append(slices.Clone(page), out...)
		if len(page) < limit {
			return out
		}
		f.Before = keystore.PositionOf(page[0])
	}
	t.Fatal("pages never ended")
	return nil
}

func ids(keys []apikey.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

func names(keys []apikey.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}
