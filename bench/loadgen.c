/*
 * Kernel->JS throughput load: write() 64..256-byte messages on a TCP connection over
 * 127.0.0.1 as fast as possible (or at <rate> writes/s, paced every 64 writes) for a fixed time,
 * a second thread draining the other end.
 * Usage: loadgen <duration_ms> [rate]. Prints "ready <netns inode>", waits for "go" on stdin, then
 * prints one JSON line with what it did.
 */
#include "common.h"

int main(int argc, char **argv)
{
	uint64_t duration_ns, start, end, writes = 0, bytes = 0;
	struct reader rd;
	char buf[256];
	int w, r;

	uint64_t rate = argc == 3 ? strtoull(argv[2], NULL, 10) : 0;
	if (argc < 2 || argc > 3 || atoi(argv[1]) <= 0) {
		fprintf(stderr, "usage: loadgen <duration_ms> [writes_per_s]\n");
		return 2;
	}
	duration_ns = (uint64_t)atoi(argv[1]) * 1000000ull;
	memset(buf, 'x', sizeof(buf));
	uint64_t ino = bench_setup(60);
	tcp_pair(&w, &r);
	reader_start(&rd, r, pin_writer());
	handshake(ino);

	start = now_ns();
	end = start;
	for (;;) {
		/* sizes cycle through 64..256 so payload capture sees varied lengths */
		size_t len = 64 + (size_t)((writes * 37) % 193);
		ssize_t n = write(w, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		writes++;
		bytes += (uint64_t)n;
		/* paced: sleep until this write is due (absolute, so oversleeping is caught up) */
		if (rate && (writes & 63) == 0) {
			uint64_t due = start + writes * 1000000000ull / rate;
			struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull), .tv_nsec = (long)(due % 1000000000ull)};
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		/* the clock read is amortised over many writes */
		if ((writes & 255) == 0) {
			end = now_ns();
			if (end - start >= duration_ns)
				break;
		}
	}
	reader_finish(&rd, w);
	printf("{\"writes\":%llu,\"bytes\":%llu,\"reads\":%llu,\"readBytes\":%llu,\"elapsedNs\":%llu}\n",
	       (unsigned long long)writes, (unsigned long long)bytes, (unsigned long long)rd.reads,
	       (unsigned long long)rd.bytes, (unsigned long long)(end - start));
	return 0;
}
