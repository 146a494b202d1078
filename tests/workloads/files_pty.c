/*
 * files_pty: a process holding both ends of a pty, with known settings:
 *
 *   fd 10  the master (/dev/ptmx), O_RDWR|O_NONBLOCK
 *   fd 11  the slave (/dev/pts/N), O_RDWR; raw mode, VINTR ^_, 33x111
 *   fd 12  a dup of 10
 *   fd 13  /dev/tty, O_RDWR (with "devtty")
 *
 *   files_pty OUTFILE [ctty] [excl] [queued] [devtty]
 *
 * "ctty" makes the slave the controlling terminal of the process (a
 * session leader, as the tests start it), its foreground group the
 * process's. "excl" puts the slave in exclusive mode (TIOCEXCL), which
 * the check then expects. "queued" leaves 5 bytes written to the master
 * and not read from the slave ("hello"), and 6 written to the slave and
 * not read from the master ("world!"), which the check reads first
 * (without waiting: missing bytes fail it). "devtty" (with "ctty") opens
 * /dev/tty, which the check expects still /dev/tty, reaching the slave:
 * bytes written to it come out of the master, bytes written to the
 * master are read from it, its session and foreground group are the
 * process's. "detached" (with "devtty") then gives the terminal up
 * (TIOCNOTTY): fd 13 reaches a terminal that is no longer the process's
 * controlling terminal (bytes still pass through it). Prints facts,
 * "ready", waits
 * in sigsuspend for SIGUSR1, then checks the pty's index, settings,
 * window size and that bytes pass both ways (and the controlling
 * terminal), and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

static int place(int fd, int at)
{
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	if (fd != at)
		close(fd);
	return at;
}

static char name[64];
static struct termios want;
static int ctty, excl, queued, devtty, detached, flags10, flags11, flags13;
static char msg[256];

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
	long v[5];
	char st;
	if (!p || sscanf(p + 2, "%c %ld %ld %ld %ld", &st, &v[0], &v[1], &v[2], &v[3]) != 5)
		return -1;
	return v[3];
}

static const char *check(void)
{
	char *now = ptsname(10);
	if (!now || strcmp(now, name)) {
		snprintf(msg, sizeof(msg), "FAIL: the pty is %s, was %s\n", now ? now : "?", name);
		return msg;
	}
	struct stat a, b;
	if (fstat(11, &a) || stat(name, &b) || a.st_rdev != b.st_rdev)
		return "FAIL: fd 11 is not the pty's slave\n";
	if (fcntl(10, F_GETFL) != flags10 || fcntl(11, F_GETFL) != flags11)
		return "FAIL: the ends' flags\n";
	struct termios t;
	if (tcgetattr(11, &t))
		return "FAIL: tcgetattr\n";
	if (t.c_iflag != want.c_iflag || t.c_oflag != want.c_oflag || t.c_cflag != want.c_cflag ||
	    t.c_lflag != want.c_lflag || t.c_cc[VINTR] != 037 || t.c_cc[VMIN] != want.c_cc[VMIN] ||
	    memcmp(t.c_cc, want.c_cc, NCCS)) {
		snprintf(msg, sizeof(msg), "FAIL: termios lflag %#x want %#x, VINTR %d\n", t.c_lflag,
			 want.c_lflag, t.c_cc[VINTR]);
		return msg;
	}
	struct winsize w;
	if (ioctl(11, TIOCGWINSZ, &w) || w.ws_row != 33 || w.ws_col != 111)
		return "FAIL: window size\n";
	char buf[8];
	if (queued) {
		char got[16] = {0};
		fcntl(11, F_SETFL, flags11 | O_NONBLOCK);
		ssize_t n = read(11, got, sizeof(got));
		fcntl(11, F_SETFL, flags11);
		if (n != 5 || memcmp(got, "hello", 5)) {
			snprintf(msg, sizeof(msg), "FAIL: the bytes waiting for the slave: %zd \"%.16s\"\n", n, got);
			return msg;
		}
		memset(got, 0, sizeof(got));
		n = read(10, got, sizeof(got));
		if (n != 6 || memcmp(got, "world!", 6)) {
			snprintf(msg, sizeof(msg), "FAIL: the bytes waiting for the master: %zd \"%.16s\"\n", n, got);
			return msg;
		}
	}
	if (write(12, "ping", 4) != 4 || read(11, buf, 4) != 4 || memcmp(buf, "ping", 4))
		return "FAIL: master to slave\n";
	if (write(11, "pong", 4) != 4)
		return "FAIL: slave write\n";
	int fl = fcntl(10, F_GETFL);
	fcntl(10, F_SETFL, fl & ~O_NONBLOCK);
	if (read(10, buf, 4) != 4 || memcmp(buf, "pong", 4))
		return "FAIL: slave to master\n";
	fcntl(10, F_SETFL, fl);
	if (ctty) {
		if (tcgetsid(11) != getpid() || tcgetpgrp(11) != getpid())
			return "FAIL: the slave is not the controlling terminal\n";
		if (tty_nr() != (long)a.st_rdev) {
			snprintf(msg, sizeof(msg), "FAIL: tty_nr %#lx, want %#lx\n", tty_nr(),
				 (long)a.st_rdev);
			return msg;
		}
	} else if (tty_nr() != 0) {
		return "FAIL: a controlling terminal appeared\n";
	}
	if (devtty) {
		struct stat t13;
		char link[64] = {0};
		if (readlink("/proc/self/fd/13", link, sizeof(link) - 1) < 0 || strcmp(link, "/dev/tty") ||
		    fstat(13, &t13) || !S_ISCHR(t13.st_mode) || t13.st_rdev != makedev(5, 0)) {
			snprintf(msg, sizeof(msg), "FAIL: fd 13 is not /dev/tty (%s)\n", link);
			return msg;
		}
		if (fcntl(13, F_GETFL) != flags13)
			return "FAIL: /dev/tty's flags\n";
		unsigned int dev = 0;
		if (ioctl(13, TIOCGDEV, &dev) || dev != (unsigned int)a.st_rdev)
			return "FAIL: /dev/tty does not reach the pty's slave\n";
		if (!detached && (tcgetsid(13) != getpid() || tcgetpgrp(13) != getpid()))
			return "FAIL: /dev/tty's session or group\n";
		if (write(13, "viatty", 6) != 6)
			return "FAIL: writing to /dev/tty\n";
		fl = fcntl(10, F_GETFL);
		fcntl(10, F_SETFL, fl & ~O_NONBLOCK);
		if (read(10, buf, 6) != 6 || memcmp(buf, "viatty", 6))
			return "FAIL: bytes written to /dev/tty do not reach the master\n";
		fcntl(10, F_SETFL, fl);
		if (write(10, "back", 4) != 4 || read(13, buf, 4) != 4 || memcmp(buf, "back", 4))
			return "FAIL: bytes written to the master are not read from /dev/tty\n";
	}
	int ex = -1;
	if (ioctl(11, TIOCGEXCL, &ex) || ex != excl)
		return "FAIL: the slave's exclusive mode\n";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	for (int i = 2; i < argc; i++) {
		ctty |= !strcmp(argv[i], "ctty");
		excl |= !strcmp(argv[i], "excl");
		queued |= !strcmp(argv[i], "queued");
		devtty |= !strcmp(argv[i], "devtty");
		detached |= !strcmp(argv[i], "detached");
	}
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

	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (place(m, 10) < 0 || grantpt(10) || unlockpt(10) || !ptsname(10))
		return 4;
	snprintf(name, sizeof(name), "%s", ptsname(10));
	if (place(open(name, O_RDWR | (ctty ? 0 : O_NOCTTY)), 11) < 0 || dup2(10, 12) != 12 ||
	    fcntl(10, F_SETFL, O_NONBLOCK))
		return 4;
	flags10 = fcntl(10, F_GETFL);
	flags11 = fcntl(11, F_GETFL);
	if (tcgetattr(11, &want) || !(flags10 & O_NONBLOCK))
		return 4;
	cfmakeraw(&want);
	want.c_cc[VINTR] = 037;
	want.c_cc[VMIN] = 1;
	want.c_cc[VTIME] = 0;
	if (tcsetattr(11, TCSANOW, &want) || tcgetattr(11, &want))
		return 4;
	struct winsize w = { .ws_row = 33, .ws_col = 111 };
	if (ioctl(11, TIOCSWINSZ, &w))
		return 4;
	if (excl && ioctl(11, TIOCEXCL))
		return 4;
	if (devtty && (place(open("/dev/tty", O_RDWR), 13) < 0 || (flags13 = fcntl(13, F_GETFL)) < 0))
		return 4;
	if (detached) {
		if (ioctl(11, TIOCNOTTY))
			return 4;
		ctty = 0;
	}
	if (queued && (write(10, "hello", 5) != 5 || write(11, "world!", 6) != 6))
		return 4;
	printf("pty %s\n", name);
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
