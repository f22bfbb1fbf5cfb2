package memo

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"strings"
)

var anonymous = regexp.MustCompile(`\.func\d+|-range\d+|\.gowrap\d+`)

// maxNamespace and maxPrefix bound Namespace and Prefix so that prefix,
// namespace, two colons and the longest id (a hashed one) always fit in
// MaxKeyLen.
const (
	maxNamespace = 150
	maxPrefix    = MaxKeyLen - maxNamespace - hashedIDLen - 2
)

// defaultNamespace returns fn's package path and name, the namespace of a
// function given no Namespace. It panics with a "memo: ..." message when
// that name would not tell fn apart from another function, or from itself
// after a deploy: a closure (its generated name moves when code moves), a
// method value (every receiver has one name), a generic function
// (every instantiation has one name), or a function made by reflect.
func defaultNamespace(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	last := name[strings.LastIndexByte(name, '/')+1:]
	var why string
	switch {
	case name == "":
		why = "a function without a name"
	case strings.HasPrefix(name, "reflect."):
		why = "a function made by reflect, whose name is shared by all such functions"
	case strings.HasSuffix(name, "-fm"):
		why = "a method value: the receiver is not part of its name, so every receiver would share one namespace and be served another's answers"
	case strings.Contains(last, "["):
		why = "a generic function or method: its instantiations share one name, so each would be served another's answers"
	case anonymous.MatchString(last):
		why = "an anonymous function, whose generated name is not stable across builds"
	}
	if why != "" {
		panic(fmt.Sprintf("memo: %s is %s; give it a namespace of its own with memo.Namespace", name, why))
	}
	if len(name) > maxNamespace || strings.ContainsAny(name, " \t\n") {
		sum := sha256.Sum256([]byte(name))
		name = strings.ReplaceAll(name[len(name)-min(len(name), 100):], " ", "_") + "~" + base64.RawURLEncoding.EncodeToString(sum[:16])
	}
	return name
}
