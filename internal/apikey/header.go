package apikey

import "strings"

// Code names a kind of authentication failure. The values are the error codes
// of keygate's HTTP answers.
type Code string

// The failure codes, one per row of the error table in docs/DESIGN.md.
const (
	CodeMissing     Code = "missing_api_key"
	CodeScheme      Code = "invalid_auth_scheme"
	CodeMalformed   Code = "malformed_api_key"
	CodeInvalid     Code = "invalid_api_key"
	CodeRevoked     Code = "api_key_revoked"
	CodeExpired     Code = "api_key_expired"
	CodeScope       Code = "insufficient_scope"
	CodeOwner       Code = "owner_mismatch"
	CodeAmbiguous   Code = "ambiguous_credentials"
	CodeUnavailable Code = "key_store_unavailable"
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
func ParseAuthorization(value string) (string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return "", ErrMissingKey
	}
	scheme, rest, _ := strings.Cut(value, " ")
	if !strings.EqualFold(scheme, Scheme) {
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
