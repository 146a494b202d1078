/*
 * proc_cwd: a process whose cwd is the /proc directory of a child that
 * has ended and been reaped, and that holds fd 7 on that child's
 * /proc/PID/status (what CRIU restores with a helper process of that
 * pid, a /proc remap).
 *
 *   proc_cwd OUTFILE
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks
 * that its cwd is still that directory (getcwd fails with ENOENT, the
 * link names it), that fd 7 still names the status file and reading it
 * fails with ESRCH (its process is gone), and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

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

	/* The verdict's path, opened before the cwd goes. */
	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 3;
	pid_t child = fork();
	if (child < 0)
		return 3;
	if (child == 0) {
		pause();
		_exit(0);
	}
	char dir[64], was[256], status[80], status_was[256];
	snprintf(dir, sizeof(dir), "/proc/%d", child);
	snprintf(status, sizeof(status), "/proc/%d/status", child);
	int sfd = open(status, O_RDONLY);
	if (sfd < 0 || dup2(sfd, 7) != 7)
		return 4;
	close(sfd);
	if (chdir(dir) || kill(child, SIGKILL) || waitpid(child, NULL, 0) != child)
		return 4;
	ssize_t sn = readlink("/proc/self/fd/7", status_was, sizeof(status_was) - 1);
	if (sn < 0)
		return 4;
	status_was[sn] = 0;
	ssize_t n = readlink("/proc/self/cwd", was, sizeof(was) - 1);
	if (n < 0)
		return 4;
	was[n] = 0;

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

	char buf[4096], now[256];
	const char *why = NULL;
	n = readlink("/proc/self/cwd", now, sizeof(now) - 1);
	now[n < 0 ? 0 : n] = 0;
	if (getcwd(buf, sizeof(buf)) || errno != ENOENT)
		why = "FAIL: getcwd works\n";
	else if (strcmp(now, was))
		why = "FAIL: the cwd changed\n";
	else {
		char snow[256];
		ssize_t m = readlink("/proc/self/fd/7", snow, sizeof(snow) - 1);
		snow[m < 0 ? 0 : m] = 0;
		if (strcmp(snow, status_was))
			why = "FAIL: fd 7 names another file\n";
		else if (read(7, buf, sizeof(buf)) >= 0 || errno != ESRCH)
			why = "FAIL: fd 7 reads a live process's status\n";
	}
	fputs(why ? why : "PASS\n", out);
	fclose(out);
	return why ? 1 : 0;
}
