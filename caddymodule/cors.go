package caddymodule

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/docana/keygate/internal/policy"
)

// CORS response headers, in the canonical form the header map keys use.
const (
	headerAllowOrigin   = "Access-Control-Allow-Origin"
	headerAllowMethods  = "Access-Control-Allow-Methods"
	headerAllowHeaders  = "Access-Control-Allow-Headers"
	headerMaxAge        = "Access-Control-Max-Age"
	headerExposeHeaders = "Access-Control-Expose-Headers"
)

// Header values shared by every answer. Each slice has len == cap, so a
// handler after this one that appends to the header (reverse_proxy copies
// the upstream's with append) gets a new array and never writes into
// these.
var (
	varyOrigin      = []string{"Origin"}
	varyPreflight   = []string{"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
	exposeHeaders   = []string{"RateLimit, RateLimit-Policy, Retry-After"}
	preflightMaxAge = []string{"600"}
)

// alwaysAllowedHeaders are allowed on every preflight: the key's header and
// the body's type (a JSON body is what makes a browser send a preflight).
const alwaysAllowedHeaders = "Authorization, Content-Type"

// maxPreflightHeaders bounds the length of Access-Control-Request-Headers
// the handler reflects.
const maxPreflightHeaders = 4096

// setCORSHeaders adds to hdr, the answer's headers, Vary: Origin and, if r
// has one valid Origin, Access-Control-Allow-Origin with it and
// Access-Control-Expose-Headers. It allocates nothing unless the answer
// already varies on other headers.
func setCORSHeaders(hdr http.Header, r *http.Request) {
	if vary, ok := hdr["Vary"]; ok {
		hdr["Vary"] = append(vary, "Origin")
	} else {
		hdr["Vary"] = varyOrigin
	}
	origin := r.Header["Origin"]
	if len(origin) != 1 || !validOrigin(origin[0]) {
		return
	}
	// The request's own slice, capped: nothing writes into request
	// headers' values, and it saves an allocation per request.
	hdr[headerAllowOrigin] = origin[:1:1]
	hdr[headerExposeHeaders] = exposeHeaders
}

// answerPreflight answers the CORS preflight r with 204. If its Origin,
// Access-Control-Request-Method and Access-Control-Request-Headers are
// well formed, the answer allows them (setCORSHeaders has set the origin);
// otherwise it allows nothing, and the browser refuses the actual request.
func answerPreflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr["Vary"] = varyPreflight
	delete(hdr, headerExposeHeaders) // meaningless on a preflight
	method := r.Header["Access-Control-Request-Method"]
	allowHeaders, headersOK := preflightHeaders(r.Header["Access-Control-Request-Headers"])
	if _, ok := hdr[headerAllowOrigin]; !ok || len(method) != 1 || !isToken(method[0]) || !headersOK {
		delete(hdr, headerAllowOrigin)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	hdr[headerAllowMethods] = method[:1:1]
	hdr[headerAllowHeaders] = []string{allowHeaders}
	hdr[headerMaxAge] = preflightMaxAge
	w.WriteHeader(http.StatusNoContent)
}

// preflightHeaders returns the Access-Control-Allow-Headers value for the
// Access-Control-Request-Headers lines asked: Authorization and
// Content-Type, then the other names asked, and false if a line is not a
// comma-separated list of header names (tokens) or the list is too long.
func preflightHeaders(lines []string) (string, bool) {
	var b strings.Builder
	b.WriteString(alwaysAllowedHeaders)
	n := 0
	for _, line := range lines {
		n += len(line)
		if n > maxPreflightHeaders {
			return "", false
		}
		for name := range strings.SplitSeq(line, ",") {
			name = strings.Trim(name, " \t")
			if name == "" {
				continue // empty list elements are allowed (RFC 9110 5.6.1)
			}
			if !isToken(name) {
				return "", false
			}
			if strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "Content-Type") {
				continue
			}
			b.WriteString(", ")
			b.WriteString(name)
		}
	}
	return b.String(), true
}

// isToken reports whether s is an RFC 9110 token: a method or header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

// tokenChars are the tchar of RFC 9110 5.6.2.
var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validOrigin reports whether s may be reflected as an origin: visible
// ASCII without commas or spaces (so no CR, LF or a second value), at most
// 2048 bytes. It does not check that s is a well-formed origin: it is
// only echoed; allowed_origins decides what a key accepts.
func validOrigin(s string) bool {
	if s == "" || len(s) > 2048 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// requestOrigin returns the origin r comes from, for a key's
// allowed_origins: its Origin header or, without one, the origin of its
// Referer; false if it has neither. A request with more than one Origin
// header gets "", which no list allows.
func requestOrigin(r *http.Request) (string, bool) {
	if origin := r.Header["Origin"]; len(origin) > 0 {
		if len(origin) > 1 {
			return "", true
		}
		return origin[0], true
	}
	if referer := r.Header["Referer"]; len(referer) == 1 {
		return policy.RefererOrigin(referer[0])
	}
	return "", false
}

// clientIP returns the client's address as Caddy's server determined it:
// the connection's peer, or the address that a trusted proxy (the server's
// trusted_proxies) put in client_ip_headers. Outside Caddy's server, or if
// it cannot be read, it returns the zero Addr, which no list allows.
func clientIP(r *http.Request) netip.Addr {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
