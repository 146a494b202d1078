/*
 * ct_fown: the init of a container owning the signals of a pipe's read
 * end (F_SETOWN to itself, F_SETSIG SIGIO... SIGRTMIN+1).
 *
 *   ct_fown OUTFILE
 *
 * Writes "ready" to stdout, waits in sigsuspend for SIGUSR1, then checks
 * that the pipe's owner is still itself (F_GETOWN_EX, as its pid
 * namespace numbers it) and its signal the one set: PASS or "FAIL: why"
 * to OUTFILE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	int p[2];
	if (argc < 2 || pipe(p) < 0)
		return 2;
	int sig = SIGRTMIN + 1;
	if (fcntl(p[0], F_SETOWN, getpid()) < 0 || fcntl(p[0], F_SETSIG, sig) < 0) {
		perror("F_SETOWN");
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
	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 1;
	struct f_owner_ex o;
	if (fcntl(p[0], F_GETOWN_EX, &o) < 0)
		fprintf(out, "FAIL: F_GETOWN_EX\n");
	else if (o.type != F_OWNER_PID || o.pid != getpid())
		fprintf(out, "FAIL: owner %d of type %d, not %d\n", o.pid, o.type, getpid());
	else if (fcntl(p[0], F_GETSIG) != sig)
		fprintf(out, "FAIL: signal %d, not %d\n", fcntl(p[0], F_GETSIG), sig);
	else
		fprintf(out, "PASS\n");
	fclose(out);
	return 0;
}
