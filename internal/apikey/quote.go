package apikey

import (
	"strconv"
	"unicode/utf8"
)

// MaxEcho is how many bytes of a client's input an error message may
// repeat: enough to recognise a typo, far too little to give away a secret
// pasted into the wrong field. Errors are answered, and Caddy logs every
// admin error, so a longer echo would put a pasted key in the log.
const MaxEcho = 12

// QuoteInput quotes s, input from a client, for an error message: Go
// syntax (control characters and invalid UTF-8 escaped), cut to MaxEcho
// bytes and then marked with "…". The cut never splits a character. Every
// error that repeats what a client sent goes through it.
func QuoteInput(s string) string {
	if len(s) <= MaxEcho {
		return strconv.Quote(s)
	}
	cut := MaxEcho
	// Back up to the start of a character, at most UTFMax-1 bytes: further
	// back, the bytes are not UTF-8 anyway and cutting anywhere is fine.
	for back := 0; back < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]); back++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = MaxEcho
	}
	return strconv.Quote(s[:cut]) + "…"
}
