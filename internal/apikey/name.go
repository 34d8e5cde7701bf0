package apikey

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxNameLength is the longest key name, in characters (Unicode code
// points).
const MaxNameLength = 100

// CheckName reports why name cannot name a key, or nil if it can: a name is
// 1 to MaxNameLength characters of valid UTF-8, not only white space, with
// no control or format characters (Unicode categories Cc and Cf: C0 and C1
// controls, bidi overrides, zero-width characters), which would make a name
// display as something else than it is. It is the one rule for names: the
// key service checks it for what people type, and the stores for what they
// are given. Its errors describe the name without quoting it, so they are
// safe to log and to show ("must not hold format characters (U+202E)").
func CheckName(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("must be valid UTF-8")
	}
	n := utf8.RuneCountInString(name)
	if n > MaxNameLength {
		return fmt.Errorf("must be at most %d characters, not %d", MaxNameLength, n)
	}
	blank := true
	for _, r := range name {
		switch {
		case unicode.Is(unicode.Cc, r):
			return fmt.Errorf("must not hold control characters (%U)", r)
		case unicode.Is(unicode.Cf, r):
			return fmt.Errorf("must not hold format characters (%U)", r)
		case !unicode.IsSpace(r):
			blank = false
		}
	}
	if blank {
		// Empty, or only white space (U+0020, U+00A0, U+3000, …).
		return errors.New("must not be empty")
	}
	return nil
}
