package apikey

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"time"
	"unsafe"
)

// DefaultPrefix starts every key unless the operator configures another.
const DefaultPrefix = "dk"

const (
	randomLength   = 32 // base62 characters of randomness, ≈190 bits
	checksumLength = 6  // base62 digits of CRC-32; 62^6 > 2^32
	maxPrefix      = 10
	minPrefix      = 2
)

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Value maps a byte to its base62 digit value, or -1.
var base62Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = int8(i)
	}
	return t
}()

// Digest is the SHA-256 of a whole key: the only form in which a key is
// stored or looked up.
type Digest [sha256.Size]byte

// DigestOf returns the digest of key.
func DigestOf(key string) Digest {
	return sha256.Sum256(stringBytes(key))
}

// String returns the digest in hex. A digest is not a secret, but it is not
// for display either: logs name keys by ID and hint.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Hint returns what people see of a key after its creation: its prefix, an
// ellipsis and its last 4 characters ("dk_…x9Qa").
func Hint(key string) string {
	prefix := key
	for i := 0; i < len(key); i++ {
		if key[i] == '_' {
			prefix = key[:i]
			break
		}
	}
	if len(key) < 4 {
		return prefix + "_…"
	}
	return prefix + "_…" + key[len(key)-4:]
}

// Format generates and checks the keys of one prefix. Its methods are safe
// for concurrent use, and Check allocates nothing, even when it fails.
type Format struct {
	prefix string // with the trailing underscore: "dk_"
	length int    // of a whole key

	errPrefix *Error
	errLength *Error
}

// NewFormat returns the format of keys starting with prefix and an
// underscore. prefix is 2 to 10 lowercase letters or digits.
func NewFormat(prefix string) (*Format, error) {
	if len(prefix) < minPrefix || len(prefix) > maxPrefix {
		return nil, fmt.Errorf("key prefix %q must be %d to %d characters long", prefix, minPrefix, maxPrefix)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return nil, fmt.Errorf("key prefix %q may hold only lowercase letters and digits", prefix)
		}
	}
	f := &Format{prefix: prefix + "_", length: len(prefix) + 1 + randomLength + checksumLength}
	f.errPrefix = &Error{code: CodeMalformed, msg: fmt.Sprintf("the API key does not start with %q", f.prefix)}
	f.errLength = &Error{code: CodeMalformed, msg: fmt.Sprintf("the API key must be %d characters long", f.length)}
	return f, nil
}

// Prefix returns the prefix keys start with, without the underscore.
func (f *Format) Prefix() string { return f.prefix[:len(f.prefix)-1] }

// Generate returns a new random key.
func (f *Format) Generate() (string, error) {
	b := make([]byte, f.length)
	copy(b, f.prefix)
	body := len(f.prefix) + randomLength
	if err := randomBase62(b[len(f.prefix):body]); err != nil {
		return "", err
	}
	putChecksum(b[body:], crc32.ChecksumIEEE(b[:body]))
	return string(b), nil
}

// Check reports whether key has this format's prefix, length, alphabet and
// a matching checksum, without any I/O. Its errors have CodeMalformed.
func (f *Format) Check(key string) error {
	if len(key) < len(f.prefix) || key[:len(f.prefix)] != f.prefix {
		return f.errPrefix
	}
	if len(key) != f.length {
		return f.errLength
	}
	for i := len(f.prefix); i < len(key); i++ {
		if base62Value[key[i]] < 0 {
			return errKeyAlphabet
		}
	}
	body := len(key) - checksumLength
	var want [checksumLength]byte
	putChecksum(want[:], crc32.ChecksumIEEE(stringBytes(key[:body])))
	if string(want[:]) != key[body:] {
		return errKeyChecksum
	}
	return nil
}

// New makes a fresh key of this format: its secret, to be shown once, and
// its record, which holds only the secret's digest and hint. now is the
// creation time. The record says keygate itself made it (CreatedBy
// {Type: ActorSystem}): a caller acting for someone sets CreatedBy, and
// Owner and Metadata, afterwards.
func (f *Format) New(name string, scope Scope, expiry Expiry, now time.Time) (secret string, k Key, err error) {
	if !scope.Valid() {
		return "", Key{}, fmt.Errorf("invalid scope %d", scope)
	}
	if _, err := ParseExpiry(string(expiry)); err != nil {
		return "", Key{}, err
	}
	if secret, err = f.Generate(); err != nil {
		return "", Key{}, err
	}
	id, err := NewID()
	if err != nil {
		return "", Key{}, err
	}
	now = now.UTC()
	return secret, Key{
		ID:        id,
		Name:      name,
		Scope:     scope,
		Expiry:    expiry,
		Hint:      Hint(secret),
		Digest:    DigestOf(secret),
		CreatedAt: now,
		ExpiresAt: expiry.ExpiresAt(now),
		CreatedBy: Actor{Type: ActorSystem},
	}, nil
}

// putChecksum writes sum in base62, most significant digit first, padded
// with '0' to fill dst.
func putChecksum(dst []byte, sum uint32) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62Alphabet[sum%62]
		sum /= 62
	}
}

// stringBytes returns the bytes of s without copying them. The callers only
// read them (hashing), so the string's immutability holds.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
