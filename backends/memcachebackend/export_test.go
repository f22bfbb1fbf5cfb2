package memcachebackend

// Internals exposed to the package's external tests.
var (
	Expiration = expiration
	GenKey     = genKey
)

const HeaderLen = headerLen
