package leakreport

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []Token
		wantErr string
	}{
		{name: "GitHub's example", body: `[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]`,
			want: []Token{{Token: "some_token", Type: "some_type", URL: "https://example.com/base-repo-url/", Source: "commit"}}},
		{name: "empty", body: `[]`, want: []Token{}},
		{name: "white space around", body: " \n[ ]\n", want: []Token{}},
		{name: "only a token", body: `[{"token":"t"}]`, want: []Token{{Token: "t"}}},
		{name: "unknown members ignored", body: `[{"token":"t","new_field":{"a":[1]}}]`, want: []Token{{Token: "t"}}},
		{name: "order kept", body: `[{"token":"b"},{"token":"a"},{"token":"b"}]`, want: []Token{{Token: "b"}, {Token: "a"}, {Token: "b"}}},
		{name: "empty token", body: `[{"token":""}]`, want: []Token{{Token: ""}}},
		{name: "nothing", body: ``, wantErr: "not JSON"},
		{name: "garbage", body: `dk_abc`, wantErr: "not JSON"},
		{name: "an object", body: `{"token":"t"}`, wantErr: "must be a JSON array"},
		{name: "null", body: `null`, wantErr: "must be a JSON array"},
		{name: "a string", body: `"t"`, wantErr: "must be a JSON array"},
		{name: "entry not an object", body: `[1]`, wantErr: "entry 0: must be an object, not a JSON number"},
		{name: "entry null", body: `[null]`, wantErr: `entry 0: "token" is missing`},
		{name: "token missing", body: `[{"token":"a"},{"type":"t"}]`, wantErr: `entry 1: "token" is missing`},
		{name: "token null", body: `[{"token":null}]`, wantErr: `entry 0: "token" is missing`},
		{name: "token a number", body: `[{"token":12}]`, wantErr: `entry 0: "token" must be a string, not a JSON number`},
		{name: "url an object", body: `[{"token":"t","url":{}}]`, wantErr: `entry 0: "url" must be a string, not a JSON object`},
		{name: "not closed", body: `[{"token":"t"}`, wantErr: "not closed"},
		{name: "bad JSON inside", body: `[{"token":"t",}]`, wantErr: "entry 0: not valid JSON"},
		{name: "data after", body: `[]x`, wantErr: "data after"},
		{name: "second array", body: `[][]`, wantErr: "data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want an error containing %q", tt.body, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %#v, want %#v", tt.body, got, tt.want)
			}
		})
	}
}

func TestParseBoundsTokensAndCutsLongMembers(t *testing.T) {
	entry := `{"token":"t"},`
	atMax := "[" + strings.Repeat(entry, MaxTokens-1) + `{"token":"t"}]`
	got, err := Parse([]byte(atMax))
	if err != nil || len(got) != MaxTokens {
		t.Fatalf("Parse of %d tokens = %d tokens, %v; want them all", MaxTokens, len(got), err)
	}
	over := "[" + strings.Repeat(entry, MaxTokens) + `{"token":"t"}]`
	if _, err := Parse([]byte(over)); !errors.Is(err, ErrTooManyTokens) {
		t.Fatalf("Parse of %d tokens: %v, want ErrTooManyTokens", MaxTokens+1, err)
	}

	long := strings.Repeat("é", MaxURLLength) // 2 bytes each: the cut falls inside one
	body, _ := json.Marshal([]map[string]string{{"token": "t", "url": "x" + long, "source": "y" + long}})
	got, err = Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got[0].URL); n > MaxURLLength || n < MaxURLLength-1 || !utf8.ValidString(got[0].URL) {
		t.Errorf("url cut to %d bytes (valid UTF-8: %v), want %d or %d", n, utf8.ValidString(got[0].URL), MaxURLLength-1, MaxURLLength)
	}
	if n := len(got[0].Source); n > MaxSourceLength || n < MaxSourceLength-1 || !utf8.ValidString(got[0].Source) {
		t.Errorf("source cut to %d bytes, want at most %d", n, MaxSourceLength)
	}
}

// FuzzParse feeds any body to Parse: it never panics; what it accepts is
// at most MaxTokens tokens with members within their bounds, which encode
// and parse back to the same tokens; its errors are short and never repeat
// a token.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]`,
		`[]`, `[{"token":"dk_5Dq0hqnSm3ZBxqFJPBYqZe5gIpNwVqhn1fKIQo"}]`, `[{"token":12}]`, `[null]`, `{"token":"t"}`,
		`[{"token":"a","url":{}},{"token":"b"}]`, `[][]`, "[\"\xff\"]", `[{"token":"\ud800"}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tokens, err := Parse(body)
		if err != nil {
			if len(err.Error()) > 120 {
				t.Fatalf("error of %d bytes: %v", len(err.Error()), err)
			}
			var e []struct{ Token string }
			if json.Unmarshal(body, &e) == nil {
				for _, tok := range e {
					if len(tok.Token) > 8 && strings.Contains(err.Error(), tok.Token) {
						t.Fatalf("error %q repeats a token", err)
					}
				}
			}
			return
		}
		if len(tokens) > MaxTokens {
			t.Fatalf("%d tokens accepted, more than %d", len(tokens), MaxTokens)
		}
		for _, tok := range tokens {
			if len(tok.URL) > MaxURLLength || len(tok.Source) > MaxSourceLength {
				t.Fatalf("a member over its bound: url %d bytes, source %d bytes", len(tok.URL), len(tok.Source))
			}
		}
		again, err := json.Marshal(tokens)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(again)
		if err != nil {
			t.Fatalf("the accepted tokens, encoded again, are refused: %v", err)
		}
		if !reflect.DeepEqual(back, tokens) {
			t.Fatalf("the accepted tokens read back as %q, not %q", back, tokens)
		}
	})
}
