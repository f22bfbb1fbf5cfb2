// Package reliability holds memo's fault, load and hostile-input tests: they
// drive memo over real servers (Redis standalone and Cluster, Memcached,
// DynamoDB through dynalite) and over the in-memory backend, kill and
// restart servers under load, put slow or silent proxies in front of them,
// write corrupt entries under memo's keys, and soak the in-memory backend.
// Each test logs what it measured on a line starting with "FIGURES", the
// source of the figures in docs/reliability.md.
//
// The package has no code of its own: everything is in its _test.go files.
// The tests that kill servers start their own server processes on free
// ports (redis-server and memcached from PATH, dynalite from
// MEMO_DYNALITE_CMD); the others use the shared servers that
// scripts/servers.sh starts and describes in its `env` output. A missing
// server or binary skips a test outside CI and fails it in CI.
package reliability
