/*
 * sk_unix: a process holding unix sockets of every kind, with data queued
 * in them, each with known state:
 *
 *   fds 10/11  a stream socketpair: 10 sent "ping-from-10" (waiting in 11),
 *              11 sent "pong" with fd 30 in flight (a regular file
 *              "inflight.txt" opened read-write at 3, then closed in the
 *              process: only the message holds it), then 5000 bytes
 *   fds 12/13  a datagram socketpair: three datagrams wait in 13 (of 1,
 *              100 and 60000 bytes), one in 12; 13 is O_NONBLOCK
 *   fds 14/15  a seqpacket socketpair: two records wait in 15
 *   fd 16      a stream socket listening on "listen.sock" (backlog 7,
 *              mode 0640), with two connections from fds 17 and 18
 *              waiting to be accepted
 *   fd 19      a datagram socket bound to the abstract name "@rcriu-sk-<pid>"
 *              with SO_RCVBUF 65536, a datagram waiting
 *   fd 20      an unbound stream socket, O_NONBLOCK and close-on-exec
 *   fds 21/22  a stream socketpair, 21 shut down for writing after sending
 *              "last words" (22 reads them, then the end)
 *   fd 23      a datagram socket connected to fd 24, bound to "dgram.sock"
 *              (fd 24 is not connected back)
 *   fd 25      a stream socket whose peer (the other end of its pair) was
 *              closed after sending "orphan": it reads those, then the end
 *   fd 26      an unbound datagram socket with SO_PASSCRED
 *
 * In mode "creds", fd 26 also has a datagram waiting (which a dump
 * refuses: credentials are attached to it when read).
 *
 * In mode "ghost", also:
 *   fd 27      a datagram socket bound to "d/gone.sock", then removed
 *              (with its directory "d")
 *   fd 28      a datagram socket bound to "replaced.sock", removed, and a
 *              regular file made at that path ("not a socket")
 *   fd 29      a datagram socket connected to fd 27 (by its name, before
 *              it was removed), a datagram from 29 waiting in 27
 *
 * In mode "ext PATH", also:
 *   fd 27      a datagram socket connected to the socket bound to PATH by
 *              a process outside the dump (as /dev/log); after SIGUSR1 it
 *              sends "from-the-workload" to it
 * In mode "extstream PATH", fd 27 is a stream socket connected to PATH.
 *
 *   sk_unix OUTFILE [creds | ghost | ext PATH | extstream PATH]
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks each
 * socket (type, names, flags, options, queues in order, the fd in flight,
 * the connections, the shutdowns) and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static char msg[512];
static char abstract_name[64];
static int mode_ghost, mode_ext;

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

static int pair(int type, int a, int b)
{
	int sv[2];
	if (socketpair(AF_UNIX, type, 0, sv))
		return -1;
	if (place(sv[0], a) < 0 || place(sv[1], b) < 0)
		return -1;
	return 0;
}

static socklen_t addr_of(struct sockaddr_un *a, const char *name, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	size_t n = strlen(name);
	if (abstract) {
		memcpy(a->sun_path + 1, name, n);
		return offsetof(struct sockaddr_un, sun_path) + 1 + n;
	}
	memcpy(a->sun_path, name, n);
	return offsetof(struct sockaddr_un, sun_path) + n;
}

static unsigned char pattern(size_t i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 11) ^ (unsigned)salt);
}

static int send_pattern(int fd, size_t n, int salt)
{
	char *b = malloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = pattern(i, salt);
	ssize_t r = send(fd, b, n, 0);
	free(b);
	return r == (ssize_t)n ? 0 : -1;
}

static int send_fd(int sock, const char *data, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = (void *)data, .iov_len = strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == (ssize_t)strlen(data) ? 0 : -1;
}

/* Reads exactly `want` (a string) from a stream or one datagram. */
static int expect(int fd, const char *want)
{
	char buf[128];
	size_t n = strlen(want), got = 0;
	while (got < n) {
		ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
		if (r <= 0)
			return 0;
		got += r;
	}
	return memcmp(buf, want, n) == 0;
}

static int expect_pattern(int fd, size_t n, int salt, int one_message)
{
	char *b = malloc(n + 16);
	size_t got = 0;
	int ok = 1;
	while (got < n) {
		ssize_t r = recv(fd, b + got, n + 16 - got, MSG_DONTWAIT);
		if (r <= 0) {
			ok = 0;
			break;
		}
		got += r;
		if (one_message)
			break;
	}
	if (got != n)
		ok = 0;
	for (size_t i = 0; ok && i < n; i++)
		if ((unsigned char)b[i] != pattern(i, salt))
			ok = 0;
	free(b);
	return ok;
}

static int nothing_waits(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN;
}

static int is_end(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static int opt(int fd, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, name, &v, &l))
		return -1;
	return v;
}

static int name_is(int fd, const char *name, int abstract)
{
	struct sockaddr_un a, want;
	socklen_t l = sizeof(a), wl = addr_of(&want, name, abstract);
	/* A path's name comes back with its NUL. */
	if (!abstract)
		wl++;
	if (getsockname(fd, (struct sockaddr *)&a, &l))
		return 0;
	return l == wl && memcmp(&a, &want, l) == 0;
}

#define FAIL(...) do { snprintf(msg, sizeof(msg), "FAIL: " __VA_ARGS__); return msg; } while (0)

static const char *check(void)
{
	/* Types. */
	int types[][2] = { { 10, SOCK_STREAM }, { 12, SOCK_DGRAM }, { 14, SOCK_SEQPACKET },
			   { 16, SOCK_STREAM }, { 19, SOCK_DGRAM }, { 20, SOCK_STREAM },
			   { 23, SOCK_DGRAM }, { 25, SOCK_STREAM } };
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (opt(types[i][0], SO_TYPE) != types[i][1])
			FAIL("fd %d's type\n", types[i][0]);
	/* Flags. */
	if (!(fcntl(13, F_GETFL) & O_NONBLOCK) || (fcntl(12, F_GETFL) & O_NONBLOCK))
		FAIL("fds 12/13's flags\n");
	if (!(fcntl(20, F_GETFL) & O_NONBLOCK) || fcntl(20, F_GETFD) != FD_CLOEXEC)
		FAIL("fd 20's flags\n");
	/* The close-on-exec flag is the fd's: 12 and 13 have none. */
	if (fcntl(12, F_GETFD) != 0 || fcntl(13, F_GETFD) != 0)
		FAIL("fds 12/13's fd flags\n");
	/* The stream pair: 11 has ping, 10 has pong with a file, then 5000. */
	if (!expect(11, "ping-from-10"))
		FAIL("the queue of fd 11\n");
	if (!nothing_waits(11))
		FAIL("fd 11 holds more\n");
	char buf[16], cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = buf, .iov_len = 4 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	if (recvmsg(10, &m, MSG_DONTWAIT) != 4 || memcmp(buf, "pong", 4))
		FAIL("the queue of fd 10 (pong)\n");
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
		FAIL("no fd in flight on fd 10\n");
	int got;
	memcpy(&got, CMSG_DATA(c), sizeof(int));
	char fb[32] = { 0 };
	if (lseek(got, 0, SEEK_CUR) != 3 || read(got, fb, sizeof(fb) - 1) != 7 ||
	    strcmp(fb, "flight\n") || (fcntl(got, F_GETFL) & O_ACCMODE) != O_RDWR)
		FAIL("the file in flight (at %ld: %s)\n", (long)lseek(got, 0, SEEK_CUR), fb);
	close(got);
	if (!expect_pattern(10, 5000, 1, 0))
		FAIL("the 5000 bytes on fd 10\n");
	if (!nothing_waits(10))
		FAIL("fd 10 holds more\n");
	if (send(10, "x", 1, 0) != 1 || !expect(11, "x"))
		FAIL("fds 10 and 11 are not connected\n");
	/* The datagram pair. */
	if (!expect_pattern(13, 1, 2, 1) || !expect_pattern(13, 100, 3, 1) ||
	    !expect_pattern(13, 60000, 4, 1))
		FAIL("the datagrams on fd 13\n");
	if (!nothing_waits(13) || !expect(12, "to-12") || !nothing_waits(12))
		FAIL("the datagrams on fd 12\n");
	if (send(13, "y", 1, 0) != 1 || !expect(12, "y"))
		FAIL("fds 12 and 13 are not connected\n");
	/* The seqpacket pair. */
	if (!expect(15, "rec-one") || !expect(15, "rec-two") || !nothing_waits(15))
		FAIL("the records on fd 15\n");
	/* The listener and its two waiting connections, accepted now. */
	if (!name_is(16, "listen.sock", 0))
		FAIL("fd 16's name\n");
	struct stat st;
	if (stat("listen.sock", &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0640)
		FAIL("listen.sock's mode\n");
	int acc = opt(16, SO_ACCEPTCONN);
	if (acc != 1)
		FAIL("fd 16 does not listen\n");
	for (int i = 0; i < 2; i++) {
		int a = accept(16, NULL, NULL);
		if (a < 0)
			FAIL("accepting connection %d: %s\n", i, strerror(errno));
		if (write(a, "hi", 2) != 2)
			FAIL("writing to accepted %d\n", i);
		close(a);
	}
	if (!expect(17, "hi") || !expect(18, "hi"))
		FAIL("fds 17/18 did not hear from their accepted ends\n");
	/* The abstract datagram socket. */
	if (!name_is(19, abstract_name, 1))
		FAIL("fd 19's name\n");
	if (opt(26, SO_PASSCRED) != 1 || opt(19, SO_PASSCRED) != 0)
		FAIL("fd 26's SO_PASSCRED\n");
	if (opt(19, SO_RCVBUF) != 2 * 65536)
		FAIL("fd 19's SO_RCVBUF is %d\n", opt(19, SO_RCVBUF));
	if (!expect(19, "to-abstract"))
		FAIL("the datagram on fd 19\n");
	/* Shut down for writing: 22 reads the words, then the end. */
	if (!expect(22, "last words") || !is_end(22))
		FAIL("fd 22 after 21's shutdown\n");
	if (send(21, "z", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		FAIL("fd 21 can still write\n");
	/* The connected datagram socket. */
	if (!name_is(23, "dgram.sock", 0))
		FAIL("fd 23's name\n");
	struct sockaddr_un peer;
	socklen_t pl = sizeof(peer);
	if (getpeername(23, (struct sockaddr *)&peer, &pl) || pl == sizeof(sa_family_t))
		; /* fd 24 is unnamed: getpeername gives just the family */
	if (send(23, "to-24", 5, 0) != 5 || !expect(24, "to-24"))
		FAIL("fd 23 is not connected to fd 24\n");
	/* The orphan. */
	if (!expect(25, "orphan") || !is_end(25))
		FAIL("fd 25 after its peer went\n");
	if (mode_ghost) {
		if (!name_is(27, "d/gone.sock", 0) || !name_is(28, "replaced.sock", 0))
			FAIL("the removed names of fds 27/28\n");
		if (access("d", F_OK) == 0)
			FAIL("d/gone.sock is back\n");
		char txt[32] = { 0 };
		int r = open("replaced.sock", O_RDONLY);
		if (r < 0 || read(r, txt, sizeof(txt) - 1) != 13 || strcmp(txt, "not a socket\n"))
			FAIL("replaced.sock is not the file that replaced it\n");
		close(r);
		if (!expect(27, "to-the-gone"))
			FAIL("the datagram waiting in fd 27\n");
		if (send(29, "again", 5, 0) != 5 || !expect(27, "again"))
			FAIL("fd 29 is not connected to fd 27\n");
	}
	if (mode_ext) {
		if (send(27, "from-the-workload", 17, MSG_NOSIGNAL) != 17)
			FAIL("sending to the outside: %s\n", strerror(errno));
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	snprintf(abstract_name, sizeof(abstract_name), "rcriu-sk-%d", getpid());

	/* 10/11 */
	if (pair(SOCK_STREAM, 10, 11) || send(10, "ping-from-10", 12, 0) != 12)
		return 4;
	int f = open("inflight.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, "in-flight\n", 10) != 10 || lseek(f, 3, SEEK_SET) != 3 ||
	    send_fd(11, "pong", f) || close(f) || send_pattern(11, 5000, 1))
		return 4;
	/* 12/13 */
	if (pair(SOCK_DGRAM, 12, 13) || fcntl(13, F_SETFL, O_NONBLOCK))
		return 4;
	int big = 1 << 20;
	setsockopt(12, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (send_pattern(12, 1, 2) || send_pattern(12, 100, 3) || send_pattern(12, 60000, 4) ||
	    send(13, "to-12", 5, 0) != 5)
		return 4;
	/* 14/15 */
	if (pair(SOCK_SEQPACKET, 14, 15) || send(14, "rec-one", 7, 0) != 7 ||
	    send(14, "rec-two", 7, 0) != 7)
		return 4;
	/* 16, 17, 18 */
	struct sockaddr_un a;
	socklen_t al = addr_of(&a, "listen.sock", 0);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (place(l, 16) < 0 || bind(16, (struct sockaddr *)&a, al) ||
	    chmod("listen.sock", 0640) || listen(16, 7))
		return 4;
	for (int fd = 17; fd <= 18; fd++) {
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (place(s, fd) < 0 || connect(fd, (struct sockaddr *)&a, al))
			return 4;
	}
	/* 19 */
	int d = socket(AF_UNIX, SOCK_DGRAM, 0);
	int on = 1, rcv = 65536;
	al = addr_of(&a, abstract_name, 1);
	if (place(d, 19) < 0 || bind(19, (struct sockaddr *)&a, al) ||
	    setsockopt(19, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)))
		return 4;
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sendto(s, "to-abstract", 11, 0, (struct sockaddr *)&a, al) != 11)
		return 4;
	close(s);
	/* 20 */
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (place(s, 20) < 0 || fcntl(20, F_SETFD, FD_CLOEXEC))
		return 4;
	/* 21/22 */
	if (pair(SOCK_STREAM, 21, 22) || send(21, "last words", 10, 0) != 10 ||
	    shutdown(21, SHUT_WR))
		return 4;
	/* 23 -> 24 */
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	al = addr_of(&a, "dgram.sock", 0);
	if (place(s, 24) < 0)
		return 4;
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (place(s, 23) < 0 || bind(23, (struct sockaddr *)&a, al))
		return 4;
	/* 24 gets a name only for 23 to connect to, then loses it: an
	   autobound abstract name. */
	struct sockaddr_un auto_a = { .sun_family = AF_UNIX };
	if (bind(24, (struct sockaddr *)&auto_a, sizeof(sa_family_t)))
		return 4;
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	if (getsockname(24, (struct sockaddr *)&got, &gl) ||
	    connect(23, (struct sockaddr *)&got, gl))
		return 4;
	/* 25 */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || place(sv[0], 25) < 0 ||
	    send(sv[1], "orphan", 6, 0) != 6 || close(sv[1]))
		return 4;

	/* 26 */
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (place(s, 26) < 0 || setsockopt(26, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)))
		return 4;
	if (argc > 2 && !strcmp(argv[2], "creds")) {
		al = addr_of(&a, "creds.sock", 0);
		int t = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (bind(26, (struct sockaddr *)&a, al) ||
		    sendto(t, "with-creds", 10, 0, (struct sockaddr *)&a, al) != 10)
			return 4;
		close(t);
	}

	if (argc > 2 && !strcmp(argv[2], "ghost")) {
		mode_ghost = 1;
		if (mkdir("d", 0700))
			return 4;
		int g = socket(AF_UNIX, SOCK_DGRAM, 0);
		al = addr_of(&a, "d/gone.sock", 0);
		if (place(g, 27) < 0 || bind(27, (struct sockaddr *)&a, al))
			return 4;
		int c = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (place(c, 29) < 0 || connect(29, (struct sockaddr *)&a, al) ||
		    send(29, "to-the-gone", 11, 0) != 11)
			return 4;
		if (unlink("d/gone.sock") || rmdir("d"))
			return 4;
		int r = socket(AF_UNIX, SOCK_DGRAM, 0);
		al = addr_of(&a, "replaced.sock", 0);
		if (place(r, 28) < 0 || bind(28, (struct sockaddr *)&a, al) || unlink("replaced.sock"))
			return 4;
		int t = open("replaced.sock", O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (t < 0 || write(t, "not a socket\n", 13) != 13 || close(t))
			return 4;
	}
	if (argc > 3 && (!strcmp(argv[2], "ext") || !strcmp(argv[2], "extstream"))) {
		mode_ext = 1;
		int type = !strcmp(argv[2], "ext") ? SOCK_DGRAM : SOCK_STREAM;
		int x = socket(AF_UNIX, type, 0);
		al = addr_of(&a, argv[3], 0);
		if (place(x, 27) < 0 || connect(27, (struct sockaddr *)&a, al))
			return 5;
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

	const char *why = check();
	return verdict(argv[1], why ? why : "PASS\n");
}
