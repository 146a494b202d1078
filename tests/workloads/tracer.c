/*
 * tracer: attaches to a process with PTRACE_SEIZE and holds it, so that a
 * test can check that rcriu refuses a process someone else traces.
 *
 *   tracer OUTFILE PID
 *
 * Prints "ready" once attached; on SIGUSR1 writes PASS and exits, which
 * lets the tracee go.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigprocmask(SIG_BLOCK, &s, NULL);
	if (ptrace(PTRACE_SEIZE, atoi(argv[2]), NULL, NULL))
		return 3;
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);
	int sig;
	sigwait(&s, &sig);
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "PASS\n", 5) != 5)
		return 2;
	return 0;
}
