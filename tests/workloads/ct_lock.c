/*
 * ct_lock: the init of a container holding a POSIX write lock on a file.
 *
 *   ct_lock OUTFILE
 *
 * Takes the lock on /tmp/lockfile (the whole file), writes "ready" to
 * stdout and waits in sigsuspend for SIGUSR1; then forks a child that
 * asks (F_GETLK) who holds a write lock there: PASS when its parent (the
 * init, pid 1) does, "FAIL: why" otherwise, to OUTFILE.
 */
#define _GNU_SOURCE
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
	int fd = open("/tmp/lockfile", O_RDWR | O_CREAT, 0644);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_SETLK, &l) < 0) {
		perror("F_SETLK");
		return 1;
	}
	sigset_t block, none;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	signal(SIGUSR1, on_usr1);
	printf("ready\n");
	fflush(stdout);
	sigemptyset(&none);
	while (!stop)
		sigsuspend(&none);
	pid_t kid = fork();
	if (kid == 0) {
		FILE *out = fopen(argv[1], "w");
		if (!out)
			_exit(1);
		int f = open("/tmp/lockfile", O_RDWR);
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (f < 0 || fcntl(f, F_GETLK, &q) < 0)
			fprintf(out, "FAIL: F_GETLK\n");
		else if (q.l_type == F_UNLCK)
			fprintf(out, "FAIL: nobody holds the lock\n");
		else if (q.l_pid != getppid())
			fprintf(out, "FAIL: held by %d, not %d\n", q.l_pid, getppid());
		else
			fprintf(out, "PASS\n");
		fclose(out);
		_exit(0);
	}
	int st;
	waitpid(kid, &st, 0);
	return 0;
}
