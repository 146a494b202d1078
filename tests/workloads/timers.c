// build: -pthread
/*
 * timers: interval timers and POSIX timers that keep firing across a
 * dump, each checked from inside.
 *
 *   timers OUTFILE [pending]
 *
 * ITIMER_REAL (100 ms), ITIMER_VIRTUAL and ITIMER_PROF (50 ms of CPU
 * time, which a spinning thread burns) with handlers that count. POSIX
 * timers with ids that are not contiguous (six created, the second and
 * third deleted):
 *   A  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+1, value 0xa0, every 100 ms
 *      (taken by the spinning thread, the only one not blocking it);
 *   D  CLOCK_REALTIME, SIGEV_THREAD_ID to the waiter thread, SIGRTMIN+2,
 *      value 0xa3, every 150 ms (the main thread leaves SIGRTMIN+2
 *      unblocked: a process-wide signal would go to it, which fails);
 *   E  CLOCK_BOOTTIME, SIGEV_NONE, every 1000 s;
 *   F  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+4 (blocked everywhere),
 *      value 0xa5, every 20 ms: its signal stays pending, it overruns.
 * Timer slack 123456 ns on the main thread.
 *
 * With "pending", SIGALRM is blocked in every thread and ITIMER_REAL
 * has expired once before "ready": its signal is pending and, until it is
 * taken (which re-arms the timer), getitimer says 0 left of 100 ms. The
 * check then wants the interval kept, the signal pending, and once taken,
 * the timer firing again.
 *
 * Prints the timer ids ("timer_a ID", ...; "deleted ID,ID"), "ready",
 * then waits in sigsuspend. On SIGUSR1: every timer has its interval and
 * a remaining time within it, the deleted ids are invalid, every timer
 * still fires (its count grows: waited for with a hang guard, no
 * sleeps), each signal came with its value to the right thread, F's
 * pending signal and overrun are there. PASS or the first failure goes
 * to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define SIG_A (SIGRTMIN + 1)
#define SIG_D (SIGRTMIN + 2)
#define SIG_F (SIGRTMIN + 4)
#define SLACK 123456

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static atomic_long n_alrm, n_vt, n_prof, n_a, n_d;
static atomic_int bad_a, bad_d, main_got_d;
static int id_a, id_d, id_e, id_f, id_del1, id_del2;
static pid_t waiter_tid;
static atomic_int waiter_up, spinner_up;
static int pending_mode;

static void on_itimer(int sig)
{
	if (sig == SIGALRM)
		atomic_fetch_add(&n_alrm, 1);
	else if (sig == SIGVTALRM)
		atomic_fetch_add(&n_vt, 1);
	else if (sig == SIGPROF)
		atomic_fetch_add(&n_prof, 1);
}

static void on_a(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code != SI_TIMER || si->si_value.sival_int != 0xa0 || si->si_timerid != id_a)
		atomic_store(&bad_a, 1);
	atomic_fetch_add(&n_a, 1);
}

static void on_d(int sig) { (void)sig; atomic_store(&main_got_d, 1); }

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

static void *spinner(void *arg)
{
	(void)arg;
	sigset_t m;
	sigemptyset(&m);
	if (!pending_mode)
		sigaddset(&m, SIGALRM);
	sigaddset(&m, SIGVTALRM);
	sigaddset(&m, SIGPROF);
	sigaddset(&m, SIG_A);
	pthread_sigmask(SIG_UNBLOCK, &m, NULL);
	atomic_store(&spinner_up, 1);
	volatile unsigned long x = 0;
	for (;;)
		x++;
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	waiter_tid = gettid();
	atomic_store(&waiter_up, 1);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIG_D);
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&s, &si) != SIG_D)
			continue;
		if (si.si_code != SI_TIMER || si.si_value.sival_int != 0xa3 || si.si_timerid != id_d)
			atomic_store(&bad_d, 1);
		atomic_fetch_add(&n_d, 1);
	}
	return NULL;
}

static int tcreate(clockid_t clock, int notify, int sig, int value, pid_t tid)
{
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_int = value;
	sev._sigev_un._tid = tid;
	int id = -1;
	if (syscall(SYS_timer_create, clock, &sev, &id))
		return -1;
	return id;
}

static int tset(int id, long value_ns, long interval_ns)
{
	struct itimerspec its = {
		{ interval_ns / 1000000000, interval_ns % 1000000000 },
		{ value_ns / 1000000000, value_ns % 1000000000 },
	};
	return syscall(SYS_timer_settime, id, 0, &its, NULL);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int pending(int sig)
{
	sigset_t p;
	sigpending(&p);
	return sigismember(&p, sig);
}

#define MS 1000000L

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	pending_mode = argc > 2 && !strcmp(argv[2], "pending");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_itimer;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGVTALRM, &sa, NULL);
	sigaction(SIGPROF, &sa, NULL);
	sa.sa_handler = on_d;
	sigaction(SIG_D, &sa, NULL);
	sa.sa_sigaction = on_a;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIG_A, &sa, NULL);

	/* The main thread blocks all but SIG_D; the threads start from here. */
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGALRM);
	sigaddset(&m, SIGVTALRM);
	sigaddset(&m, SIGPROF);
	sigaddset(&m, SIG_A);
	sigaddset(&m, SIG_F);
	sigaddset(&m, SIG_D);
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, spinner, NULL) || pthread_create(&t, NULL, waiter, NULL))
		return 2;
	sigset_t d;
	sigemptyset(&d);
	sigaddset(&d, SIG_D);
	pthread_sigmask(SIG_UNBLOCK, &d, NULL);
	while (!atomic_load(&waiter_up) || !atomic_load(&spinner_up))
		sched_yield();

	prctl(PR_SET_TIMERSLACK, SLACK, 0, 0, 0);

	id_a = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_A, 0xa0, 0);
	id_del1 = tcreate(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
	id_del2 = tcreate(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0);
	id_d = tcreate(CLOCK_REALTIME, SIGEV_THREAD_ID, SIG_D, 0xa3, waiter_tid);
	id_e = tcreate(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0, 0);
	id_f = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_F, 0xa5, 0);
	if (id_a < 0 || id_del1 < 0 || id_del2 < 0 || id_d < 0 || id_e < 0 || id_f < 0)
		return 3;
	if (syscall(SYS_timer_delete, id_del1) || syscall(SYS_timer_delete, id_del2))
		return 3;
	if (tset(id_a, 100 * MS, 100 * MS) || tset(id_d, 150 * MS, 150 * MS) ||
	    tset(id_e, 1000000 * MS, 1000000 * MS) || tset(id_f, 1 * MS, 20 * MS))
		return 3;
	struct itimerval real = { { 0, 100000 }, { 0, pending_mode ? 1000 : 100000 } };
	struct itimerval cpu = { { 0, 50000 }, { 0, 50000 } };
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &cpu, NULL) ||
	    setitimer(ITIMER_PROF, &cpu, NULL))
		return 3;

	/* Everything has fired once before "ready". */
	double t0 = now();
	while ((pending_mode ? !pending(SIGALRM) : !atomic_load(&n_alrm)) || !atomic_load(&n_vt) ||
	       !atomic_load(&n_prof) ||
	       !atomic_load(&n_a) || !atomic_load(&n_d) || !pending(SIG_F)) {
		if (now() - t0 > 60)
			return 4;
		sched_yield();
	}

	printf("timer_a %d\ntimer_d %d\ntimer_e %d\ntimer_f %d\ndeleted %d,%d\n", id_a, id_d, id_e,
	       id_f, id_del1, id_del2);
	printf("waiter %d\n", waiter_tid);
	if (pending_mode) {
		struct itimerval cur;
		getitimer(ITIMER_REAL, &cur);
		printf("real_left %ld\n", (long)cur.it_value.tv_usec);
	}
	printf("ready\n");
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	close(null);

	sigset_t waitmask;
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	char msg[200];
	long base[5] = { n_alrm, n_vt, n_prof, n_a, n_d };
	struct {
		int id;
		long interval;
		const char *name;
	} tm[] = {
		{ id_a, 100 * MS, "A" },
		{ id_d, 150 * MS, "D" },
		{ id_e, 1000000 * MS, "E" },
		{ id_f, 20 * MS, "F" },
	};
	for (unsigned k = 0; k < 4; k++) {
		struct itimerspec its;
		if (syscall(SYS_timer_gettime, tm[k].id, &its)) {
			snprintf(msg, sizeof(msg), "FAIL: timer %s (%d): timer_gettime: %s\n", tm[k].name,
				 tm[k].id, strerror(errno));
			return verdict(argv[1], msg);
		}
		long iv = its.it_interval.tv_sec * 1000000000L + its.it_interval.tv_nsec;
		long v = its.it_value.tv_sec * 1000000000L + its.it_value.tv_nsec;
		if (iv != tm[k].interval) {
			snprintf(msg, sizeof(msg), "FAIL: timer %s (%d): interval %ld ns, want %ld\n",
				 tm[k].name, tm[k].id, iv, tm[k].interval);
			return verdict(argv[1], msg);
		}
		if (v < 0 || v > iv || (v == 0 && tm[k].id != id_f)) {
			snprintf(msg, sizeof(msg), "FAIL: timer %s (%d): %ld ns left of %ld\n", tm[k].name,
				 tm[k].id, v, iv);
			return verdict(argv[1], msg);
		}
	}
	int dels[] = { id_del1, id_del2 };
	for (int k = 0; k < 2; k++) {
		struct itimerspec its;
		if (syscall(SYS_timer_gettime, dels[k], &its) == 0 || errno != EINVAL) {
			snprintf(msg, sizeof(msg), "FAIL: deleted timer %d is there\n", dels[k]);
			return verdict(argv[1], msg);
		}
	}
	int which[] = { ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF };
	for (int k = 0; k < 3; k++) {
		struct itimerval cur;
		getitimer(which[k], &cur);
		long want = k ? 50000 : 100000;
		/* Setting a CPU itimer adds a tick (at most 10 ms) to its value. */
		long most = k ? want + 10000 : want;
		if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_usec != want ||
		    cur.it_value.tv_sec != 0 || cur.it_value.tv_usec > most) {
			snprintf(msg, sizeof(msg), "FAIL: itimer %d: interval %ld.%06ld value %ld.%06ld\n",
				 which[k], (long)cur.it_interval.tv_sec, (long)cur.it_interval.tv_usec,
				 (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
			return verdict(argv[1], msg);
		}
	}
	if (prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) != SLACK)
		return verdict(argv[1], "FAIL: timer slack\n");

	if (pending_mode) {
		/* The expired ITIMER_REAL's signal, and then the next one. */
		sigset_t alrm;
		sigemptyset(&alrm);
		sigaddset(&alrm, SIGALRM);
		struct timespec zero = { 0, 0 };
		if (sigtimedwait(&alrm, NULL, &zero) != SIGALRM)
			return verdict(argv[1], "FAIL: ITIMER_REAL's signal is not pending\n");
		t0 = now();
		while (!pending(SIGALRM)) {
			if (now() - t0 > 60)
				return verdict(argv[1], "FAIL: ITIMER_REAL stopped firing\n");
			sched_yield();
		}
	}

	/* Everything fires again, twice. */
	const char *names[5] = { "ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF", "timer A", "timer D" };
	atomic_long *counts[5] = { &n_alrm, &n_vt, &n_prof, &n_a, &n_d };
	t0 = now();
	for (int k = pending_mode ? 1 : 0; k < 5; k++)
		while (atomic_load(counts[k]) < base[k] + 2) {
			if (atomic_load(&main_got_d))
				return verdict(argv[1], "FAIL: timer D's signal went to the main thread\n");
			if (now() - t0 > 60) {
				snprintf(msg, sizeof(msg), "FAIL: %s stopped firing (%ld)\n", names[k],
					 atomic_load(counts[k]));
				return verdict(argv[1], msg);
			}
			sched_yield();
		}
	if (atomic_load(&bad_a))
		return verdict(argv[1], "FAIL: timer A's signal came with the wrong siginfo\n");
	if (atomic_load(&bad_d))
		return verdict(argv[1], "FAIL: timer D's signal came with the wrong siginfo\n");
	if (atomic_load(&main_got_d))
		return verdict(argv[1], "FAIL: timer D's signal went to the main thread\n");

	sigset_t f;
	sigemptyset(&f);
	sigaddset(&f, SIG_F);
	struct timespec zero = { 0, 0 };
	siginfo_t si;
	if (sigtimedwait(&f, &si, &zero) != SIG_F)
		return verdict(argv[1], "FAIL: timer F's signal is not pending\n");
	if (si.si_code != SI_TIMER || si.si_value.sival_int != 0xa5 || si.si_timerid != id_f) {
		snprintf(msg, sizeof(msg), "FAIL: timer F's signal: code %d value %#x timer %d\n",
			 si.si_code, si.si_value.sival_int, si.si_timerid);
		return verdict(argv[1], msg);
	}
	if (si.si_overrun < 0 || syscall(SYS_timer_getoverrun, id_f) < 0)
		return verdict(argv[1], "FAIL: timer F's overrun\n");
	return verdict(argv[1], "PASS\n");
}
