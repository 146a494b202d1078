// build: -pthread
/*
 * proc_child: a process holding files of its child's /proc directory
 * (zdtm's child_opened_proc):
 *
 *   fd 10  /proc/CHILD/stat, O_RDONLY
 *   fd 11  /proc/CHILD/cmdline, O_RDONLY, read up to its 3rd byte
 *
 *   proc_child OUTFILE [thread]
 *
 * "thread" makes the child start a second thread and opens its
 * /proc/TID/stat as fd 12 too (which the dump refuses), checked to be
 * still open.
 * The child waits in pause. Prints facts, "ready", waits in sigsuspend
 * for SIGUSR1, then checks that fd 10 reads the child's stat (its pid,
 * its state: alive), that fd 11 goes on from where it was, ends the child and
 * writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/syscall.h>
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

static pid_t child;
static int tpipe[2];

static void *second(void *arg)
{
	(void)arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	if (write(tpipe[1], &tid, sizeof(tid)) != sizeof(tid))
		return NULL;
	for (;;)
		pause();
}
static char cmd[64];
static char msg[256];

static const char *check(void)
{
	char buf[512] = {0}, want[64], link[64] = {0};
	snprintf(want, sizeof(want), "/proc/%d/stat", child);
	if (readlink("/proc/self/fd/10", link, sizeof(link) - 1) < 0 || strcmp(link, want)) {
		snprintf(msg, sizeof(msg), "FAIL: fd 10 is %s, not %s\n", link, want);
		return msg;
	}
	if (pread(10, buf, sizeof(buf) - 1, 0) <= 0)
		return "FAIL: reading fd 10\n";
	int pid = 0;
	char state = 0;
	char *p = strrchr(buf, ')');
	if (sscanf(buf, "%d", &pid) != 1 || !p || sscanf(p + 2, "%c", &state) != 1 || pid != child ||
	    (state != 'S' && state != 'R')) {
		snprintf(msg, sizeof(msg), "FAIL: fd 10 reads the stat of %d (state %c), not of %d\n", pid,
			 state, child);
		return msg;
	}
	char rest[64] = {0};
	ssize_t n = read(11, rest, sizeof(rest) - 1);
	if (n < 0 || strncmp(rest, cmd + 3, 32)) {
		snprintf(msg, sizeof(msg), "FAIL: fd 11 goes on with \"%s\"\n", rest);
		return msg;
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
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	int thread = argc > 2 && !strcmp(argv[2], "thread");
	if (pipe(tpipe))
		return 3;
	child = fork();
	if (child < 0)
		return 3;
	if (child == 0) {
		pthread_t t;
		if (thread && pthread_create(&t, NULL, second, NULL))
			return 3;
		for (;;)
			pause();
	}
	if (thread) {
		pid_t tid;
		char tpath[64];
		if (read(tpipe[0], &tid, sizeof(tid)) != sizeof(tid))
			return 4;
		snprintf(tpath, sizeof(tpath), "/proc/%d/stat", tid);
		int t = open(tpath, O_RDONLY);
		if (t < 0 || dup2(t, 12) != 12)
			return 4;
		close(t);
		printf("thread %d\n", tid);
	}
	close(tpipe[0]);
	close(tpipe[1]);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || dup2(fd, 10) != 10)
		return 4;
	close(fd);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", child);
	fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, cmd, sizeof(cmd) - 1) < 8)
		return 4;
	close(fd);
	fd = open(path, O_RDONLY);
	char head[3];
	if (fd < 0 || dup2(fd, 11) != 11 || read(11, head, 3) != 3)
		return 4;
	close(fd);
	printf("child %d\n", child);
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
	if (!why && thread && fcntl(12, F_GETFD) < 0)
		why = "FAIL: fd 12 is gone\n";
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return verdict(argv[1], why ? why : "PASS\n");
}
