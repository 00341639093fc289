// bench/dqlite/main.go -- the dqlite side of bench/run.py's `peers`
// benchmark: one dqlite node (go-dqlite's app package) or one client that
// runs one workload against a dqlite cluster and prints its result as JSON.
//
// Built offline in GOPATH mode against Debian's go-dqlite 1.11 sources
// (golang-github-canonical-go-dqlite-dev, /usr/share/gocode) by
// bench/module.mk. It only calls go-dqlite's public API (app, client,
// driver); it must never contain code taken from go-dqlite or dqlite.
// It never judges speed: run.py compares its numbers with raftlite's.
//
//	dqlite-bench node -dir D -addr 127.0.0.1:P [-join 127.0.0.1:Q]
//	    runs a node until SIGTERM; prints "ready" once it is a voter.
//	dqlite-bench client -cluster A,B,C -work W [-clients C -n N -rows R]
//	    W = setup | insert | txn | read | count; prints one JSON object.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/canonical/go-dqlite/app"
	"github.com/canonical/go-dqlite/client"
	"github.com/canonical/go-dqlite/driver"
)

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "dqlite-bench: "+format+"\n", a...)
	os.Exit(1)
}

// quiet drops go-dqlite's log lines below warnings (its debug output would
// cost the node time and fill the benchmark's output).
func quiet(l client.LogLevel, format string, a ...interface{}) {
	if l >= client.LogWarn {
		fmt.Fprintf(os.Stderr, "dqlite: "+format+"\n", a...)
	}
}

func runNode(args []string) {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	dir := fs.String("dir", "", "data directory (fresh)")
	addr := fs.String("addr", "", "host:port to serve on")
	join := fs.String("join", "", "address of a member to join through")
	fs.Parse(args)
	if *dir == "" || *addr == "" {
		die("node: -dir and -addr are required")
	}
	opts := []app.Option{app.WithAddress(*addr), app.WithLogFunc(quiet)}
	if *join != "" {
		opts = append(opts, app.WithCluster([]string{*join}))
	}
	a, err := app.New(*dir, opts...)
	if err != nil {
		die("node %s: %v", *addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err = a.Ready(ctx)
	cancel()
	if err != nil {
		die("node %s: not ready within 60 s: %v", *addr, err)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	if err := a.Close(); err != nil {
		die("node %s: close: %v", *addr, err)
	}
}

// result is what one client run prints.
type result struct {
	Work       string    `json:"work"`
	Clients    int       `json:"clients"`
	Ops        int       `json:"ops"`
	Seconds    float64   `json:"seconds"`
	LatMs      []float64 `json:"lat_ms"`
	Busy       int       `json:"busy"`   // BUSY/locked answers, each retried
	Errors     int       `json:"errors"` // operations that failed for good
	FirstError string    `json:"first_error"`
}

// isBusy says whether err is SQLite's BUSY or LOCKED (any extended code)
// or a "database is locked" message: a write that another connection's
// transaction held off. The client retries these.
func isBusy(err error) bool {
	var de driver.Error
	if errors.As(err, &de) {
		if de.Code&0xff == driver.ErrBusy || de.Code&0xff == 6 {
			return true
		}
	}
	return strings.Contains(err.Error(), "database is locked") ||
		strings.Contains(err.Error(), "database is busy")
}

// A BUSY write is retried after a pause that doubles from 0.25 ms up to
// 8 ms (with jitter), at most maxRetries times: what an application must
// do with dqlite, whose leader answers BUSY at once while another
// connection's transaction holds the write lock. Retrying without a pause
// spins the leader (tens of thousands of BUSY answers per second).
const maxRetries = 200

type counters struct {
	mu     sync.Mutex
	busy   int
	errors int
	first  string
}

func (c *counters) note(err error, busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if busy {
		c.busy++
	} else {
		c.errors++
	}
	if c.first == "" {
		c.first = err.Error()
	}
}

// retry runs op until it succeeds, retrying BUSY/locked answers (each
// counted) up to maxRetries times; any other error counts as a failed
// operation.
func retry(c *counters, op func() error) {
	for i := 0; ; i++ {
		err := op()
		if err == nil {
			return
		}
		busy := isBusy(err)
		c.note(err, busy)
		if !busy || i >= maxRetries {
			if busy {
				c.mu.Lock()
				c.errors++
				c.mu.Unlock()
			}
			return
		}
		pause := 250 * time.Microsecond << uint(min(i, 5))
		time.Sleep(pause/2 + time.Duration(rand.Int63n(int64(pause))))
	}
}

func runClient(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	cluster := fs.String("cluster", "", "comma list of node addresses")
	work := fs.String("work", "", "setup | insert | txn | read | count")
	clients := fs.Int("clients", 1, "concurrent clients (insert)")
	n := fs.Int("n", 1000, "operations (transactions for txn)")
	rows := fs.Int("rows", 1000, "rows per transaction (txn)")
	value := fs.String("value", strings.Repeat("v", 100), "text inserted")
	fs.Parse(args)
	if *cluster == "" || *work == "" {
		die("client: -cluster and -work are required")
	}
	ctx := context.Background()
	store := client.NewInmemNodeStore()
	var infos []client.NodeInfo
	for _, a := range strings.Split(*cluster, ",") {
		infos = append(infos, client.NodeInfo{Address: a})
	}
	if err := store.Set(ctx, infos); err != nil {
		die("node store: %v", err)
	}
	drv, err := driver.New(store, driver.WithLogFunc(quiet))
	if err != nil {
		die("driver: %v", err)
	}
	sql.Register("dqlite-bench", drv)
	db, err := sql.Open("dqlite-bench", "bench.db")
	if err != nil {
		die("open: %v", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(*clients)
	db.SetMaxIdleConns(*clients)
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = db.PingContext(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			die("no leader within 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res := result{Work: *work, Clients: *clients, LatMs: []float64{}}
	var c counters
	var t0 time.Time
	switch *work {
	case "setup":
		t0 = time.Now()
		retry(&c, func() error {
			_, err := db.Exec("CREATE TABLE IF NOT EXISTS " +
				"t(id INTEGER PRIMARY KEY, v TEXT)")
			return err
		})
		res.Ops = 1
	case "count":
		// Ops = the rows in t (run.py's sanity check after the writes).
		t0 = time.Now()
		if err := db.QueryRow("SELECT count(*) FROM t").Scan(&res.Ops); err != nil {
			die("count: %v", err)
		}
	case "insert":
		lat := make([][]float64, *clients)
		var wg sync.WaitGroup
		t0 = time.Now()
		for k := 0; k < *clients; k++ {
			share := *n / *clients
			if k < *n%*clients {
				share++
			}
			wg.Add(1)
			go func(k, share int) {
				defer wg.Done()
				for i := 0; i < share; i++ {
					a := time.Now()
					retry(&c, func() error {
						_, err := db.Exec("INSERT INTO t(v) VALUES (?)",
							*value)
						return err
					})
					lat[k] = append(lat[k], ms(time.Since(a)))
				}
			}(k, share)
		}
		wg.Wait()
		for _, l := range lat {
			res.LatMs = append(res.LatMs, l...)
		}
		res.Ops = *n
	case "txn":
		t0 = time.Now()
		for i := 0; i < *n; i++ {
			a := time.Now()
			retry(&c, func() error {
				tx, err := db.Begin()
				if err != nil {
					return err
				}
				for r := 0; r < *rows; r++ {
					_, err = tx.Exec("INSERT INTO t(v) VALUES (?)", *value)
					if err != nil {
						tx.Rollback()
						return err
					}
				}
				return tx.Commit()
			})
			res.LatMs = append(res.LatMs, ms(time.Since(a)))
		}
		res.Ops = *n
	case "read":
		var max int64
		if err := db.QueryRow("SELECT max(id) FROM t").Scan(&max); err != nil {
			die("read: max(id): %v", err)
		}
		if max < 1 {
			die("read: table t is empty")
		}
		rng := rand.New(rand.NewSource(1))
		t0 = time.Now()
		for i := 0; i < *n; i++ {
			id := 1 + rng.Int63n(max)
			a := time.Now()
			var v string
			retry(&c, func() error {
				return db.QueryRow("SELECT v FROM t WHERE id = ?", id).Scan(&v)
			})
			res.LatMs = append(res.LatMs, ms(time.Since(a)))
			if len(v) != len(*value) {
				die("read: row %d holds %d bytes, want %d", id, len(v),
					len(*value))
			}
		}
		res.Ops = *n
	default:
		die("client: unknown -work %q (setup, insert, txn, read, count)", *work)
	}
	res.Seconds = time.Since(t0).Seconds()
	res.Busy, res.Errors, res.FirstError = c.busy, c.errors, c.first
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func main() {
	if len(os.Args) < 2 {
		die("usage: dqlite-bench node|client ... (see bench/dqlite/main.go)")
	}
	switch os.Args[1] {
	case "node":
		runNode(os.Args[2:])
	case "client":
		runClient(os.Args[2:])
	default:
		die("unknown mode %q: node or client", os.Args[1])
	}
}
