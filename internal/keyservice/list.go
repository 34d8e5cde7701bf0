package keyservice

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// Limits of a listing.
const (
	// DefaultLimit is how many keys a page holds when the request names
	// no limit.
	DefaultLimit = 100
	// MaxLimit is the most keys a page may hold.
	MaxLimit = 1000
	// MaxQueryLength is the longest search text, in characters.
	MaxQueryLength = 200
)

// ListOptions selects a page of keys. Every field is optional.
type ListOptions struct {
	// Status keeps keys with this status: "active", "revoked", "expired";
	// "" keeps all.
	Status string
	// Scope keeps keys of this scope ("full", "widget", "routine"); ""
	// keeps all.
	Scope string
	// Owner keeps the keys of this owner; "" keeps all. A view
	// (ForOwner) lists its owner's keys only, and nothing for another
	// owner.
	Owner string
	// Query keeps the key whose ID it is, and the keys whose name holds it,
	// ASCII letters compared without case (keystore.Filter.Query).
	Query string
	// NotUsedFor, if positive, keeps the keys not used in that long:
	// never used, or last used before. The console's "not used in 30
	// days".
	NotUsedFor time.Duration
	// Limit is the most keys of the page, 1 to MaxLimit; 0 means
	// DefaultLimit.
	Limit int
	// Cursor is a Page.Next of an earlier call with the same filter: the
	// page then starts after it.
	Cursor string
	// Before is a Page.Prev of an earlier call: the page then holds the
	// keys listed just before it. A page that would reach the newest key
	// is the first page, full. Cursor and Before may not both be set.
	Before string
}

// Page is one page of a listing.
type Page struct {
	// Keys are the page's keys, newest first.
	Keys []apikey.Key
	// Next is the cursor of the page after this one, or "" if this is the
	// last page.
	Next string
	// Prev is the cursor of the page before this one (ListOptions.Before),
	// or "" if this is the first page.
	Prev string
}

// List returns a page of the keys selected by opts, newest first. A
// listing followed by Next cursors sees every key that existed when it
// started exactly once, whatever is created meanwhile.
func (s *Service) List(ctx context.Context, opts ListOptions) (Page, error) {
	f, limit, err := s.filter(opts)
	if err != nil {
		return Page{}, err
	}
	if s.owned {
		if s.owner == "" || (opts.Owner != "" && opts.Owner != s.owner) {
			return Page{}, nil
		}
		f.Owner = s.owner
	}
	f.Limit = limit + 1 // one more tells whether there is a next page
	keys, err := s.store.List(ctx, f)
	if err != nil {
		storeFailed(s.errs.list, err)
		return Page{}, fmt.Errorf("listing keys: %w", err)
	}
	var p Page
	switch {
	case !f.Before.IsZero() && len(keys) <= limit:
		// Nothing before this page but its keys: show the first page,
		// full, rather than a short one.
		f.Before = keystore.Position{}
		if keys, err = s.store.List(ctx, f); err != nil {
			storeFailed(s.errs.list, err)
			return Page{}, fmt.Errorf("listing keys: %w", err)
		}
		p = s.page(keys, limit, false)
	case !f.Before.IsZero():
		// The extra key is the newest, at the start: there are more
		// before. The keys after the page include the one Before names.
		p = s.page(keys[1:], limit, true)
		p.Next = encodeCursor(keystore.PositionOf(p.Keys[len(p.Keys)-1]))
	default:
		p = s.page(keys, limit, !f.After.IsZero())
	}
	kept := p.Keys[:0]
	for i := range p.Keys {
		s.withPending(&p.Keys[i])
		// A use noted but not yet written counts too.
		if f.NotUsedSince.IsZero() || p.Keys[i].LastUsedAt.Before(f.NotUsedSince) {
			kept = append(kept, p.Keys[i])
		}
	}
	p.Keys = kept
	return p, nil
}

// page makes a page of keys read with one extra beyond limit at the end.
func (s *Service) page(keys []apikey.Key, limit int, hasPrev bool) Page {
	var p Page
	if len(keys) > limit {
		keys = keys[:limit]
		p.Next = encodeCursor(keystore.PositionOf(keys[limit-1]))
	}
	if hasPrev && len(keys) > 0 {
		p.Prev = encodeCursor(keystore.PositionOf(keys[0]))
	}
	p.Keys = keys
	return p
}

// filter checks opts and returns the store filter they stand for, without
// its limit, and the page size.
func (s *Service) filter(opts ListOptions) (keystore.Filter, int, error) {
	f := keystore.Filter{Now: s.Now()}
	var err error
	if opts.Status != "" {
		if f.Status, err = apikey.ParseStatus(opts.Status); err != nil {
			return f, 0, &InputError{Field: "status", Message: err.Error()}
		}
	}
	if opts.Scope != "" {
		if f.Scope, err = apikey.ParseScope(opts.Scope); err != nil {
			return f, 0, &InputError{Field: "scope", Message: err.Error()}
		}
	}
	if opts.Owner != "" {
		if err := apikey.CheckOwner(opts.Owner); err != nil {
			return f, 0, &InputError{Field: "owner", Message: err.Error()}
		}
		f.Owner = opts.Owner
	}
	if err := checkQuery(opts.Query); err != nil {
		return f, 0, err
	}
	f.Query = opts.Query
	if opts.NotUsedFor > 0 {
		f.NotUsedSince = f.Now.Add(-opts.NotUsedFor)
	}
	limit := opts.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return f, 0, &InputError{Field: "limit", Message: fmt.Sprintf("must be from 1 to %d", MaxLimit)}
	}
	if opts.Cursor != "" && opts.Before != "" {
		return f, 0, &InputError{Field: "cursor", Message: "cannot be given with before"}
	}
	if opts.Cursor != "" {
		if f.After, err = DecodeCursor(opts.Cursor); err != nil {
			return f, 0, &InputError{Field: "cursor", Message: err.Error()}
		}
	}
	if opts.Before != "" {
		if f.Before, err = DecodeCursor(opts.Before); err != nil {
			return f, 0, &InputError{Field: "before", Message: err.Error()}
		}
	}
	return f, limit, nil
}

// checkQuery refuses search text no name could hold: too long, not UTF-8,
// or with control characters (PostgreSQL refuses NUL in text, and names
// have no control characters).
func checkQuery(q string) error {
	switch {
	case !utf8.ValidString(q):
		return &InputError{Field: "q", Message: "must be valid UTF-8"}
	case utf8.RuneCountInString(q) > MaxQueryLength:
		return &InputError{Field: "q", Message: fmt.Sprintf("must be at most %d characters", MaxQueryLength)}
	}
	for _, r := range q {
		if r < 0x20 || r == 0x7f {
			return &InputError{Field: "q", Message: "must not hold control characters"}
		}
	}
	return nil
}

// A cursor is the unpadded base64url encoding of 34 bytes: the position's
// creation time in unix microseconds (8 bytes, big-endian, two's
// complement) and its key ID (26 bytes). Clients treat it as opaque.
const (
	cursorBytes = 8 + idLength
	// idLength is the length of a key ID: "key_" and 22 characters.
	idLength = 26
	// CursorLength is the length of every cursor, in characters.
	CursorLength = (cursorBytes*8 + 5) / 6
)

// The times a cursor may hold: years 1 to 9999.
var (
	minCursorMicros = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxCursorMicros = time.Date(9999, time.December, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

var cursorEncoding = base64.RawURLEncoding.Strict()

func encodeCursor(p keystore.Position) string {
	b := make([]byte, 8, cursorBytes)
	binary.BigEndian.PutUint64(b, uint64(p.CreatedAt.UnixMicro()))
	return cursorEncoding.EncodeToString(append(b, p.ID...))
}

// DecodeCursor returns the position a cursor stands for. It accepts only
// what encodeCursor makes; its errors do not repeat the cursor.
func DecodeCursor(c string) (keystore.Position, error) {
	if len(c) != CursorLength {
		return keystore.Position{}, fmt.Errorf("is not a cursor from a previous page: it must be %d characters, not %d", CursorLength, len(c))
	}
	b, err := cursorEncoding.DecodeString(c)
	if err != nil || len(b) != cursorBytes {
		return keystore.Position{}, fmt.Errorf("is not a cursor from a previous page: it must be base64url without padding")
	}
	id := string(b[8:])
	if !apikey.ValidID(id) {
		return keystore.Position{}, fmt.Errorf("is not a cursor from a previous page")
	}
	us := int64(binary.BigEndian.Uint64(b[:8]))
	if us < minCursorMicros || us > maxCursorMicros {
		// Outside what every store can compare a time with (PostgreSQL's
		// timestamptz ends in the year 294276).
		return keystore.Position{}, fmt.Errorf("is not a cursor from a previous page")
	}
	return keystore.Position{CreatedAt: time.UnixMicro(us).UTC(), ID: id}, nil
}
