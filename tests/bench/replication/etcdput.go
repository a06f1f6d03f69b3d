// etcdput: the replication benchmark's etcd reference through etcd's own
// gRPC client (clientv3), etcd's fastest path (tests/bench/replication/run.sh
// builds it offline from Debian's golang-etcd-server-dev, GOPATH mode).
//
// Keeps exactly N puts in flight (N goroutines, one key each, one put of a
// goroutine in flight at a time) over one client (one HTTP/2 connection, as
// clientv3 does) to the endpoint given, at each level of -levels, and
// measures every put from send to answer. Values are -size bytes. Each level
// ends with the same machine-readable line as loadgen.c:
//
//	RESULT target=etcd-grpc inflight=N ok=.. secs=.. rate=.. p50_us=.. p99_us=.. ...
//
// With -pids (comma-separated) it adds the user + system CPU those processes
// used during the measured window, per acknowledged put. Exit 0 when the
// run took place, 1 on a setup error, 2 on bad usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// cpuTicks: utime + stime of a process in clock ticks (0 when it is gone).
func cpuTicks(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return u + k
}

func cpuAll(pids []int) float64 {
	t := 0.0
	for _, p := range pids {
		t += cpuTicks(p)
	}
	return t
}

func percentile(lat []int64, p float64) int64 {
	if len(lat) == 0 {
		return 0
	}
	i := int(p * float64(len(lat)-1))
	return lat[i]
}

// level runs n goroutines for warmup + duration; the puts answered within the
// measured window count.
func level(cli *clientv3.Client, n int, warmup, duration time.Duration, value string, pids []int) {
	var stop atomic.Bool
	var measuring atomic.Bool
	var errs atomic.Int64
	lats := make([][]int64, n)
	var wg sync.WaitGroup
	for s := 0; s < n; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			key := fmt.Sprintf("bench/grpc/%d", s)
			for !stop.Load() {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cli.Put(ctx, key, value)
				cancel()
				if !measuring.Load() {
					continue
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				lats[s] = append(lats[s], time.Since(t0).Microseconds())
			}
		}(s)
	}
	time.Sleep(warmup)
	c0 := cpuAll(pids)
	t0 := time.Now()
	measuring.Store(true)
	time.Sleep(duration)
	measuring.Store(false)
	secs := time.Since(t0).Seconds()
	c1 := cpuAll(pids)
	stop.Store(true)
	wg.Wait()
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ok := len(all)
	var sum, max int64
	for _, v := range all {
		sum += v
		if v > max {
			max = v
		}
	}
	mean := 0.0
	if ok > 0 {
		mean = float64(sum) / float64(ok)
	}
	cpuUs := 0.0
	if ok > 0 && len(pids) > 0 {
		cpuUs = (c1 - c0) * 1e6 / 100.0 / float64(ok) // USER_HZ is 100 on Linux
	}
	fmt.Printf("etcd (gRPC clientv3), %d in flight: %d puts in %.2f s, %.1f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d errors\n",
		n, ok, secs, float64(ok)/secs, float64(percentile(all, 0.50))/1000,
		float64(percentile(all, 0.99))/1000, float64(max)/1000, errs.Load())
	fmt.Printf("RESULT target=etcd-grpc inflight=%d ok=%d secs=%.3f rate=%.1f p50_us=%d p99_us=%d "+
		"mean_us=%.0f max_us=%d other=0 errors=%d cpu_us=%.1f\n",
		n, ok, secs, float64(ok)/secs, percentile(all, 0.50), percentile(all, 0.99), mean, max,
		errs.Load(), cpuUs)
}

// positiveInts: a comma-separated list of positive integers, or exit 2
// naming the flag and the bad item.
func positiveInts(flagName, list string) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "etcdput: bad item %q in %s\n", f, flagName)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

func main() {
	endpoint := flag.String("endpoint", "", "etcd client URL (the leader's), e.g. http://127.0.0.1:2379")
	levels := flag.String("levels", "1,16,256", "puts in flight, comma-separated")
	duration := flag.Float64("duration", 10, "seconds measured per level")
	warmup := flag.Float64("warmup", 1, "seconds of warm-up per level")
	size := flag.Int("size", 256, "value size in bytes")
	pidList := flag.String("pids", "", "server pids whose CPU is counted, comma-separated")
	flag.Parse()
	if *endpoint == "" || *size <= 0 || *duration <= 0 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "etcdput: -endpoint is required; -size and -duration must be positive")
		os.Exit(2)
	}
	ns := positiveInts("-levels", *levels)
	var pids []int
	if *pidList != "" {
		pids = positiveInts("-pids", *pidList)
	}
	b := make([]byte, *size)
	for i := range b {
		b[i] = byte('a' + (i*7+3)%26)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdput: cannot connect to %s: %v\n", *endpoint, err)
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = cli.Put(ctx, "bench/grpc/probe", "x")
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdput: a first put to %s failed: %v\n", *endpoint, err)
		os.Exit(1)
	}
	for _, n := range ns {
		level(cli, n, time.Duration(*warmup*float64(time.Second)),
			time.Duration(*duration*float64(time.Second)), string(b), pids)
	}
}
