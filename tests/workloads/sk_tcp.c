/*
 * sk_tcp: a process holding established TCP connections, with data on
 * the way both ways.
 *
 *   sk_tcp OUTFILE pair
 *     fd 10      a listener on 127.0.0.1
 *     fds 11/12  a connection to it (11 the client, 12 accepted): 11 sent
 *                3000 bytes 12 has not read; 12 sent 2000 bytes 11 has
 *                not read, then as much as it could without blocking
 *                (the window full: some of it not sent yet); 11 has
 *                TCP_NODELAY, 12 keepalive with TCP_KEEPIDLE 33
 *     fd 13      a listener on [::1]
 *     fds 14/15  a connection to it, 14 sent 100 bytes 15 has not read
 *   sk_tcp OUTFILE halfclosed
 *     fds 11/12  as above with 1000 and 500 bytes; then 11 shut down for
 *                writing (12 reads the data, then the end)
 *     fds 14/15  another, 15 shut down for writing (14 in CLOSE_WAIT, 15 in
 *                FIN_WAIT2)
 *   sk_tcp OUTFILE server FIFO PORT
 *     fd 10      a listener on 127.0.0.1:PORT; once FIFO is opened by the
 *                client (outside the dump), fd 11 is its connection: it
 *                reads "hello", sends "greeting"; after SIGUSR1 it reads
 *                "before-dump" and "during-dump", sends "after-restore"
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks the
 * data and the connections (addresses, options, more data both ways) and
 * writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char msg[512];
static size_t unsent_bytes; /* what 12 sent when the window was full */

static int verdict(const char *path, const char *m)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, m, strlen(m)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(m, "PASS\n") == 0 ? 0 : 1;
}

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

static unsigned char pattern(size_t i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 9) ^ (unsigned)salt);
}

/* Writes n bytes of the pattern from offset `from`; with `all` false,
   stops at EAGAIN and returns how many went. */
static ssize_t put(int fd, size_t from, size_t n, int salt, int all)
{
	unsigned char buf[4096];
	size_t done = 0;
	while (done < n) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(from + done + i, salt);
		ssize_t w = send(fd, buf, k, all ? 0 : MSG_DONTWAIT);
		if (w < 0) {
			if (!all && errno == EAGAIN)
				break;
			return -1;
		}
		done += w;
	}
	return done;
}

/* Reads exactly n bytes of the pattern (waiting up to 10 s). */
static int take(int fd, size_t n, int salt)
{
	unsigned char buf[4096];
	size_t done = 0;
	while (done < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			return 0;
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t r = recv(fd, buf, k, MSG_DONTWAIT);
		if (r <= 0)
			return 0;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(done + i, salt))
				return 0;
		done += r;
	}
	return 1;
}

static int take_str(int fd, const char *s)
{
	char buf[64] = { 0 };
	size_t n = strlen(s), done = 0;
	while (done < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			return 0;
		ssize_t r = recv(fd, buf + done, n - done, MSG_DONTWAIT);
		if (r <= 0)
			return 0;
		done += r;
	}
	return !memcmp(buf, s, n);
}

static int nothing_waits(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN;
}

static int is_end(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	return poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

/* Waits (up to 10 s) until fd's connection is in `state`: a FIN is
   acknowledged late (delayed ACKs). */
static int reach(int fd, int state)
{
	for (int i = 0; i < 10000; i++) {
		struct tcp_info ti;
		socklen_t l = sizeof(ti);
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
			return 0;
		if (ti.tcpi_state == state)
			return 1;
		usleep(1000);
	}
	return 0;
}

static int geti(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(fd, level, name, &v, &l);
	return v;
}

/* A connection to the listener `l` bound at `a`: client at `c`, accepted
   end at `s`. */
static int connect_pair(int l, struct sockaddr *a, socklen_t al, int c, int s)
{
	int fd = socket(a->sa_family, SOCK_STREAM, 0);
	if (place(fd, c) < 0 || connect(c, a, al))
		return -1;
	return place(accept(l, NULL, NULL), s) < 0 ? -1 : 0;
}

/* The two ends see each other: 12's peer is 11's name and so on. */
static int paired(int a, int b)
{
	struct sockaddr_in6 an, ap, bn, bp;
	socklen_t l1 = sizeof(an), l2 = sizeof(ap), l3 = sizeof(bn), l4 = sizeof(bp);
	if (getsockname(a, (struct sockaddr *)&an, &l1) || getpeername(a, (struct sockaddr *)&ap, &l2) ||
	    getsockname(b, (struct sockaddr *)&bn, &l3) || getpeername(b, (struct sockaddr *)&bp, &l4))
		return 0;
	return l1 == l4 && l2 == l3 && !memcmp(&an, &bp, l1) && !memcmp(&ap, &bn, l2);
}

#define FAIL(...) do { snprintf(msg, sizeof(msg), "FAIL: " __VA_ARGS__); return msg; } while (0)

static const char *check_pair(void)
{
	if (!paired(11, 12) || !paired(14, 15))
		FAIL("the connections' addresses\n");
	if (geti(11, IPPROTO_TCP, TCP_NODELAY) != 1 || geti(12, SOL_SOCKET, SO_KEEPALIVE) != 1 ||
	    geti(12, IPPROTO_TCP, TCP_KEEPIDLE) != 33)
		FAIL("the connections' options\n");
	if (geti(11, IPPROTO_TCP, TCP_INFO) < 0)
		FAIL("fd 11 has no TCP_INFO\n");
	if (!take(12, 3000, 1))
		FAIL("the 3000 bytes from 11 to 12\n");
	if (!take(11, 2000 + unsent_bytes, 2))
		FAIL("the %zu bytes from 12 to 11\n", 2000 + unsent_bytes);
	if (!take(15, 100, 3))
		FAIL("the 100 bytes from 14 to 15\n");
	if (!nothing_waits(11) || !nothing_waits(12) || !nothing_waits(15))
		FAIL("more bytes wait\n");
	/* They carry on. */
	if (put(11, 0, 50000, 4, 1) != 50000 || !take(12, 50000, 4))
		FAIL("11 to 12 after the restore\n");
	if (put(12, 0, 50000, 5, 1) != 50000 || !take(11, 50000, 5))
		FAIL("12 to 11 after the restore\n");
	if (put(15, 0, 10, 6, 1) != 10 || !take(14, 10, 6))
		FAIL("15 to 14 after the restore\n");
	/* The listeners accept. */
	struct sockaddr_in6 a;
	socklen_t al = sizeof(a);
	getsockname(10, (struct sockaddr *)&a, &al);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&a, al) || accept(10, NULL, NULL) < 0)
		FAIL("fd 10 does not accept\n");
	return NULL;
}

static const char *check_halfclosed(void)
{
	if (!paired(11, 12))
		FAIL("the connection's addresses\n");
	if (!take(12, 1000, 1) || !is_end(12))
		FAIL("12 reads 1000 bytes, then the end\n");
	if (!take(11, 500, 2))
		FAIL("11 reads 500 bytes\n");
	if (put(12, 0, 20, 7, 1) != 20 || !take(11, 20, 7))
		FAIL("12 still writes to 11\n");
	if (send(11, "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		FAIL("11 still writes\n");
	if (!is_end(14))
		FAIL("14 does not see the end\n");
	if (put(14, 0, 30, 8, 1) != 30 || !take(15, 30, 8))
		FAIL("14 no longer writes to 15\n");
	if (send(15, "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		FAIL("15 still writes\n");
	return NULL;
}

static const char *check_server(void)
{
	if (!take_str(11, "before-dump"))
		FAIL("reading before-dump\n");
	if (!take_str(11, "during-dump"))
		FAIL("reading during-dump\n");
	if (send(11, "after-restore", 13, MSG_NOSIGNAL) != 13)
		FAIL("sending after-restore: %s\n", strerror(errno));
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[2];
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t l4 = sizeof(a4), l6 = sizeof(a6);
	if (!strcmp(mode, "server")) {
		if (argc < 5)
			return 2;
		a4.sin_port = htons(atoi(argv[4]));
		int one = 1;
		if (place(socket(AF_INET, SOCK_STREAM, 0), 10) < 0 ||
		    setsockopt(10, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(10, (struct sockaddr *)&a4, l4) || listen(10, 1))
			return 4;
		int f = open(argv[3], O_RDONLY);
		if (f < 0 || place(accept(10, NULL, NULL), 11) < 0 || !take_str(11, "hello") ||
		    send(11, "greeting", 8, 0) != 8)
			return 4;
		close(f);
	} else {
		int one = 1, idle = 33;
		if (place(socket(AF_INET, SOCK_STREAM, 0), 10) < 0 ||
		    bind(10, (struct sockaddr *)&a4, l4) || listen(10, 4) ||
		    getsockname(10, (struct sockaddr *)&a4, &l4) ||
		    connect_pair(10, (struct sockaddr *)&a4, l4, 11, 12))
			return 4;
		if (place(socket(AF_INET6, SOCK_STREAM, 0), 13) < 0 ||
		    bind(13, (struct sockaddr *)&a6, l6) || listen(13, 4) ||
		    getsockname(13, (struct sockaddr *)&a6, &l6) ||
		    connect_pair(13, (struct sockaddr *)&a6, l6, 14, 15))
			return 4;
		if (!strcmp(mode, "pair")) {
			if (setsockopt(11, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
			    setsockopt(12, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
			    setsockopt(12, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)))
				return 4;
			if (put(11, 0, 3000, 1, 1) != 3000 || put(12, 0, 2000, 2, 1) != 2000 ||
			    put(14, 0, 100, 3, 1) != 100)
				return 4;
			/* Fill the window: what does not fit stays unsent. */
			ssize_t more = put(12, 2000, 64 << 20, 2, 0);
			if (more <= 0)
				return 4;
			unsent_bytes = more;
			printf("unsent_bytes %zu\n", unsent_bytes);
		} else if (!strcmp(mode, "halfclosed")) {
			if (put(11, 0, 1000, 1, 1) != 1000 || put(12, 0, 500, 2, 1) != 500 ||
			    shutdown(11, SHUT_WR) || shutdown(15, SHUT_WR) ||
			    !reach(11, TCP_FIN_WAIT2) || !reach(15, TCP_FIN_WAIT2))
				return 4;
		} else {
			return 2;
		}
	}

	printf("pid %d\n", getpid());
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	const char *why = !strcmp(mode, "pair")	      ? check_pair() :
			  !strcmp(mode, "halfclosed") ? check_halfclosed() :
							check_server();
	return verdict(argv[1], why ? why : "PASS\n");
}
