package apikeytest

import (
	"testing"

	"github.com/docana/keygate/internal/apikey"
)

func TestDerivedKeysAreValidStableAndDistinct(t *testing.T) {
	format, err := apikey.NewFormat(apikey.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 1000 {
		secret, id := Secret("t", i), ID("t", i)
		if err := format.Check(secret); err != nil {
			t.Fatalf("Secret(t, %d) = %q fails the format check: %v", i, secret, err)
		}
		if !apikey.ValidID(id) {
			t.Fatalf("ID(t, %d) = %q is not a valid key ID", i, id)
		}
		if secret != Secret("t", i) || seen[secret] || seen[id] {
			t.Fatalf("key %d is not stable or not unique", i)
		}
		seen[secret], seen[id] = true, true
	}
	if Secret("a", 0) == Secret("b", 0) {
		t.Error("different tags derive the same key")
	}
}
