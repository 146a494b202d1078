/*
 * tty_shell: a stand-in for an interactive shell, to test shell jobs. It
 * makes a pty, becomes a session leader with the pty's slave as its
 * controlling terminal (holding the master, as a terminal emulator
 * would), and runs a job in a process group of its own in the
 * foreground, with the terminal as its standard input:
 *
 *   tty_shell JOB ARGS... -- AFTER ARGS...
 *
 * Once the job ends (a dump kills it) and a line comes on its standard
 * input (not its end: then it exits), it runs AFTER (a restore) the same way and prints "after STATUS"
 * on stdout; then it stays, keeping the session and its terminal, until
 * its standard input ends.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static pid_t run(char **argv, int tty, int master)
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		dup2(tty, 0);
		close(tty);
		close(master);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid > 0) {
		setpgid(pid, pid);
		tcsetpgrp(tty, pid);
	}
	return pid;
}

int main(int argc, char **argv)
{
	int split = 0;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--"))
			split = i;
	if (split < 2 || split == argc - 1)
		return 2;
	argv[split] = NULL;
	signal(SIGTTOU, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master) || setsid() < 0)
		return 3;
	int tty = open(ptsname(master), O_RDWR);
	if (tty < 0)
		return 3;
	fcntl(master, F_SETFD, FD_CLOEXEC);

	int status;
	pid_t job = run(argv + 1, tty, master);
	if (job < 0 || waitpid(job, &status, 0) != job)
		return 4;
	tcsetpgrp(tty, getpgrp());
	char c = 0;
	while (read(0, &c, 1) == 1 && c != '\n')
		;
	if (c != '\n')
		return 0;
	pid_t after = run(argv + split + 1, tty, master);
	if (after < 0 || waitpid(after, &status, 0) != after)
		return 4;
	tcsetpgrp(tty, getpgrp());
	printf("after %d\n", status);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
