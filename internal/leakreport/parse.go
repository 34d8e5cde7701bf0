package leakreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Bounds of a report.
const (
	// MaxBodySize is the largest report body accepted, in bytes.
	MaxBodySize = 1 << 20
	// MaxTokens is the most tokens one report may hold. Each well-formed
	// token costs a store query (and a revocation a transaction), so this
	// bounds the work one signed request can cause; GitHub batches its
	// matches in far smaller reports.
	MaxTokens = 1000
	// MaxURLLength and MaxSourceLength bound what of a token's url and
	// source is passed on to the audit event; longer values are cut (at a
	// character boundary), not refused, so that an odd URL does not keep a
	// leaked key from being revoked.
	MaxURLLength    = 2048
	MaxSourceLength = 64
)

// ErrTooManyTokens is what Parse returns for a report of more than
// MaxTokens tokens.
var ErrTooManyTokens = fmt.Errorf("the report holds more than %d tokens", MaxTokens)

// Token is one match of a report: a string found in public that has the
// shape of a key.
type Token struct {
	// Token is the string found. It is a secret if it is a key: it is
	// never logged.
	Token string `json:"token"`
	// Type is the name the provider gave its pattern when it enrolled.
	Type string `json:"type"`
	// URL is where it was found (may be empty), cut to MaxURLLength bytes.
	URL string `json:"url"`
	// Source is what held it ("content", "commit", "issue_comment", ...),
	// cut to MaxSourceLength bytes.
	Source string `json:"source"`
}

// entry is a token as the JSON holds it: a missing or null token is an
// error, not an empty string.
type entry struct {
	Token  *string `json:"token"`
	Type   string  `json:"type"`
	URL    string  `json:"url"`
	Source string  `json:"source"`
}

// Parse reads a report body: a JSON array of objects with a string
// "token" and optional string "type", "url" and "source" (other members
// are ignored, as GitHub may add some), at most MaxTokens of them, and
// nothing after the array. Its errors name the entry and the member, and
// never repeat a token.
func Parse(body []byte) ([]Token, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("the report is not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errors.New("the report must be a JSON array of tokens")
	}
	tokens := []Token{}
	for i := 0; dec.More(); i++ {
		if i == MaxTokens {
			return nil, ErrTooManyTokens
		}
		var e entry
		if err := dec.Decode(&e); err != nil {
			return nil, entryError(i, err)
		}
		if e.Token == nil {
			return nil, fmt.Errorf("entry %d: \"token\" is missing", i)
		}
		tokens = append(tokens, Token{
			Token:  *e.Token,
			Type:   e.Type,
			URL:    cut(e.URL, MaxURLLength),
			Source: cut(e.Source, MaxSourceLength),
		})
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("the report's array is not closed")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("the report has data after its array")
	}
	return tokens, nil
}

// entryError describes why entry i could not be decoded, without the
// decoder's text, which may quote the input.
func entryError(i int, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Errorf("entry %d: must be an object, not a JSON %s", i, te.Value)
		}
		return fmt.Errorf("entry %d: %q must be a string, not a JSON %s", i, te.Field, te.Value)
	}
	return fmt.Errorf("entry %d: not valid JSON", i)
}

// cut returns s cut to at most n bytes, at the start of a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
