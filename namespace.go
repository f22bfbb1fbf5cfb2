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

// maxNamespace bounds the namespace so that prefix, namespace and a hashed
// id always fit in MaxKeyLen.
const (
	maxNamespace = 150
	maxPrefix    = MaxKeyLen - maxNamespace - hashedIDLen - 2
)

func defaultNamespace(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	if name == "" || anonymous.MatchString(name[strings.LastIndexByte(name, '/')+1:]) {
		panic(fmt.Sprintf("memo: %s is an anonymous function, whose name is not stable across builds; give it a name with memo.Namespace", name))
	}
	name = strings.TrimSuffix(name, "-fm")
	if len(name) > maxNamespace || strings.ContainsAny(name, " \t\n") {
		sum := sha256.Sum256([]byte(name))
		name = strings.ReplaceAll(name[len(name)-min(len(name), 100):], " ", "_") + "~" + base64.RawURLEncoding.EncodeToString(sum[:16])
	}
	return name
}
