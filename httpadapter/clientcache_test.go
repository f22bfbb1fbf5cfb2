package httpadapter

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gregjones/httpcache"

	"github.com/gomemo/memo"
)

// seen records what reached the server: the request's If-None-Match and
// the status answered.
type seen struct {
	inm    string
	status int
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func recordTo(mu *sync.Mutex, log *[]seen) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sr := &statusRecorder{ResponseWriter: w, status: 200}
			h.ServeHTTP(sr, r)
			mu.Lock()
			*log = append(*log, seen{r.Header.Get("If-None-Match"), sr.status})
			mu.Unlock()
		})
	}
}

// TestClientSideCache fetches through a real RFC 9111 client cache
// (github.com/gregjones/httpcache): answers without expiry ("private,
// no-cache") are revalidated with If-None-Match and the 304 is used; answers
// with max-age are served by the client without asking.
func TestClientSideCache(t *testing.T) {
	type step struct {
		body       string
		fromClient bool // X-From-Cache: the body came from the client cache
	}
	cases := []struct {
		name     string
		expire   time.Duration
		constant bool
		forget   bool // drop the server entry between the fetches
		steps    []step
		wantSeen func(etag string) []seen
	}{
		{
			name: "no expiry: revalidated, 304 used", expire: 0, constant: true,
			steps: []step{{"42", false}, {"42", true}, {"42", true}},
			wantSeen: func(etag string) []seen {
				return []seen{{"", 200}, {etag, 304}, {etag, 304}}
			},
		},
		{
			name: "no expiry, value changed: revalidation gets the new body", expire: 0, forget: true,
			steps: []step{{"1", false}, {"2", false}},
			wantSeen: func(etag string) []seen {
				return []seen{{"", 200}, {etag, 200}}
			},
		},
		{
			name: "max-age: served by the client", expire: time.Minute,
			steps: []step{{"1", false}, {"1", true}},
			wantSeen: func(string) []seen {
				return []seen{{"", 200}}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var log []seen
			fx := newFixture(t, fixtureOpts{
				memo:     []memo.Option{memo.Expire(c.expire)},
				constant: c.constant,
				wrap:     recordTo(&mu, &log),
			})
			tr := httpcache.NewMemoryCacheTransport()
			tr.Transport = fx.srv.Client().Transport
			client := tr.Client()
			var etag string
			for i, s := range c.steps {
				if i > 0 && c.forget {
					if err := fx.f.Forget(context.Background(), "x"); err != nil {
						t.Fatal(err)
					}
				}
				r := doReq(t, client, "GET", fx.srv.URL+"/v/x")
				if r.status != 200 || r.body != s.body {
					t.Errorf("fetch %d: %v %v, want 200 %v", i, r.status, r.body, s.body)
				}
				if got := r.header.Get(httpcache.XFromCache) == "1"; got != s.fromClient {
					t.Errorf("fetch %d: from the client cache = %v, want %v", i, got, s.fromClient)
				}
				if i == 0 {
					etag = r.header.Get("Etag")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(c.wantSeen(etag), log, cmp.AllowUnexported(seen{})); diff != "" {
				t.Errorf("requests reaching the server (-want +got):\n%s", diff)
			}
		})
	}
}
