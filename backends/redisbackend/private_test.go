package redisbackend_test

// Private Redis servers for the tests that stall, kill or fail over a
// server: each test starts its own redis-server processes on free loopback
// ports, so that the shared servers of scripts/servers.sh are never harmed,
// and stops them (by the *exec.Cmd it started) when it ends, pass or fail.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisBinaries returns the paths of redis-server and redis-cli. When they
// are missing the test is skipped, unless CI is "true": CI must run it.
func redisBinaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server or redis-cli not found (%v, %v): CI must install them (scripts/servers.sh start)", err1, err2)
		}
		t.Skipf("redis-server or redis-cli not found; install them (scripts/servers.sh start) to run this test")
	}
	return server, cli
}

// freePort returns a loopback TCP port that nothing listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// redisProc is a redis-server process this test started.
type redisProc struct {
	t      testing.TB
	port   int
	dir    string
	cmd    *exec.Cmd
	mu     sync.Mutex
	paused bool
	dead   bool
}

func (p *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// startRedis starts a redis-server on a free port with extra config args
// and waits until it answers PING. The process is killed when t ends.
func startRedis(t testing.TB, extra ...string) *redisProc {
	t.Helper()
	server, _ := redisBinaries(t)
	var lastErr error
	for try := 0; try < 5; try++ {
		p := &redisProc{t: t, port: freePort(t), dir: t.TempDir()}
		args := append([]string{
			"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", p.dir,
			"--logfile", filepath.Join(p.dir, "redis.log"),
		}, extra...)
		p.cmd = exec.Command(server, args...)
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		t.Cleanup(p.kill)
		if lastErr = p.waitPing(10 * time.Second); lastErr == nil {
			return p
		}
		p.kill() // most likely the port was taken meanwhile: try another
	}
	t.Fatalf("redis-server did not come up: %v", lastErr)
	return nil
}

func (p *redisProc) waitPing(limit time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: p.addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if p.cmd.ProcessState != nil || time.Now().After(deadline) {
			return fmt.Errorf("%s: %v; log: %s", p.addr(), err, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *redisProc) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.Contains(l, "Connecting to MASTER") && !strings.Contains(l, "sync started") &&
			!strings.Contains(l, "Error condition on socket") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// pause stops the process with SIGSTOP: its sockets stay open and nothing
// answers, the way a stalled server looks to a client.
func (p *redisProc) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dead && !p.paused {
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			p.t.Fatalf("SIGSTOP %s: %v", p.addr(), err)
		}
		p.paused = true
	}
}

// resume undoes pause.
func (p *redisProc) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dead && p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
}

// kill ends the process with SIGKILL and reaps it; safe to call twice.
func (p *redisProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return
	}
	p.dead = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// startCluster starts masters+masters*replicasPer private cluster nodes
// (cluster-node-timeout 1000 ms), joins them with redis-cli --cluster
// create, and waits until every node reports cluster_state:ok and knows
// every other node.
func startCluster(t testing.TB, masters, replicasPer int) []*redisProc {
	t.Helper()
	_, cli := redisBinaries(t)
	n := masters * (1 + replicasPer)
	nodes := make([]*redisProc, n)
	for i := range nodes {
		nodes[i] = startRedis(t, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-node-timeout", "1000",
			"--repl-diskless-sync-delay", "0")
	}
	args := []string{"--cluster", "create"}
	for _, p := range nodes {
		args = append(args, p.addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPer), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Every node sees every node, the replicas as replicas, and every
	// replica is in sync with its master (or a failover has nothing to
	// promote).
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range nodes {
		for {
			err := clusterNodeReady(p.addr(), n, masters*replicasPer)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ready after 30 s: %v", p.addr(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// clusterNodeReady returns nil when the node at addr reports
// cluster_state:ok, knows n nodes of which replicas are replicas, and, if it
// is a replica itself, has its link to its master up.
func clusterNodeReady(addr string, n, replicas int) error {
	info, err := clusterCmd(addr, "cluster", "info")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("cluster_state not ok")
	}
	out, err := clusterCmd(addr, "cluster", "nodes")
	if err != nil {
		return err
	}
	all := parseClusterNodes(out)
	slaves := 0
	for _, x := range all {
		if strings.Contains(x.flags, "slave") {
			slaves++
		}
	}
	if len(all) != n || slaves != replicas {
		return fmt.Errorf("knows %d nodes, %d replicas; want %d, %d", len(all), slaves, n, replicas)
	}
	repl, err := clusterCmd(addr, "info", "replication")
	if err != nil {
		return err
	}
	if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
		return fmt.Errorf("replica not in sync with its master")
	}
	return nil
}

// clusterCmd runs one command on one node, with a plain short-lived client.
func clusterCmd(addr string, args ...any) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, ContextTimeoutEnabled: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Text()
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, flags, master string
	slots                   []string
}

func parseClusterNodes(s string) []clusterNode {
	var out []clusterNode
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		addr := f[1]
		if i := strings.IndexByte(addr, '@'); i >= 0 {
			addr = addr[:i]
		}
		out = append(out, clusterNode{id: f[0], addr: addr, flags: f[2], master: f[3], slots: f[8:]})
	}
	return out
}
