package keyservice_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keyservice"
)

// listIDs follows Next cursors from opts to the end and returns the IDs in
// the order listed, failing on a page larger than its limit.
func listIDs(t *testing.T, svc *keyservice.Service, opts keyservice.ListOptions) []string {
	t.Helper()
	limit := opts.Limit
	if limit == 0 {
		limit = keyservice.DefaultLimit
	}
	var ids []string
	for range 1000 {
		page, err := svc.List(context.Background(), opts)
		if err != nil {
			t.Fatalf("List(%+v) = %v", opts, err)
		}
		if len(page.Keys) > limit {
			t.Fatalf("List(%+v) returned %d keys, more than the limit", opts, len(page.Keys))
		}
		for _, k := range page.Keys {
			ids = append(ids, k.ID)
		}
		if page.Next == "" {
			return ids
		}
		if len(page.Keys) != limit {
			t.Fatalf("List(%+v) returned a short page of %d with a next cursor", opts, len(page.Keys))
		}
		opts.Cursor = page.Next
	}
	t.Fatal("pages never ended")
	return nil
}

func TestListPagesFollowNextCursorsToEveryKeyOnce(t *testing.T) {
	f := newFixture(t)
	var want []string
	for i := range 12 {
		*f.now = t0.Add(time.Duration(i/3) * time.Second) // three keys a second
		_, k := f.create(t, fmt.Sprintf("key %d", i), "full", "never")
		want = append(want, k.ID)
	}
	all := listIDs(t, f.svc, keyservice.ListOptions{Limit: keyservice.MaxLimit})
	if len(all) != 12 {
		t.Fatalf("one page of everything = %d keys, want 12", len(all))
	}
	for _, limit := range []int{1, 2, 5, 11, 12, 13} {
		if got := listIDs(t, f.svc, keyservice.ListOptions{Limit: limit}); !slices.Equal(got, all) {
			t.Errorf("pages of %d = %v, want %v", limit, got, all)
		}
	}
	slices.Sort(want)
	slices.Sort(all)
	if !slices.Equal(all, want) {
		t.Errorf("listed %v, want the created %v", all, want)
	}
}

func TestListLastPageHasNoNextCursor(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		*f.now = t0.Add(time.Duration(i) * time.Second)
		f.create(t, fmt.Sprintf("key %d", i), "full", "never")
	}
	for _, tc := range []struct {
		limit    int
		wantNext bool
	}{{3, true}, {4, false}, {5, false}} {
		page, err := f.svc.List(context.Background(), keyservice.ListOptions{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if (page.Next != "") != tc.wantNext {
			t.Errorf("limit %d: next cursor %q, want one: %v", tc.limit, page.Next, tc.wantNext)
		}
		if page.Prev != "" {
			t.Errorf("limit %d: the first page has a previous cursor %q", tc.limit, page.Prev)
		}
	}
}

func TestListBeforeGoesBackAndTopsUpTheFirstPage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 7 {
		*f.now = t0.Add(time.Duration(i) * time.Second)
		f.create(t, fmt.Sprintf("key %d", i), "full", "never")
	}
	ids := func(p keyservice.Page) string {
		var out []string
		for _, k := range p.Keys {
			out = append(out, strings.TrimPrefix(k.Name, "key "))
		}
		return strings.Join(out, ",")
	}
	p1, _ := f.svc.List(ctx, keyservice.ListOptions{Limit: 3})
	p2, _ := f.svc.List(ctx, keyservice.ListOptions{Limit: 3, Cursor: p1.Next})
	p3, _ := f.svc.List(ctx, keyservice.ListOptions{Limit: 3, Cursor: p2.Next})
	if got := ids(p1) + "|" + ids(p2) + "|" + ids(p3); got != "6,5,4|3,2,1|0" {
		t.Fatalf("pages forward = %s, want 6,5,4|3,2,1|0", got)
	}
	if p3.Next != "" || p3.Prev == "" || p2.Prev == "" {
		t.Errorf("cursors: p3.Next %q, p3.Prev %q, p2.Prev %q; want none, some, some", p3.Next, p3.Prev, p2.Prev)
	}
	back, err := f.svc.List(ctx, keyservice.ListOptions{Limit: 3, Before: p3.Prev})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(back); got != "3,2,1" || back.Next == "" || back.Prev == "" {
		t.Errorf("before page 3 = %s (next %q, prev %q), want 3,2,1 with both cursors", got, back.Next, back.Prev)
	}
	// Two keys lie before page 2: the page before it is the first page,
	// full, with no previous cursor.
	top, err := f.svc.List(ctx, keyservice.ListOptions{Limit: 3, Before: p2.Prev})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(top); got != "6,5,4" || top.Prev != "" || top.Next != p1.Next {
		t.Errorf("before page 2 = %s (prev %q, next %q), want the first page 6,5,4 with no prev", got, top.Prev, top.Next)
	}
}

func TestListFiltersCombineWithCursors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var widgets []string
	for i := range 9 {
		*f.now = t0.Add(time.Duration(i) * time.Second)
		scope := []string{"full", "widget", "routine"}[i%3]
		_, k := f.create(t, fmt.Sprintf("Prod %s %d", scope, i), scope, "never")
		if i == 4 {
			if _, err := f.svc.Revoke(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
		}
		if scope == "widget" && i != 4 {
			widgets = append([]string{k.ID}, widgets...)
		}
	}
	got := listIDs(t, f.svc, keyservice.ListOptions{Status: "active", Scope: "widget", Query: "PROD", Limit: 1})
	if !slices.Equal(got, widgets) {
		t.Errorf("active widget keys matching PROD, one a page = %v, want %v", got, widgets)
	}
}

func TestListRefusesBadOptionsNamingTheField(t *testing.T) {
	f := newFixture(t)
	_, k := f.create(t, "a", "full", "never")
	valid := base64.RawURLEncoding.EncodeToString(append(make([]byte, 8), k.ID...))
	if _, err := f.svc.List(context.Background(), keyservice.ListOptions{Cursor: valid}); err != nil {
		t.Fatalf("a well-formed cursor at the epoch = %v, want nil", err)
	}
	tooLate := base64.RawURLEncoding.EncodeToString(append([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, k.ID...))
	notID := base64.RawURLEncoding.EncodeToString(append(make([]byte, 8), "key_!!!!!!!!!!!!!!!!!!!!!!"...))
	tests := []struct {
		name  string
		opts  keyservice.ListOptions
		field string
	}{
		{"unknown status", keyservice.ListOptions{Status: "deleted"}, "status"},
		{"unknown scope", keyservice.ListOptions{Scope: "admin"}, "scope"},
		{"negative limit", keyservice.ListOptions{Limit: -1}, "limit"},
		{"limit above the maximum", keyservice.ListOptions{Limit: keyservice.MaxLimit + 1}, "limit"},
		{"query of 201 characters", keyservice.ListOptions{Query: strings.Repeat("é", 201)}, "q"},
		{"query that is not UTF-8", keyservice.ListOptions{Query: "a\xffb"}, "q"},
		{"query with NUL", keyservice.ListOptions{Query: "a\x00b"}, "q"},
		{"cursor of other length", keyservice.ListOptions{Cursor: valid + "A"}, "cursor"},
		{"cursor with padding", keyservice.ListOptions{Cursor: valid[:len(valid)-2] + "=="}, "cursor"},
		{"cursor in standard base64", keyservice.ListOptions{Cursor: strings.Repeat("+", len(valid))}, "cursor"},
		{"cursor with trailing bits set", keyservice.ListOptions{Cursor: valid[:len(valid)-1] + "B"}, "cursor"},
		{"cursor past year 9999", keyservice.ListOptions{Cursor: tooLate}, "cursor"},
		{"cursor without a key ID", keyservice.ListOptions{Cursor: notID}, "cursor"},
		{"before that is not a cursor", keyservice.ListOptions{Before: "x"}, "before"},
		{"cursor and before", keyservice.ListOptions{Cursor: valid, Before: valid}, "cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.List(context.Background(), tt.opts)
			wantInputError(t, err, tt.field)
			if tt.opts.Cursor != "" && err != nil && len(tt.opts.Cursor) > 12 && strings.Contains(err.Error(), tt.opts.Cursor[:13]) {
				t.Errorf("error %q repeats more than 12 bytes of the cursor", err)
			}
		})
	}
	for _, q := range []string{strings.Repeat("é", 200), "100%_\\", "ÉTÉ"} {
		if _, err := f.svc.List(context.Background(), keyservice.ListOptions{Query: q}); err != nil {
			t.Errorf("List(query %q) = %v, want nil", q, err)
		}
	}
}
