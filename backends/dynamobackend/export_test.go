package dynamobackend

// SetLimits lifts the local item size check (maxItem) or makes Clear query
// in small pages (pageLimit), for tests. Zero leaves a value as it is.
func SetLimits(b *Backend, maxItem int, pageLimit int32) {
	if maxItem > 0 {
		b.maxItem = maxItem
	}
	if pageLimit > 0 {
		b.pageLimit = pageLimit
	}
}
