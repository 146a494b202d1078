// build: -pthread
/*
 * threads: long-lived threads that each count in their own TLS, and a
 * churner that keeps creating and joining short-lived threads, so that a
 * seize races with threads appearing and exiting.
 *
 *   threads OUTFILE [NTHREADS [calm]]
 *
 * On SIGUSR1 every counter must have kept counting and agree with its
 * shadow copy; PASS or FAIL goes to OUTFILE.
 *
 * "calm": no churner (the thread ids stay few and known, for a fixture);
 * instead each counting thread has a real-time signal queued to it
 * (SIGRTMIN+2, blocked, with its index as value) and the process one
 * (SIGRTMIN+3, value 77), which must still be pending at the check.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX 64

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static __thread unsigned long tls_count;
static unsigned long shadow[MAX];
static atomic_int bad;
static atomic_ulong churned;

static int calm;

/* Takes the pending `sig` with value `want`, without waiting. */
static int take(int sig, int want)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	struct timespec zero = {0, 0};
	siginfo_t si;
	if (sigtimedwait(&set, &si, &zero) != sig)
		return 0;
	return si.si_code == SI_QUEUE && si.si_value.sival_int == want;
}

static void *counter(void *arg)
{
	long i = (long)arg;
	while (!stop) {
		tls_count++;
		__atomic_store_n(&shadow[i], tls_count, __ATOMIC_RELAXED);
		if (tls_count != __atomic_load_n(&shadow[i], __ATOMIC_RELAXED))
			atomic_store(&bad, 1);
	}
	if (calm && !take(SIGRTMIN + 2, (int)i))
		atomic_store(&bad, 2);
	return NULL;
}

static void *brief(void *arg) { return arg; }

static void *churner(void *arg)
{
	(void)arg;
	while (!stop) {
		pthread_t t;
		if (pthread_create(&t, NULL, brief, NULL) == 0) {
			pthread_join(t, NULL);
			atomic_fetch_add(&churned, 1);
		}
	}
	return NULL;
}

static int verdict(const char *path, const char *msg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS\n") == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int n = argc > 2 ? atoi(argv[2]) : 4;
	if (n < 1 || n > MAX)
		return 2;
	calm = argc > 3 && strcmp(argv[3], "calm") == 0;
	signal(SIGUSR1, on_usr1);
	/* Only the main thread takes SIGUSR1, in sigsuspend. */
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigaddset(&usr1, SIGRTMIN + 2);
	sigaddset(&usr1, SIGRTMIN + 3);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	pthread_t t[MAX], ch;
	for (long i = 0; i < n; i++)
		pthread_create(&t[i], NULL, counter, (void *)i);
	if (calm) {
		for (int i = 0; i < n; i++) {
			union sigval v = {.sival_int = i};
			pthread_sigqueue(t[i], SIGRTMIN + 2, v);
		}
		union sigval v = {.sival_int = 77};
		sigqueue(getpid(), SIGRTMIN + 3, v);
	} else {
		pthread_create(&ch, NULL, churner, NULL);
	}

	/* Every thread has counted before the dump can come (one that never
	 * ran before the verdict's SIGUSR1 would never count). */
	for (int i = 0; i < n; i++)
		while (__atomic_load_n(&shadow[i], __ATOMIC_RELAXED) == 0)
			sched_yield();
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	/* SIGUSR1 stays blocked but in sigsuspend (see below): one that
	 * comes before the wait is not lost. */
	sigset_t waitmask;
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (!calm)
		pthread_join(ch, NULL);
	if (atomic_load(&bad) == 2)
		return verdict(argv[1], "FAIL: a thread's own pending signal is lost\n");
	if (atomic_load(&bad))
		return verdict(argv[1], "FAIL: a thread's TLS counter disagrees with its shadow\n");
	if (calm && !take(SIGRTMIN + 3, 77))
		return verdict(argv[1], "FAIL: the process's pending signal is lost\n");
	for (int i = 0; i < n; i++)
		if (shadow[i] == 0)
			return verdict(argv[1], "FAIL: a thread never counted\n");
	if (!calm && atomic_load(&churned) == 0)
		return verdict(argv[1], "FAIL: no thread was churned\n");
	return verdict(argv[1], "PASS\n");
}
