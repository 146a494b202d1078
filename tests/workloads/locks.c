/*
 * locks: a process holding file locks and leases, in its working
 * directory:
 *
 *   fd 10      flock.txt, read-write, flock exclusive
 *   fds 11/12  shared.txt, read-only, flock shared (12 a dup of 11: one
 *              open file, one lock)
 *   fd 13      ofd.txt, read-write, OFD locks: write [100, 200), read
 *              [300, end)
 *   fd 14      lease.txt, read-only, a read lease
 *   fd 15      (mode "posix") posix.txt, read-write, POSIX locks: write
 *              [0, 10), read [20, end)
 *   fd 20      (mode "socket", alone) a socket, flock exclusive
 *   fd 16      (mode "breaking") break.txt, read-only, a read lease a
 *              child broke (an open for writing, refused): breaking to
 *              none
 *
 *   locks OUTFILE [posix|breaking]
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks:
 * the lock lines of each fd's fdinfo are what they were (kind, type,
 * owner, file, range), a child of its own cannot take what conflicts
 * with each lock, the leases are what they were and no lease-break
 * signal is pending; writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static int posix, breaking;

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

/* The lock lines of fd's fdinfo, without the lock's number. */
static int locks_of(int fd, char *out, size_t n)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t used = 0;
	out[0] = 0;
	while (fgets(buf, sizeof(buf), f)) {
		if (strncmp(buf, "lock:", 5))
			continue;
		char *rest = strchr(buf + 5, ':');
		used += snprintf(out + used, n - used, "%s", rest ? rest + 1 : buf);
		if (used >= n)
			break;
	}
	fclose(f);
	return 0;
}

static const int fds[] = {10, 11, 12, 13, 14, 15, 16};
#define NFDS (sizeof(fds) / sizeof(fds[0]))
static char before[NFDS][1024];

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &l);
}

/* In a child: each conflicting lock must be refused (EAGAIN). Returns
 * the number of the first check that failed, 0 when all were refused. */
static int conflicts(void)
{
	int fd;
	fd = open("flock.txt", O_RDONLY);
	if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		return 1;
	fd = open("shared.txt", O_RDONLY);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		return 2;
	if (flock(fd, LOCK_SH | LOCK_NB))
		return 3; /* shared with the shared lock */
	fd = open("ofd.txt", O_RDWR);
	if (fd < 0 || setlk(fd, F_OFD_SETLK, F_RDLCK, 150, 1) == 0 || errno != EAGAIN)
		return 4;
	if (setlk(fd, F_OFD_SETLK, F_WRLCK, 5000, 1) == 0 || errno != EAGAIN)
		return 5;
	if (setlk(fd, F_OFD_SETLK, F_WRLCK, 250, 10))
		return 6; /* between the two */
	/* A lease makes a write open fail without waiting. */
	fd = open("lease.txt", O_WRONLY | O_NONBLOCK);
	if (fd >= 0 || errno != EWOULDBLOCK)
		return 7;
	if (posix) {
		fd = open("posix.txt", O_RDWR);
		if (fd < 0 || setlk(fd, F_SETLK, F_RDLCK, 5, 1) == 0 || errno != EAGAIN)
			return 8;
		if (setlk(fd, F_SETLK, F_WRLCK, 100, 1) == 0 || errno != EAGAIN)
			return 9;
		if (setlk(fd, F_SETLK, F_RDLCK, 100, 1))
			return 10;
	}
	return 0;
}

static const char *check(void)
{
	char now[1024];
	for (size_t i = 0; i < NFDS; i++) {
		if (fcntl(fds[i], F_GETFD) < 0)
			continue;
		if (locks_of(fds[i], now, sizeof(now)) || strcmp(now, before[i])) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d locks\n%.1000s\nwere\n%.1000s", fds[i],
				 now, before[i]);
			return msg;
		}
	}
	if (fcntl(14, F_GETLEASE) != F_RDLCK)
		return "FAIL: fd 14's lease\n";
	if (breaking && fcntl(16, F_GETLEASE) != F_UNLCK)
		return "FAIL: fd 16's lease is not breaking to none\n";
	sigset_t pending;
	if (breaking && (sigpending(&pending) || sigismember(&pending, SIGIO)))
		return "FAIL: a lease-break signal the process had taken is pending\n";
	pid_t child = fork();
	if (child == 0)
		_exit(conflicts());
	int status;
	if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status))
		return "FAIL: the checking child\n";
	if (WEXITSTATUS(status)) {
		snprintf(msg, sizeof(msg), "FAIL: conflict %d was not refused\n", WEXITSTATUS(status));
		return msg;
	}
	return NULL;
}

static int make(const char *name)
{
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "0123456789", 10) != 10)
		return -1;
	return close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	posix = argc > 2 && !strcmp(argv[2], "posix");
	breaking = argc > 2 && !strcmp(argv[2], "breaking");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGIO);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (argc > 2 && !strcmp(argv[2], "socket")) {
		/* Mode "socket": only fd 20, a socket, flock exclusive. */
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || place(sv[0], 20) < 0 ||
		    flock(20, LOCK_EX))
			return 10;
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
		return verdict(argv[1], flock(20, LOCK_EX | LOCK_NB) ? "the socket's lock\n" : "PASS\n");
	}
	if (make("flock.txt") || make("shared.txt") || make("ofd.txt") || make("lease.txt") ||
	    make("posix.txt") || make("break.txt"))
		return 3;
	if (place(open("flock.txt", O_RDWR), 10) < 0 || flock(10, LOCK_EX))
		return 4;
	if (place(open("shared.txt", O_RDONLY), 11) < 0 || flock(11, LOCK_SH) || dup2(11, 12) != 12)
		return 4;
	if (place(open("ofd.txt", O_RDWR), 13) < 0 || setlk(13, F_OFD_SETLK, F_WRLCK, 100, 100) ||
	    setlk(13, F_OFD_SETLK, F_RDLCK, 300, 0))
		return 5;
	if (place(open("lease.txt", O_RDONLY), 14) < 0 || fcntl(14, F_SETLEASE, F_RDLCK))
		return 6;
	if (posix && (place(open("posix.txt", O_RDWR), 15) < 0 ||
		      setlk(15, F_SETLK, F_WRLCK, 0, 10) || setlk(15, F_SETLK, F_RDLCK, 20, 0)))
		return 7;
	if (breaking) {
		if (place(open("break.txt", O_RDONLY), 16) < 0 || fcntl(16, F_SETLEASE, F_RDLCK))
			return 8;
		pid_t child = fork();
		if (child == 0) {
			int fd = open("break.txt", O_WRONLY | O_NONBLOCK);
			_exit(fd < 0 && errno == EWOULDBLOCK ? 0 : 1);
		}
		int status;
		if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			return 8;
		/* The break's SIGIO, blocked, taken. */
		struct timespec zero = {0, 0};
		sigset_t io;
		sigemptyset(&io);
		sigaddset(&io, SIGIO);
		sigtimedwait(&io, NULL, &zero);
	}
	for (size_t i = 0; i < NFDS; i++)
		if (fcntl(fds[i], F_GETFD) >= 0 && locks_of(fds[i], before[i], sizeof(before[i])))
			return 9;

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
