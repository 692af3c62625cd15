package balancer

import "net/netip"

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// HashAddr returns the hashing key of a client address, for Request.Hash.
// It is a fixed function of the address, the same in every process, so a
// client keeps its server across reloads. An IPv4 address and its
// IPv4-mapped IPv6 form hash the same; a zone is ignored. It does not
// allocate.
func HashAddr(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix64(h)
}

// hashString returns a fixed hash of s, the same in every process. It does
// not allocate.
func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

// HashBytes returns the hashing key of b (a header value, a cookie, a URI),
// for Request.Hash: a fixed function, the same in every process. It does not
// allocate.
func HashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix64(h)
}

// Mix scrambles x, for a key made from a counter.
func Mix(x uint64) uint64 { return mix64(x) }

// mix64 is splitmix64's finaliser: a bijection of the 64-bit integers in
// which every input bit affects every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
