package console

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
)

// linkHref returns the href of the first link with the given rel on the
// page, unescaped, or "".
func linkHref(page, rel string) string {
	i := strings.Index(page, `rel="`+rel+`" href="`)
	if i < 0 {
		return ""
	}
	rest := page[i+len(`rel="`+rel+`" href="`):]
	return html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
}

// follow turns a page-relative href ("./?...") into a path for e.get.
func follow(href string) string { return "/" + strings.TrimPrefix(href, "./") }

func TestListShowsPagesOf50WithNewerAndOlderLinks(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i := range 2*pageSize + 7 {
		e.create(fmt.Sprintf("key %03d", i), "full", "never")
		if i%3 == 0 {
			e.clock.Add(time.Second) // most keys share a creation time
		}
	}
	var want []string
	for _, k := range e.all() {
		want = append(want, k.ID)
	}
	if len(want) != 2*pageSize+7 {
		t.Fatalf("%d keys stored, want %d", len(want), 2*pageSize+7)
	}

	var got []string
	var pages []string
	target := "/"
	for range 10 {
		resp, page := e.get(target)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", target, resp.StatusCode)
		}
		ids := rowIDs(page)
		if len(ids) > pageSize {
			t.Fatalf("GET %s shows %d rows, want at most %d", target, len(ids), pageSize)
		}
		got = append(got, ids...)
		pages = append(pages, target)
		next := linkHref(page, "next")
		if next == "" {
			break
		}
		target = follow(next)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("following Older links shows %d keys, want all %d newest first, each once", len(got), len(want))
	}
	if len(pages) != 3 {
		t.Errorf("%d pages, want 3", len(pages))
	}

	// From the last page, Newer goes back through the same pages.
	_, page := e.get(pages[2])
	if linkHref(page, "next") != "" {
		t.Error("the last page has an Older link")
	}
	_, back := e.get(follow(linkHref(page, "prev")))
	if ids := rowIDs(back); !slices.Equal(ids, want[pageSize:2*pageSize]) {
		t.Errorf("Newer from the last page shows %d keys, want the second page", len(ids))
	}
	_, first := e.get(follow(linkHref(back, "prev")))
	if ids := rowIDs(first); !slices.Equal(ids, want[:pageSize]) {
		t.Errorf("Newer from the second page shows %d keys, want the first page", len(ids))
	}
	if linkHref(first, "prev") != "" {
		t.Error("the first page reached by Newer has a Newer link")
	}
}

func TestPageLinksKeepTheFilters(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i := range pageSize + 10 {
		e.create(fmt.Sprintf("Prod widget %d", i), "widget", "never")
		e.create(fmt.Sprintf("Prod full %d", i), "full", "never")
		e.clock.Add(time.Second)
	}
	_, page := e.get("/?status=all&scope=widget&q=prod")
	next := linkHref(page, "next")
	q, err := url.ParseQuery(strings.TrimPrefix(next, "./?"))
	if err != nil || q.Get("status") != "all" || q.Get("scope") != "widget" || q.Get("q") != "prod" || q.Get("cursor") == "" {
		t.Fatalf("Older link %q, want the filters and a cursor", next)
	}
	_, older := e.get(follow(next))
	ids := rowIDs(older)
	if len(ids) != 10 {
		t.Errorf("second page of widget keys shows %d rows, want 10", len(ids))
	}
	for _, id := range ids {
		if k := e.key(id); k.Scope != apikey.ScopeWidget {
			t.Errorf("second page shows %s of scope %v", id, k.Scope)
		}
	}
	// The forms post to the page with its position, so that a change
	// re-renders the same page.
	if want := `action="` + html.EscapeString(next) + `"`; !strings.Contains(older, want) {
		t.Errorf("page lacks %s", want)
	}
}

func TestBadCursorShowsTheFirstPageWithoutEchoingIt(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("only", "full", "never")
	bad := "dk_0123456789abcdefghijABCDEFGHIJ01abcdef"
	for _, q := range []string{"cursor=" + bad, "before=" + bad, "cursor=", "cursor=%00"} {
		resp, page := e.get("/?" + q)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("?%s: status %d, want 200", q, resp.StatusCode)
		}
		if ids := rowIDs(page); !slices.Equal(ids, []string{k.ID}) {
			t.Errorf("?%s: rows %v, want the first page", q, ids)
		}
		if strings.Contains(page, "dk_0123456789") {
			t.Errorf("?%s: the page repeats the cursor", q)
		}
		if q != "cursor=" && !strings.Contains(page, "That page link is not valid any more") {
			t.Errorf("?%s: no notice about the link", q)
		}
	}
}

func TestDialogOpensForAKeyOnAnotherPage(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, old := e.create("oldest", "full", "never")
	for i := range pageSize {
		e.clock.Add(time.Second)
		e.create(fmt.Sprintf("key %d", i), "full", "never")
	}
	_, page := e.get("/?dialog=revoke&id=" + old.ID)
	if slices.Contains(rowIDs(page), old.ID) {
		t.Fatal("the key is on the first page; the test needs it on another")
	}
	if !strings.Contains(page, `id="revoke-dialog"`) || !strings.Contains(page, "oldest") {
		t.Error("the revoke dialog did not open for a key on another page")
	}
	_, page = e.get("/?dialog=revoke&id=key_0000000000000000000000")
	if !strings.Contains(page, "There is no key with that ID.") {
		t.Error("no notice for an unknown key")
	}
}

func TestEmptyPagesTellAnEmptyStoreFromNoMatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, page := e.get("/")
	if !strings.Contains(page, "No API keys yet") {
		t.Error("an empty store does not say so")
	}
	_, k := e.create("a", "full", "never")
	if _, err := e.svc.Revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	_, page = e.get("/")
	if !strings.Contains(page, "No keys match") || strings.Contains(page, "No API keys yet") {
		t.Error("a store with only revoked keys shows the empty-store message on the active filter")
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  filter
	}{
		{"defaults", "", filter{Status: "active"}},
		{"every setting", "status=revoked&scope=routine&q=+ci+", filter{Status: "revoked", Scope: "routine", Query: "ci"}},
		{"unknown status and scope", "status=gone&scope=admin", filter{Status: "active"}},
		{"control characters and bad UTF-8 dropped", "q=a%00b%ffc%7f", filter{Status: "active", Query: "abc"}},
		{"long search cut to 200 characters", "q=" + strings.Repeat("%C3%A9", 250), filter{Status: "active", Query: strings.Repeat("é", 200)}},
		{"malformed cursor dropped", "cursor=abc", filter{Status: "active", BadCursor: true}},
		{"empty cursor is no cursor", "cursor=&before=", filter{Status: "active"}},
		{"owner", "owner=+acme%3Aeu+", filter{Status: "active", Owner: "acme:eu"}},
		{"owner that no key could have dropped", "owner=acme+corp", filter{Status: "active"}},
		{"owner too long dropped", "owner=" + strings.Repeat("a", 129), filter{Status: "active"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			if got := parseFilter(q); got != tt.want {
				t.Errorf("parseFilter(%q) = %+v, want %+v", tt.query, got, tt.want)
			}
		})
	}
}

func TestCountLineSaysWhetherThereAreOtherPages(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.create("only", "full", "never")
	if _, page := e.get("/"); !strings.Contains(page, ">1 key, newest first</p>") {
		t.Error(`one key: no "1 key, newest first"`)
	}
	for i := range pageSize {
		e.clock.Add(time.Second)
		e.create(fmt.Sprintf("key %d", i), "full", "never")
	}
	if _, page := e.get("/"); !strings.Contains(page, ">50 keys on this page, newest first</p>") {
		t.Error(`51 keys: no "50 keys on this page, newest first"`)
	}
}
