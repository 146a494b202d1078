// build: -pthread
/*
 * mt: the per-thread state of a multi-threaded process, each piece known
 * and checked by the thread itself.
 *
 *   mt OUTFILE [NTHREADS]
 *
 * NTHREADS counter threads (default 8), each with its own __thread id
 * and counter (kept in step with a shadow copy in shared memory), signal
 * mask, sigaltstack, name, nice value and timer slack, and its own pending
 * signals (SIGUSR2 and two SIGRTMIN+2 with known values, queued by the
 * main thread with pthread_sigqueue). Process-wide pending signals: one
 * SIGHUP and two SIGRTMIN+5 in order, each with its value. One thread
 * waits in FUTEX_WAIT (no timeout), a restartable syscall. One thread
 * holds known values in every vector register (zmm0-31 and k0-k7 with
 * AVX-512, else ymm0-15 or xmm0-15) in an assembly loop.
 *
 * Prints "threadI TID" and "vector avx512|avx|sse" facts, "ready", then
 * waits in sigsuspend. On SIGUSR1 each counter thread is asked to check
 * itself (its counter must move on while it answers), the futex waiter is
 * woken and must see FUTEX_WAIT return 0, the vector thread compares its
 * registers, the main thread drains the process-wide signals; PASS or the
 * first failure goes to OUTFILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX 32
#define ALTSZ 16384
#define TLS_MAGIC 0x7a5e000000000000ul

static volatile sig_atomic_t stop;
static void on_usr1(int sig) { (void)sig; stop = 1; }
static void on_other(int sig) { (void)sig; }

static __thread unsigned long tls_id;
static __thread unsigned long tls_count;
static unsigned long shadow[MAX];
static atomic_int started[MAX];
static atomic_int ask[MAX], answered[MAX];
static atomic_int bad_shadow[MAX];
static char result[MAX][160];
static pid_t tids[MAX];
static char altstacks[MAX][ALTSZ] __attribute__((aligned(16)));
static int nthreads;

/* Signals: each thread's own, and the process's. */
#define T_STD SIGUSR2
#define T_RT (SIGRTMIN + 2)
#define P_STD SIGHUP
#define P_RT (SIGRTMIN + 5)

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

static int nice_of(int i) { return 1 + i % 10; }
static unsigned long slack_of(int i) { return 10000 + 1000ul * i; }

/* The mask of counter thread i: the shared part, and its own extra. */
static void thread_mask(int i, sigset_t *s)
{
	sigemptyset(s);
	sigaddset(s, SIGUSR1);
	sigaddset(s, T_STD);
	sigaddset(s, T_RT);
	sigaddset(s, P_STD);
	sigaddset(s, P_RT);
	sigaddset(s, SIGRTMIN + 10 + i);
	if (i % 2)
		sigaddset(s, SIGWINCH);
	if (i % 3 == 0)
		sigaddset(s, SIGTTIN);
}

static int take(int sig, int want_value, char *why, size_t n, const char *who)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	struct timespec zero = { 0, 0 };
	siginfo_t si;
	int r = sigtimedwait(&s, &si, &zero);
	if (r != sig) {
		snprintf(why, n, "%s: signal %d (value %d) not pending: %s", who, sig, want_value,
			 strerror(errno));
		return 0;
	}
	if (si.si_code != SI_QUEUE || si.si_value.sival_int != want_value || si.si_pid != getpid()) {
		snprintf(why, n, "%s: signal %d code %d value %d pid %d, want SI_QUEUE value %d",
			 who, sig, si.si_code, si.si_value.sival_int, si.si_pid, want_value);
		return 0;
	}
	return 1;
}

static int none_left(int sig, char *why, size_t n, const char *who)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	struct timespec zero = { 0, 0 };
	if (sigtimedwait(&s, NULL, &zero) == sig) {
		snprintf(why, n, "%s: signal %d pending once too often", who, sig);
		return 0;
	}
	return 1;
}

static void check_thread(int i)
{
	char *why = result[i];
	size_t n = sizeof(result[i]);
	char who[32];
	snprintf(who, sizeof(who), "thread %d", i);
	/* First: is this thread's TLS its own? */
	if (tls_id != (TLS_MAGIC | i)) {
		snprintf(why, n, "thread %d: TLS id %#lx", i, tls_id);
		return;
	}
	if (atomic_load(&bad_shadow[i])) {
		snprintf(why, n, "thread %d: TLS counter disagrees with its shadow", i);
		return;
	}
	/* Keeps counting while it answers. */
	unsigned long c0 = tls_count;
	for (int k = 0; k < 100000; k++) {
		tls_count++;
		__atomic_store_n(&shadow[i], tls_count, __ATOMIC_RELAXED);
	}
	if (tls_count != c0 + 100000 || shadow[i] != tls_count) {
		snprintf(why, n, "thread %d: counter %lu from %lu", i, tls_count, c0);
		return;
	}
	sigset_t want, cur;
	thread_mask(i, &want);
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	for (int s = 1; s < 65; s++)
		if (sigismember(&want, s) != sigismember(&cur, s)) {
			snprintf(why, n, "thread %d: signal %d %s blocked", i, s,
				 sigismember(&cur, s) ? "is" : "is not");
			return;
		}
	stack_t ss;
	sigaltstack(NULL, &ss);
	if (ss.ss_sp != altstacks[i] || ss.ss_size != ALTSZ || ss.ss_flags != 0) {
		snprintf(why, n, "thread %d: sigaltstack %p %zu %d", i, ss.ss_sp, ss.ss_size,
			 ss.ss_flags);
		return;
	}
	char name[32] = "", wname[32];
	prctl(PR_GET_NAME, name, 0, 0, 0);
	snprintf(wname, sizeof(wname), "mt-w%d", i);
	if (strcmp(name, wname)) {
		snprintf(why, n, "thread %d: name %s", i, name);
		return;
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, gettid());
	if (nice != nice_of(i)) {
		snprintf(why, n, "thread %d: nice %d, want %d", i, nice, nice_of(i));
		return;
	}
	long slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	if (slack != (long)slack_of(i)) {
		snprintf(why, n, "thread %d: timer slack %ld", i, slack);
		return;
	}
	if (!take(T_STD, 100 * i + 1, why, n, who) || !take(T_RT, 100 * i + 2, why, n, who) ||
	    !take(T_RT, 100 * i + 3, why, n, who) || !none_left(T_STD, why, n, who) ||
	    !none_left(T_RT, why, n, who))
		return;
	snprintf(why, n, "ok");
}

static void *counter(void *arg)
{
	int i = (int)(long)arg;
	tls_id = TLS_MAGIC | i;
	tids[i] = gettid();
	sigset_t m;
	thread_mask(i, &m);
	pthread_sigmask(SIG_SETMASK, &m, NULL);
	stack_t ss = { .ss_sp = altstacks[i], .ss_size = ALTSZ, .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	char name[16];
	snprintf(name, sizeof(name), "mt-w%d", i);
	pthread_setname_np(pthread_self(), name);
	setpriority(PRIO_PROCESS, gettid(), nice_of(i));
	prctl(PR_SET_TIMERSLACK, slack_of(i), 0, 0, 0);
	atomic_store(&started[i], 1);
	for (;;) {
		for (int k = 0; k < 1024; k++) {
			tls_count++;
			__atomic_store_n(&shadow[i], tls_count, __ATOMIC_RELAXED);
			if (tls_count != __atomic_load_n(&shadow[i], __ATOMIC_RELAXED))
				atomic_store(&bad_shadow[i], 1);
		}
		if (atomic_load_explicit(&ask[i], memory_order_relaxed)) {
			check_thread(i);
			atomic_store(&answered[i], 1);
			return NULL;
		}
		sched_yield();
	}
}

/* The futex waiter: FUTEX_WAIT on `word` while it is 0. */
static uint32_t word;
static pid_t futex_tid;
static atomic_int futex_started;
static char futex_result[128];
static atomic_int futex_done;

static void *futex_waiter(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "mt-futex", 0, 0, 0);
	futex_tid = gettid();
	atomic_store(&futex_started, 1);
	long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	int e = errno;
	if (r != 0)
		snprintf(futex_result, sizeof(futex_result), "futex waiter: FUTEX_WAIT returned %ld (%s)",
			 r, strerror(e));
	else if (__atomic_load_n(&word, __ATOMIC_SEQ_CST) != 1)
		snprintf(futex_result, sizeof(futex_result), "futex waiter: woken with word %u", word);
	else
		snprintf(futex_result, sizeof(futex_result), "ok");
	atomic_store(&futex_done, 1);
	return NULL;
}

static int in_futex_wait(void)
{
	char path[64], w[64] = "";
	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", futex_tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t k = read(fd, w, sizeof(w) - 1);
	close(fd);
	if (k > 0)
		w[k] = 0;
	return strstr(w, "futex") != NULL;
}

/* The vector thread: 64-byte patterns, one per register; pat[32] holds
 * the opmasks' values. */
static uint8_t pat[33][64] __attribute__((aligned(64)));
static uint8_t got[33][64] __attribute__((aligned(64)));
static volatile int vec_stop;
static atomic_int vec_ready, vec_done;
static int vec_kind; /* 2 avx512, 1 avx, 0 sse */

#define LZ(n) "vmovdqa64 " #n "*64(%[p]), %%zmm" #n "\n"
#define SZ(n) "vmovdqa64 %%zmm" #n ", " #n "*64(%[o])\n"
#define LY(n) "vmovdqa " #n "*64(%[p]), %%ymm" #n "\n"
#define SY(n) "vmovdqa %%ymm" #n ", " #n "*64(%[o])\n"
#define LX(n) "movdqa " #n "*64(%[p]), %%xmm" #n "\n"
#define SX(n) "movdqa %%xmm" #n ", " #n "*64(%[o])\n"
#define LK(n) "kmovq 32*64+" #n "*8(%[p]), %%k" #n "\n"
#define SK(n) "kmovq %%k" #n ", 32*64+" #n "*8(%[o])\n"
#define R16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define R32(M) R16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define K8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define SPIN "movl $1, (%[rdy])\n" "1: pause\n" "cmpl $0, (%[stop])\n" "je 1b\n"
#define XCLOB "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
	"xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

__attribute__((target("avx512f,avx512bw"))) static void vec_avx512(void)
{
	__asm__ volatile(R32(LZ) K8(LK) SPIN R32(SZ) K8(SK) "vzeroupper\n"
			 :
			 : [p] "r"(pat), [o] "r"(got), [rdy] "r"(&vec_ready), [stop] "r"(&vec_stop)
			 : XCLOB, "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
			   "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",
			   "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "memory", "cc");
}

__attribute__((target("avx"))) static void vec_avx(void)
{
	__asm__ volatile(R16(LY) SPIN R16(SY) "vzeroupper\n"
			 :
			 : [p] "r"(pat), [o] "r"(got), [rdy] "r"(&vec_ready), [stop] "r"(&vec_stop)
			 : XCLOB, "memory", "cc");
}

static void vec_sse(void)
{
	__asm__ volatile(R16(LX) SPIN R16(SX)
			 :
			 : [p] "r"(pat), [o] "r"(got), [rdy] "r"(&vec_ready), [stop] "r"(&vec_stop)
			 : XCLOB, "memory", "cc");
}

static char vec_result[128];

static void *vector(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "mt-vec", 0, 0, 0);
	if (vec_kind == 2)
		vec_avx512();
	else if (vec_kind == 1)
		vec_avx();
	else
		vec_sse();
	int width = vec_kind == 2 ? 64 : vec_kind == 1 ? 32 : 16;
	int nregs = vec_kind == 2 ? 32 : 16;
	snprintf(vec_result, sizeof(vec_result), "ok");
	for (int r = 0; r < nregs; r++)
		if (memcmp(got[r], pat[r], width)) {
			int b = 0;
			while (got[r][b] == pat[r][b])
				b++;
			snprintf(vec_result, sizeof(vec_result), "vector thread: %cmm%d byte %d",
				 width == 64 ? 'z' : width == 32 ? 'y' : 'x', r, b);
			break;
		}
	if (vec_kind == 2 && !strcmp(vec_result, "ok"))
		for (int k = 0; k < 8; k++)
			if (((uint64_t *)got[32])[k] != ((uint64_t *)pat[32])[k]) {
				snprintf(vec_result, sizeof(vec_result), "vector thread: k%d", k);
				break;
			}
	atomic_store(&vec_done, 1);
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Waits (yielding) until *flag is set; 0 after 60 s: a hang guard only. */
static int await(atomic_int *flag)
{
	double t0 = now();
	while (!atomic_load(flag)) {
		if (now() - t0 > 60)
			return 0;
		sched_yield();
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	nthreads = argc > 2 ? atoi(argv[2]) : 8;
	if (nthreads < 1 || nthreads > MAX - 10)
		return 2;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_other;
	int others[] = { T_STD, T_RT, P_STD, P_RT };
	for (unsigned k = 0; k < sizeof(others) / sizeof(others[0]); k++)
		sigaction(others[k], &sa, NULL);

	/* Every thread blocks the signals it is sent and the process's. */
	sigset_t base;
	sigemptyset(&base);
	sigaddset(&base, SIGUSR1);
	sigaddset(&base, T_STD);
	sigaddset(&base, T_RT);
	sigaddset(&base, P_STD);
	sigaddset(&base, P_RT);
	pthread_sigmask(SIG_BLOCK, &base, NULL);

	__builtin_cpu_init();
	vec_kind = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? 2
		   : __builtin_cpu_supports("avx")					     ? 1
											     : 0;
	for (int r = 0; r < 33; r++)
		for (int i = 0; i < 64; i++)
			pat[r][i] = (uint8_t)(r * 53 + i * 7 + 3);

	pthread_t t;
	for (long i = 0; i < nthreads; i++)
		if (pthread_create(&t, NULL, counter, (void *)i))
			return 2;
	if (pthread_create(&t, NULL, futex_waiter, NULL) || pthread_create(&t, NULL, vector, NULL))
		return 2;
	for (int i = 0; i < nthreads; i++)
		if (!await(&started[i]))
			return 3;
	if (!await(&futex_started) || !await(&vec_ready))
		return 3;
	double t0 = now();
	while (!in_futex_wait()) {
		if (now() - t0 > 60)
			return 3;
		sched_yield();
	}

	/* Each thread's own pending signals, then the process's. */
	for (int i = 0; i < nthreads; i++) {
		siginfo_t si;
		for (int k = 0; k < 3; k++) {
			memset(&si, 0, sizeof(si));
			si.si_code = SI_QUEUE;
			si.si_pid = getpid();
			si.si_uid = getuid();
			si.si_value.sival_int = 100 * i + 1 + k;
			if (syscall(SYS_rt_tgsigqueueinfo, getpid(), tids[i], k ? T_RT : T_STD, &si))
				return 4;
		}
	}
	union sigval v;
	v.sival_int = 400;
	sigqueue(getpid(), P_STD, v);
	v.sival_int = 501;
	sigqueue(getpid(), P_RT, v);
	v.sival_int = 502;
	sigqueue(getpid(), P_RT, v);

	for (int i = 0; i < nthreads; i++)
		printf("thread%d %d\n", i, tids[i]);
	printf("futex_thread %d\n", futex_tid);
	printf("vector %s\n", vec_kind == 2 ? "avx512" : vec_kind == 1 ? "avx" : "sse");
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

	char why[256];
	for (int i = 0; i < nthreads; i++)
		atomic_store(&ask[i], 1);
	vec_stop = 1;
	/* The waiter must be back in FUTEX_WAIT (a restored one restarts it)
	 * before the word changes; one that left it already says how. */
	t0 = now();
	while (!in_futex_wait() && !atomic_load(&futex_done)) {
		if (now() - t0 > 60)
			return verdict(argv[1], "FAIL: the futex waiter is not in FUTEX_WAIT\n");
		sched_yield();
	}
	__atomic_store_n(&word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);

	for (int i = 0; i < nthreads; i++) {
		if (!await(&answered[i])) {
			snprintf(why, sizeof(why), "FAIL: thread %d never answered\n", i);
			return verdict(argv[1], why);
		}
		if (strcmp(result[i], "ok")) {
			snprintf(why, sizeof(why), "FAIL: %.160s\n", result[i]);
			return verdict(argv[1], why);
		}
	}
	if (!await(&futex_done))
		return verdict(argv[1], "FAIL: the futex waiter never woke\n");
	if (strcmp(futex_result, "ok")) {
		snprintf(why, sizeof(why), "FAIL: %s\n", futex_result);
		return verdict(argv[1], why);
	}
	if (!await(&vec_done))
		return verdict(argv[1], "FAIL: the vector thread never answered\n");
	if (strcmp(vec_result, "ok")) {
		snprintf(why, sizeof(why), "FAIL: %s\n", vec_result);
		return verdict(argv[1], why);
	}
	char msg[160];
	if (!take(P_STD, 400, msg, sizeof(msg), "process") || !take(P_RT, 501, msg, sizeof(msg), "process") ||
	    !take(P_RT, 502, msg, sizeof(msg), "process") || !none_left(P_STD, msg, sizeof(msg), "process") ||
	    !none_left(P_RT, msg, sizeof(msg), "process")) {
		snprintf(why, sizeof(why), "FAIL: %s\n", msg);
		return verdict(argv[1], why);
	}
	return verdict(argv[1], "PASS\n");
}
