// Package apikeytest makes key secrets and IDs derived from a tag and an
// index, for benchmark datasets of many keys: a benchmark can send key i of
// a store it built earlier without the store, or any file, holding a
// secret. It is for tests and benchmarks only.
package apikeytest

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"

	"github.com/docana/keygate/internal/apikey"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// derive fills dst with base62 characters derived from tag and i.
func derive(dst []byte, tag string, i int) {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], uint64(i))
	sum := sha256.Sum256(append([]byte(tag), seed[:]...))
	for j := range dst {
		if j > 0 && j%len(sum) == 0 {
			sum = sha256.Sum256(sum[:])
		}
		dst[j] = base62[int(sum[j%len(sum)])%62]
	}
}

// Secret returns key i of the dataset tag: "dk_", 32 derived characters
// and their checksum, written as the design says (CRC-32 IEEE in 6 base62
// digits, most significant first), so that it passes the default format's
// check.
func Secret(tag string, i int) string {
	b := make([]byte, 3+32+6)
	copy(b, "dk_")
	derive(b[3:35], tag, i)
	sum := crc32.ChecksumIEEE(b[:35])
	for j := len(b) - 1; j >= 35; j-- {
		b[j] = base62[sum%62]
		sum /= 62
	}
	return string(b)
}

// ID returns the key ID of key i of the dataset tag.
func ID(tag string, i int) string {
	id := make([]byte, len(apikey.IDPrefix)+22)
	copy(id, apikey.IDPrefix)
	derive(id[len(apikey.IDPrefix):], tag, i)
	return string(id)
}
