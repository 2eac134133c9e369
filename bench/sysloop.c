/*
 * Cost of one traced syscall: N write() calls of 64 bytes on a connected TCP socket over
 * 127.0.0.1 (a second thread draining the other end), timed with CLOCK_MONOTONIC.
 * Usage: sysloop <calls> [write|getppid] (calls rounded down to whole chunks of 10000). With
 * "getppid" the timed loop makes getppid() calls instead: a syscall that is no socket's, which
 * every process makes and which the raw_tp variant's programs still run on (they filter by number). Prints "ready <netns inode>",
 * waits for "go" on stdin, runs a warm-up of calls/10 writes, then the timed loop, and prints
 * one JSON line: the mean and the median-chunk ns per call (CLOCK_MONOTONIC), and the writer
 * thread's CPU ns per call (CLOCK_THREAD_CPUTIME_ID: excludes time it was not running).
 */
#include "common.h"
#include <sys/syscall.h>

#define CHUNK_CALLS 10000

static int use_getppid;

static void write_all(int fd, const char *buf, uint64_t calls)
{
	if (use_getppid) {
		for (uint64_t i = 0; i < calls; i++)
			syscall(SYS_getppid);
		return;
	}
	for (uint64_t i = 0; i < calls; i++) {
		ssize_t n = write(fd, buf, 64);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
	}
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	uint64_t calls, chunks, t0, t1, cpu0, cpu1, *chunk_ns;
	struct reader rd;
	char buf[64];
	int w, r;

	if (argc < 2 || argc > 3 || atoll(argv[1]) < CHUNK_CALLS || (argc == 3 && strcmp(argv[2], "write") && strcmp(argv[2], "getppid"))) {
		fprintf(stderr, "usage: sysloop <calls, >= %d> [write|getppid]\n", CHUNK_CALLS);
		return 2;
	}
	use_getppid = argc == 3 && !strcmp(argv[2], "getppid");
	chunks = (uint64_t)atoll(argv[1]) / CHUNK_CALLS;
	calls = chunks * CHUNK_CALLS;
	chunk_ns = calloc(chunks, sizeof(*chunk_ns));
	if (!chunk_ns)
		die("calloc");
	memset(buf, 'y', sizeof(buf));
	uint64_t ino = bench_setup(60);
	tcp_pair(&w, &r);
	reader_start(&rd, r, pin_writer());
	handshake(ino);

	write_all(w, buf, calls / 10);
	/*
	 * Timed in chunks: on a shared 2-CPU VM a preemption or a burst of other work lands in a
	 * few chunks; the median chunk is the steady-state cost, the mean includes the bursts.
	 */
	cpu0 = thread_cpu_ns();
	t0 = now_ns();
	for (uint64_t c = 0; c < chunks; c++) {
		uint64_t s = now_ns();
		write_all(w, buf, CHUNK_CALLS);
		chunk_ns[c] = now_ns() - s;
	}
	t1 = now_ns();
	cpu1 = thread_cpu_ns();
	reader_finish(&rd, w);
	qsort(chunk_ns, chunks, sizeof(*chunk_ns), cmp_u64);
	printf("{\"calls\":%llu,\"elapsedNs\":%llu,\"nsPerCall\":%.1f,\"medianChunkNsPerCall\":%.1f,"
	       "\"minChunkNsPerCall\":%.1f,\"cpuNsPerCall\":%.1f,\"reads\":%llu}\n",
	       (unsigned long long)calls, (unsigned long long)(t1 - t0),
	       (double)(t1 - t0) / (double)calls,
	       (double)chunk_ns[chunks / 2] / CHUNK_CALLS, (double)chunk_ns[0] / CHUNK_CALLS,
	       (double)(cpu1 - cpu0) / (double)calls,
	       (unsigned long long)rd.reads);
	free(chunk_ns);
	return 0;
}
