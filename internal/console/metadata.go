package console

import (
	"fmt"
	"strings"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

// The create and edit dialogs take a key's metadata as text, one
// name=value line per entry, so that they work as plain HTML forms, without
// the page's script: a textarea round-trips every metadata value, since
// values hold no control characters (apikey.CheckMetadata), so no line
// break either.

// parseMetadata reads name=value lines. Blank lines are skipped; space
// around a name and its value is dropped; a value may hold "=". A line
// without "=" and a name given twice are refused, naming the line. The
// names and values themselves are checked by the key service
// (apikey.CheckMetadata). Empty text is no metadata: an empty map, which
// an update stores as "cleared".
func parseMetadata(text string) (map[string]string, error) {
	m := make(map[string]string)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, &keyservice.InputError{Field: "metadata", Message: fmt.Sprintf("line %d is not name=value", i+1)}
		}
		name = strings.TrimSpace(name)
		if _, dup := m[name]; dup {
			return nil, &keyservice.InputError{Field: "metadata", Message: fmt.Sprintf("line %d names %s again", i+1, apikey.QuoteInput(name))}
		}
		m[name] = strings.TrimSpace(value)
	}
	return m, nil
}

// formatMetadata writes metadata as parseMetadata reads it.
func formatMetadata(list []metadataEntry) string {
	var b strings.Builder
	for i, e := range list {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Name)
		b.WriteByte('=')
		b.WriteString(e.Value)
	}
	return b.String()
}
