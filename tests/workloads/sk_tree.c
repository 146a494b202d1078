/*
 * sk_tree: sockets across a process tree.
 *
 *   sk_tree OUTFILE
 *
 * The root makes, before it forks one child:
 *   - a stream socketpair: the root keeps fd 10, the child fd 11; the
 *     root sends "from-root" (waiting in 11), the child "from-child"
 *     (waiting in 10);
 *   - a datagram socketpair: the root keeps 12, the child 13; a datagram
 *     "dgram-root" waits in 13;
 *   - a TCP listener on 127.0.0.1 (any port), fd 14, which both hold
 *     (one open file description).
 * The child waits in read(2) on a pipe from the root; the root in
 * sigsuspend. Prints "ready". On SIGUSR1 the root reads "from-child",
 * then wakes the child, which reads "from-root" and the datagram, then
 * connects to the listener; the root accepts that connection (the
 * listener is the one they share) and reads "hello" from it; the child
 * answers on a pipe and exits. PASS or the first failure goes to OUTFILE.
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

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

/* Reads exactly strlen(want) bytes from fd (waiting up to 10 s) and
 * compares them. */
static int expect(int fd, const char *want)
{
	char b[64];
	size_t n = strlen(want), done = 0;
	while (done < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			return -1;
		ssize_t r = read(fd, b + done, n - done);
		if (r <= 0)
			return -1;
		done += r;
	}
	return memcmp(b, want, n) ? -1 : 0;
}

static int port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &l))
		return -1;
	return ntohs(a.sin_port);
}

static int child(int wake, int answer, int port)
{
	char c;
	if (read(wake, &c, 1) != 1)
		return 10;
	if (expect(11, "from-root"))
		return 11;
	char b[32];
	struct pollfd p = { .fd = 13, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1 || recv(13, b, sizeof(b), 0) != 10 || memcmp(b, "dgram-root", 10))
		return 12;
	if (port_of(14) != port)
		return 13;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) || write(s, "hello", 5) != 5)
		return 14;
	c = 'k';
	if (write(answer, &c, 1) != 1)
		return 15;
	/* Until the root has read it. */
	if (read(wake, &c, 1) < 0)
		return 16;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	int sv[2], dv[2], wake[2], answer[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || place(sv[0], 10) < 0 || place(sv[1], 11) < 0)
		return 3;
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dv) || place(dv[0], 12) < 0 || place(dv[1], 13) < 0)
		return 3;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (place(socket(AF_INET, SOCK_STREAM, 0), 14) < 0 ||
	    bind(14, (struct sockaddr *)&a, sizeof(a)) || listen(14, 4))
		return 3;
	int port = port_of(14);
	if (pipe(wake) || pipe(answer))
		return 3;
	if (write(10, "from-root", 9) != 9 || send(12, "dgram-root", 10, 0) != 10)
		return 3;
	pid_t pid = fork();
	if (pid < 0)
		return 3;
	if (pid == 0) {
		close(10);
		close(12);
		close(wake[1]);
		close(answer[0]);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		close(null);
		if (write(11, "from-child", 10) != 10)
			_exit(9);
		_exit(child(wake[0], answer[1], port));
	}
	close(11);
	close(13);
	close(wake[0]);
	close(answer[1]);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	/* The child has written its words: they wait in 10. */
	struct pollfd p = { .fd = 10, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1)
		return 3;
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	if (expect(10, "from-child"))
		return verdict(argv[1], "FAIL: root: the stream pair\n");
	char c = 'w';
	if (write(wake[1], &c, 1) != 1)
		return verdict(argv[1], "FAIL: root: waking the child\n");
	struct pollfd q = { .fd = 14, .events = POLLIN };
	if (poll(&q, 1, 10000) != 1)
		return verdict(argv[1], "FAIL: root: no connection on the shared listener\n");
	int s = accept(14, NULL, NULL);
	if (s < 0 || expect(s, "hello"))
		return verdict(argv[1], "FAIL: root: the connection on the shared listener\n");
	if (read(answer[0], &c, 1) != 1 || c != 'k')
		return verdict(argv[1], "FAIL: root: no answer from the child\n");
	close(wake[1]);
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char m[64];
		snprintf(m, sizeof(m), "FAIL: child: status %#x\n", st);
		return verdict(argv[1], m);
	}
	return verdict(argv[1], "PASS\n");
}
