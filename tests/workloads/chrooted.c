/*
 * chrooted: a process whose root is not rcriu's (zdtm's chroot).
 *
 *   chrooted OUTFILE
 *
 * Opens OUTFILE and /dev/null, makes "jail" in its cwd with a file
 * "inside" it, chroots there and opens "/inside" from within. Prints
 * "ready", waits in sigsuspend for SIGUSR1, then checks that its root is
 * still the jail ("/inside" is the file it opened), that /dev/null, held
 * from before, still reads as empty, and writes PASS or FAIL: why.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int null = open("/dev/null", O_RDWR);
	if (out < 0 || null < 0 || (mkdir("jail", 0700) && access("jail", F_OK)))
		return 3;
	int f = open("jail/inside", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, "inside", 6) != 6 || chroot("jail") || chdir("/"))
		return 4;
	close(f);
	int in = open("/inside", O_RDONLY);
	struct stat held;
	if (in < 0 || fstat(in, &held))
		return 5;
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	if (write(1, "ready\n", 6) != 6)
		return 6;
	dup2(null, 1);
	while (!stop)
		sigsuspend(&old);

	const char *why = NULL;
	struct stat now;
	char buf[8];
	if (stat("/inside", &now) || now.st_ino != held.st_ino || now.st_dev != held.st_dev)
		why = "the root is not the jail";
	else if (read(null, buf, sizeof(buf)) != 0)
		why = "/dev/null does not read as empty";
	else if (pread(in, buf, 6, 0) != 6 || memcmp(buf, "inside", 6))
		why = "the file inside reads otherwise";
	const char *v = why ? why : "PASS";
	if (why && write(out, "FAIL: ", 6) < 0)
		return 1;
	if (write(out, v, strlen(v)) < 0)
		return 1;
	return why ? 1 : 0;
}
