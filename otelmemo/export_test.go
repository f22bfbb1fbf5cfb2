package otelmemo

// ErrorType is the error.type the Observer o gives err.
func ErrorType(o any, err error) string { return o.(*observer).errorType(err) }
