/*
 * files_tty_job: a shell job: a process that is not a session leader,
 * whose standard input is its session's controlling terminal (the shell's
 * pty), as tty_shell starts it. Its terminal is set to known modes and
 * window size.
 *
 *   files_tty_job OUTFILE [devtty]
 *
 * "devtty" opens /dev/tty as fd 13, which the check expects still
 * /dev/tty, the session's terminal.
 * Prints facts, "ready", waits in sigsuspend for SIGUSR1, then checks
 * that fd 0 is still that terminal, the session's controlling terminal,
 * with the same modes and window size, and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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

/* The controlling terminal's device, from /proc/self/stat (tty_nr). */
static long tty_nr(void)
{
	char buf[1024];
	int fd = open("/proc/self/stat", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	long v[4];
	char st;
	if (!p || sscanf(p + 2, "%c %ld %ld %ld %ld", &st, &v[0], &v[1], &v[2], &v[3]) != 5)
		return -1;
	return v[3];
}

static char name[64];
static int devtty;
static dev_t rdev;
static struct termios want;
static char msg[256];

static const char *check(void)
{
	struct stat st;
	if (!isatty(0) || fstat(0, &st) || st.st_rdev != rdev)
		return "FAIL: fd 0 is not the terminal\n";
	char *now = ttyname(0);
	if (!now || strcmp(now, name))
		return "FAIL: fd 0 has another name\n";
	if (tty_nr() != (long)rdev) {
		snprintf(msg, sizeof(msg), "FAIL: controlling terminal %#lx, want %#lx\n", tty_nr(),
			 (long)rdev);
		return msg;
	}
	if (getsid(0) == getpid() || tcgetsid(0) != getsid(0))
		return "FAIL: the terminal is not the session's\n";
	struct termios t;
	if (tcgetattr(0, &t) || t.c_lflag != want.c_lflag || t.c_iflag != want.c_iflag ||
	    t.c_cc[VINTR] != want.c_cc[VINTR])
		return "FAIL: the terminal's modes\n";
	struct winsize w;
	if (ioctl(0, TIOCGWINSZ, &w) || w.ws_row != 21 || w.ws_col != 77)
		return "FAIL: the terminal's window size\n";
	if (devtty) {
		char link[64] = {0};
		unsigned int dev = 0;
		if (readlink("/proc/self/fd/13", link, sizeof(link) - 1) < 0 || strcmp(link, "/dev/tty"))
			return "FAIL: fd 13 is not /dev/tty\n";
		if (ioctl(13, TIOCGDEV, &dev) || dev != (unsigned int)rdev || tcgetsid(13) != getsid(0))
			return "FAIL: /dev/tty does not reach the session's terminal\n";
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
	signal(SIGTTOU, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);

	devtty = argc > 2 && !strcmp(argv[2], "devtty");
	if (devtty) {
		int t = open("/dev/tty", O_RDWR);
		if (t < 0 || dup2(t, 13) != 13)
			return 4;
		close(t);
	}
	struct stat st;
	if (!isatty(0) || fstat(0, &st) || !ttyname(0))
		return 4;
	rdev = st.st_rdev;
	snprintf(name, sizeof(name), "%s", ttyname(0));
	if (tcgetattr(0, &want))
		return 4;
	want.c_lflag &= ~(ECHO | ICANON);
	want.c_cc[VINTR] = 035;
	struct winsize w = { .ws_row = 21, .ws_col = 77 };
	if (tcsetattr(0, TCSANOW, &want) || tcgetattr(0, &want) || ioctl(0, TIOCSWINSZ, &w))
		return 4;
	printf("tty %s\n", name);
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
