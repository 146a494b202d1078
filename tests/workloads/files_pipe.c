/*
 * files_pipe: a process holding pipes and a FIFO with bytes buffered in
 * them, each end with known flags:
 *
 *   fds 10/11  pipe A, 128 KiB (F_SETPIPE_SZ), 70000 bytes buffered; the
 *              read end O_NONBLOCK; fd 12 a dup of 11; fd 16 the read end
 *              opened again through /proc (an open file of its own)
 *   fds 13/14  pipe B, empty; 14 O_NONBLOCK and close-on-exec
 *   fd 15      the read end of pipe C, 10 bytes buffered, the write end
 *              closed (a reader sees the bytes, then the end)
 *   fds 20-22  FIFO "fifo" opened read-write (20), read-only non-blocking
 *              (21) and write-only (22), 3000 bytes buffered
 *   fd 23      (mode "outside") the pipe named by the third argument
 *              (/proc/PID/fd/N of a process outside the dump), write end
 *
 *   files_pipe OUTFILE [outside PATH | deleted]
 *
 * "deleted": the FIFO (mode 0640) is removed once open: its ends must
 * stay one FIFO with no name, of the same mode, and "fifo" not exist.
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks
 * each end (flags, fd flags, pipe identity and size, the bytes, then the
 * end of pipe C) and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define A_BYTES 70000
#define A_SIZE (128 * 1024)
#define FIFO_BYTES 3000

static volatile sig_atomic_t stop;
static int deleted;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static unsigned char pattern(unsigned long i, int salt)
{
	return (unsigned char)(((i * 2654435761u) >> 13) ^ (unsigned)salt);
}

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

static int put(int fd, size_t n, int salt)
{
	unsigned char buf[4096];
	for (size_t done = 0; done < n; done += sizeof(buf)) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(done + i, salt);
		if (write(fd, buf, k) != (ssize_t)k)
			return -1;
	}
	return 0;
}

/* Reads exactly n bytes of the pattern. */
static int take(int fd, size_t n, int salt)
{
	unsigned char buf[4096];
	size_t done = 0;
	while (done < n) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t r = read(fd, buf, k);
		if (r <= 0)
			return 0;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(done + i, salt))
				return 0;
		done += r;
	}
	return 1;
}

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

struct want {
	int fd, flags, fdflags;
	ino_t ino;
};
static struct want wants[16];
static int nwants;
static char msg[512];

static int record(int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		return -1;
	struct want *w = &wants[nwants++];
	w->fd = fd;
	w->flags = fcntl(fd, F_GETFL);
	w->fdflags = fcntl(fd, F_GETFD);
	w->ino = st.st_ino;
	printf("fd%d_flags %#o\nfd%d_ino %lu\n", fd, w->flags, fd, (unsigned long)st.st_ino);
	return 0;
}

static ino_t ino_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) ? 0 : st.st_ino;
}

static const char *check(void)
{
	for (int i = 0; i < nwants; i++) {
		struct want *w = &wants[i];
		int fl = fcntl(w->fd, F_GETFL), fdfl = fcntl(w->fd, F_GETFD);
		if (fl != w->flags || fdfl != w->fdflags) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d flags %#o/%d, want %#o/%d\n", w->fd, fl,
				 fdfl, w->flags, w->fdflags);
			return msg;
		}
	}
	/* The ends pair up as they did, pipes apart. */
	if (ino_of(10) != ino_of(11) || ino_of(11) != ino_of(12) || ino_of(16) != ino_of(10) ||
	    ino_of(13) != ino_of(14) || ino_of(10) == ino_of(13) || ino_of(15) == ino_of(10) ||
	    ino_of(20) != ino_of(21) || ino_of(20) != ino_of(22))
		return "FAIL: the pipe ends pair up differently\n";
	if (fcntl(10, F_GETPIPE_SZ) != A_SIZE)
		return "FAIL: pipe A's size\n";
	int n = -1;
	if (ioctl(10, FIONREAD, &n) || n != A_BYTES) {
		snprintf(msg, sizeof(msg), "FAIL: pipe A holds %d bytes\n", n);
		return msg;
	}
	/* 12 and 11 are one open file: a flag set on one shows on the other. */
	fcntl(12, F_SETFL, O_NONBLOCK);
	if (!(fcntl(11, F_GETFL) & O_NONBLOCK))
		return "FAIL: fds 11 and 12 are not one open file\n";
	/* 16 is another open file on the read end. */
	if (fcntl(16, F_GETFL) & O_NONBLOCK)
		return "FAIL: fd 16 shares fd 10's open file\n";
	if (!take(10, A_BYTES, 1))
		return "FAIL: pipe A's bytes\n";
	char c;
	if (read(10, &c, 1) != -1 || errno != EAGAIN)
		return "FAIL: pipe A holds more\n";
	if (write(14, "b", 1) != 1 || read(13, &c, 1) != 1 || c != 'b')
		return "FAIL: pipe B\n";
	if (!take(15, 10, 2))
		return "FAIL: pipe C's bytes\n";
	if (read(15, &c, 1) != 0)
		return "FAIL: pipe C's write end is open\n";
	if (!take(21, FIFO_BYTES, 3))
		return "FAIL: the FIFO's bytes\n";
	if (write(22, "f", 1) != 1 || read(20, &c, 1) != 1 || c != 'f')
		return "FAIL: the FIFO's ends\n";
	if (deleted) {
		struct stat a, b, d;
		if (fstat(20, &a) || fstat(21, &b) || fstat(22, &d))
			return "FAIL: fstat of the FIFO\n";
		if (a.st_ino != b.st_ino || a.st_ino != d.st_ino || a.st_dev != d.st_dev)
			return "FAIL: the deleted FIFO's ends are two FIFOs\n";
		if (a.st_nlink != 0 || access("fifo", F_OK) == 0)
			return "FAIL: the deleted FIFO has a name\n";
		if (a.st_mode != (S_IFIFO | 0640)) {
			snprintf(msg, sizeof(msg), "FAIL: the deleted FIFO's mode is %o\n",
				 a.st_mode);
			return msg;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *outside = argc > 3 && !strcmp(argv[2], "outside") ? argv[3] : NULL;
	deleted = argc > 2 && !strcmp(argv[2], "deleted");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	int p[2];
	if (pipe(p) || place(p[0], 10) < 0 || place(p[1], 11) < 0 ||
	    fcntl(11, F_SETPIPE_SZ, A_SIZE) != A_SIZE || put(11, A_BYTES, 1) ||
	    fcntl(10, F_SETFL, O_NONBLOCK) || dup2(11, 12) != 12 ||
	    place(open("/proc/self/fd/10", O_RDONLY), 16) < 0)
		return 4;
	if (pipe2(p, 0) || place(p[0], 13) < 0 || place(p[1], 14) < 0 ||
	    fcntl(14, F_SETFL, O_NONBLOCK) || fcntl(14, F_SETFD, FD_CLOEXEC))
		return 4;
	if (pipe(p) || put(p[1], 10, 2) || place(p[0], 15) < 0 || close(p[1]))
		return 4;
	if (mkfifo("fifo", 0600) || place(open("fifo", O_RDWR), 20) < 0 ||
	    place(open("fifo", O_RDONLY | O_NONBLOCK), 21) < 0 ||
	    place(open("fifo", O_WRONLY), 22) < 0 || put(22, FIFO_BYTES, 3))
		return 4;
	if (outside && place(open(outside, O_WRONLY), 23) < 0)
		return 5;
	if (deleted && (fchmod(20, 0640) || unlink("fifo")))
		return 5;
	for (int fd = 10; fd <= 16; fd++)
		if (record(fd))
			return 5;
	if (record(20) || record(21) || record(22))
		return 5;
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
