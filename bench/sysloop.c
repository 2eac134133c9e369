/*
 * Cost of one traced syscall: N write() calls of 64 bytes on a connected TCP socket over
 * 127.0.0.1 (a second thread draining the other end), timed with CLOCK_MONOTONIC.
 * Usage: sysloop <calls>. Prints "ready <netns inode>", waits for "go" on stdin, runs a
 * warm-up of calls/10 writes, then the timed loop, and prints one JSON line.
 */
#include "common.h"

static void write_all(int fd, const char *buf, uint64_t calls)
{
	for (uint64_t i = 0; i < calls; i++) {
		ssize_t n = write(fd, buf, 64);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
	}
}

int main(int argc, char **argv)
{
	uint64_t calls, t0, t1;
	struct reader rd;
	char buf[64];
	int w, r;

	if (argc != 2 || atoll(argv[1]) <= 0) {
		fprintf(stderr, "usage: sysloop <calls>\n");
		return 2;
	}
	calls = (uint64_t)atoll(argv[1]);
	memset(buf, 'y', sizeof(buf));
	uint64_t ino = bench_setup(60);
	tcp_pair(&w, &r);
	reader_start(&rd, r);
	handshake(ino);

	write_all(w, buf, calls / 10);
	t0 = now_ns();
	write_all(w, buf, calls);
	t1 = now_ns();
	reader_finish(&rd, w);
	printf("{\"calls\":%llu,\"elapsedNs\":%llu,\"nsPerCall\":%.1f,\"reads\":%llu}\n",
	       (unsigned long long)calls, (unsigned long long)(t1 - t0),
	       (double)(t1 - t0) / (double)calls, (unsigned long long)rd.reads);
	return 0;
}
