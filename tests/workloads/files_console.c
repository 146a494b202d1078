/*
 * files_console: a process holding terminals that are not ptys, through
 * device nodes it makes in its cwd (as zdtm's console and vt do):
 *
 *   fd 10  ./console (5:1, the console), O_RDONLY
 *   fd 11  ./vt5 (4:5, a virtual terminal), O_RDONLY
 *   fd 12  ./vt5 again, O_RDWR|O_NONBLOCK
 *
 *   files_console OUTFILE
 *
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks
 * that each fd is still a terminal, of its node (path and device), with
 * its flags, and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
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

static char cwd[PATH_MAX];
static int flags[3];
static char msg[2 * PATH_MAX + 128];

static const char *check_one(int fd, const char *name, dev_t rdev)
{
	char want[PATH_MAX + 16], link[PATH_MAX + 16] = {0}, proc[32];
	struct stat st;
	snprintf(want, sizeof(want), "%s/%s", cwd, name);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (readlink(proc, link, sizeof(link) - 1) < 0 || strcmp(link, want)) {
		snprintf(msg, sizeof(msg), "FAIL: fd %d is %s, not %s\n", fd, link, want);
		return msg;
	}
	if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != rdev) {
		snprintf(msg, sizeof(msg), "FAIL: fd %d's device is %u:%u\n", fd, major(st.st_rdev),
			 minor(st.st_rdev));
		return msg;
	}
	if (!isatty(fd)) {
		snprintf(msg, sizeof(msg), "FAIL: fd %d is not a terminal\n", fd);
		return msg;
	}
	if (fcntl(fd, F_GETFL) != flags[fd - 10]) {
		snprintf(msg, sizeof(msg), "FAIL: fd %d's flags\n", fd);
		return msg;
	}
	return NULL;
}

static const char *check(void)
{
	const char *why = check_one(10, "console", makedev(5, 1));
	if (!why)
		why = check_one(11, "vt5", makedev(4, 5));
	if (!why)
		why = check_one(12, "vt5", makedev(4, 5));
	return why;
}

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !getcwd(cwd, sizeof(cwd)))
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (mknod("console", S_IFCHR | 0600, makedev(5, 1)) ||
	    mknod("vt5", S_IFCHR | 0600, makedev(4, 5)))
		return 3;
	if (place(open("console", O_RDONLY | O_NOCTTY), 10) < 0 ||
	    place(open("vt5", O_RDONLY | O_NOCTTY), 11) < 0 ||
	    place(open("vt5", O_RDWR | O_NONBLOCK | O_NOCTTY), 12) < 0)
		return 4;
	for (int i = 0; i < 3; i++)
		flags[i] = fcntl(10 + i, F_GETFL);
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
