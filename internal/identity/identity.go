// Package identity removes what a client sends to pass as the gateway's
// word to the upstream: its own copies of the identity headers
// (X-Api-Key-Id, X-Api-Key-Name, X-Api-Key-Scope) in every spelling an
// upstream could read as the same header, those names (and Authorization)
// in the Connection and Trailer lists, and trailers of those names.
package identity

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

// The identity headers the gateway sets for the upstream on success.
const (
	HeaderID    = "X-Api-Key-Id"
	HeaderName  = "X-Api-Key-Name"
	HeaderScope = "X-Api-Key-Scope"
)

// RemoveHeaders deletes the identity headers a client sent, in
// every spelling an upstream could read as the same header: any case, and
// '_' for '-' (X_Api_Key_Id), which CGI, WSGI and Rack read as '-'. It
// also removes those names and Authorization from the lists of the
// Connection header, so that reverse_proxy cannot be told to drop the
// copies keygate sets (or the key kept by keep_credentials) as hop-by-hop,
// and of the Trailer header. Everything else is left as it was; when
// nothing is to be removed, it allocates nothing.
func RemoveHeaders(hdr http.Header) {
	delete(hdr, HeaderID)
	delete(hdr, HeaderName)
	delete(hdr, HeaderScope)
	for name := range hdr {
		if IsName(name) {
			delete(hdr, name)
		}
	}
	for _, list := range [...]string{"Connection", "Trailer"} {
		if values, ok := hdr[list]; ok {
			if kept := removeProtectedNames(values); len(kept) == 0 {
				delete(hdr, list)
			} else {
				hdr[list] = kept
			}
		}
	}
}

// RemoveTrailers removes identity names and Authorization, in
// every spelling, from r's trailers, now and when the body is read to its
// end. net/http fills r.Trailer only then (with every trailer line sent,
// announced or not, into the map all copies of r share), and
// reverse_proxy copies it to the upstream's request at that moment.
func RemoveTrailers(r *http.Request) {
	removeFromTrailers(r.Trailer)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &trailerScrubber{ReadCloser: r.Body, r: r}
	}
}

// trailerScrubber removes protected names from r.Trailer when the body
// that it wraps reaches its end.
type trailerScrubber struct {
	io.ReadCloser
	r *http.Request
}

// Read reads from the body and, at its end, scrubs the trailers before
// the reader (reverse_proxy) sees io.EOF.
func (b *trailerScrubber) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		removeFromTrailers(b.r.Trailer)
	}
	return n, err
}

// removeFromTrailers deletes the protected names from trailers.
func removeFromTrailers(trailers http.Header) {
	for name := range trailers {
		if isProtected(name) {
			delete(trailers, name)
		}
	}
}

// removeProtectedNames returns the values of a comma-separated list of
// header names without the elements that are protected names, trimmed as
// reverse_proxy trims them (textproto.TrimString). It returns values
// itself if there are none; else a new slice, without the values left
// empty.
func removeProtectedNames(values []string) []string {
	found := false
	for _, v := range values {
		if listHasProtectedName(v) {
			found = true
			break
		}
	}
	if !found {
		return values
	}
	kept := make([]string, 0, len(values))
	for _, v := range values {
		if !listHasProtectedName(v) {
			kept = append(kept, v)
			continue
		}
		var elems []string
		for _, e := range strings.Split(v, ",") {
			if e = textproto.TrimString(e); e != "" && !isProtected(e) {
				elems = append(elems, e)
			}
		}
		if len(elems) > 0 {
			kept = append(kept, strings.Join(elems, ", "))
		}
	}
	return kept
}

// listHasProtectedName reports whether the comma-separated list v names a
// protected header.
func listHasProtectedName(v string) bool {
	for v != "" {
		var e string
		e, v, _ = strings.Cut(v, ",")
		if isProtected(textproto.TrimString(e)) {
			return true
		}
	}
	return false
}

// isProtected reports whether name is an identity header's name or
// Authorization, in any spelling.
func isProtected(name string) bool {
	return IsName(name) || sameHeader(name, "Authorization")
}

// IsName reports whether name is an identity header's name in any
// spelling (case, '_' for '-').
func IsName(name string) bool {
	return len(name) >= len(HeaderID) && len(name) <= len(HeaderScope) &&
		(sameHeader(name, HeaderID) || sameHeader(name, HeaderName) || sameHeader(name, HeaderScope))
}

// sameHeader reports whether name equals canonical when case and the
// difference between '_' and '-' are ignored.
func sameHeader(name, canonical string) bool {
	if len(name) != len(canonical) {
		return false
	}
	for i := 0; i < len(name); i++ {
		a, b := name[i], canonical[i]
		if a == '_' {
			a = '-'
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
