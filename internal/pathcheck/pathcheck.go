// Package pathcheck finds request paths that servers behind a gateway may
// resolve to another route than the gateway matched: the forms that
// Tomcat, Jetty and Spring (and servers on Windows) decode, strip or merge
// before routing. The handler's strict_paths option refuses them.
//
// The list is Spring Security's StrictHttpFirewall's, for the path:
//
//   - a path parameter: ';' or %3B. Tomcat and Spring drop ";..." from
//     each segment, so /api/..;/admin is /api/../admin, that is /admin.
//   - a backslash: '\' or %5C, a separator on Windows and for some Java
//     servers (Tomcat's ALLOW_BACKSLASH, Undertow).
//   - an encoded slash, %2F, which servers that decode it (Tomcat's
//     encodedSolidusHandling=decode, Apache's AllowEncodedSlashes) read as
//     a separator the gateway did not see.
//   - an encoded percent sign, %25: decoded once more (double decoding,
//     which some frameworks and proxy chains do) %252e is '.'.
//   - a dot segment, plain or encoded (., .., %2e, .%2E, %2e%2e): resolved
//     to the parent after decoding.
//   - an empty segment (//), which Tomcat and Spring merge.
//   - a control character, raw or encoded (%00 to %1F, %7F): NUL ends a
//     string in C and in older Java file APIs.
//   - a '%' not followed by two hex digits, which has no single meaning.
//
// A path without these decodes once to itself with each encoded character
// replaced, the same segments in the same places, and decoding it again
// changes nothing: every server reads the same path.
package pathcheck

// Problem is why a path is ambiguous; 0 (OK) if it is not.
type Problem uint8

// The problems Check finds, one per form of the package's list.
const (
	OK Problem = iota
	Parameter
	Backslash
	EncodedSlash
	EncodedPercent
	DotSegment
	EmptySegment
	Control
	BadEscape
)

// Problems lists every problem but OK.
var Problems = []Problem{Parameter, Backslash, EncodedSlash, EncodedPercent, DotSegment, EmptySegment, Control, BadEscape}

var problemText = [...]string{
	OK:             "nothing ambiguous",
	Parameter:      "a path parameter (; or %3B), which servers such as Tomcat and Spring strip",
	Backslash:      `a backslash (\ or %5C), which some servers read as a slash`,
	EncodedSlash:   "an encoded slash (%2F), which some servers read as a slash",
	EncodedPercent: "an encoded percent sign (%25), which a second decoding turns into another character",
	DotSegment:     "a dot segment (. or .., plain or encoded), which servers resolve to another path",
	EmptySegment:   "an empty segment (//), which some servers merge",
	Control:        "a control character (such as %00)",
	BadEscape:      "a % not followed by two hexadecimal digits",
}

// String describes the problem in words fit for an error message; it
// never repeats the path.
func (p Problem) String() string {
	if int(p) >= len(problemText) {
		return "an unknown problem"
	}
	return problemText[p]
}

// Check returns the first problem of escapedPath, the path of a request
// as sent on the wire (url.URL.EscapedPath, RawPath), or OK. It allocates
// nothing.
func Check(escapedPath string) Problem {
	return check(escapedPath, true)
}

// CheckDecoded returns the first problem of the path that is sent for the
// decoded path (url.URL.Path with no RawPath): Check of path escaped as
// url.URL escapes it, where a '%' is sent as %25. It allocates nothing,
// unlike computing url.URL.EscapedPath.
func CheckDecoded(path string) Problem {
	return check(path, false)
}

// check returns the first problem of path, read as escaped (a '%' starts
// an escape) or as decoded (a '%' is sent as %25).
func check(path string, escaped bool) Problem {
	// The current segment: how many characters it decodes to and how many
	// of those are dots. The text before the first slash (empty in an
	// absolute path) is no segment that can be empty.
	segLen, dots := 0, 0
	leading := true
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' {
			if !escaped {
				return EncodedPercent
			}
			if i+2 >= len(path) {
				return BadEscape
			}
			hi, ok1 := unhex(path[i+1])
			lo, ok2 := unhex(path[i+2])
			if !ok1 || !ok2 {
				return BadEscape
			}
			i += 2
			switch c = hi<<4 | lo; c {
			case '/':
				return EncodedSlash
			case '%':
				return EncodedPercent
			}
		} else if c == '/' {
			if segLen == 0 && !leading {
				return EmptySegment
			}
			if segLen == dots && segLen > 0 && segLen <= 2 {
				return DotSegment
			}
			segLen, dots, leading = 0, 0, false
			continue
		}
		// c is the decoded character.
		switch {
		case c == ';':
			return Parameter
		case c == '\\':
			return Backslash
		case c < 0x20 || c == 0x7f:
			return Control
		case c == '.':
			dots++
		}
		segLen++
	}
	if segLen == dots && segLen > 0 && segLen <= 2 {
		return DotSegment
	}
	return OK
}

// unhex returns the value of the hex digit c.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
