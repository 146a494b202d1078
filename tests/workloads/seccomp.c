// build: -pthread
/*
 * seccomp: a process confined by seccomp, checked from inside.
 *
 *   seccomp OUTFILE filter|threads|tsync
 *
 * filter: no_new_privs and two stacked filters: the first kills the
 *   process on syscalls that a restorer makes but this process never does
 *   once "ready" (mremap, munmap, mprotect, setns, unshare, capset,
 *   setres[ug]id, setgroups, setsid, chroot, personality, prctl(PR_SET_MM),
 *   arch_prctl, sigaltstack, rt_sigaction, clone, ptrace, ...), the second
 *   makes getppid fail with EPERM. On SIGUSR1 getppid must fail with EPERM
 *   and status must say "Seccomp: 2" with 2 filters.
 * threads: per-thread modes. Thread C enters strict mode (it only spins
 *   on memory, then leaves with a raw exit), thread B has no filter, the
 *   main thread installs F0 (getppid: EPERM) for itself alone, then thread
 *   A is started (inheriting F0) and adds F1 (getsid: EACCES). Each
 *   thread checks its own syscalls, the main thread reads each thread's
 *   Seccomp and Seccomp_filters lines.
 * tsync: three spinning threads, then no_new_privs and two filters
 *   installed with SECCOMP_FILTER_FLAG_TSYNC (getppid: EPERM, getsid:
 *   EACCES). On SIGUSR1 every thread checks both, then one more TSYNC
 *   filter (getpgid: EXDEV) must install (seccomp returns 0, not a
 *   thread id) and reach every thread.
 *
 * Prints "mode M" (and "thread_X TID" in threads mode), "ready", waits in
 * sigsuspend; PASS or the first failure goes to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }

static const char *outfile;

static int verdict(const char *msg)
{
	int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		if (write(fd, msg, strlen(msg)) < 0)
			return 2;
		close(fd);
	}
	return strcmp(msg, "PASS\n") == 0 ? 0 : 1;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	char msg[256] = "FAIL: ";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + 6, sizeof(msg) - 8, fmt, ap);
	va_end(ap);
	strcat(msg, "\n");
	return verdict(msg);
}

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LD_ARCH BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch))
#define LD_ARG0 BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static int install(struct sock_filter *f, unsigned short n, unsigned flags)
{
	struct sock_fprog prog = { n, f };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* nr: ERRNO(err), anything else allowed. */
static int errno_filter(int nr, int err, unsigned flags)
{
	struct sock_filter f[] = {
		LD_ARCH,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		RET(SECCOMP_RET_ERRNO | err),
		RET(SECCOMP_RET_ALLOW),
	};
	return install(f, sizeof(f) / sizeof(f[0]), flags);
}

static const int killed[] = {
	SYS_mremap, SYS_munmap, SYS_mprotect, SYS_setns, SYS_unshare, SYS_capset,
	SYS_setresuid, SYS_setresgid, SYS_setuid, SYS_setgid, SYS_setgroups, SYS_setsid,
	SYS_setpgid, SYS_chroot, SYS_chdir, SYS_fchdir, SYS_personality, SYS_arch_prctl,
	SYS_set_robust_list, SYS_rseq, SYS_sigaltstack, SYS_setitimer, SYS_timer_create,
	SYS_timer_settime, SYS_setrlimit, SYS_prlimit64, SYS_umask, SYS_clone, SYS_clone3,
	SYS_fork, SYS_vfork, SYS_ptrace, SYS_memfd_create, SYS_rt_sigaction, SYS_set_tid_address,
	SYS_sched_setscheduler, SYS_setpriority, SYS_madvise,
};
#define NKILLED (sizeof(killed) / sizeof(killed[0]))

/* Kills the process on every syscall of `killed` and on prctl(PR_SET_MM). */
static int kill_filter(void)
{
	struct sock_filter f[NKILLED + 16];
	unsigned n = 0;
	f[n++] = (struct sock_filter)LD_ARCH;
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS);
	f[n++] = (struct sock_filter)LD_NR;
	for (unsigned k = 0; k < NKILLED; k++)
		/* Matches jump to the kill at the end. */
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, killed[k],
						      NKILLED - k + 3, 0);
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 2);
	f[n++] = (struct sock_filter)LD_ARG0;
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_MM, 1, 0);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS);
	return install(f, n, 0);
}

/* "Seccomp:" and "Seccomp_filters:" of thread tid. */
static int seccomp_lines(pid_t tid, int *mode, int *filters)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return -1;
	buf[k] = 0;
	char *m = strstr(buf, "\nSeccomp:"), *f = strstr(buf, "\nSeccomp_filters:");
	if (!m || !f)
		return -1;
	*mode = atoi(m + 9);
	*filters = atoi(f + 17);
	return 0;
}

/* A syscall's result: 0, or the errno it failed with. */
static int err_of(long r) { return r < 0 ? errno : 0; }
static int e_getppid(void) { return err_of(syscall(SYS_getppid)); }
static int e_getsid(void) { return err_of(syscall(SYS_getsid, 0)); }
static int e_getpgid(void) { return err_of(syscall(SYS_getpgid, 0)); }

/* Worker threads: spin on memory; answer a check when asked. */
#define MAXW 4
struct worker {
	pid_t tid;
	atomic_int up, ask, answered;
	char result[160];
	void (*check)(struct worker *, int round);
	void (*setup)(struct worker *);
	const char *name;
} workers[MAXW];

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->tid = gettid();
	if (w->setup)
		w->setup(w);
	atomic_store(&w->up, 1);
	int done = 0;
	for (;;) {
		int a = atomic_load_explicit(&w->ask, memory_order_acquire);
		if (a > done) {
			snprintf(w->result, sizeof(w->result), "ok");
			w->check(w, a);
			done = a;
			atomic_store(&w->answered, a);
		}
		__builtin_ia32_pause();
	}
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int await(atomic_int *v, int want)
{
	double t0 = now();
	while (atomic_load(v) < want) {
		if (now() - t0 > 60)
			return 0;
		sched_yield();
	}
	return 1;
}

/* Asks every worker for check `round`; 0 and a verdict on a failure. */
static int ask_all(int n, int round)
{
	for (int i = 0; i < n; i++)
		atomic_store(&workers[i].ask, round);
	for (int i = 0; i < n; i++) {
		if (!await(&workers[i].answered, round))
			return fail("thread %s never answered", workers[i].name), 0;
		if (strcmp(workers[i].result, "ok"))
			return fail("thread %s: %s", workers[i].name, workers[i].result), 0;
	}
	return 1;
}

static void wfail(struct worker *w, const char *what, int got, int want)
{
	snprintf(w->result, sizeof(w->result), "%s: errno %d, want %d", what, got, want);
}

/* threads mode. */
static atomic_int c_up, c_leave;
static pid_t c_tid;

static void *strict_thread(void *arg)
{
	(void)arg;
	c_tid = gettid();
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0))
		return NULL;
	atomic_store(&c_up, 1);
	while (!atomic_load(&c_leave))
		__builtin_ia32_pause();
	syscall(SYS_exit, 0);
	return NULL;
}

static void setup_a(struct worker *w)
{
	if (errno_filter(SYS_getsid, EACCES, 0))
		snprintf(w->result, sizeof(w->result), "installing F1 failed");
}

static void check_a(struct worker *w, int round)
{
	(void)round;
	int e;
	if ((e = e_getppid()) != EPERM)
		wfail(w, "getppid", e, EPERM);
	else if ((e = e_getsid()) != EACCES)
		wfail(w, "getsid", e, EACCES);
}

static void check_b(struct worker *w, int round)
{
	(void)round;
	int e;
	if ((e = e_getppid()) != 0)
		wfail(w, "getppid", e, 0);
	else if ((e = e_getsid()) != 0)
		wfail(w, "getsid", e, 0);
}

/* tsync mode: round 1 before the third filter, round 2 after it. */
static void check_t(struct worker *w, int round)
{
	int e;
	if ((e = e_getppid()) != EPERM)
		wfail(w, "getppid", e, EPERM);
	else if ((e = e_getsid()) != EACCES)
		wfail(w, "getsid", e, EACCES);
	else if ((e = e_getpgid()) != (round == 2 ? EXDEV : 0))
		wfail(w, "getpgid", e, round == 2 ? EXDEV : 0);
}

static int want_lines(const char *name, pid_t tid, int mode, int filters)
{
	int m = -1, f = -1;
	if (seccomp_lines(tid, &m, &f) || m != mode || f != filters)
		return fail("thread %s (%d): Seccomp %d with %d filters, want %d with %d", name, tid, m,
			    f, mode, filters),
		       0;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	outfile = argv[1];
	const char *mode = argv[2];
	signal(SIGUSR1, on_usr1);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	int null = open("/dev/null", O_WRONLY);
	if (null < 0)
		return 2;
	int nw = 0;
	pthread_t t;

	if (!strcmp(mode, "filter")) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || kill_filter() ||
		    errno_filter(SYS_getppid, EPERM, 0))
			return 3;
	} else if (!strcmp(mode, "threads")) {
		if (pthread_create(&t, NULL, strict_thread, NULL))
			return 3;
		workers[0] = (struct worker){ .check = check_b, .name = "B" };
		if (pthread_create(&t, NULL, worker_main, &workers[0]))
			return 3;
		if (!await(&c_up, 1) || !await(&workers[0].up, 1))
			return 3;
		if (errno_filter(SYS_getppid, EPERM, 0))
			return 3;
		workers[1] = (struct worker){ .check = check_a, .setup = setup_a, .name = "A" };
		if (pthread_create(&t, NULL, worker_main, &workers[1]) || !await(&workers[1].up, 1))
			return 3;
		if (strcmp(workers[1].result, ""))
			return 3;
		nw = 2;
		printf("thread_b %d\nthread_a %d\nthread_c %d\n", workers[0].tid, workers[1].tid, c_tid);
	} else if (!strcmp(mode, "tsync")) {
		const char *names[] = { "T1", "T2", "T3" };
		for (nw = 0; nw < 3; nw++) {
			workers[nw] = (struct worker){ .check = check_t, .name = names[nw] };
			if (pthread_create(&t, NULL, worker_main, &workers[nw]) ||
			    !await(&workers[nw].up, 1))
				return 3;
		}
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    errno_filter(SYS_getppid, EPERM, SECCOMP_FILTER_FLAG_TSYNC) ||
		    errno_filter(SYS_getsid, EACCES, SECCOMP_FILTER_FLAG_TSYNC))
			return 3;
	} else {
		return 2;
	}

	printf("mode %s\n", mode);
	printf("ready\n");
	fflush(stdout);
	dup2(null, 1);
	close(null);

	sigset_t waitmask;
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	while (!stop)
		sigsuspend(&waitmask);

	int e;
	if (!strcmp(mode, "filter")) {
		if ((e = e_getppid()) != EPERM)
			return fail("getppid: errno %d, want EPERM", e);
		if (!want_lines("main", gettid(), 2, 2))
			return 1;
	} else if (!strcmp(mode, "threads")) {
		if ((e = e_getppid()) != EPERM)
			return fail("main: getppid: errno %d, want EPERM", e);
		if ((e = e_getsid()) != 0)
			return fail("main: getsid: errno %d", e);
		if (!ask_all(nw, 1))
			return 1;
		if (!want_lines("main", gettid(), 2, 1) || !want_lines("A", workers[1].tid, 2, 2) ||
		    !want_lines("B", workers[0].tid, 0, 0) || !want_lines("C", c_tid, 1, 0))
			return 1;
		atomic_store(&c_leave, 1);
	} else {
		if ((e = e_getppid()) != EPERM)
			return fail("main: getppid: errno %d, want EPERM", e);
		if (!ask_all(nw, 1))
			return 1;
		if (!want_lines("main", gettid(), 2, 2))
			return 1;
		for (int i = 0; i < nw; i++)
			if (!want_lines(workers[i].name, workers[i].tid, 2, 2))
				return 1;
		int r = errno_filter(SYS_getpgid, EXDEV, SECCOMP_FILTER_FLAG_TSYNC);
		if (r != 0)
			return fail("a third TSYNC filter: seccomp returned %d (errno %d)", r,
				    r < 0 ? errno : 0);
		if ((e = e_getpgid()) != EXDEV)
			return fail("main: getpgid: errno %d, want EXDEV", e);
		if (!ask_all(nw, 2))
			return 1;
	}
	return verdict("PASS\n");
}
