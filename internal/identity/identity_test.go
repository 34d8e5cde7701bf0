package identity

import (
	"bufio"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// FuzzRemoveIdentityHeaders feeds arbitrary header sets, one "name:value"
// a line (names as they come, canonical or not), to RemoveHeaders and
// removeFromTrailers. Whatever comes in, no identity header is
// left in any spelling, the Connection and Trailer lists name neither
// identity headers nor Authorization, and nothing else is removed or
// changed.
func FuzzRemoveIdentityHeaders(f *testing.F) {
	f.Add("X-Api-Key-Id:key_forged\nX_api_key_scope:full\nAccept:*/*")
	f.Add("Connection:keep-alive, X-Api-Key-Scope\nX-Api-Key-Scope:full")
	f.Add("Connection:keep-alive\nConnection: authorization ,x_API_key_NAME,,close")
	f.Add("Trailer:X-Api-Key-Id, X-Checksum\nTrailer:\nX-Checksum:abc")
	f.Add("x-api-key-name:forged\nX-API-KEY-ID:forged\nX-Api-Key-Idx:kept\nAuthorization:ApiKey dk_x")
	f.Fuzz(func(t *testing.T, lines string) {
		before := http.Header{}
		for _, line := range strings.Split(lines, "\n") {
			name, value, _ := strings.Cut(line, ":")
			before[name] = append(before[name], value)
		}
		hdr := http.Header{}
		for name, values := range before {
			hdr[name] = slices.Clone(values)
		}
		RemoveHeaders(hdr)
		checkRemoved(t, before, hdr, true)

		trailers := http.Header{}
		for name, values := range before {
			trailers[name] = slices.Clone(values)
		}
		removeFromTrailers(trailers)
		checkRemoved(t, before, trailers, false)
	})
}

// checkRemoved checks after against before: identity names (and, for
// trailers, Authorization) gone in every spelling; with lists, the
// Connection and Trailer lists without protected names; the rest as it
// was.
func checkRemoved(t *testing.T, before, after http.Header, lists bool) {
	t.Helper()
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Fatalf("%q was added", name)
		}
		if isIdentitySpelling(name) || !lists && strings.EqualFold(name, "Authorization") {
			t.Fatalf("%q is left: %q", name, after[name])
		}
	}
	for name, values := range before {
		if isIdentitySpelling(name) || !lists && strings.EqualFold(name, "Authorization") {
			continue
		}
		got, ok := after[name]
		if lists && (name == "Connection" || name == "Trailer") {
			want := listElements(values, true)
			if !slices.Equal(listElements(got, false), want) {
				t.Fatalf("%s %q became %q, want the elements %q", name, values, got, want)
			}
			if slices.Equal(listElements(values, false), want) && !slices.Equal(got, values) {
				t.Fatalf("%s %q was changed to %q with nothing to remove", name, values, got)
			}
			continue
		}
		if !ok || !slices.Equal(got, values) {
			t.Fatalf("%q %q became %q", name, values, got)
		}
	}
}

// listElements returns the non-empty elements of comma-separated lists,
// trimmed of SP, HTAB, CR and LF, without the protected ones if
// dropProtected.
func listElements(values []string, dropProtected bool) []string {
	var out []string
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			e = strings.Trim(e, " \t\r\n")
			if e == "" || dropProtected && (isIdentitySpelling(e) || strings.EqualFold(e, "Authorization")) {
				continue
			}
			out = append(out, e)
		}
	}
	return out
}

// isIdentitySpelling is the tests' own reading of "an identity header in
// any spelling": case-insensitive, '_' for '-'.
func isIdentitySpelling(name string) bool {
	switch strings.ReplaceAll(strings.ToLower(name), "_", "-") {
	case "x-api-key-id", "x-api-key-name", "x-api-key-scope":
		return true
	}
	return false
}

func TestRemoveHeadersCleansTheConnectionAndTrailerLists(t *testing.T) {
	tests := []struct {
		name     string
		in, want http.Header
	}{
		{"nothing to remove",
			http.Header{"Connection": {"keep-alive"}, "Trailer": {"X-Checksum"}, "Accept": {"*/*"}},
			http.Header{"Connection": {"keep-alive"}, "Trailer": {"X-Checksum"}, "Accept": {"*/*"}}},
		{"identity names and Authorization in Connection",
			http.Header{"Connection": {"keep-alive, X-Api-Key-Scope,x_api_key_id , AUTHORIZATION,Upgrade"}},
			http.Header{"Connection": {"keep-alive, Upgrade"}}},
		{"only identity names in Connection",
			http.Header{"Connection": {"X-Api-Key-Name", "x-api-key-id"}},
			http.Header{}},
		{"several Connection lines, one untouched",
			http.Header{"Connection": {"keep-alive ,, close", "X-Api-Key-Id, te"}},
			http.Header{"Connection": {"keep-alive ,, close", "te"}}},
		{"identity names in Trailer",
			http.Header{"Trailer": {"X-Api-Key-Id, X-Checksum", "X_Api_Key_Scope"}},
			http.Header{"Trailer": {"X-Checksum"}}},
		{"identity headers of every spelling",
			http.Header{"X-Api-Key-Id": {"a"}, "x-api-key-name": {"b"}, "X_API_KEY_SCOPE": {"c"}, "X-Api-Key-Idx": {"d"}},
			http.Header{"X-Api-Key-Idx": {"d"}}},
		{"names that only look alike", // U+212A KELVIN SIGN for K
			http.Header{"Connection": {"X-Api-\u212aey-Id"}},
			http.Header{"Connection": {"X-Api-\u212aey-Id"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := tt.in.Clone()
			RemoveHeaders(hdr)
			if len(hdr) != len(tt.want) {
				t.Fatalf("got %q, want %q", hdr, tt.want)
			}
			for name, want := range tt.want {
				if got := hdr[name]; strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestRemoveHeadersAllocatesNothingWithNothingToRemove(t *testing.T) {
	hdr := http.Header{
		"Accept": {"*/*"}, "Connection": {"keep-alive, Upgrade"}, "Trailer": {"X-Checksum"},
		"Authorization": {"ApiKey dk_x"}, "X-Request-Id": {"1"},
	}
	if n := testing.AllocsPerRun(100, func() { RemoveHeaders(hdr) }); n != 0 {
		t.Errorf("RemoveHeaders allocates %v times", n)
	}
}

// TestRemoveTrailersAtTheEndOfTheBody reads chunked requests with
// http.ReadRequest, which, like the server, fills in r.Trailer only when
// the body reaches its end (into the map announced trailers made, shared
// by every shallow copy of r): what a reader of the body finds at io.EOF
// holds no identity name and no Authorization, and the other trailers.
func TestRemoveTrailersAtTheEndOfTheBody(t *testing.T) {
	tests := []struct{ name, announce string }{
		{"announced", "Trailer: X-Api-Key-Id, X-Checksum\r\n"},
		{"announced in a spelling of their own", "Trailer: x_api_key_ID, X-Checksum\r\n"},
		{"not announced", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n" + tt.announce + "\r\n" +
				"5\r\nhello\r\n0\r\n" +
				"X-Api-Key-Id: key_forged\r\nx_api_key_scope: full\r\nAuthorization: ApiKey forged\r\nX-Checksum: abc\r\n\r\n"
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			RemoveHeaders(r.Header)
			RemoveTrailers(r)
			downstream := r.WithContext(r.Context()) // as Caddy's handlers pass it on
			if _, err := io.ReadAll(downstream.Body); err != nil {
				t.Fatal(err)
			}
			for _, req := range []*http.Request{r, downstream} {
				for name, v := range req.Trailer {
					if isIdentitySpelling(name) || strings.EqualFold(name, "Authorization") {
						t.Errorf("trailer %s = %q left", name, v)
					}
				}
				if got := req.Trailer.Get("X-Checksum"); got != "abc" && tt.announce != "" {
					t.Errorf("trailer X-Checksum = %q, want abc", got)
				}
			}
		})
	}
}
