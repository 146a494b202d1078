/*
 * manysk: a process with many sockets, for the sockets benchmark.
 *
 *   manysk OUTFILE unix N [big]
 *     N unix sockets from N/2 stream socketpairs (fds from 10 on), 16
 *     bytes waiting in one end of each; with "big", 1 MiB more after the
 *     first pair's 16 bytes (its writer's SO_SNDBUF raised to hold it:
 *     more than a new socket takes)
 *   manysk OUTFILE tcp N PORT FIFO
 *     a listener on 127.0.0.1:PORT (fd 10); once FIFO is opened for
 *     writing (by the clients' side, outside), N connections accepted
 *     (fds from 11 on), each sent 16 bytes its client does not read
 *
 * The soft limit of open files is raised to the hard one first. Prints
 * "ready", waits in sigsuspend for SIGUSR1, then reads what waits in each
 * socket (unix) or echoes 16 bytes read from each connection (tcp), and
 * writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char msg[256];
static char blob[1 << 20], back[1 << 20];

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

static int read_all(int fd, char *b, size_t n)
{
	size_t done = 0;
	while (done < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			return -1;
		ssize_t r = read(fd, b + done, n - done);
		if (r <= 0)
			return -1;
		done += r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int n = atoi(argv[3]);
	int tcp = !strcmp(argv[2], "tcp");
	int big = !tcp && argc > 4 && !strcmp(argv[4], "big");
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	const char data[16] = "0123456789abcdef";

	if (tcp) {
		if (argc < 6)
			return 2;
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int one = 1;
		if (place(socket(AF_INET, SOCK_STREAM, 0), 10) < 0 ||
		    setsockopt(10, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(10, (struct sockaddr *)&a, sizeof(a)) || listen(10, 4096))
			return 4;
		int f = open(argv[5], O_RDONLY);
		if (f < 0)
			return 4;
		for (int i = 0; i < n; i++) {
			int c = accept(10, NULL, NULL);
			if (place(c, 11 + i) < 0 || write(11 + i, data, 16) != 16)
				return 4;
		}
		close(f);
	} else {
		for (int i = 0; i < n / 2; i++) {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || place(sv[0], 10 + 2 * i) < 0 ||
			    place(sv[1], 11 + 2 * i) < 0 || write(11 + 2 * i, data, 16) != 16)
				return 4;
		}
		if (big) {
			int sz = 4 << 20;
			for (size_t i = 0; i < sizeof(blob); i++)
				blob[i] = (char)(i * 7 + 3);
			if (setsockopt(11, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) ||
			    fcntl(11, F_SETFL, O_NONBLOCK))
				return 4;
			size_t done = 0;
			while (done < sizeof(blob)) {
				ssize_t w = write(11, blob + done, sizeof(blob) - done);
				if (w <= 0)
					return 4;
				done += w;
			}
			if (fcntl(11, F_SETFL, 0))
				return 4;
		}
	}
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	char b[16];
	for (int i = 0; i < (tcp ? n : n / 2); i++) {
		int fd = tcp ? 11 + i : 10 + 2 * i;
		if (read_all(fd, b, 16) || memcmp(b, data, 16)) {
			snprintf(msg, sizeof(msg), "FAIL: socket %d: %s\n", fd, strerror(errno));
			return verdict(argv[1], msg);
		}
		if (big && i == 0 && (read_all(fd, back, sizeof(back)) || memcmp(back, blob, sizeof(back)))) {
			snprintf(msg, sizeof(msg), "FAIL: the 1 MiB queued in socket %d\n", fd);
			return verdict(argv[1], msg);
		}
		if (tcp && write(fd, b, 16) != 16) {
			snprintf(msg, sizeof(msg), "FAIL: echo on %d\n", fd);
			return verdict(argv[1], msg);
		}
	}
	return verdict(argv[1], "PASS\n");
}
