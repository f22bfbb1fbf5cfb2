package reliability_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/redis/go-redis/v9"
)

// server is a server process that a test starts, kills (SIGKILL, by the pid
// it started) and starts again on the same port. It listens on 127.0.0.1
// only, keeps its files under the test's temporary directory, and is
// killed when the test ends.
type server struct {
	t     testing.TB
	name  string
	port  int
	dir   string
	argv  func(port int) []string
	probe func(addr string) error
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	log   string
	tries int // launches that failed because the process exited
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// errExited is a start that failed because the process exited, most often
// because another process took the port between freePort and the bind.
var errExited = errors.New("server exited during startup")

// launch starts the process on s.port and waits until probe answers.
func (s *server) launch() error {
	argv := s.argv(s.port)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies, so do its servers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.probe(s.addr()) == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s on port %d: %w; log:\n%s", s.name, s.port, errExited, tail(s.log))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("%s on port %d did not answer within 30s; log:\n%s", s.name, s.port, tail(s.log))
		}
	}
}

// kill sends SIGKILL to the process the test started and waits for it.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("%s (pid %d) still running 10s after SIGKILL", s.name, s.cmd.Process.Pid)
	}
	s.cmd = nil
}

// restart starts the server again on the same port and returns once it
// answers.
func (s *server) restart() {
	s.t.Helper()
	var err error
	for range 20 { // the port may linger for a moment
		if err = s.launch(); err == nil || !errors.Is(err, errExited) {
			break
		}
		s.tries++
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("restarting %s: %v", s.name, err)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// startServer starts a server on a free port, trying other ports when the
// one chosen was taken meanwhile, and kills it when t ends. ports picks the
// port (freePort, or one whose cluster bus port is free too).
func startServer(t testing.TB, name string, ports func(testing.TB) int, argv func(port int) []string, probe func(string) error) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, name: name, dir: dir, argv: argv, probe: probe, log: filepath.Join(dir, "server.log")}
	t.Cleanup(s.kill)
	var err error
	for range 5 {
		s.port = ports(t)
		if err = s.launch(); err == nil || !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

func lookPath(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	need(t, err == nil, "%s is not on PATH", bin)
	return p
}

// startRedis starts a redis-server without persistence: a restart loses
// every entry, as a cache server's restart usually does.
func startRedis(t testing.TB) *server {
	bin := lookPath(t, "redis-server")
	return startServer(t, "redis-server", freePort, func(port int) []string {
		return []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
			"--save", "", "--appendonly", "no", "--dir", ".", "--daemonize", "no"}
	}, redisProbe)
}

// clusterPort returns a free port whose cluster bus port (+10000) is free.
func clusterPort(t testing.TB) int {
	for range 100 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// startCluster starts a Redis Cluster of three masters without replicas,
// created with redis-cli --cluster create as scripts/servers.sh does. Each
// node keeps its nodes.conf in its own directory, so a node restarted on
// its port comes back with its id and its slots.
func startCluster(t testing.TB) []*server {
	bin := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	nodes := make([]*server, 3)
	addrs := make([]string, 3)
	for i := range nodes {
		nodes[i] = startServer(t, fmt.Sprintf("redis cluster node %d", i), clusterPort, func(port int) []string {
			return []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
				"--save", "", "--appendonly", "no", "--dir", ".", "--daemonize", "no"}
		}, redisProbe)
		addrs[i] = nodes[i].addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitClusterOK(t, addrs, 30*time.Second)
	return nodes
}

// waitClusterOK waits until every node reports cluster_state:ok.
func waitClusterOK(t testing.TB, addrs []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := c.ClusterInfo(ctx).Result()
			cancel()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster node %s not ok after %v: %v %q", a, d, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
}

// startMemcached starts a memcached with 64 MiB of memory and the given
// extra arguments (an item size limit, say).
func startMemcached(t testing.TB, extra ...string) *server {
	bin := lookPath(t, "memcached")
	return startServer(t, "memcached", freePort, func(port int) []string {
		argv := []string{bin}
		if os.Geteuid() == 0 {
			argv = append(argv, "-u", "root")
		}
		argv = append(argv, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64")
		return append(argv, extra...)
	}, memcachedProbe)
}

// startDynalite starts dynalite, from MEMO_DYNALITE_CMD (scripts/servers.sh
// env prints it), on a LevelDB store in the test's directory: like
// DynamoDB, it keeps its tables and items across a restart.
func startDynalite(t testing.TB) *server {
	cmd := strings.Fields(os.Getenv("MEMO_DYNALITE_CMD"))
	need(t, len(cmd) > 0, "MEMO_DYNALITE_CMD is not set")
	if _, err := exec.LookPath(cmd[0]); err != nil {
		need(t, false, "MEMO_DYNALITE_CMD: %s is not on PATH", cmd[0])
	}
	if len(cmd) > 1 {
		_, err := os.Stat(cmd[len(cmd)-1])
		need(t, err == nil, "MEMO_DYNALITE_CMD: %v", err)
	}
	return startServer(t, "dynalite", freePort, func(port int) []string {
		return append(append([]string(nil), cmd...), "--port", strconv.Itoa(port), "--host", "127.0.0.1",
			"--path", "db", "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	}, tcpProbe)
}

func redisProbe(addr string) error { return lineProbe(addr, "PING\r\n", "+PONG") }

func memcachedProbe(addr string) error { return lineProbe(addr, "version\r\n", "VERSION") }

func lineProbe(addr, req, want string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("got %q, want %q", line, want)
	}
	return nil
}

func tcpProbe(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	return c.Close()
}

// TestDynaliteSurvivesAbortedRequest: a client that closes its connection
// before its request's body has arrived must not kill dynalite, the
// shared server (scripts/servers.sh) or one a test starts
// (MEMO_DYNALITE_CMD). dynalite 4.0.0 on Node 20 rethrows that error and
// exits; scripts/dynalite-guard.js keeps it up. memo's own tests abort
// requests on purpose (TestSlowOrSilentServer cuts connections), and a
// dead shared server fails every DynamoDB test run after it: this fails
// first, and says why.
func TestDynaliteSurvivesAbortedRequest(t *testing.T) {
	targets := []struct {
		name     string
		endpoint func(t *testing.T) string
	}{
		{"shared", func(t *testing.T) string { return env(t, "MEMO_DYNAMODB_ENDPOINT") }},
		{"started", func(t *testing.T) string { return "http://" + startDynalite(t).addr() }},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			endpoint := tg.endpoint(t)
			c := newDynamo(endpoint)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
				t.Fatalf("ListTables before: %v", err)
			}
			for range 3 {
				conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				// 1000 bytes announced, 5 sent, then the connection closes.
				fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: dynalite\r\nContent-Type: application/x-amz-json-1.0\r\n"+
					"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"a\":")
				// The server must have read the head (and so begun the
				// request) before the close for the close to abort it: a
				// read that times out is that proof enough, an answer or EOF
				// is not expected and is reported.
				conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				var b [1]byte
				if n, err := conn.Read(b[:]); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("a partial request got %d bytes, %v; want no answer until the body is complete", n, err)
				}
				conn.Close()
			}
			// Node handles the close on its next turn; a dying server
			// refuses connections well within this.
			var err error
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
				if _, err = c.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("ListTables after 3 aborted requests: %v; dynalite died (is scripts/dynalite-guard.js preloaded?)", err)
			}
		})
	}
}
