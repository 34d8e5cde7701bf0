package apikey

import "strings"

// Code names a kind of authentication failure. The values are the error codes
// of keygate's HTTP answers.
type Code string

// The failure codes, one per row of the error table in docs/DESIGN.md.
const (
	CodeMissing       Code = "missing_api_key"
	CodeScheme        Code = "invalid_auth_scheme"
	CodeMalformed     Code = "malformed_api_key"
	CodeInvalid       Code = "invalid_api_key"
	CodeRevoked       Code = "api_key_revoked"
	CodeExpired       Code = "api_key_expired"
	CodeScope         Code = "insufficient_scope"
	CodeOwner         Code = "owner_mismatch"
	CodeIP            Code = "ip_not_allowed"
	CodeOrigin        Code = "origin_not_allowed"
	CodeAmbiguous     Code = "ambiguous_credentials"
	CodeUnavailable   Code = "key_store_unavailable"
	CodeAmbiguousPath Code = "ambiguous_path"
	// CodeRateLimited: one of the key's rate limits is exhausted (429).
	CodeRateLimited Code = "rate_limited"
	// CodeRateLimitUnavailable: the shared rate-limit store fails and
	// rate_limit_on_error is deny (503).
	CodeRateLimitUnavailable Code = "rate_limit_unavailable"
)

// Error is a failure to read a key from a request, with a message a client
// can act on. The values are fixed, so returning one allocates nothing; they
// never hold the key itself.
type Error struct {
	code Code
	msg  string
}

// NewError returns an error with a fixed code and message. Packages keep the
// result in a variable, so that returning it allocates nothing.
func NewError(code Code, msg string) *Error { return &Error{code: code, msg: msg} }

// Error returns the message.
func (e *Error) Error() string { return e.msg }

// Code returns the failure code.
func (e *Error) Code() Code { return e.code }

// The fixed errors. Format adds its own for a wrong prefix or length, as
// those messages name the configured prefix.
var (
	ErrMissingKey  = &Error{CodeMissing, "no API key was sent: send the header Authorization: ApiKey <key>"}
	ErrAuthScheme  = &Error{CodeScheme, "the Authorization header must use the ApiKey scheme: send Authorization: ApiKey <key>"}
	ErrExtraTokens = &Error{CodeMalformed, "the Authorization header holds more than one token after ApiKey: send exactly one key"}
	errKeyAlphabet = &Error{CodeMalformed, "the API key holds a character that no key has: keys are letters, digits and one underscore"}
	errKeyChecksum = &Error{CodeMalformed, "the API key's checksum does not match: it was mistyped or cut short"}
)

// Scheme is the authentication scheme keys are sent with.
const Scheme = "ApiKey"

// ParseAuthorization returns the key in the value of an Authorization
// header, "ApiKey <key>". The scheme is case-insensitive (RFC 9110 §11.1)
// and one or more spaces separate it from the key (a tab does not, so
// "ApiKey\t<key>" is an unknown scheme); the key is returned as a
// substring of value, unchecked. It allocates nothing.
//
// White space and case are HTTP's, not Unicode's: only SP and HTAB are
// trimmed (RFC 9110 §5.5), and the scheme's case is folded in ASCII only.
// A no-break space after the key stays part of it (and Format.Check
// refuses it), and "Api\u212Aey" (a Kelvin sign) is not the scheme.
func ParseAuthorization(value string) (string, error) {
	value = trimOWS(value)
	if value == "" {
		return "", ErrMissingKey
	}
	scheme, rest, _ := strings.Cut(value, " ")
	if !asciiEqualFold(scheme, Scheme) {
		return "", ErrAuthScheme
	}
	key := strings.TrimLeft(rest, " ")
	if key == "" {
		return "", ErrMissingKey
	}
	// Two IndexByte scans (SIMD) cost a fraction of one ContainsAny.
	if strings.IndexByte(key, ' ') >= 0 || strings.IndexByte(key, '\t') >= 0 {
		return "", ErrExtraTokens
	}
	return key, nil
}

// trimOWS returns s without leading and trailing SP and HTAB, HTTP's
// optional white space. strings.TrimSpace would also remove Unicode
// spaces (U+00A0, U+0085, U+3000) that HTTP treats as part of the value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// asciiEqualFold reports whether a and b are equal when ASCII letters'
// case is ignored. strings.EqualFold folds Unicode, so that the Kelvin
// sign U+212A equals "k"; HTTP tokens are ASCII (RFC 9110 §5.6.2).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
