// build: -pthread
/*
 * ct_threads: the init of a container with NT threads, each counting and
 * knowing its own tid (as its pid namespace numbers it).
 *
 *   ct_threads OUTFILE [zombie]
 *
 * With "zombie", it first forks a child that exits with status 7 at once
 * and is not reaped (a zombie, its pid printed as "zombie PID").
 *
 * Writes "tids PID T1 T2 T3" and "ready" to stdout, waits in sigsuspend
 * for SIGUSR1, then checks that each thread still has its tid, that
 * /proc/self/task lists exactly those, and that every thread counted on,
 * and writes PASS or FAIL: why to OUTFILE.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NT 3

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static volatile long counts[NT];
static volatile pid_t tids[NT];
static volatile int mismatch[NT];
static volatile int checked[NT];
static volatile int phase;

static void *counter(void *arg)
{
	long i = (long)arg;
	tids[i] = (pid_t)syscall(SYS_gettid);
	struct timespec ms = {0, 1000000};
	while (phase == 0) {
		counts[i]++;
		nanosleep(&ms, NULL);
	}
	mismatch[i] = (pid_t)syscall(SYS_gettid) != tids[i];
	checked[i] = 1;
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
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	pid_t zombie = 0;
	if (argc > 2 && !strcmp(argv[2], "zombie")) {
		zombie = fork();
		if (zombie == 0)
			_exit(7);
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (zombie < 0 || waitid(P_PID, zombie, &si, WEXITED | WNOWAIT))
			return 3;
	}
	pthread_t th[NT];
	for (long i = 0; i < NT; i++)
		if (pthread_create(&th[i], NULL, counter, (void *)i))
			return 3;
	for (int i = 0; i < NT; i++)
		while (!tids[i] || !counts[i])
			sched_yield();
	printf("tids %d", getpid());
	for (int i = 0; i < NT; i++)
		printf(" %d", tids[i]);
	if (zombie)
		printf("\nzombie %d", zombie);
	printf("\nready\n");
	fflush(stdout);
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);
	long seen[NT];
	for (int i = 0; i < NT; i++)
		seen[i] = counts[i];
	char why[256] = "";
	/* Every thread counts on after the restore. */
	for (int i = 0; i < NT && !why[0]; i++) {
		time_t deadline = time(NULL) + 20;
		while (counts[i] == seen[i] && time(NULL) < deadline)
			sched_yield();
		if (counts[i] == seen[i])
			snprintf(why, sizeof(why), "FAIL: thread %d stopped counting\n", i);
	}
	/* /proc/self/task: the leader and the threads' tids, nothing else. */
	DIR *d = opendir("/proc/self/task");
	int listed = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL && !why[0]) {
		if (e->d_name[0] == '.')
			continue;
		pid_t t = atoi(e->d_name);
		int known = t == getpid();
		for (int i = 0; i < NT; i++)
			known |= t == tids[i];
		if (!known)
			snprintf(why, sizeof(why), "FAIL: /proc/self/task lists %d\n", t);
		listed++;
	}
	if (d)
		closedir(d);
	if (!why[0] && listed != NT + 1)
		snprintf(why, sizeof(why), "FAIL: %d tasks listed\n", listed);
	phase = 1;
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NT && !why[0]; i++)
		if (mismatch[i])
			snprintf(why, sizeof(why), "FAIL: thread %d has another tid\n", i);
	if (zombie && !why[0]) {
		int status = 0;
		if (waitpid(zombie, &status, WNOHANG) != zombie)
			snprintf(why, sizeof(why), "FAIL: no zombie %d\n", zombie);
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
			snprintf(why, sizeof(why), "FAIL: zombie %d status %#x\n", zombie, status);
	}
	FILE *out = fopen(argv[1], "w");
	if (!out)
		return 4;
	fputs(why[0] ? why : "PASS\n", out);
	fclose(out);
	return why[0] ? 1 : 0;
}
