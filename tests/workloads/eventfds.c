/*
 * eventfds: a process built like an event loop, with events pending when
 * it is dumped:
 *
 *   fd 10      eventfd, counter 5, non-blocking
 *   fd 11      eventfd, counter 3, semaphore, non-blocking
 *   fds 12/13  a pipe, 100 bytes in it
 *   fd 14      timerfd (monotonic), 1000 s left, interval 500 s
 *   fd 15      timerfd (monotonic), expired once, not read
 *   fd 16      timerfd (realtime, absolute, cancel on set), 2000 s left
 *   fd 17      timerfd (boot time), disarmed, interval 7 s, close-on-exec
 *   fd 18      signalfd for SIGUSR2 and SIGRTMIN+1, non-blocking; both
 *              pending (SIGUSR2 for the thread, SIGRTMIN+1 for the
 *              process with value 42)
 *   fd 19      signalfd for SIGINT (none pending)
 *   fd 20      epoll A: 10 (IN), 11 (IN|ONESHOT), 12 (IN|ET),
 *              13 (OUT|EXCLUSIVE), 14, 15, 18 (IN), and eventfd E
 *              registered as fd 27, since moved to 28 (fd 27 is now
 *              another eventfd, F, not registered)
 *   fd 21      epoll B: epoll A (IN) and eventfd X (counter 1)
 *              registered as fd 22, since moved to 23 (22 closed)
 *   fd 24      epoll C, nothing registered, close-on-exec
 *
 *   eventfds OUTFILE [plain]
 *
 * "plain" leaves out what only rcriu's images carry, for restores across
 * rcriu and CRIU: fd 11 is no semaphore, E and X stay at the numbers
 * they were registered as (28 and 23).
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks:
 * each fd's fdinfo is what it was (flags, counters, masks, clocks, ticks,
 * intervals, every registration with its number, events and data), the
 * timers' time left, the events each epoll reports, the values read,
 * and that the process's EPOLL_CTL_MOD/DEL find the registrations by
 * the numbers they were made with; writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HI 0xfeedf00d00000000ULL
#define PIPE_BYTES 100

static volatile sig_atomic_t stop;
static int plain;
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

static char msg[8192];

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The fdinfo of fd, without what changes from one open file to the
 * next (inode numbers, eventfd ids, positions) or with time (a timer's
 * time left), its lines sorted (an epoll lists its registrations in the
 * order of the files' addresses): flags, counters, masks, clocks, ticks,
 * intervals, and of each registration its number, events and data. */
static int fdinfo(int fd, char *out, size_t n)
{
	char path[64], buf[256];
	static char lines[64][256];
	char *sorted[64];
	int nlines = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (nlines < 64 && fgets(buf, sizeof(buf), f)) {
		static const char *skip[] = {"pos:", "mnt_id:", "ino:", "eventfd-id:", "it_value:"};
		int drop = 0;
		for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
			if (!strncmp(buf, skip[i], strlen(skip[i])))
				drop = 1;
		if (drop)
			continue;
		int tfd;
		unsigned events;
		unsigned long long data;
		if (sscanf(buf, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3)
			snprintf(lines[nlines], sizeof(lines[0]), "tfd %d events %#x data %#llx\n", tfd,
				 events, data);
		else
			snprintf(lines[nlines], sizeof(lines[0]), "%s", buf);
		sorted[nlines] = lines[nlines];
		nlines++;
	}
	fclose(f);
	qsort(sorted, nlines, sizeof(sorted[0]), by_text);
	size_t used = 0;
	out[0] = 0;
	for (int i = 0; i < nlines && used < n; i++)
		used += snprintf(out + used, n - used, "%s", sorted[i]);
	return 0;
}

static const int special[] = {10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 24, 27, 23, 28};
#define NSPECIAL (sizeof(special) / sizeof(special[0]))
static char before[NSPECIAL][2048];

static double left(int fd, double *interval)
{
	struct itimerspec t;
	if (timerfd_gettime(fd, &t))
		return -1;
	*interval = t.it_interval.tv_sec + t.it_interval.tv_nsec / 1e9;
	return t.it_value.tv_sec + t.it_value.tv_nsec / 1e9;
}

/* The data of the events epoll fd ep reports now, sorted. */
static int ready(int ep, unsigned long long *out, int max)
{
	struct epoll_event ev[32];
	int n = epoll_wait(ep, ev, 32, 0);
	if (n < 0 || n > max)
		return -1;
	for (int i = 0; i < n; i++)
		out[i] = ev[i].data.u64;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (out[j] < out[i]) {
				unsigned long long t = out[i];
				out[i] = out[j];
				out[j] = t;
			}
	return n;
}

static const char *same_set(const char *what, int ep, const unsigned long long *want, int nwant)
{
	unsigned long long got[32];
	int n = ready(ep, got, 32);
	int ok = n == nwant;
	for (int i = 0; ok && i < n; i++)
		ok = got[i] == want[i];
	if (ok)
		return NULL;
	int at = snprintf(msg, sizeof(msg), "FAIL: %s reports", what);
	for (int i = 0; i < n; i++)
		at += snprintf(msg + at, sizeof(msg) - at, " %#llx", got[i] & 0xffff);
	snprintf(msg + at, sizeof(msg) - at, " (%d events, want %d)\n", n, nwant);
	return msg;
}

static const char *expect_count(int fd, uint64_t want)
{
	uint64_t v = 0;
	if (read(fd, &v, 8) != 8 || v != want) {
		snprintf(msg, sizeof(msg), "FAIL: eventfd %d count %llu, want %llu\n", fd,
			 (unsigned long long)v, (unsigned long long)want);
		return msg;
	}
	return NULL;
}

static const char *check(void)
{
	char now[2048];
	for (size_t i = 0; i < NSPECIAL; i++) {
		if (fdinfo(special[i], now, sizeof(now)) || strcmp(now, before[i])) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d fdinfo\n%.2000s\nwas\n%.2000s", special[i], now,
				 before[i]);
			return msg;
		}
	}
	double iv, l;
	l = left(14, &iv);
	if (l > 1000 || l < 1000 - 120 || iv != 500) {
		snprintf(msg, sizeof(msg), "FAIL: timerfd 14 has %.3f s left, interval %.3f\n", l, iv);
		return msg;
	}
	l = left(16, &iv);
	if (l > 2000 || l < 2000 - 120 || iv != 0) {
		snprintf(msg, sizeof(msg), "FAIL: timerfd 16 has %.3f s left, interval %.3f\n", l, iv);
		return msg;
	}
	l = left(17, &iv);
	if (l != 0 || iv != 7) {
		snprintf(msg, sizeof(msg), "FAIL: timerfd 17 has %.3f s left, interval %.3f\n", l, iv);
		return msg;
	}
	const char *why;
	/* B first: asking B does not consume A's events. */
	unsigned long long want_b[] = {HI | 0x2020, HI | 0x2222};
	if ((why = same_set("epoll B", 21, want_b, 2)))
		return why;
	unsigned long long want_a[] = {HI | 0x1010, HI | 0x1111, HI | 0x1212,
				       HI | 0x1313, HI | 0x1515, HI | 0x1818};
	if ((why = same_set("epoll A", 20, want_a, 6)))
		return why;
	/* Edge-triggered and one-shot: reported once. */
	unsigned long long want_again[] = {HI | 0x1010, HI | 0x1313, HI | 0x1515, HI | 0x1818};
	if ((why = same_set("epoll A again", 20, want_again, 4)))
		return why;
	if ((why = expect_count(10, 5)))
		return why;
	for (int i = 0; i < (plain ? 1 : 3); i++)
		if ((why = expect_count(11, plain ? 3 : 1)))
			return why;
	uint64_t v;
	if (read(11, &v, 8) != -1 || errno != EAGAIN)
		return "FAIL: eventfd 11 counts more than 3\n";
	char buf[PIPE_BYTES + 1];
	if (read(12, buf, sizeof(buf)) != PIPE_BYTES)
		return "FAIL: the pipe's bytes\n";
	for (int i = 0; i < PIPE_BYTES; i++)
		if (buf[i] != (char)('a' + i % 26))
			return "FAIL: the pipe's bytes differ\n";
	if ((why = expect_count(15, 1)))
		return "FAIL: timerfd 15's expirations\n";
	struct signalfd_siginfo si[3];
	ssize_t r = read(18, si, sizeof(si));
	if (r != 2 * (ssize_t)sizeof(si[0])) {
		snprintf(msg, sizeof(msg), "FAIL: signalfd 18 gives %zd bytes\n", r);
		return msg;
	}
	int usr2 = 0, rt = 0;
	for (int i = 0; i < 2; i++) {
		if (si[i].ssi_signo == SIGUSR2)
			usr2 = 1;
		if (si[i].ssi_signo == (unsigned)SIGRTMIN + 1 && si[i].ssi_int == 42)
			rt = 1;
	}
	if (!usr2 || !rt)
		return "FAIL: signalfd 18's signals\n";
	if ((why = expect_count(23, 1)))
		return why;
	if (read(28, &v, 8) != -1 || errno != EAGAIN)
		return "FAIL: eventfd E counts\n";
	/* E, registered as 27 and held at 28, wakes A with its data. */
	v = 1;
	unsigned long long want_e[] = {HI | 0x1010, HI | 0x1313, HI | 0x2727};
	if (write(28, &v, 8) != 8)
		return "FAIL: writing to eventfd E\n";
	v = 9;
	if (write(10, &v, 8) != 8)
		return "FAIL: writing to eventfd 10\n";
	if ((why = same_set("epoll A after a write to E", 20, want_e, 3)))
		return why;
	/* The registrations are found by the numbers they were made with. */
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
	if (epoll_ctl(20, EPOLL_CTL_MOD, 10, &ev))
		return "FAIL: EPOLL_CTL_MOD of fd 10 in A\n";
	if (epoll_ctl(20, EPOLL_CTL_DEL, 12, NULL))
		return "FAIL: EPOLL_CTL_DEL of fd 12 in A\n";
	ev.events = EPOLLIN | EPOLLONESHOT;
	if (epoll_ctl(20, EPOLL_CTL_MOD, 11, &ev))
		return "FAIL: EPOLL_CTL_MOD of fd 11 in A\n";
	if (plain)
		return NULL;
	if (epoll_ctl(20, EPOLL_CTL_DEL, 27, NULL) != -1 || errno != ENOENT)
		return "FAIL: fd 27 (another eventfd) is registered in A\n";
	if (epoll_ctl(21, EPOLL_CTL_MOD, 23, &ev) != -1 || errno != ENOENT)
		return "FAIL: fd 23 is registered in B as fd 23\n";
	if (epoll_ctl(21, EPOLL_CTL_DEL, 22, NULL) != -1 || errno != EBADF)
		return "FAIL: fd 22 is open\n";
	return NULL;
}

static int timer(int fd, int flags, time_t sec, long nsec, time_t isec, clockid_t clock)
{
	struct itimerspec t = {.it_interval = {isec, 0}, .it_value = {sec, nsec}};
	if (flags & TFD_TIMER_ABSTIME) {
		struct timespec now;
		clock_gettime(clock, &now);
		t.it_value.tv_sec += now.tv_sec;
	}
	return timerfd_settime(fd, flags, &t, NULL);
}

static int add(int ep, int fd, unsigned events, unsigned long long data)
{
	struct epoll_event ev = {.events = events, .data.u64 = HI | data};
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	plain = argc > 2 && !strcmp(argv[2], "plain");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask, sfd;
	sigfillset(&block);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (place(eventfd(5, EFD_NONBLOCK), 10) < 0 ||
	    place(eventfd(3, (plain ? 0 : EFD_SEMAPHORE) | EFD_NONBLOCK), 11) < 0)
		return 4;
	int p[2];
	char bytes[PIPE_BYTES];
	for (int i = 0; i < PIPE_BYTES; i++)
		bytes[i] = 'a' + i % 26;
	if (pipe(p) || place(p[0], 12) < 0 || place(p[1], 13) < 0 ||
	    write(13, bytes, PIPE_BYTES) != PIPE_BYTES)
		return 4;
	if (place(timerfd_create(CLOCK_MONOTONIC, 0), 14) < 0 ||
	    timer(14, 0, 1000, 0, 500, CLOCK_MONOTONIC) ||
	    place(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 15) < 0 ||
	    timer(15, 0, 0, 1000000, 0, CLOCK_MONOTONIC) ||
	    place(timerfd_create(CLOCK_REALTIME, 0), 16) < 0 ||
	    timer(16, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, 2000, 0, 0, CLOCK_REALTIME) ||
	    place(timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC), 17) < 0 ||
	    timer(17, 0, 0, 0, 7, CLOCK_BOOTTIME))
		return 5;
	struct pollfd pf = {.fd = 15, .events = POLLIN};
	if (poll(&pf, 1, 10000) != 1)
		return 5;
	sigemptyset(&sfd);
	sigaddset(&sfd, SIGUSR2);
	sigaddset(&sfd, SIGRTMIN + 1);
	if (place(signalfd(-1, &sfd, SFD_NONBLOCK), 18) < 0)
		return 6;
	sigemptyset(&sfd);
	sigaddset(&sfd, SIGINT);
	if (place(signalfd(-1, &sfd, 0), 19) < 0)
		return 6;
	union sigval val = {.sival_int = 42};
	if (raise(SIGUSR2) || sigqueue(getpid(), SIGRTMIN + 1, val))
		return 6;

	if (place(epoll_create1(0), 20) < 0 || add(20, 10, EPOLLIN, 0x1010) ||
	    add(20, 11, EPOLLIN | EPOLLONESHOT, 0x1111) || add(20, 12, EPOLLIN | EPOLLET, 0x1212) ||
	    add(20, 13, EPOLLOUT | EPOLLEXCLUSIVE, 0x1313) || add(20, 14, EPOLLIN, 0x1414) ||
	    add(20, 15, EPOLLIN, 0x1515) || add(20, 18, EPOLLIN, 0x1818))
		return 7;
	/* E registered as 27, moved to 28; F takes 27 (plain: E registered
	 * as 28). */
	int e_at = plain ? 28 : 27;
	if (place(eventfd(0, EFD_NONBLOCK), e_at) < 0 || add(20, e_at, EPOLLIN, 0x2727) ||
	    (!plain && (dup2(27, 28) != 28 || close(27))) || place(eventfd(0, 0), 27) < 0)
		return 7;
	/* X registered in B as 22, moved to 23 (plain: registered as 23). */
	int x_at = plain ? 23 : 22;
	if (place(epoll_create1(0), 21) < 0 || add(21, 20, EPOLLIN, 0x2020) ||
	    place(eventfd(1, 0), x_at) < 0 || add(21, x_at, EPOLLIN, 0x2222) ||
	    (!plain && (dup2(22, 23) != 23 || close(22))))
		return 8;
	if (place(epoll_create1(EPOLL_CLOEXEC), 24) < 0)
		return 8;
	for (size_t i = 0; i < NSPECIAL; i++)
		if (fdinfo(special[i], before[i], sizeof(before[i])))
			return 9;

	printf("pid %d\n", getpid());
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigfillset(&waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	const char *why = check();
	return verdict(argv[1], why ? why : "PASS\n");
}
