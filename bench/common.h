/* Shared by the bench's C load programs: a private netns, a TCP pair on 127.0.0.1, a reader
 * thread that drains it, and the start handshake with bench/run.ts. */
#ifndef STRATA_BENCH_COMMON_H
#define STRATA_BENCH_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Die with the bench (even on SIGKILL of the parent) and never outlive a hung run.
 * A private network namespace keeps the machine's other TCP traffic out of the measurement:
 * the probes filter by netns inode, so only this process's syscalls are traced.
 */
static uint64_t bench_setup(int timeout_s)
{
	struct ifreq ifr;
	struct stat st;
	int s;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		exit(2);
	alarm(timeout_s);
	if (unshare(CLONE_NEWNET))
		die("unshare(CLONE_NEWNET) (needs root)");
	/* a new netns has lo down */
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		die("socket");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr))
		die("SIOCGIFFLAGS lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr))
		die("SIOCSIFFLAGS lo");
	close(s);
	if (stat("/proc/self/ns/net", &st))
		die("stat /proc/self/ns/net");
	return (uint64_t)st.st_ino;
}

/* a connected TCP pair over 127.0.0.1: *w is the client side, *r the accepted side */
static void tcp_pair(int *w, int *r)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &alen))
		die("listen 127.0.0.1");
	*w = socket(AF_INET, SOCK_STREAM, 0);
	if (*w < 0 || connect(*w, (struct sockaddr *)&a, sizeof(a)))
		die("connect 127.0.0.1");
	*r = accept(l, NULL, NULL);
	if (*r < 0)
		die("accept");
	close(l);
}

/* tell run.ts our netns inode, then wait until it has attached (or not) the probes */
static void handshake(uint64_t netns_ino)
{
	char line[64];

	printf("ready %llu\n", (unsigned long long)netns_ino);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin) || strncmp(line, "go", 2) != 0)
		exit(3);
}

/*
 * Writer on the first allowed CPU, reader on the second: left to the scheduler, the two
 * sometimes share a CPU and the writer's wall time then includes the reader's work (measured:
 * ~1.5 us vs ~3 us per write on this 2-CPU VM, run to run). Returns the CPU for the reader, -1
 * when fewer than two CPUs are allowed (nothing pinned).
 */
static int pin_writer(void)
{
	cpu_set_t set;
	int first = -1;

	if (sched_getaffinity(0, sizeof(set), &set))
		return -1;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		if (first < 0) {
			first = c;
			continue;
		}
		CPU_ZERO(&set);
		CPU_SET(first, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			return -1;
		return c;
	}
	return -1;
}

struct reader {
	int fd;
	int cpu;
	pthread_t thread;
	uint64_t reads;
	uint64_t bytes;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	static char buf[65536];

	if (rd->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(rd->cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}

	for (;;) {
		ssize_t n = read(rd->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		rd->reads++;
		rd->bytes += (uint64_t)n;
	}
	return NULL;
}

static void reader_start(struct reader *rd, int fd, int cpu)
{
	memset(rd, 0, sizeof(*rd));
	rd->fd = fd;
	rd->cpu = cpu;
	if (pthread_create(&rd->thread, NULL, reader_main, rd))
		die("pthread_create");
}

/* the writer is done: EOF lets the reader finish draining */
static void reader_finish(struct reader *rd, int wfd)
{
	shutdown(wfd, SHUT_WR);
	pthread_join(rd->thread, NULL);
}

#endif
