/*
 * ns_files: a process holding fds on its own namespaces' files
 * (/proc/self/ns/NAME, fds 20 and up, in the order of NAMES below).
 *
 *   ns_files OUTFILE [foreign]
 *
 * With "foreign", it also holds fd 30 on the network namespace of a
 * child that made one of its own and has ended (a namespace no process
 * of a dump is in).
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks
 * that each fd is still the file of its namespace (the same nsfs inode
 * as /proc/self/ns/NAME) and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static const char *const NAMES[] = {"net", "uts", "ipc", "mnt", "pid", "user", "cgroup", "time"};
#define N (sizeof(NAMES) / sizeof(NAMES[0]))

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

	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 3;
	for (unsigned i = 0; i < N; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/ns/%s", NAMES[i]);
		int fd = open(path, O_RDONLY);
		if (fd < 0 || dup2(fd, 20 + i) != (int)(20 + i))
			return 4;
		close(fd);
	}
	if (argc > 2 && !strcmp(argv[2], "foreign")) {
		int p[2];
		if (pipe(p))
			return 5;
		pid_t child = fork();
		if (child == 0) {
			char c = 0;
			if (unshare(CLONE_NEWNET))
				c = 1;
			if (write(p[1], &c, 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		char c = 1;
		if (child < 0 || read(p[0], &c, 1) != 1 || c)
			return 5;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/net", child);
		int fd = open(path, O_RDONLY);
		if (fd < 0 || dup2(fd, 30) != 30)
			return 5;
		close(fd);
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		close(p[0]);
		close(p[1]);
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

	static char why[256];
	why[0] = 0;
	for (unsigned i = 0; i < N && !why[0]; i++) {
		char path[64];
		struct stat a, b;
		snprintf(path, sizeof(path), "/proc/self/ns/%s", NAMES[i]);
		if (fstat(20 + i, &a) || stat(path, &b))
			snprintf(why, sizeof(why), "FAIL: fd %u: %s\n", 20 + i, strerror(errno));
		else if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
			snprintf(why, sizeof(why), "FAIL: fd %u is not the %s namespace\n", 20 + i, NAMES[i]);
	}
	fputs(why[0] ? why : "PASS\n", out);
	fclose(out);
	return why[0] ? 1 : 0;
}
