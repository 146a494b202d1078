/*
 * mqueue: a process holding a POSIX message queue with one message in it
 * (what CRIU 4.2 has no image for).
 *
 *   mqueue OUTFILE
 *
 * Prints "ready", waits in sigsuspend for SIGUSR1, then receives the
 * message and writes PASS, or FAIL: why; the queue is unlinked.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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
	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 3;
	char name[64];
	snprintf(name, sizeof(name), "/rcriu-test-%d", getpid());
	struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
	mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
	if (q < 0 || mq_send(q, "hello", 5, 3))
		return 4;
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
	char buf[64];
	unsigned prio = 0;
	ssize_t n = mq_receive(q, buf, sizeof(buf), &prio);
	mq_unlink(name);
	const char *why = NULL;
	if (n != 5 || memcmp(buf, "hello", 5) || prio != 3)
		why = "FAIL: the message is not there\n";
	fputs(why ? why : "PASS\n", out);
	fclose(out);
	return why ? 1 : 0;
}
