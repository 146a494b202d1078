// build: -pthread
/*
 * ct_timer: the init of a container with a POSIX timer that signals one
 * of its threads (SIGEV_THREAD_ID, as glibc's SIGEV_THREAD timers do).
 *
 *   ct_timer OUTFILE
 *
 * A thread is started and a timer made to signal it (SIGRTMIN+2, armed
 * for an hour, so never fired); writes "ready" to stdout and waits in
 * sigsuspend for SIGUSR1; then checks in /proc/self/timers that the
 * timer still signals that thread, by its tid as the container numbers
 * it: PASS or "FAIL: why" to OUTFILE.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static volatile pid_t worker;

static void *work(void *arg)
{
	(void)arg;
	worker = syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	sigset_t block, none;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	pthread_t t;
	pthread_create(&t, NULL, work, NULL);
	while (!worker)
		usleep(1000);
	struct sigevent ev;
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = SIGRTMIN + 2;
	ev._sigev_un._tid = worker;
	timer_t id;
	if (timer_create(CLOCK_MONOTONIC, &ev, &id) < 0) {
		perror("timer_create");
		return 1;
	}
	struct itimerspec its = { .it_value = { .tv_sec = 3600 } };
	timer_settime(id, 0, &its, NULL);
	signal(SIGUSR1, on_usr1);
	printf("ready\n");
	fflush(stdout);
	sigemptyset(&none);
	sigaddset(&none, SIGRTMIN + 2);
	while (!stop)
		sigsuspend(&none);
	FILE *out = fopen(argv[1], "w");
	FILE *tf = fopen("/proc/self/timers", "r");
	if (!out)
		return 1;
	char line[256], want[64];
	int found = 0;
	snprintf(want, sizeof(want), "/tid.%d\n", worker);
	while (tf && fgets(line, sizeof(line), tf))
		if (strncmp(line, "notify:", 7) == 0 && strstr(line, want))
			found = 1;
	if (found)
		fprintf(out, "PASS\n");
	else
		fprintf(out, "FAIL: no timer signals thread %d\n", worker);
	fclose(out);
	return 0;
}
