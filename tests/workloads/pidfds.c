// build: -pthread
/*
 * pidfds: a process holding pidfds of itself and of children that have
 * ended and been reaped:
 *
 *   fd 10  a pidfd of itself (close-on-exec, as pidfd_open makes them)
 *   fd 11  a pidfd of itself, PIDFD_NONBLOCK, not close-on-exec
 *   fd 12  a pidfd of child A, which exited and was reaped
 *   fd 13  a copy of fd 12 (dup: the same open file)
 *   fd 14  another pidfd of child A (another open file, the same process)
 *   fd 15  a pidfd of child B, which exited and was reaped
 *
 *   pidfds OUTFILE [parent|thread|children]
 *
 * "parent": fd 16 is a pidfd of its parent (the dump refuses it: that
 * process is not in the dump). "thread": fd 16 is a PIDFD_THREAD pidfd
 * of a thread of its own (refused by name, as CRIU does). "children":
 * fd 16 is a pidfd of a child that waits (C, in the tree), fd 17 of a
 * child that exited with 5 and was not reaped (Z, a zombie of the tree):
 * they must name the same processes after a restore (their fdinfo; a
 * signal through 16 reaches C, whose end shows through it; waitid
 * through 17 reaps Z with its status).
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks:
 * each fd's fdinfo is what it was (flags, Pid, NSpid), fds 10 and 11
 * name this process (a signal 0 reaches it through them, they do not
 * poll readable) and one pidfs inode; fds 12-15 name processes that have
 * ended (readable, ESRCH for signals, not a child of this one's); 12 and
 * 13 are one open file, 14 another of the same process, 15 of another
 * one; writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#define KCMP_FILE 0

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

static int pidfd_open(pid_t pid, unsigned flags)
{
	return syscall(SYS_pidfd_open, pid, flags);
}

static int pidfd_signal(int fd, int sig)
{
	return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

static int same_file(int a, int b)
{
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

static ino_t ino(int fd)
{
	struct stat st;
	return fstat(fd, &st) ? 0 : st.st_ino;
}

/* The fdinfo of fd without pos, mnt_id and ino (the pidfs inode, new
 * for a restored process). */
static int fdinfo(int fd, char *out, size_t n)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t used = 0;
	out[0] = 0;
	while (fgets(buf, sizeof(buf), f) && used < n) {
		if (!strncmp(buf, "pos:", 4) || !strncmp(buf, "mnt_id:", 7) || !strncmp(buf, "ino:", 4))
			continue;
		used += snprintf(out + used, n - used, "%s", buf);
	}
	fclose(f);
	return 0;
}

#define FIRST 10
#define LAST 15
static char before[LAST + 1][512];
static char before_child[2][512];
static int children;
static pid_t child, zombie;
static char msg[2048];

/* A child that exits with code, reaped once `fds` pidfds of it are open
 * at `at`...: the pid it had. */
static pid_t ended_child(int code, const int *at, int nr)
{
	pid_t c = fork();
	if (c < 0)
		return -1;
	if (c == 0)
		_exit(code);
	for (int i = 0; i < nr; i++)
		if (place(pidfd_open(c, 0), at[i]) < 0)
			return -1;
	int status;
	if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status) != code)
		return -1;
	return c;
}

static const char *check(void)
{
	char now[512];
	for (int fd = FIRST; fd <= LAST; fd++) {
		if (fdinfo(fd, now, sizeof(now)))
			return "FAIL: an fdinfo cannot be read\n";
		if (strcmp(now, before[fd])) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d fdinfo:\n%s\nwas:\n%s", fd, now,
				 before[fd]);
			return msg;
		}
	}
	if (pidfd_signal(10, 0) || pidfd_signal(11, 0))
		return "FAIL: no signal reaches this process through fd 10 or 11\n";
	struct pollfd self[2] = {{.fd = 10, .events = POLLIN}, {.fd = 11, .events = POLLIN}};
	if (poll(self, 2, 0) != 0)
		return "FAIL: fd 10 or 11 polls readable: the process they name has ended\n";
	if (ino(10) == 0 || ino(10) != ino(11))
		return "FAIL: fds 10 and 11 are pidfds of two processes\n";
	if (same_file(10, 11))
		return "FAIL: fds 10 and 11 are one open file\n";
	for (int fd = 12; fd <= 15; fd++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d does not poll readable\n", fd);
			return msg;
		}
		if (pidfd_signal(fd, SIGKILL) != -1 || errno != ESRCH) {
			snprintf(msg, sizeof(msg), "FAIL: a signal through fd %d: %s\n", fd,
				 strerror(errno));
			return msg;
		}
		siginfo_t si;
		if (waitid(P_PIDFD, fd, &si, WEXITED | WNOHANG) != -1 || errno != ECHILD) {
			snprintf(msg, sizeof(msg), "FAIL: fd %d names a child of this process\n", fd);
			return msg;
		}
	}
	if (!same_file(12, 13))
		return "FAIL: fds 12 and 13 are two open files\n";
	if (same_file(12, 14))
		return "FAIL: fds 12 and 14 are one open file\n";
	if (ino(12) != ino(14))
		return "FAIL: fds 12 and 14 are pidfds of two processes\n";
	if (ino(12) == ino(15) || ino(12) == ino(10))
		return "FAIL: fd 12 and fd 15 or 10 are pidfds of one process\n";
	if (children) {
		for (int fd = 16; fd <= 17; fd++) {
			if (fdinfo(fd, now, sizeof(now)))
				return "FAIL: an fdinfo cannot be read\n";
			if (strcmp(now, before_child[fd - 16])) {
				snprintf(msg, sizeof(msg), "FAIL: fd %d fdinfo:\n%s\nwas:\n%s", fd,
					 now, before_child[fd - 16]);
				return msg;
			}
		}
		struct pollfd c = {.fd = 16, .events = POLLIN};
		if (poll(&c, 1, 0) != 0)
			return "FAIL: fd 16 polls readable: C has ended\n";
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PIDFD, 17, &si, WEXITED | WNOHANG) || si.si_pid != zombie ||
		    si.si_code != CLD_EXITED || si.si_status != 5)
			return "FAIL: waitid through fd 17 does not reap Z with 5\n";
		if (pidfd_signal(16, SIGKILL))
			return "FAIL: SIGKILL through fd 16\n";
		memset(&si, 0, sizeof(si));
		if (waitid(P_PIDFD, 16, &si, WEXITED) || si.si_pid != child ||
		    si.si_code != CLD_KILLED)
			return "FAIL: C did not end by fd 16's SIGKILL\n";
	}
	return NULL;
}

/* A thread that tells its tid through a pipe, then sleeps. */
static void *sleeper(void *arg)
{
	pid_t tid = gettid();
	if (write(*(int *)arg, &tid, sizeof(tid)) != sizeof(tid))
		return NULL;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *extra = argc > 2 ? argv[2] : "";
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigfillset(&block);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (place(pidfd_open(getpid(), 0), 10) < 0 ||
	    place(pidfd_open(getpid(), PIDFD_NONBLOCK), 11) < 0 || fcntl(11, F_SETFD, 0))
		return 3;
	int a[] = {12, 14}, b[] = {15};
	pid_t ca = ended_child(7, a, 2);
	if (ca < 0 || dup2(12, 13) != 13)
		return 4;
	pid_t cb = ended_child(9, b, 1);
	if (cb < 0)
		return 4;
	if (!strcmp(extra, "parent") && place(pidfd_open(getppid(), 0), 16) < 0)
		return 5;
	children = !strcmp(extra, "children");
	if (children) {
		pid_t parent = getpid();
		child = fork();
		if (child == 0) {
			/* It ends with its parent, whichever way that ends. */
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
				_exit(1);
			for (;;)
				pause();
		}
		if (child < 0 || place(pidfd_open(child, 0), 16) < 0)
			return 5;
		zombie = fork();
		if (zombie == 0)
			_exit(5);
		siginfo_t si;
		if (zombie < 0 || place(pidfd_open(zombie, 0), 17) < 0 ||
		    waitid(P_PID, zombie, &si, WEXITED | WNOWAIT))
			return 5;
		if (fdinfo(16, before_child[0], sizeof(before_child[0])) ||
		    fdinfo(17, before_child[1], sizeof(before_child[1])))
			return 6;
	}
	if (!strcmp(extra, "thread")) {
		pthread_t t;
		int p[2];
		pid_t tid;
		if (pipe(p) || pthread_create(&t, NULL, sleeper, &p[1]) ||
		    read(p[0], &tid, sizeof(tid)) != sizeof(tid))
			return 5;
		close(p[0]);
		close(p[1]);
		if (place(pidfd_open(tid, PIDFD_THREAD), 16) < 0)
			return 5;
	}
	for (int fd = FIRST; fd <= LAST; fd++)
		if (fdinfo(fd, before[fd], sizeof(before[fd])))
			return 6;

	printf("child_a %d\n", ca);
	printf("child_b %d\n", cb);
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
